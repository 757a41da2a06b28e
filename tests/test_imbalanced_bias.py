"""The claim `mse-imbalanced-bias` and the separable certificate with a free bias and any counts.

The reduction to the modes of the centred target `Yhat = (I - n 1^T/N) D` is checked against
numpy's singular values and against independent full optimisation; the claim is certified on
imbalanced and balanced counts at depths 1-4, on both sides of mode thresholds; equal counts
reproduce `mse-balanced-bias` term by term; three wrong variants are refuted."""

from __future__ import annotations

import time
from fractions import Fraction

import mpmath
import numpy as np
import pytest

import theorems
from ncverify import Problem, Settings, verify
from ncverify.backend import Backend
from ncverify.claim import Regime
from ncverify.evidence.certificates import separable as sep
from ncverify.evidence.certificates import separable_applies, separable_reduction
from ncverify.evidence.optimize import multistart
from ncverify.model import scalar as symbolic
from ncverify.model.objective import Objective, norm
from ncverify.testing import assert_predicted_point_is_stationary
from theorems import _balanced
from theorems import mse_imbalanced_bias as mib
from theorems.mse_imbalanced_bias import Mode, MSEImbalancedBias

CLAIM = theorems.get("mse-imbalanced-bias")


def _problem(counts: str, depth: int, lam: str, width: int | None = None) -> Problem:
    k = len(counts.split(","))
    return Problem.build(
        counts=counts, depth=depth, width=width or k, lambda_w=lam, lambda_h=lam, bias="free"
    )


# ---- the modes of the centred target --------------------------------------------------------------
@pytest.mark.parametrize(
    "counts", ["200,100,50,50", "300,100,20,5", "300,100,20,20,5,5", "6,3,2,1"]
)
def test_secular_roots_are_the_singular_values(counts: str) -> None:
    problem = _problem(counts, 2, "1e-3")
    expected = np.sort(np.linalg.svd(sep.centred_target(problem), compute_uv=False) ** 2)[::-1]
    assert expected[-1] < 1e-9  # the dead mode u = sqrt(n)/sqrt(N)
    claim_mu = [float(m.mu) for m in CLAIM.modes(problem)]
    cert_modes = sep.centred_modes(problem.counts)
    assert len(claim_mu) == len(cert_modes) == problem.K - 1
    np.testing.assert_allclose(claim_mu, expected[:-1], rtol=1e-12)
    for mode, x in zip(cert_modes, expected[:-1], strict=True):
        assert mode.lo <= mode.hi and float(mode.lo) == pytest.approx(x, rel=1e-12)
        if not mode.exact:  # an isolating interval of the secular polynomial, a sign change
            poly = sep.secular_polynomial(problem.counts)
            lo, hi = sep._sym(mode.lo), sep._sym(mode.hi)
            assert poly.eval(lo) * poly.eval(hi) < 0
    # both sides agree far beyond floats
    for md, cm in zip(CLAIM.modes(problem), cert_modes, strict=True):
        fine = cm.refined(Fraction(1, 2**200))
        with mpmath.workdps(60):
            assert mpmath.mpf(fine.lo.numerator) / fine.lo.denominator - md.mu < 1e-45


def test_mode_value_is_monotone_in_rho() -> None:
    for depth in (1, 2, 3, 4):
        thr = symbolic.collapse_threshold(depth)
        rhos = [thr * Fraction(k, 8) for k in range(1, 16)]
        values = [symbolic.minimise_mode(depth, r).value for r in rhos]
        assert all(a <= b for a, b in zip(values, values[1:], strict=False))


def test_separable_applies_to_a_free_bias_with_any_counts() -> None:
    assert separable_applies(_problem("6,3,2,1", 2, "1e-2"))
    assert not separable_applies(_problem("6,3,2,1", 2, "1e-2").with_(loss="ce"))


# ---- the certificate against independent full optimisation -------------------------------------
@pytest.mark.parametrize(
    ("counts", "depth", "lam"),
    [("6,3,2,1", 1, "1e-2"), ("6,3,2,1", 2, "4e-2"), ("5,3,3,1", 2, "1e-2"), ("8,2,2", 3, "3e-2")],
)
def test_certificate_matches_full_optimisation(counts: str, depth: int, lam: str) -> None:
    problem = _problem(counts, depth, lam)
    cert = separable_reduction(problem)
    assert cert is not None and cert.exact and cert.rigorous
    objective = Objective(problem, np)
    value, grad = objective.value_and_grad(cert.point)
    assert float(value) == pytest.approx(cert.bound, rel=1e-12)  # a feasible point attains it
    assert norm(grad) < 1e-10
    assert np.allclose(cert.point.b, np.asarray(problem.counts) / problem.N)
    runs = multistart(problem, Backend.create(), restarts=3, seed=1, max_iter=5000, jobs=1)
    best = min(r.objective for r in runs)
    assert best >= cert.bound - 1e-12  # nothing below the bound
    assert best == pytest.approx(cert.bound, rel=1e-9)  # and the optimiser reaches it


