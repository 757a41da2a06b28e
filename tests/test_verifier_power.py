"""Verifier power: every deliberately wrong variant of a balanced MSE claim is `refuted`.

Each case pairs a wrong variant (tests/variants.py) with the true claim and an instance on which
the variant is genuinely wrong; the comment of each case says why.  The pipeline must refute the
variant twice — with all evidence, and with the certificate disabled, so that the predicted-point
checks (E1) and the random-start optimisers (E2) are shown to catch it on their own — while the
true claim is certified on the same instance with the same settings.

Instances are written through `rho = K^{M+1} n P`, the only combination of the lambdas the
balanced claims depend on; `thr_M = (M-1)^{M-1}/M^{2M}` is the true collapse threshold
(`thr_2 = 1/16`, `thr_3 = 4/729`), and for `M >= 2` a positive stationary gain exists exactly while
`rho < max_g g^{M-1}(1-g)^{M+1}` (`27/256` for `M = 2`, `16/729` for `M = 3`).
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import pytest
import variants as v

import theorems
from ncverify.claim import Claim
from ncverify.model.problem import Problem
from ncverify.model.scalar import collapse_threshold
from ncverify.report import Report
from ncverify.testing import failure_reason
from ncverify.verify import Settings, verify

FREE = theorems.get("mse-balanced-biasfree")
BIAS = theorems.get("mse-balanced-bias")

#: The same seeded runs judge the variant and the true claim (runs never depend on the claim).
RESTARTS = 4


@dataclass(frozen=True)
class Case:
    variant: Claim
    true: Claim
    problem: Problem


CASES: dict[str, Case] = {
    # gamma^{M-1}(1-gamma)^M = rho has its root at 0.894, the true polynomial at 0.764 (rho = 1/100,
    # M = 2, far below thr_2): the claimed point is not stationary and beaten by the true optimum.
    "wrong-exponent": Case(v.WrongExponent(), FREE, v.instance(3, 4, 2, 8, Fraction(1, 100))),
    # the same slip at M = 1 gives gamma = 1 - rho instead of 1 - sqrt(rho): 0.9 vs 0.684
    "wrong-exponent-M1": Case(v.WrongExponent(), FREE, v.instance(3, 5, 1, 4, Fraction(1, 10))),
    # rho = 1.02 thr_2 lies between the true threshold and the variant's 1.04 thr_2: zero is the
    # optimum, yet a positive stationary root (0.495) exists and the variant keeps it
    "threshold-too-high": Case(
        v.ThresholdTooHigh(),
        FREE,
        v.instance(3, 4, 2, 4, collapse_threshold(2) * Fraction(102, 100)),
    ),
    # rho = 0.98 thr_2 lies between the variant's 0.96 thr_2 and the true threshold: the positive
    # root strictly beats zero, but the variant claims every class collapses
    "threshold-too-low": Case(
        v.ThresholdTooLow(), FREE, v.instance(3, 4, 2, 6, collapse_threshold(2) * Fraction(98, 100))
    ),
    # rho = 9/100 is inside the gap thr_2 = 0.0625 < rho < 27/256 = 0.105: a positive stationary
    # root (0.38) exists, but psi(0.38) - psi(0) = 0.38 (1 - 2 * 0.38) / 2 > 0, so zero is better
    "zero-ignored": Case(v.ZeroIgnored(), FREE, v.instance(3, 4, 2, 4, Fraction(9, 100))),
    # the same gap at M = 3: thr_3 = 0.0055 < rho = 0.012 < 16/729 = 0.022 (root 0.556)
    "zero-ignored-M3": Case(v.ZeroIgnored(), FREE, v.instance(2, 5, 3, 4, Fraction(12, 1000))),
    # gain 1.01 times the root of the stationarity polynomial: off the stationary point
    "scale-off": Case(v.ScaleOff(), FREE, v.instance(2, 5, 2, 4, Fraction(1, 100))),
    # alive regime without bias: the orthogonal frame has K alive modes; the ETF keeps only K-1
    # and leaves the all-ones direction unfitted, which costs n/(2N) instead of phi(gamma) < n/(2N)
    "biasfree-with-etf": Case(v.BiasFreeWithETF(), FREE, v.instance(3, 4, 2, 8, Fraction(1, 100))),
    # with a free bias the target sqrt(n) C has only K-1 non-zero modes; an orthogonal frame fits
    # the all-ones direction too, which the bias already fits for free: its value is not K phi
    "bias-with-orthogonal-frame": Case(
        v.BiasWithOrthogonalFrame(), BIAS, v.instance(3, 4, 2, 8, Fraction(1, 100), bias="free")
    ),
    # b = 1/(K+1) leaves a mean residual 1/K - 1/(K+1) in every sample: not the optimal bias
    "wrong-bias": Case(v.WrongBias(), BIAS, v.instance(3, 4, 2, 8, Fraction(1, 100), bias="free")),
}


def run(claim: Claim, problem: Problem, *, certificate: bool) -> Report:
    return verify(claim, problem, settings=Settings(restarts=RESTARTS, certificate=certificate))


def refuting_evidence(report: Report) -> list[str]:
    """What in the report refutes the claim: failed E1 checks, a concrete better point, a
    certificate contradicting the claimed value, a wrong geometry at the optimum."""
    evidence = [c.name for c in report.checks if c.passed is False]
    if report.counterexample is not None:
        evidence.append("counterexample")
    return evidence


@pytest.mark.parametrize("name", sorted(CASES))
def test_wrong_variant_is_refuted_and_true_claim_certified(name: str) -> None:
    case = CASES[name]
    assert case.variant.hypotheses(case.problem) == []  # the variant applies: refute, not skip
    true = run(case.true, case.problem, certificate=True)
    assert true.verdict == "certified", failure_reason(true)

    full = run(case.variant, case.problem, certificate=True)
    assert full.verdict == "refuted", failure_reason(full)
    assert refuting_evidence(full)

    alone = run(case.variant, case.problem, certificate=False)
    assert alone.verdict == "refuted", failure_reason(alone)
    assert alone.certificate is None
    assert all(not c.name.startswith("E3") for c in alone.checks)
    assert refuting_evidence(alone)
    ce = alone.counterexample
    if ce is not None:  # a counterexample must really beat the claim beyond its rounding error
        assert ce.objective < ce.claimed - ce.error_bound
        assert (
            ce.objective >= true.prediction.objective_float - 1e-9 * true.prediction.objective_float
        )


@pytest.mark.parametrize("name", sorted(CASES))
def test_variant_differs_from_the_true_claim_on_its_instance(name: str) -> None:
    """A sanity check on the cases themselves: each variant predicts something other than the
    true claim on its instance (otherwise refuting it would refute the true claim too)."""
    case = CASES[name]
    wrong, right = case.variant.closed_form(case.problem), case.true.closed_form(case.problem)
    differs = (
        abs(float(wrong.objective - right.objective)) > 1e-12
        or [c.gain_float for c in wrong.classes] != [c.gain_float for c in right.classes]
        or wrong.bias != right.bias
        or wrong.geometry != right.geometry
    )
    assert differs
