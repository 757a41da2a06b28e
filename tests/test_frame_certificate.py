"""The `frame-branch-and-bound` certificate (ncverify/evidence/certificates/frame.py,
docs/theory/depth-certificates.md#frame): its three lemmas hold at random instances and fail with
a constant falsified; every proven leaf bound is below the objective at the feasible points it
holds; wrong claims are never certified; a check runs it as the page shows."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from pathlib import Path

import mpmath
import numpy as np
import pytest

import theorems
from ncverify.evidence.certificates import frame
from ncverify.evidence.certificates.frame_bounds import (
    ZONE,
    cube_basis,
    margin_rows,
    proven_leaf,
    robust_multipliers,
)
from ncverify.evidence.results import Tolerances
from ncverify.model.intervals import interval_precision
from ncverify.model.problem import Problem
from ncverify.pipeline.verdict import compare_certificate

NCVERIFY = str(Path(sys.executable).with_name("ncverify"))
PAGE = Path(__file__).resolve().parents[1] / "docs" / "theory" / "depth-certificates.md"
CUBE = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]) / 2


# ---- the test's own rotations ---------------------------------------------------------------------
def quaternion_rotation(q: np.ndarray) -> np.ndarray:
    """The rotation of the unit quaternion (q0, v): (q0^2 - |v|^2) I + 2 v v^T + 2 q0 [v]_x."""
    q0, v = q[0], q[1:]
    cross = np.array([[0, -v[2], v[1]], [v[2], 0, -v[0]], [-v[1], v[0], 0]])
    return (q0 * q0 - v @ v) * np.eye(3) + 2 * np.outer(v, v) + 2 * q0 * cross


def rotation_quaternion(r: np.ndarray) -> np.ndarray:
    """A unit quaternion of the rotation `r` (Shepperd's method on the largest diagonal)."""
    t = np.trace(r)
    cands = [1 + t, 1 + 2 * r[0, 0] - t, 1 + 2 * r[1, 1] - t, 1 + 2 * r[2, 2] - t]
    i = int(np.argmax(cands))
    s = np.sqrt(cands[i]) * 2
    if i == 0:
        q = [s / 4, (r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s]
    elif i == 1:
        q = [(r[2, 1] - r[1, 2]) / s, s / 4, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s]
    elif i == 2:
        q = [(r[0, 2] - r[2, 0]) / s, (r[0, 1] + r[1, 0]) / s, s / 4, (r[1, 2] + r[2, 1]) / s]
    else:
        q = [(r[1, 0] - r[0, 1]) / s, (r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, s / 4]
    return np.array(q)


def cube_rotations() -> list[np.ndarray]:
    """The 24 signed permutation matrices of determinant 1."""
    out = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((-1, 1), repeat=3):
            g = np.zeros((3, 3))
            g[range(3), perm] = signs
            if np.linalg.det(g) > 0:
                out.append(g)
    return out


def random_rotation(rng: np.random.Generator) -> np.ndarray:
    q = rng.normal(size=4)
    return quaternion_rotation(q / np.linalg.norm(q))


def into_zone(q: np.ndarray, zone: float) -> np.ndarray | None:
    """A Rodrigues vector of g Q in the zone, over the cube's rotations g; None if none is."""
    for g in cube_rotations():
        quat = rotation_quaternion(g @ q)
        r = quat[1:] / quat[0]
        if np.all(np.abs(r) <= zone) and np.abs(r).sum() <= 1:
            return r
    return None


# ---- lemma S --------------------------------------------------------------------------------------
def test_relabelling_the_classes_acts_by_signed_permutations() -> None:
    found = set()
    for perm in itertools.permutations(range(4)):
        big = np.eye(4)[list(perm)]
        p = CUBE.T @ big @ CUBE
        assert np.allclose(np.abs(p).sum(0), 1) and np.allclose(np.abs(p).max(0), 1)
        found.add(tuple(np.rint(p).astype(int).ravel()))
    assert len(found) == 24
    rotations = {tuple(np.rint(s * np.array(m).reshape(3, 3)).astype(int).ravel())
                 for m in found for s in (1, -1) if np.linalg.det(s * np.array(m).reshape(3, 3)) > 0}  # fmt: skip
    assert rotations == {tuple(np.rint(g).astype(int).ravel()) for g in cube_rotations()}
    assert np.allclose(cube_basis(), CUBE)


def test_every_rotation_falls_into_the_zone_and_a_smaller_zone_misses_some() -> None:
    rng = np.random.default_rng(0)
    rotations = [random_rotation(rng) for _ in range(400)]
    assert all(into_zone(q, ZONE) is not None for q in rotations)
    assert any(into_zone(q, 0.35) is None for q in rotations)


# ---- lemma R --------------------------------------------------------------------------------------
@pytest.mark.parametrize("factor, holds", [(2.0, True), (1.0, False)])
def test_a_cells_frames_lie_within_twice_its_rodrigues_radius(factor: float, holds: bool) -> None:
    rng = np.random.default_rng(1)
    worst = 0.0
    for _ in range(2000):
        c = rng.uniform(-ZONE, ZONE, 3)
        r = c + rng.uniform(-1, 1, 3) * 10 ** rng.uniform(-3, -0.5)
        gap = np.linalg.norm(quaternion_rotation(unit(r)) - quaternion_rotation(unit(c)), 2)
        worst = max(worst, gap / (factor * np.linalg.norm(r - c)))
    assert (worst <= 1 + 1e-9) == holds
    assert np.allclose(frame.rodrigues(c), quaternion_rotation(unit(c)))


def unit(r: np.ndarray) -> np.ndarray:
    q = np.concatenate([[1.0], r])
    return q / np.linalg.norm(q)


# ---- lemma F --------------------------------------------------------------------------------------
def lemma_f_holds(drop: str | None = None, seed: int = 2) -> bool:
    """Is every W' of lemma F below Q diag(w) Q^T at random frames Q within eps of the centre
    (eps^2 terms dropped from the form named by `drop`)?"""
    rng = np.random.default_rng(seed)
    for _ in range(300):
        c = random_rotation(rng)
        eps = 10 ** rng.uniform(-3, -0.5)
        w = np.exp(rng.uniform(-4, 2, 3))[None, :]
        made, forms = robust_multipliers(w, c, eps)
        if drop is not None:
            made = _dropped(w, c, drop, made, forms)
        for _ in range(10):
            axis = rng.normal(size=3)
            angle = rng.uniform(0, 1) * 2 * np.arcsin(eps / 2)  # ||Q - C||_2 <= eps
            q = c @ quaternion_rotation(np.concatenate([[np.cos(angle / 2)],
                                                        np.sin(angle / 2) * axis / np.linalg.norm(axis)]))  # fmt: skip
            exact = (q * w[0]) @ q.T
            scale = float(w.max())
            if np.linalg.eigvalsh(exact - made[0]).min(1).min() < -1e-12 * scale:
                return False
    return True


def _dropped(w, c, drop, made, forms):  # noqa: ANN001, ANN202
    """Lemma F's matrices with the eps^2 terms of one form removed (the others as made)."""
    out = made.copy()
    base = (c * w[0]) @ c.T
    a, b, top = np.argsort(w[0])
    for j, (form, params) in enumerate(forms):
        if form == 1 and drop == "first":
            out[0, j] = base / (1 + params[0])
        if form == 2 and drop == "second":
            t1, t2 = params
            ca, cc = c[:, a], c[:, top]
            out[0, j] = (
                w[0, a] * np.eye(3)
                + (w[0, b] - w[0, a]) * (np.eye(3) - (1 + t1) * np.outer(ca, ca))
                + (w[0, top] - w[0, b]) * (1 - t2) * np.outer(cc, cc)
            )
    return out


def test_lemma_f_is_below_every_frame_of_the_cell() -> None:
    assert lemma_f_holds()


@pytest.mark.parametrize("form", ["first", "second"])
def test_lemma_f_without_its_eps_squared_terms_fails(form: str) -> None:
    assert not lemma_f_holds(drop=form)


# ---- the leaf bound -------------------------------------------------------------------------------
def feasible_point(rng: np.random.Generator) -> np.ndarray:
    """Random logits (rows y_k, cube basis) divided by their least margin, or None."""
    y = CUBE * (1 + 0.3 * rng.normal()) + 10 ** rng.uniform(-2, 0.3) * rng.normal(size=(4, 3))
    rows = margin_rows()
    least = min(float((rows[k] @ y[k]).min()) for k in range(4))
    return y / least if least > 0 else None


def leaf_sound(p: float, points: int = 40, seed: int = 3) -> tuple[bool, int]:
    """Is the proven bound (exponent `p`) of a leaf around each random feasible point's
    eigenvalues and frame at most the point's sum of lambda^(1/3), the true exponent at M = 2?
    Also: at how many leaves the bound beat the box's lower corner (lemmas F and the duals
    at work, not the crude bound alone)."""
    rng = np.random.default_rng(seed)
    checked = beaten = 0
    with interval_precision(96) as iv:
        while checked < points:
            y = feasible_point(rng)
            if y is None:
                continue
            lam, vec = np.linalg.eigh(y.T @ y)
            lam, vec = lam[::-1], vec[:, ::-1] * np.sign(np.linalg.det(vec[:, ::-1]))
            r = into_zone(vec, ZONE)
            h = 10 ** rng.uniform(-3, -1)
            centre = np.round((r + rng.uniform(-h, h, 3)) * 2**20) / 2**20
            h = float(np.max(np.abs(r - centre))) * 1.01 + 1e-6
            lo = lam * (1 - 10 ** rng.uniform(-1.5, -0.05))
            hi = lam * (1 + 10 ** rng.uniform(-3, -1))
            prop = frame._propose(p, lo, hi, centre, h, None)
            bound = proven_leaf(iv.mpf(p), lo, hi, centre, h, prop, iv)
            if bound > float(np.sum(lam ** (1 / 3))) * (1 + 1e-12):
                return False, beaten
            beaten += bound > float(np.sum(lo**p)) * (1 + 1e-9)
            checked += 1
    return True, beaten


def test_every_leaf_bound_is_below_the_points_it_holds() -> None:
    sound, beaten = leaf_sound(1 / 3)
    assert sound and beaten >= 10


@pytest.mark.parametrize("p", [2 / 3, 1 / 2], ids=["exponent q", "exponent 1/M"])
def test_a_falsified_exponent_breaks_the_leaf_bound(p: float) -> None:
    assert not leaf_sound(p)[0]


def test_the_leaf_around_the_labels_is_bounded_at_their_value() -> None:
    lo, hi = np.full(3, 1 - 1e-6), np.full(3, 1 + 1e-6)
    with interval_precision(96) as iv:
        prop = frame._propose(1 / 3, lo, hi, np.zeros(3), 2.0**-10, None)
        bound = proven_leaf(iv.mpf(1) / 3, lo, hi, np.zeros(3), 2.0**-10, prop, iv)
    assert 3 * (1 - 1e-6) <= bound <= 3


# ---- in a check -----------------------------------------------------------------------------------
def margin4() -> Problem:
    return Problem.build(
        classes=4, samples=1, depth=2, width=4, lambda_w="1e-3", lambda_h="1e-3", loss="max-margin"
    )


@pytest.fixture(scope="module")
def small_certificate():  # noqa: ANN201
    return frame.frame_branch_and_bound(margin4(), boxes=150)


def test_a_spent_budget_proves_a_bound_below_the_labels(small_certificate) -> None:  # noqa: ANN001
    cert = small_certificate
    claimed = float(theorems.get("maxmargin-sel").closed_form(margin4()).objective)
    assert cert.kind == "frame-branch-and-bound" and cert.status == "budget"
    assert 0 < cert.bound < claimed and cert.primal == pytest.approx(claimed, rel=1e-12)


@pytest.mark.parametrize("relative", [-1e-3, 1e-3, None], ids=["below", "above", "scaled 1.05"])
def test_wrong_claims_are_never_certified(small_certificate, relative) -> None:  # noqa: ANN001
    claimed = theorems.get("maxmargin-sel").closed_form(margin4()).objective
    if relative is None:  # the labels scaled by 1.05: value times 1.05^(2/(M+1))
        wrong = claimed * mpmath.mpf("1.05") ** (mpmath.mpf(2) / 3)
    else:
        wrong = claimed * (1 + mpmath.mpf(relative))
    check = compare_certificate(small_certificate, wrong, Tolerances.for_eps(2.0**-52)).check
    assert check.passed is not True


def test_the_pages_command_runs_as_a_user_runs_it(tmp_path: Path) -> None:
    """The page's command, its report read as JSON and as the readable text, whose E3 detail
    keeps its bracket "[bound, primal]" (rich took it for markup and dropped it)."""
    (line,) = [
        s.strip()
        for s in PAGE.read_text().splitlines()
        if s.startswith("ncverify ") and "--classes 4" in s
    ]
    proc = subprocess.run(
        [NCVERIFY, *line.split()[1:], "--json", str(tmp_path / "r.json")],
        capture_output=True, text=True, check=False, env={**os.environ, "COLUMNS": "400"},
    )  # fmt: skip
    assert "the certificate's bracket [bound, primal] is wider" in proc.stdout
    report = json.loads((tmp_path / "r.json").read_text())
    cert = report["certificate"]
    assert proc.returncode == 0 and report["verdict"] == "consistent", report["notes"]
    assert cert["kind"] == "frame-branch-and-bound" and cert["status"] == "budget"
    assert 0.3 < cert["bound"] / report["prediction"]["objective"] < 0.7


def test_the_bound_is_the_same_whichever_process_proves_the_leaves(
    small_certificate,  # noqa: ANN001
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The leaves are proven in a worker process beside the search (two CPUs or more) or in the
    search's own (`NCVERIFY_JOBS=1`): the least proven bound is a minimum, the same either way."""
    monkeypatch.setenv("NCVERIFY_JOBS", "1")
    alone = frame.frame_branch_and_bound(margin4(), boxes=150)
    assert alone.bound == small_certificate.bound and alone.boxes == small_certificate.boxes


def test_three_samples_a_class_scale_the_bound_as_the_labels_value(small_certificate) -> None:  # noqa: ANN001
    """With n samples a class, G carries the factor n and tr G^p the factor n^p: the proven bound
    and the labels' value scale alike, and the labels' value is the claim's."""
    problem = Problem.build(
        counts="3,3,3,3", depth=2, width=4, lambda_w="1e-3", lambda_h="1e-3", loss="max-margin"
    )
    cert = frame.frame_branch_and_bound(problem, boxes=150)
    claimed = float(theorems.get("maxmargin-sel").closed_form(problem).objective)
    assert cert.primal == pytest.approx(claimed, rel=1e-12)
    assert cert.bound / cert.primal == pytest.approx(
        small_certificate.bound / small_certificate.primal, rel=1e-9
    )


@pytest.mark.parametrize("lam", ["1e-40", "1e66"])
def test_an_extreme_decay_scales_the_bound_as_the_labels_value(small_certificate, lam) -> None:  # noqa: ANN001
    """The objective is kappa times a sum that does not involve kappa: the search is the same at
    any lambda, and the proven bound and the claim scale alike.  (At 1e-40 the kind was skipped,
    "beyond floating point", a test the Gram kind needs and this one did not.)"""
    proc = subprocess.run(
        [NCVERIFY, "check", "maxmargin-sel", "--classes", "4", "--samples", "1", "--depth", "2",
         "--width", "4", "--lambda-w", lam, "--lambda-h", lam, "--certificate-boxes", "150",
         "--restarts", "2", "--search-starts", "0", "--quiet", "--json", "-"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    report = json.loads(proc.stdout)
    cert = report["certificate"]
    assert proc.returncode == 0 and cert is not None, report["notes"]
    assert cert["kind"] == "frame-branch-and-bound"
    assert cert["primal"] == pytest.approx(report["prediction"]["objective"], rel=1e-12)
    assert cert["bound"] / cert["primal"] == pytest.approx(
        small_certificate.bound / small_certificate.primal, rel=1e-9
    )


def test_a_leaf_keeps_only_its_own_numbers() -> None:
    """The open leaves wait in the search's heap (a hundred thousand at 45 000 boxes): each
    keeps its weights and multipliers, not a view that holds the arrays of every candidate
    weight and form it was chosen from (17 kB a leaf, 2 GB in all, before this test)."""
    lo, hi = np.array([1.0, 0.5, 0.1]), np.array([3.0, 1.0, 0.5])
    prop = frame._propose(1 / 3, lo, hi, np.zeros(3), 2.0**-6, None)
    arrays = [prop.w, prop.mu]
    assert all(a.base is None for a in arrays) and sum(a.nbytes for a in arrays) <= 200
