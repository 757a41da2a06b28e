"""The `gram-branch-and-bound` certificate (ncverify/evidence/certificates/gram.py,
docs/theory/depth-certificates.md#gram): three classes at depth 2 are certified for cross-entropy
and the max-margin problem; every box's proven bound (label smoothing too) is below the objective at the points
whose Gram matrix it holds, and meets the ETF's value on a small box around it; each constant,
falsified in turn, breaks one of those two facts; claims whose value is wrong are never
certified; a budget that runs out proves a bound and says how far it is from the claim."""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import mpmath
import numpy as np
import pytest
from scipy.optimize import minimize_scalar
from scipy.special import logsumexp

import theorems
from ncverify.evidence.certificates.gram import gram_branch_and_bound
from ncverify.evidence.certificates.gram_bounds import GramProblem, propose, proven_bound
from ncverify.evidence.results import Tolerances
from ncverify.model.intervals import interval_precision
from ncverify.model.problem import Problem
from ncverify.pipeline.verdict import compare_certificate, pins

NCVERIFY = str(Path(sys.executable).with_name("ncverify"))
PAGE = Path(__file__).resolve().parents[1] / "docs" / "theory" / "depth-certificates.md"


def ce(lam: str, depth: int = 2) -> Problem:
    return Problem.build(
        classes=3, samples=1, depth=depth, width=3, lambda_w=lam, lambda_h=lam, loss="ce"
    )


def ls(lam: str, alpha: str) -> Problem:
    return Problem.build(
        classes=3, samples=1, depth=2, width=3, lambda_w=lam, lambda_h=lam, loss="ls",
        smoothing=alpha,
    )  # fmt: skip


def margin(lam: str = "1e-3", counts: str = "1,1,1", depth: int = 2) -> Problem:
    k = len(counts.split(","))
    return Problem.build(
        counts=counts, depth=depth, width=k, lambda_w=lam, lambda_h=lam, loss="max-margin"
    )


# ---- the test's own reduced objective -------------------------------------------------------------
def helmert(k: int) -> np.ndarray:
    """An orthonormal basis of the centred vectors of R^K, built here by Gram-Schmidt on
    e_0 - e_1, e_0 + e_1 - 2 e_2, ... (the Helmert basis, as the code's docstring names it)."""
    cols = []
    for j in range(k - 1):
        v = np.zeros(k)
        v[: j + 1], v[j + 1] = 1.0, -(j + 1)
        cols.append(v / np.linalg.norm(v))
    return np.array(cols).T


def kappa(problem: Problem, *, factor: bool = True, root: int | None = None) -> float:
    """((M+1)/2) (n P)^(1/(M+1)) (n = 1 for the max-margin problem), written out again."""
    m1 = problem.depth + 1
    n = problem.counts[0] if problem.loss != "max-margin" else 1
    c = float(n * problem.lambda_product) ** (1 / (root or m1))
    return (m1 / 2 if factor else 1) * c


def reduced_value(problem: Problem, y: np.ndarray) -> float:
    """(1/K) sum_k CE(z_k, k) + kappa S_q(Z D) for the logits Z with columns z_k = U y_k:
    cross-entropy by scipy, the Schatten quasi-norm from numpy's singular values (the K-th is
    exactly 0, and its rounding, raised to q, would not be)."""
    k = problem.K
    z = helmert(k) @ y.T
    q = 2 / (problem.depth + 1)
    d = np.sqrt(np.asarray(problem.counts, float)) if problem.loss == "max-margin" else 1.0
    sigma = np.linalg.svd(z * d, compute_uv=False)[: k - 1]  # Z = U Y^T has rank <= K - 1
    penalty = kappa(problem) * float(np.sum(sigma**q))
    if problem.loss == "max-margin":
        return penalty
    alpha = float(problem.smoothing or 0)
    targets = (1 - alpha) * np.eye(k) + alpha / k  # column j: the (smoothed) target of class j
    return (
        float(np.mean([logsumexp(z[:, j]) - targets[:, j] @ z[:, j] for j in range(k)])) + penalty
    )