def test_certificate_detects_an_exact_tie() -> None:
    # counts (3, 1): the one mode has s^2 = 3/2 (a rational secular root); M = 2 and
    # P = 9/4096 put rho = 64 P / (9/4) at thr_2 = 1/16 exactly
    problem = Problem.build(
        counts="3,1", depth=2, width=2, lambda_w="1", lambda_h=str(Fraction(9, 4096)), bias="free"
    )
    cert = separable_reduction(problem)
    assert not cert.unique and any("threshold" in note for note in cert.notes)
    pred = CLAIM.closed_form(problem)
    assert not pred.unique
    assert [r for _, _, r in CLAIM.gains(problem)] == [Regime.TIE]
    assert abs(pred.objective - cert.bound_exact) < 1e-30


def test_certificate_bottleneck_cut_between_equal_modes() -> None:
    problem = _problem("9,9,9,9,1", 2, "1e-3", width=2)
    cert = separable_reduction(problem)
    assert not cert.unique
    pred = CLAIM.closed_form(problem)
    assert not pred.unique
    assert abs(pred.objective - cert.bound_exact) < 1e-30


# ---- the claim ----------------------------------------------------------------------------------
INSTANCES = [
    ("200,100,50,50", 3, "5e-4"),  # the default counts, every mode alive
    ("200,100,50,50", 2, "1.5e-2"),  # the n = 50 difference mode dead, the secular ones alive
    ("300,100,20,5", 2, "5e-3"),  # the smallest secular mode dead
    ("300,100,20,5", 4, "1e-3"),
    ("300,100,20,20,5,5", 3, "2.3e-3"),  # the n = 5 difference mode dead, the one above alive
    ("5,5,5,5", 4, "1e-2"),
    ("6,3,2,1", 1, "1e-1"),  # M = 1: the smallest mode soft-thresholded to zero
    ("6,3,2,1", 3, "3e-2"),
    ("6,3,2,1", 2, "1e-1"),  # every mode dead: the zero solution
]


@pytest.mark.parametrize(("counts", "depth", "lam"), INSTANCES)
def test_claim_is_certified(counts: str, depth: int, lam: str) -> None:
    problem = _problem(counts, depth, lam)
    start = time.perf_counter()
    report = verify(CLAIM, problem, settings=Settings(restarts=3, seed=0))
    assert report.verdict == "certified", [(c.name, c.detail) for c in report.checks]
    assert time.perf_counter() - start < 60
    cert = separable_reduction(problem)
    assert abs(report.prediction.objective - cert.bound_exact) < 1e-30


def test_regimes_are_per_mode() -> None:
    problem = _problem("300,100,20,20,5,5", 3, "2.3e-3")
    regimes = [(float(m.mu), r) for m, _, r in CLAIM.gains(problem)]
    assert regimes[-1] == (5.0, Regime.COLLAPSED)  # the smallest group's difference mode
    assert all(r == Regime.ALIVE for _, r in regimes[:-1])
    pred = CLAIM.closed_form(problem)
    assert pred.classes[4].gain_float == pytest.approx(pred.classes[5].gain_float)
    assert all(c.regime == Regime.ALIVE for c in pred.classes)  # secular modes still touch them
    assert_predicted_point_is_stationary(CLAIM, problem)


@pytest.mark.parametrize("depth", [1, 2, 3, 4])
@pytest.mark.parametrize("lam", ["1e-3", "3e-2", "2e-1"])
def test_equal_counts_reproduce_the_balanced_claim(depth: int, lam: str) -> None:
    balanced = theorems.get("mse-balanced-bias")
    problem = _problem("5,5,5,5", depth, lam)
    ours, theirs = CLAIM.closed_form(problem), balanced.closed_form(problem)
    gains = CLAIM.gains(problem)
    g_bal, regime_bal = balanced.gain(problem)
    for mode, g, regime in gains:  # term by term: each mode is the balanced claim's mode
        assert mode.exact == 5 and g == g_bal and regime == regime_bal
        assert CLAIM.mode_term(problem, mode, g) == _balanced.mode_value(problem, 5, g_bal)
    assert abs(ours.objective - theirs.objective) < mpmath.mpf(10) ** -40
    assert ours.zero == theirs.zero and ours.unique == theirs.unique
    for a, b in zip(ours.classes, theirs.classes, strict=True):
        assert a.gain_float == pytest.approx(b.gain_float, abs=1e-14)
        assert a.length_w == pytest.approx(b.length_w, rel=1e-9, abs=1e-12)
        assert a.length_h == pytest.approx(b.length_h, rel=1e-9, abs=1e-12)
    assert ours.bias == pytest.approx(theirs.bias)


