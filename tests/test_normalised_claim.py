"""The claim `normalised-etf` (Yaras et al. 2022): the lower bound of its proof holds at every
point, the runs never end below the claimed value and reach it, and a plausible wrong claim (the
orthogonal frame) is refuted with an exact certificate."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from usercli import check_claim

import theorems
from ncverify import Problem, verify
from ncverify.claim import Prediction
from ncverify.model import normalised
from ncverify.model.objective import Params
from ncverify.verify import Settings

NCVERIFY = str(Path(sys.executable).with_name("ncverify"))
CLAIM = theorems.get("normalised-etf")


def instance(k: int, n: int, d: int, r_w: str, r_h: str) -> Problem:
    return Problem.build(
        classes=k, samples=n, depth=1, width=d, loss="normalised-ce", radius_w=r_w, radius_h=r_h
    )


@settings(max_examples=25, deadline=None)
@given(
    st.integers(2, 6),
    st.integers(1, 4),
    st.integers(1, 6),
    st.floats(0.2, 3.0),
    st.integers(0, 2**31 - 1),
)
def test_the_jensen_bound_holds_at_random_points(
    k: int, n: int, d: int, r_h: float, seed: int
) -> None:
    """Any point, any width (below K - 1 too): its value is at least log(1 + (K-1) e^(-cK/(K-1)))
    (computed here from the formula, not by the claim)."""
    p = instance(k, n, d, "1", f"{r_h:.3g}")
    rng = np.random.default_rng(seed)
    point = Params((rng.standard_normal((k, d)),), rng.standard_normal((d, p.N)))
    box = normalised.enclose(p, point)
    c = float(p.radius_w * p.radius_h)
    bound = math.log1p((k - 1) * math.exp(-c * k / (k - 1)))
    assert float(box.b) >= bound * (1 - 1e-12)


def check(*args: str) -> tuple[int, dict]:
    return check_claim("normalised-etf", *args)


@pytest.mark.parametrize(
    ("k", "n", "d", "r_w", "r_h"),
    [(2, 3, 1, "1", "2"), (3, 2, 2, "2", "1"), (4, 5, 3, "1", "5"), (5, 1, 6, "0.5", "3")],
)
def test_no_run_ends_below_the_claimed_value(k: int, n: int, d: int, r_w: str, r_h: str) -> None:
    """As a user runs it: the claim holds (no certificate: consistent), no run is better, and the
    value reported is the formula's."""
    code, report = check(
        "--classes", str(k), "--samples", str(n), "--width", str(d),
        "--radius-w", r_w, "--radius-h", r_h, "--restarts", "6",
    )  # fmt: skip
    assert code == 0 and report["verdict"] == "consistent", report.get("notes")
    counts = report["numerical"]["counts"]
    assert counts["better"] == 0 and counts["at"] >= 1
    c = float(r_w) * float(r_h)
    formula = math.log1p((k - 1) * math.exp(-c * k / (k - 1)))
    assert report["prediction"]["objective"] == pytest.approx(formula, rel=1e-14)


def test_outside_its_hypotheses_it_is_not_applicable() -> None:
    assert check("--counts", "3,5,4", "--width", "3")[0] == 4
    assert check("--classes", "4", "--samples", "2", "--width", "2")[0] == 4
    # probed where no simplex fits, the claim's own point cannot be built: refuted
    code, report = check("--classes", "4", "--samples", "2", "--width", "2", "--probe")
    assert code == 1 and report["verdict"] == "refuted"


class OrthogonalFrame(type(CLAIM)):
    """A plausible wrong claim: the classifier rows and features form an orthogonal frame
    (own logit c, the others 0), value log(1 + (K-1) e^(-c))."""

    id = "normalised-orthogonal"

    def closed_form(self, problem: Problem) -> Prediction:
        c = mpmath.mpf(float(problem.radius_w * problem.radius_h))
        value = mpmath.log(1 + (problem.K - 1) * mpmath.exp(-c))
        return Prediction(objective=value, unique=True, geometry="orthogonal frame", zero=False)

    def minimiser(self, problem: Problem, backend):  # noqa: ANN001, ANN201
        k, d = problem.K, problem.widths[0]
        u = np.eye(k, d)
        w = float(problem.radius_w) * u
        h = float(problem.radius_h) * np.repeat(u.T, problem.counts, axis=1)
        return Params((w,), h)


def test_the_orthogonal_frame_is_refuted_with_an_exact_certificate() -> None:
    problem = instance(3, 2, 3, "1", "2")
    report = verify(OrthogonalFrame(), problem, settings=Settings(restarts=4))
    assert report.verdict == "refuted"
    found = report.counterexample
    assert found is not None and found.certificate.certified and found.certificate.exact
    assert found.objective < float(OrthogonalFrame().closed_form(problem).objective)


def test_large_radii_flatten_the_geometry_and_refute_nothing() -> None:
    """r_W r_H = 100: the optimum is e^-150, the runs end at 1e-17 (float resolution of logits
    of size 100), and what they say of the geometry decides nothing."""
    report = verify(CLAIM, instance(3, 2, 2, "10", "10"), settings=Settings(restarts=8))
    assert report.verdict == "consistent"
    e4 = next(c for c in report.checks if c.name == "E4 geometry")
    assert e4.passed is None