def gram_problem(
    problem: Problem,
    p: float | None = None,
    kap: float | None = None,
    target: Fraction | None = None,
) -> GramProblem:
    """The certificate's reduced problem, with its exponent, constant or target share of the
    true class (1 - alpha) replaced when given."""
    margin_loss = problem.loss == "max-margin"
    weights = problem.counts if margin_loss else (1,) * problem.K
    p = 1 / (problem.depth + 1) if p is None else p
    kap = kappa(problem) if kap is None else kap
    if target is None:
        target = 1 - (problem.smoothing or Fraction(0))
    loss = "max-margin" if margin_loss else "ce"
    return GramProblem(problem.K, p, kap, weights, loss, target)


def box_bound(gp: GramProblem, y: np.ndarray, half: float, warm: np.ndarray) -> float:
    """The proven bound of a box of half-width `half` around the Gram matrix of `y`."""
    w = np.asarray(gp.weights, float)
    g = (y.T * w) @ y
    v = g[np.triu_indices(gp.n)]
    lo, hi = v - half, v + half
    prop = propose(gp, lo, hi, warm)
    with interval_precision(96) as iv:
        return float(proven_bound(gp, iv.mpf(gp.kappa), iv.mpf(gp.p), lo, hi, prop, iv))


def etf_point(problem: Problem) -> np.ndarray:
    """The centred one-hot logits at the best scale of their scalar family (margins 1 for the
    max-margin problem): rows y_k = s U^T e_k."""
    u = helmert(problem.K)
    if problem.loss == "max-margin":
        return u.copy()
    found = minimize_scalar(
        lambda s: reduced_value(problem, s * u), bounds=(0.5, 20), method="bounded",
        options={"xatol": 1e-12},
    )  # fmt: skip
    return float(found.x) * u


def sound_and_tight(problem: Problem, gp: GramProblem, seed: int = 0) -> tuple[bool, bool]:
    """Is every proven box bound at most the objective at the random point whose Gram matrix
    the box holds (sound), and is the bound of a small box around the ETF's Gram matrix within
    1e-9 of the ETF's value (tight)?"""
    rng = np.random.default_rng(seed)
    etf = etf_point(problem)
    sound = True
    for _ in range(60):
        y = etf * (1 + 0.5 * rng.normal()) + 10 ** rng.uniform(-2, 0.5) * rng.normal(size=etf.shape)
        if problem.loss == "max-margin":  # feasible: every margin at least 1
            u = helmert(problem.K)
            marg = min(
                y[k] @ (u[k] - u[j]) for k in range(problem.K) for j in range(problem.K) if j != k
            )
            if marg <= 0:
                continue
            y = y / marg
        half = 10 ** rng.uniform(-4, 0) * float(np.abs(y).max()) ** 2
        sound &= box_bound(gp, y, half, etf) <= reduced_value(problem, y) * (1 + 1e-12)
    top = reduced_value(problem, etf)
    tight = abs(box_bound(gp, etf, 1e-7 * float(np.abs(etf).max()) ** 2, etf) - top) <= 1e-9 * top
    return sound, tight


INSTANCES = [ce("1e-3"), ce("1e-2", depth=3), margin(), margin(counts="3,3,3"), ls("1e-2", "0.1")]


@pytest.mark.parametrize("problem", INSTANCES, ids=lambda p: f"{p.loss}-M{p.depth}-{p.counts}")
def test_every_box_bound_is_below_its_points_and_meets_the_etf(problem: Problem) -> None:
    assert sound_and_tight(problem, gram_problem(problem)) == (True, True)


MUTATIONS = {
    "exponent q, not q/2": {"p": lambda m: 2 / (m + 1)},
    "exponent 1/M": {"p": lambda m: 1 / m},
    "exponent 1/(M+2)": {"p": lambda m: 1 / (m + 2)},
    "(M+1)/2 dropped": {"factor": False},
    "root 1/M": {"root": lambda m: m},
}