def test_default_problem_and_phase() -> None:
    problem = CLAIM.default_problem()
    assert CLAIM.hypotheses(problem) == []
    pred = CLAIM.closed_form(problem)
    assert len(pred.phase.quantity("s2").value) == problem.K - 1
    assert len(pred.phase.on("lambda")) == 3  # three distinct modes
    assert CLAIM.hypotheses(problem.with_(bias="none"))


# ---- the two sides share no root isolation --------------------------------------------------------
def _broken(*args: object, **kwargs: object) -> object:
    raise AssertionError("this side must not use the other side's root isolation")


def test_the_sides_are_independent(monkeypatch: pytest.MonkeyPatch) -> None:
    problem = _problem("300,100,20,20,5,5", 3, "2.3e-3")
    expected = CLAIM.closed_form(problem).objective
    before = separable_reduction(problem).bound_exact
    with monkeypatch.context() as patch:
        symbolic.minimise_mode.cache_clear()
        for name in ("real_roots_in", "largest_root_in", "stationary_candidates", "minimise_mode"):
            patch.setattr(symbolic, name, _broken)
        for name in ("secular_polynomial", "centred_modes", "mode_bracket", "minimise_mode"):
            patch.setattr(sep, name, _broken)
        assert CLAIM.closed_form(problem).objective == expected
    symbolic.minimise_mode.cache_clear()
    monkeypatch.setattr(_balanced, "alive_root", _broken)
    monkeypatch.setattr(_balanced, "threshold_gain", _broken)
    monkeypatch.setattr(mib, "_secular_roots", _broken)
    monkeypatch.setattr(mib, "_mode_gain", _broken)
    assert separable_reduction(problem).bound_exact == before


# ---- wrong variants are refuted -----------------------------------------------------------------
class PerClass(MSEImbalancedBias):
    """Collapse per class: the K - 1 largest counts as the modes (s_i^2 = n_k)."""

    id = "mse-imbalanced-bias-per-class"

    def modes(self, problem: Problem) -> list[Mode]:
        order = sorted(range(problem.K), key=lambda k: -problem.counts[k])[: problem.K - 1]
        out = []
        for k in order:
            u = [mpmath.mpf(int(j == k)) for j in range(problem.K)]
            out.append(Mode(mpmath.mpf(problem.counts[k]), Fraction(problem.counts[k]), u, f"{k}"))
        return out


class BiasIgnored(MSEImbalancedBias):
    """The bias-free reduction: K modes s_i^2 = n_k, bias zero."""

    id = "mse-imbalanced-bias-ignored"

    def modes(self, problem: Problem) -> list[Mode]:
        order = sorted(range(problem.K), key=lambda k: -problem.counts[k])
        return [
            Mode(
                mpmath.mpf(problem.counts[k]),
                Fraction(problem.counts[k]),
                [mpmath.mpf(int(j == k)) for j in range(problem.K)],
                f"{k}",
            )
            for k in order
        ]

    def centre(self, problem: Problem) -> list[mpmath.mpf]:
        return [mpmath.mpf(0)] * problem.K


class UniformCentring(MSEImbalancedBias):
    """The centred counts replaced by I - 1 1^T / K: the modes of (I - 1 1^T/K) D."""

    id = "mse-imbalanced-bias-uniform"

    def modes(self, problem: Problem) -> list[Mode]:
        k = problem.K
        with mpmath.workdps(60):
            d = mpmath.diag([mpmath.sqrt(c) for c in problem.counts])
            c = mpmath.eye(k) - mpmath.ones(k, k) / k
            y = c * d
            vals, vecs = mpmath.eigsy(y * y.T)
            pairs = sorted(
                ((vals[i], [vecs[j, i] for j in range(k)]) for i in range(k)), key=lambda p: -p[0]
            )
        return [Mode(v, None, u, "uniform") for v, u in pairs[: k - 1]]

    def centre(self, problem: Problem) -> list[mpmath.mpf]:
        return [mpmath.mpf(1) / problem.K] * problem.K


@pytest.mark.parametrize("variant", [PerClass(), BiasIgnored(), UniformCentring()])
@pytest.mark.parametrize(("counts", "depth", "lam"), [("300,100,20,5", 2, "5e-3")])
def test_wrong_variants_are_refuted(variant: MSEImbalancedBias, counts: str, depth: int, lam: str):
    problem = _problem(counts, depth, lam)
    report = verify(variant, problem, settings=Settings(restarts=3, seed=0))
    assert report.verdict == "refuted", report.verdict
