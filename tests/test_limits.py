"""The cost model (`ncverify.limits`): what an instance may ask for, and what a step skips.

Each test states a fact that would break if a limit were checked after the allocation it guards
(the call would not return, or would exhaust memory) or if a skipped step were counted as
evidence."""

from __future__ import annotations

import subprocess
import sys
from fractions import Fraction

import pytest

import theorems
from ncverify import Problem, verify
from ncverify.limits import (
    FLOAT_BYTES,
    LAMBDA_RANGE,
    MAX_CLASSES,
    MAX_DEPTH,
    InputTooLarge,
    memory_budget,
)
from ncverify.model.problem import ProblemError, exact
from ncverify.report import Evidence, Verdict
from ncverify.verify import Settings, affordable


def test_decimals_are_read_exactly_and_their_magnitude_is_checked_first() -> None:
    assert exact("5e-4", "lambda") == Fraction(1, 2000)
    assert exact("1/2000", "lambda") == Fraction(1, 2000)
    assert exact("0.000158489", "lambda") == Fraction(158489, 10**9)
    # a billion-digit integer would be built by Fraction("1e999999999"): refused from its exponent
    for text in ("1e999999999", "1e-999999999", "1e400", "1e-400"):
        with pytest.raises(ProblemError, match="float64"):
            exact(text, "lambda_H")
    with pytest.raises(ProblemError, match="characters"):
        exact("1" * 1000, "lambda_H")


@pytest.mark.parametrize("lam", ["1e-101", "1e101"])
def test_a_lambda_outside_the_float_range_is_bad_input(lam: str) -> None:
    assert not Fraction(LAMBDA_RANGE[0]) <= Fraction(lam) <= Fraction(LAMBDA_RANGE[1])
    with pytest.raises(ProblemError, match="between"):
        Problem.build(counts="3,3", depth=1, width=2, lambda_h=lam)


def test_the_ends_of_the_lambda_range_as_printed_are_accepted() -> None:
    # the message says "between 1e-100 and 1e+100": both ends, typed as printed, are inside
    low, high = (f"{end:.0e}" for end in LAMBDA_RANGE)
    for lam in (low, high):
        assert Problem.build(counts="3,3", depth=1, width=2, lambda_w="1", lambda_h=lam)


def test_the_product_of_the_lambdas_must_stay_in_float_range() -> None:
    # each lambda is fine, but lambda_H prod lambda_W = 1e-6^61 = 1e-366 vanishes in float64
    assert Problem.build(counts="3,3", depth=2, width=2, lambda_w="1e-6", lambda_h="1e-6")
    with pytest.raises(ProblemError, match="product"):
        Problem.build(counts="3,3", depth=60, width=2, lambda_w="1e-6", lambda_h="1e-6")


def test_sizes_above_the_limits_are_refused_before_anything_is_built() -> None:
    # K copies of n would be a tuple of 10^30 entries: returning at all shows it was not built
    with pytest.raises(ProblemError, match="classes"):
        Problem.build(classes=10**30, samples=10**30, depth=1, width=2)
    with pytest.raises(ProblemError, match="depth"):
        Problem.build(classes=3, samples=2, depth=10**12, width=2)
    at_limits = Problem.build(
        classes=MAX_CLASSES, samples=1, depth=MAX_DEPTH, width=1, lambda_w=1, lambda_h=1
    )
    assert (at_limits.K, at_limits.depth) == (MAX_CLASSES, MAX_DEPTH)


def test_the_memory_budget_follows_the_address_space_limit() -> None:
    code = (
        "import resource; resource.setrlimit(resource.RLIMIT_AS, (2**31, 2**31));"
        "from ncverify.limits import memory_budget; print(memory_budget())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert int(out.stdout) <= 2**30


def test_the_memory_budget_can_be_lowered(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NCVERIFY_MEMORY_BUDGET", "12345")
    assert memory_budget() == 12345


def test_an_instance_of_which_no_point_fits_is_too_large(monkeypatch: pytest.MonkeyPatch) -> None:
    problem = Problem.build(counts="3,3", depth=2, width=100)
    point = FLOAT_BYTES * problem.point_entries(problem.K)
    monkeypatch.setenv("NCVERIFY_MEMORY_BUDGET", str(point - 1))
    with pytest.raises(InputTooLarge, match="memory"):
        affordable(problem, Settings())
    monkeypatch.setenv("NCVERIFY_MEMORY_BUDGET", str(point))
    affordable(problem, Settings())
    with pytest.raises(InputTooLarge, match="full parameterisation"):
        affordable(problem, Settings(parameterisation="full"))


@pytest.mark.parametrize("optimise", [True, False])
def test_a_skipped_e1_is_no_evidence(monkeypatch: pytest.MonkeyPatch, optimise: bool) -> None:
    """A billion samples a class: the class-mean runs and the certificate fit, every sample's
    features (E1's predicted point) do not.  E1 is reported skipped, never passed; without runs
    and without E1 nothing supports the claim, and the verdict says so."""
    monkeypatch.setenv("NCVERIFY_MEMORY_BUDGET", str(2**30))
    claim = theorems.get("mse-balanced-biasfree")
    problem = Problem.build(classes=3, samples=10**9, depth=2, width=3, lambda_w="1e-3")
    assert FLOAT_BYTES * problem.point_entries() > 2**30
    report = verify(claim, problem, settings=Settings(restarts=2, optimise=optimise))
    e1 = [c for c in report.checks if c.evidence == Evidence.PREDICTED_POINT]
    assert [c.passed for c in e1] == [None] and "skipped" in e1[0].detail
    assert report.verdict != Verdict.CERTIFIED  # E1 is part of every certificate's verdict
    if not optimise:
        assert report.verdict == Verdict.INCONCLUSIVE
    else:
        assert report.verdict == Verdict.CONSISTENT
        assert any(r.outcome == "at-prediction" for r in report.runs)


def test_a_certificate_keeps_its_bound_when_its_point_does_not_fit(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ncverify.evidence.certificates.separable import separable_reduction

    problem = Problem.build(classes=3, samples=1000, depth=2, width=3, lambda_w="1e-3")
    built = separable_reduction(problem)
    assert built.point is not None
    monkeypatch.setenv("NCVERIFY_MEMORY_BUDGET", str(FLOAT_BYTES * problem.point_entries() - 1))
    cert = separable_reduction(problem)
    assert cert.point is None and any("not built" in n for n in cert.notes)
    assert cert.bound == built.bound and cert.unique == built.unique
