"""The `two-class-scalar` certificate (ncverify/evidence/certificates/two_classes.py,
docs/theory/depth-certificates.md): two classes at any depth are certified for cross-entropy and
the max-margin problem; its bound is below every point's value and attained by the ETF; each of
its constants, falsified in turn, breaks one of those two facts; and claims whose value is wrong
are never certified."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import mpmath
import numpy as np
import pytest

import theorems
from ncverify.backend import Backend
from ncverify.evidence.certificates.two_classes import scalar_minimum, two_class_scalar
from ncverify.evidence.results import Tolerances
from ncverify.model.intervals import interval_precision
from ncverify.model.objective import Objective, Params
from ncverify.model.problem import Problem
from ncverify.pipeline.verdict import compare_certificate
from ncverify.verify import Settings, verify

NCVERIFY = str(Path(sys.executable).with_name("ncverify"))


def ce(depth: int, lam: str, samples: int = 1, bias: str = "none") -> Problem:
    return Problem.build(
        classes=2, samples=samples, depth=depth, width=2, lambda_w=lam, lambda_h=lam,
        loss="ce", bias=bias, **({"lambda_b": "0.01"} if bias == "regularised" else {}),
    )  # fmt: skip


@pytest.mark.parametrize("depth", [2, 3, 4, 5, 6])
@pytest.mark.parametrize("lam", ["1e-4", "1e-3", "1e-2"])
def test_two_class_cross_entropy_is_certified_at_every_depth(depth: int, lam: str) -> None:
    report = verify(theorems.get("ce-balanced"), ce(depth, lam), settings=Settings(restarts=2))
    assert report.certificate is not None and report.certificate.kind == "two-class-scalar"
    assert report.verdict == "certified", report.notes


def ls(depth: int, lam: str, alpha: str, bias: str = "none") -> Problem:
    return Problem.build(
        classes=2, samples=1, depth=depth, width=2, lambda_w=lam, lambda_h=lam, loss="ls",
        smoothing=alpha, bias=bias,
    )  # fmt: skip


@pytest.mark.parametrize("depth", [2, 3, 4, 5, 6])
@pytest.mark.parametrize("alpha", ["0.01", "0.3"])
def test_two_class_label_smoothing_is_certified_at_every_depth(depth: int, alpha: str) -> None:
    report = verify(
        theorems.get("ls-balanced"), ls(depth, "1e-3", alpha), settings=Settings(restarts=2)
    )
    assert report.certificate is not None and report.certificate.kind == "two-class-scalar"
    assert report.verdict == "certified", report.notes


@pytest.mark.parametrize("depth", [2, 3, 4, 5, 6])
def test_two_class_max_margin_is_certified_at_every_depth(depth: int) -> None:
    problem = Problem.build(classes=2, samples=1, depth=depth, width=2, loss="max-margin")
    report = verify(theorems.get("maxmargin-sel"), problem, settings=Settings(restarts=2))
    assert report.certificate is not None and report.certificate.kind == "two-class-scalar"
    assert report.verdict == "certified", report.notes


def test_the_page_command_certifies_as_a_user_runs_it() -> None:
    page = Path(__file__).resolve().parents[1] / "docs" / "theory" / "depth-certificates.md"
    (command,) = [
        line.strip()
        for line in page.read_text().splitlines()
        if line.startswith("ncverify ") and "--classes 2" in line
    ]
    args = command.split()[1:]
    proc = subprocess.run(
        [NCVERIFY, *args, "--quiet", "--json", "-"], capture_output=True, text=True, check=False
    )
    report = json.loads(proc.stdout)
    assert proc.returncode == 0 and report["verdict"] == "certified"
    assert report["certificate"]["kind"] == "two-class-scalar" and report["certificate"]["exact"]


# ---- the bound against independent evaluations ----------------------------------------------------
def kappa_of(problem: Problem, *, factor: bool = True, root: int | None = None) -> object:
    """`((M+1)/2) (n P)^{1/(M+1)}` written out again (`factor` False drops `(M+1)/2`, `root`
    replaces `M + 1` in the root), as an interval of the current context."""
    iv = mpmath.iv
    m1 = problem.depth + 1
    p = problem.counts[0] * problem.lambda_product
    c = iv.exp(iv.log(iv.mpf(p.numerator) / iv.mpf(p.denominator)) / (root or m1))
    return (iv.mpf(m1) / 2 if factor else 1) * c


def values_at_points(problem: Problem, seed: int = 0, count: int = 300) -> np.ndarray:
    """The objective (`Objective`, the model's own evaluation) at random points of many
    scales, and at the claim's minimiser: every one is at least the optimum."""
    obj = Objective(problem, np)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(count):
        scale = 10 ** rng.uniform(-1.5, 1.5)
        ws = tuple(scale * rng.normal(size=(2, 2)) for _ in range(problem.depth))
        h = scale * rng.normal(size=(2, problem.N))
        out.append(float(obj.value(Params(ws, h, None))))
    return np.array(out)


def etf_value(problem: Problem) -> float:
    claim = theorems.get("ls-balanced" if problem.loss == "ls" else "ce-balanced")
    point = claim.minimiser(problem, Backend.create())
    return float(Objective(problem, np).value(point.map(np.asarray)))


def sound_and_tight(problem: Problem, lower: mpmath.mpf) -> tuple[bool, bool]:
    """Is `lower` below every value found (sound), and within 1e-9 of the ETF's value
    (tight)?"""
    best_point = min(values_at_points(problem).min(), etf_value(problem))
    sound = float(lower) <= best_point * (1 + 1e-12)
    tight = abs(float(lower) - etf_value(problem)) <= 1e-9 * etf_value(problem)
    return sound, tight


PROBLEMS = [
    ce(2, "1e-3"),
    ce(3, "1e-2", samples=3),
    ce(5, "1e-4"),
    ce(4, "1e-3", bias="regularised"),
    ls(3, "1e-3", "0.2"),
    ls(4, "1e-2", "0.05", bias="free"),
]
LS_PROBLEMS = [p for p in PROBLEMS if p.loss == "ls"]


@pytest.mark.parametrize(
    "problem", PROBLEMS, ids=lambda p: f"{p.loss}-M{p.depth}-n{p.counts[0]}-{p.bias}"
)
def test_the_bound_is_below_every_point_and_attained_by_the_etf(problem: Problem) -> None:
    cert = two_class_scalar(problem)
    assert cert is not None and cert.rigorous and cert.exact
    assert sound_and_tight(problem, cert.bound_exact) == (True, True)


MUTATIONS = {
    "exponent 2/M": {"q": lambda m: mpmath.mpf(2) / m},
    "exponent 2/(M+2)": {"q": lambda m: mpmath.mpf(2) / (m + 2)},
    "(M+1)/2 dropped": {"factor": False},
    "root 1/M": {"root": lambda m: m},
    "penalty term (nearly) dropped": {"scale": mpmath.mpf("1e-6")},
}


@pytest.mark.parametrize("name", MUTATIONS)
def test_each_constant_falsified_breaks_soundness_or_tightness(name: str) -> None:
    """The bound recomputed with one constant wrong: on at least one instance it is either
    above a point's value (unsound) or off the ETF's value (not attained), so the test above
    would catch the mistake."""
    change = MUTATIONS[name]
    caught = False
    for problem in PROBLEMS[:3]:
        m = problem.depth
        with interval_precision(160) as iv:
            root = change["root"](m) if "root" in change else None
            kappa = kappa_of(problem, factor=change.get("factor", True), root=root)
            kappa = kappa * iv.mpf(change.get("scale", 1))
            q = iv.mpf(change["q"](m) if "q" in change else mpmath.mpf(2) / (m + 1))
            lower = scalar_minimum(kappa, q).lower
        caught = caught or sound_and_tight(problem, lower) != (True, True)
    assert caught, name


@pytest.mark.parametrize("linear", ["dropped", "alpha, not alpha / 2"])
def test_label_smoothings_cost_falsified_breaks_soundness_or_tightness(linear: str) -> None:
    """The bound recomputed with label smoothing's cost of a margin wrong (left out, or
    alpha instead of alpha / 2): on some instance it is above a point or off the ETF."""
    caught = False
    for problem in LS_PROBLEMS:
        alpha = problem.smoothing
        with interval_precision(160) as iv:
            cost = iv.mpf(0) if linear == "dropped" else iv.mpf(alpha.numerator) / alpha.denominator
            q = iv.mpf(2) / (problem.depth + 1)
            lower = scalar_minimum(kappa_of(problem), q, cost).lower
        caught = caught or sound_and_tight(problem, lower) != (True, True)
    assert caught, linear


# ---- wrong claims are never certified -------------------------------------------------------------
@pytest.mark.parametrize("relative", [-1e-3, 1e-3])
def test_a_claimed_optimum_off_by_a_thousandth_fails_the_certificate(relative: float) -> None:
    problem = ce(3, "1e-3")
    cert = two_class_scalar(problem)
    claimed = theorems.get("ce-balanced").closed_form(problem).objective
    assert compare_certificate(cert, claimed, Tolerances.for_eps(2.0**-52)).check.passed
    wrong = claimed * (1 + mpmath.mpf(relative))
    assert not compare_certificate(cert, wrong, Tolerances.for_eps(2.0**-52)).check.passed


class ScaledETF(type(theorems.get("ce-balanced"))):
    """The ce-balanced claim with its ETF scaled by 1.05: point and value agree, but the value
    is not the optimum."""

    id = "ce-balanced-scaled"

    def closed_form(self, problem: Problem):  # noqa: ANN201
        pred = super().closed_form(problem)
        point = super().minimiser(problem, Backend.create()).map(np.asarray)
        grown = replace(point, Ws=tuple(1.05 * w for w in point.Ws), H=1.05 * point.H)
        value = float(Objective(problem, np).value(grown))
        return replace(pred, objective=mpmath.mpf(value), objective_enclosure=None)

    def minimiser(self, problem: Problem, backend: Backend) -> Params:
        point = super().minimiser(problem, backend)
        return replace(point, Ws=tuple(1.05 * w for w in point.Ws), H=1.05 * point.H)


@pytest.mark.parametrize("depth", [2, 4])
def test_the_etf_scaled_by_five_percent_is_never_certified(depth: int) -> None:
    report = verify(ScaledETF(), ce(depth, "1e-3"), settings=Settings(restarts=2))
    assert report.certificate is not None and report.certificate.kind == "two-class-scalar"
    assert report.verdict == "refuted", report.notes


@pytest.mark.parametrize("problem", PROBLEMS, ids=lambda p: f"M{p.depth}-n{p.counts[0]}-{p.bias}")
def test_the_enclosure_keeps_its_precision(problem: Problem) -> None:
    """The two ends of the enclosure are taken from the intervals exactly: they differ (an end
    rounded to a double would make them meet, and could round a lower bound up), and by less
    than 1e-24 of the value."""
    cert = two_class_scalar(problem)
    alpha = problem.smoothing or 0
    with interval_precision(160) as iv:
        cost = iv.mpf(alpha.numerator) / iv.mpf(2 * alpha.denominator) if alpha else iv.mpf(0)
        found = scalar_minimum(kappa_of(problem), iv.mpf(2) / (problem.depth + 1), cost)
    assert found.lower < found.upper
    assert (found.upper - found.lower) / found.upper < mpmath.mpf("1e-24")
    assert cert.bound_exact == found.lower and 0 < cert.gap < 1e-24