@pytest.mark.parametrize("name", MUTATIONS)
def test_each_constant_falsified_breaks_soundness_or_tightness(name: str) -> None:
    change = MUTATIONS[name]
    caught = False
    for problem in INSTANCES[:3]:
        m = problem.depth
        p = change["p"](m) if "p" in change else None
        root = change["root"](m) if "root" in change else None
        kap = kappa(problem, factor=change.get("factor", True), root=root)
        caught = caught or sound_and_tight(problem, gram_problem(problem, p, kap)) != (True, True)
    assert caught, name


@pytest.mark.parametrize("share", ["1 (smoothing dropped)", "1 - alpha/2"])
def test_label_smoothings_target_falsified_breaks_soundness_or_tightness(share: str) -> None:
    problem = ls("1e-2", "0.1")
    alpha = problem.smoothing
    target = Fraction(1) if share.startswith("1 (") else 1 - alpha / 2
    assert sound_and_tight(problem, gram_problem(problem, target=target)) != (True, True)


# ---- what a budget proves -------------------------------------------------------------------------
def test_a_spent_budget_proves_a_lower_bound_and_decides_nothing_above_it() -> None:
    problem = ce("1e-3")
    proc = subprocess.run(
        [NCVERIFY, "check", "ce-balanced", "--classes", "3", "--samples", "1", "--depth", "2",
         "--width", "3", "--lambda-w", "1e-3", "--lambda-h", "1e-3", "--certificate-boxes", "40",
         "--restarts", "2", "--search-starts", "0", "--quiet", "--json", "-"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    report = json.loads(proc.stdout)
    cert = report["certificate"]
    assert cert["kind"] == "gram-branch-and-bound" and cert["status"] == "budget"
    assert cert["boxes"] == 40 and cert["gap"] > 1e-10
    claimed = float(theorems.get("ce-balanced").closed_form(problem).objective)
    assert cert["bound"] < claimed and cert["gap_to_claim"] == pytest.approx(
        (claimed - cert["bound"]) / claimed, rel=1e-9
    )
    (e3,) = [c for c in report["checks"] if c["name"] == "E3 certificate"]
    assert e3["passed"] is None and report["verdict"] == "consistent"


def test_the_kind_runs_only_when_asked_and_says_so() -> None:
    proc = subprocess.run(
        [NCVERIFY, "check", "maxmargin-sel", "--classes", "3", "--samples", "1", "--depth", "2",
         "--width", "3", "--restarts", "2", "--search-starts", "0"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0
    assert "gram-branch-and-bound skipped" in " ".join(proc.stdout.split())
    bad = subprocess.run(
        [NCVERIFY, "check", "maxmargin-sel", "--classes", "3", "--certificate-boxes", "-5"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert bad.returncode == 2 and "certificate boxes must be" in bad.stderr
    assert "Traceback" not in bad.stderr


# ---- certified instances and wrong claims ---------------------------------------------------------
@pytest.fixture(scope="module")
def margin_certificate():  # noqa: ANN201
    return gram_branch_and_bound(margin(), boxes=20_000)


def test_three_classes_of_the_max_margin_problem_are_certified(margin_certificate) -> None:  # noqa: ANN001
    cert = margin_certificate
    claimed = theorems.get("maxmargin-sel").closed_form(margin()).objective
    assert cert.status == "optimal" and cert.gap <= 1e-10
    assert compare_certificate(cert, claimed, Tolerances.for_eps(2.0**-52)).check.passed


def test_the_pages_max_margin_command_certifies_as_a_user_runs_it() -> None:
    args = page_command("maxmargin-sel --classes 3")
    proc = subprocess.run(
        [NCVERIFY, *args, "--quiet", "--json", "-"], capture_output=True, text=True, check=False
    )
    report = json.loads(proc.stdout)
    assert proc.returncode == 0 and report["verdict"] == "certified", report["notes"]
    assert report["certificate"]["kind"] == "gram-branch-and-bound"
    assert report["certificate"]["status"] == "optimal" and report["certificate"]["boxes"] > 0


@pytest.mark.parametrize("relative", [-1e-3, 1e-3])
def test_a_claimed_optimum_off_by_a_thousandth_fails_the_certificate(
    margin_certificate,
    relative: float,  # noqa: ANN001
) -> None:
    claimed = theorems.get("maxmargin-sel").closed_form(margin()).objective
    wrong = claimed * (1 + mpmath.mpf(relative))
    assert not compare_certificate(
        margin_certificate, wrong, Tolerances.for_eps(2.0**-52)
    ).check.passed


def test_the_labels_scaled_by_five_percent_are_never_certified(margin_certificate) -> None:  # noqa: ANN001
    """A claim whose point is the labels scaled by 1.05 (margins 1.05, feasible) and whose value
    is that point's: the bound pins the optimum, so E3 fails and the verdict rules refute it."""
    problem = margin()
    scaled = theorems.get("maxmargin-sel").closed_form(problem).objective * mpmath.mpf("1.05") ** (
        mpmath.mpf(2) / (problem.depth + 1)
    )
    tol = Tolerances.for_eps(2.0**-52)
    assert pins(margin_certificate, tol)
    assert compare_certificate(margin_certificate, scaled, tol).check.passed is False


def page_command(needle: str) -> list[str]:
    (line,) = [
        s.strip()
        for s in PAGE.read_text().splitlines()
        if s.startswith("ncverify ") and needle in s
    ]
    return line.split()[1:]


@pytest.mark.heavy  # a branch and bound of about 15 s each
@pytest.mark.parametrize("lam", ["1e-3", "1e-4"])
def test_three_classes_of_cross_entropy_are_certified_as_a_user_runs_it(lam: str) -> None:
    args = page_command("ce-balanced --classes 3")
    args[args.index("--lambda-w") + 1] = args[args.index("--lambda-h") + 1] = lam
    proc = subprocess.run(
        [NCVERIFY, *args, "--quiet", "--json", "-"], capture_output=True, text=True, check=False
    )
    report = json.loads(proc.stdout)
    assert proc.returncode == 0 and report["verdict"] == "certified", report["notes"]
    assert report["certificate"]["kind"] == "gram-branch-and-bound"
    assert report["certificate"]["gap"] <= 1e-10


def test_an_instance_beyond_floating_point_is_skipped_with_a_note() -> None:
    """At lambda = 1e-40 the search box, traces up to (F / kappa)^(M+1), is beyond floating
    point: the kind says so and the check goes on without it."""
    proc = subprocess.run(
        [NCVERIFY, "check", "ce-balanced", "--classes", "3", "--samples", "1", "--depth", "2",
         "--width", "3", "--lambda-w", "1e-40", "--lambda-h", "1e-40", "--certificate-boxes",
         "100", "--restarts", "2", "--search-starts", "0", "--quiet", "--json", "-"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    report = json.loads(proc.stdout)
    assert proc.returncode == 0 and report["certificate"] is None
    assert any(
        "gram-branch-and-bound skipped" in n and "floating point" in n for n in report["notes"]
    )


def test_a_long_search_reports_its_boxes_split_and_proven() -> None:
    from ncverify.verify import Settings, verify

    heard: list[tuple[str, int, int]] = []
    settings = Settings(restarts=1, search_starts=0, certificate_boxes=200)
    verify(
        theorems.get("maxmargin-sel"), margin(), settings=settings,
        progress=lambda name, done, total: heard.append((name, done, total)),
    )  # fmt: skip
    split = [(d, t) for n, d, t in heard if n.endswith("boxes split")]
    proven = [(d, t) for n, d, t in heard if n.endswith("boxes proven")]
    assert split and all(t == 200 and 0 < d <= 200 for d, t in split)
    assert proven and all(0 < d <= t for d, t in proven)
