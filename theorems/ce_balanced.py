r"""Balanced data, cross-entropy: every global minimiser is a simplex ETF at every layer (claimed).
With $K$ classes of $n$ samples each ($n_k = n$), $M$ linear layers $W_1, \dots, W_M$ on free
features and the cross-entropy loss, every global minimiser has NC1 (the features of each class
collapse to their class mean) and, for every layer $m$, $W_M \cdots W_m \bar H_m \propto C$,
$\bar H_m^T \bar H_m \propto C$, $(W_M \cdots W_m)(W_M \cdots W_m)^T \propto C$ (a simplex ETF;
needs $R \ge K-1$); a regularised bias is 0 and a free bias, determined only up to $t \mathbf 1$,
is reported with $\mathbf 1^T b = 0$ (so $b = 0$).  The logit margin $\alpha$ solves
$\min_{\alpha \ge 0} \operatorname{log}(1 + (K-1) e^{-\alpha}) + (K-1) ((M+1)/2) c \alpha^q$
with $c = (n P)^{1/(M+1)}$, $q = 2/(M+1)$, the zero solution included.  Here $\bar H_m$ holds
the $K$ class means of the features that enter layer $m$ (one column per class),
$C = I_K - \mathbf 1 \mathbf 1^T/K$ is the centring matrix ($I_K$ the $K \times K$
identity, $\mathbf 1$ the all-ones vector), $b$ the last-layer bias, $t$ any real number, the
margin $\alpha$ is the amount by which the correct logit of a class mean exceeds every other
($W \bar H = \alpha C$ with $W = W_M \cdots W_1$, $\bar H = \bar H_1$),
$P = \lambda_H \prod_m \lambda_{W_m}$ is the product of the weight decays of the features and of
the layers, and $R = \min(K, d, d_1, \dots, d_{M-1})$ is the bottleneck, with $d$ the feature
dimension and $d_m$ the output width of layer $m$.

The claim is true for $M = 1$ (Zhu et al. 2021; the problem is convex in $A = W H$) but false in
general: Garrod & Keating (NeurIPS 2025) prove that the ETF is not optimal for $K \ge 4$
with $M \ge 3$ and for $K \ge 6$ with $M = 2$, where lower-rank, block-structured logits do
better; for $K = 4, 5$ at $M = 2$ it fails only inside a window of lambdas.  ncverify decides
each instance from evidence: a search in the exact $K \times K$ reduction
(`theorems._ce_search`), lifted to full parameters and certified in exact and interval
arithmetic, or `consistent` when nothing better is found.  For two classes it is proven at every
depth: the `two-class-scalar` certificate (docs/theory/depth-certificates.md) encloses the
optimum, and the check says `certified`.

Source: H. Dang, T. Tran, S. Osher, H. Tran-The, N. Ho, T. Nguyen, "Neural Collapse in Deep
Linear Networks: From Balanced to Imbalanced Data", ICML 2023, arXiv 2301.00437, appendix (the
balanced CE claim); $M = 1$: Zhu et al., "A Geometric Analysis of Neural Collapse with
Unconstrained Features", NeurIPS 2021, arXiv 2105.02375; counterexamples: C. Garrod,
J. P. Keating, "The Persistence of Neural Collapse Despite Low-Rank Bias", NeurIPS 2025,
arXiv 2410.23169; docs/theory/ce.md#balanced-ce.
"""

from __future__ import annotations

import math
from fractions import Fraction
from functools import lru_cache
from typing import Any

import mpmath
import sympy as sp

from ncverify.backend import Backend
from ncverify.claim import (
    Candidate,
    Regime,
    SearchBudget,
    Step,
    TruthRegion,
    to_backend,
)
from ncverify.model.intervals import ends, interval_precision
from ncverify.model.problem import Problem
from theorems import _balanced as bal
from theorems import _ce_search as ce_search
from theorems._etf import (
    PREC,
    BalancedETF,
    MarginMinimum,
    etf_spectrum_identity,
    scale_identity,
)
from theorems._hypotheses import model_hypotheses
from theorems._max_margin import witness as max_margin_witness


# ---- the ETF scalar problem, enclosed rigorously -------------------------------------------------
class _Scalar:
    """`f`, `g = alpha^{1-q} - c (e^alpha + K - 1)` and `g'` in interval and point arithmetic.

    `f'(alpha) = -(K-1) alpha^{q-1} g(alpha) / (e^alpha + K - 1)`, so the positive stationary
    points of `f` are the roots of `g`, and `g` is strictly concave.
    """

    def __init__(self, k: int, depth: int, n_p: Fraction) -> None:
        iv = mpmath.iv
        self.k, self.m = k, depth
        self.iv_q = iv.mpf(2) / iv.mpf(depth + 1)
        self.iv_c = iv.exp(
            iv.log(iv.mpf(n_p.numerator) / iv.mpf(n_p.denominator)) / iv.mpf(depth + 1)
        )
        self.q = mpmath.mpf(2) / (depth + 1)
        self.c = mpmath.root(mpmath.mpf(n_p.numerator) / n_p.denominator, depth + 1)

    # interval versions (alpha > 0)
    def f_iv(self, a: Any) -> Any:
        iv = mpmath.iv
        k = iv.mpf(self.k)
        power = iv.exp(self.iv_q * iv.log(a))
        return (
            iv.log(1 + (k - 1) * iv.exp(-a)) + (k - 1) * iv.mpf(self.m + 1) / 2 * self.iv_c * power
        )

    def g_iv(self, a: Any) -> Any:
        iv = mpmath.iv
        power = iv.exp((1 - self.iv_q) * iv.log(a)) if self.m > 1 else iv.mpf(1)
        return power - self.iv_c * (iv.exp(a) + iv.mpf(self.k - 1))

    def dg_iv(self, a: Any) -> Any:
        iv = mpmath.iv
        first = (1 - self.iv_q) * iv.exp(-self.iv_q * iv.log(a)) if self.m > 1 else iv.mpf(0)
        return first - self.iv_c * iv.exp(a)

    # point versions (locating only; every conclusion is re-checked in intervals)
    def g(self, a: mpmath.mpf) -> mpmath.mpf:
        power = a ** (1 - self.q) if self.m > 1 else mpmath.mpf(1)
        return power - self.c * (mpmath.exp(a) + self.k - 1)

    def dg(self, a: mpmath.mpf) -> mpmath.mpf:
        first = (1 - self.q) * a ** (-self.q) if self.m > 1 else mpmath.mpf(0)
        return first - self.c * mpmath.exp(a)


def _bisect(fun: Any, lo: mpmath.mpf, hi: mpmath.mpf, steps: int = 220) -> mpmath.mpf:
    """A sign change of `fun` in `[lo, hi]` (`fun(lo) > 0 > fun(hi)`), by bisection."""
    for _ in range(steps):
        mid = (lo + hi) / 2
        if fun(mid) > 0:
            lo = mid
        else:
            hi = mid
    return (lo + hi) / 2


def _point(x: mpmath.mpf) -> Any:
    return mpmath.iv.mpf(x)


@lru_cache(maxsize=1024)
def margin_minimum(k: int, depth: int, n_p: Fraction) -> MarginMinimum:
    """Rigorous global minimum of the ETF scalar problem for `K` classes, depth `M`, `nP`.

    `g` is strictly concave on `(0, inf)` with `g(inf) = -inf`, so it has at most two roots;
    `f` increases up to the first, decreases to the second (the only positive local minimiser)
    and increases beyond it.  The minimum over `alpha >= 0` is therefore `min(f(0), f(r_2))`
    with `f(0) = log K`; both are enclosed in interval arithmetic and compared, never assuming
    that the positive root wins.  Every sign used is proven by an interval evaluation.
    """
    with interval_precision(PREC), mpmath.workprec(PREC + 20):
        return _margin_minimum(_Scalar(k, depth, n_p), k, depth, n_p)


def _margin_minimum(sc: _Scalar, k: int, depth: int, n_p: Fraction) -> MarginMinimum:
    iv = mpmath.iv
    f0 = iv.log(iv.mpf(k))
    zero = (mpmath.mpf(0), mpmath.mpf(0))
    collapsed = MarginMinimum(ends(f0), zero, Regime.COLLAPSED, None, 0)
    if depth == 1:
        # g = 1 - c(e^alpha + K - 1) is strictly decreasing from g(0) = 1 - cK: a positive root
        # exists iff cK < 1, i.e. iff K^2 n P < 1 (decided exactly, in rationals)
        if k * k * n_p >= 1:
            return collapsed  # g < 0 on (0, inf): f increases, zero wins
        peak = mpmath.mpf(0)
    else:
        if _never_positive(sc):
            return collapsed  # g < 0 on (0, inf): f increases, zero wins
        # the peak of g: g' is strictly decreasing, from +inf at 0+ to -inf
        lo, hi = mpmath.mpf(1), mpmath.mpf(1)
        while sc.dg(lo) <= 0:
            lo /= 2
        while sc.dg(hi) >= 0:
            hi *= 2
        peak = _bisect(sc.dg, lo, hi)
        if not (sc.g_iv(_point(peak)).a > 0):
            return _at_the_peak(sc, peak, f0, collapsed)
    # a positive root r_2 > peak exists: bracket it and prove the bracket
    hi = max(peak * 2, mpmath.mpf(1))
    while sc.g(hi) >= 0:
        hi *= 2
    root = _bisect(sc.g, peak, hi)
    delta = max(root, mpmath.mpf(1)) * mpmath.mpf(2) ** (-(PREC // 2))
    for _ in range(8):
        a, b = _point(root - delta), _point(root + delta)
        if sc.g_iv(a).a > 0 and sc.g_iv(b).b < 0:
            break
        delta *= 2**20
    else:  # pragma: no cover - the bisection above always leaves a provable bracket
        raise ArithmeticError("could not bracket the positive stationary margin.")
    alpha = iv.mpf([root - delta, root + delta])
    fr = sc.f_iv(alpha)
    stationary = 1 if depth == 1 else 2
    if fr.b < f0.a:
        return MarginMinimum(ends(fr), ends(alpha), Regime.ALIVE, ends(fr), stationary)
    if fr.a > f0.b:
        return MarginMinimum(ends(f0), zero, Regime.COLLAPSED, ends(fr), stationary)
    lo_v = min(ends(fr)[0], ends(f0)[0])
    hi_v = min(ends(fr)[1], ends(f0)[1])
    return MarginMinimum((lo_v, hi_v), ends(alpha), Regime.TIE, ends(fr), stationary)


def _never_positive(sc: _Scalar) -> bool:
    """A bound that needs no peak (`M >= 2`): `e^alpha >= 1 + alpha` gives
    `g(alpha) <= alpha^{1-q} - c alpha - c K`, whose maximum over `alpha > 0` is
    `q ((1-q)/c)^{(1-q)/q} - c K`.  Where that is proven negative, `g < 0` everywhere.  It
    decides large `c`, where the peak sits so close to 0 that the tangent bound of
    `_at_the_peak` cannot resolve it."""
    iv = mpmath.iv
    q, c = sc.iv_q, sc.iv_c
    top = q * iv.exp((1 - q) / q * iv.log((1 - q) / c)) - c * iv.mpf(sc.k)
    return bool(top.b < 0)


def _at_the_peak(sc: _Scalar, peak: mpmath.mpf, f0: Any, collapsed: MarginMinimum) -> MarginMinimum:
    """The peak of the concave `g` is not proven positive: zero wins if a tangent bound proves
    `g < 0` everywhere; otherwise (a near-double root) the minimum is a tie within enclosures."""
    iv = mpmath.iv
    # Tangent bound: g <= min of its tangents at a1 < peak < a2 (g is concave).
    eps = peak * mpmath.mpf(2) ** (-(PREC // 2))
    a1, a2 = _point(peak - eps), _point(peak + eps)
    d1, d2 = sc.dg_iv(a1), sc.dg_iv(a2)
    if d1.a > 0 and d2.b < 0:
        g1, g2 = sc.g_iv(a1), sc.g_iv(a2)
        cross = (g2 - g1 + d1 * a1 - d2 * a2) / (d1 - d2)
        bound = g1 + d1 * (cross - a1)
        if bound.b < 0:
            return collapsed  # proven: g < 0 everywhere, f increases, zero wins
    # undecided: any root lies where g >= 0, inside a hull around the peak whose ends are proven
    # negative (g is concave); zero or f there wins
    width = 2 * eps
    while not (sc.g_iv(_point(peak - width)).b < 0 and sc.g_iv(_point(peak + width)).b < 0):
        width *= 2**10
    hull = iv.mpf([peak - width, peak + width])
    fh = sc.f_iv(hull)
    lo_v = min(ends(fh)[0], ends(f0)[0])
    return MarginMinimum((lo_v, ends(f0)[1]), ends(hull), Regime.TIE, ends(fh), 2)


@lru_cache(maxsize=256)
def critical_c(k: int, depth: int) -> float:
    """The `c = (nP)^{1/(M+1)}` at which zero starts to win (tied lambdas: `lambda* n^{1/(M+1)}`).

    Informational (the report's phase boundary), located in floating point; the verdict never
    uses it.  For `M = 1` it is `1/K` (Zhu et al.).
    """
    if depth == 1:
        return 1.0 / k
    q = 2.0 / (depth + 1)

    import scipy.optimize as so  # here, not at the top: it costs the CLI ~0.5 s to import

    def zero_wins(c: float) -> bool:
        def g(a: float) -> float:
            return a ** (1 - q) - c * (math.exp(a) + k - 1)

        def dg(a: float) -> float:
            return (1 - q) * a ** (-q) - c * math.exp(a)

        lo, hi = 1.0, 1.0
        while dg(lo) <= 0:
            lo /= 2
        while dg(hi) >= 0:
            hi *= 2
        peak = so.brentq(dg, lo, hi, xtol=1e-15)
        if g(peak) <= 0:
            return True
        top = max(2 * peak, 1.0)
        while g(top) >= 0:
            top *= 2
        root = so.brentq(g, peak, top, xtol=1e-15)
        f = math.log1p((k - 1) * math.exp(-root)) + (k - 1) * (depth + 1) / 2 * c * root**q
        return f >= math.log(k)

    lo, hi = 1e-6, 1.0
    while zero_wins(lo):
        lo /= 10
    while not zero_wins(hi):
        hi *= 2
    for _ in range(60):
        mid = math.sqrt(lo * hi)
        if zero_wins(mid):
            hi = mid
        else:
            lo = mid
    return math.sqrt(lo * hi)


# ---- derivation identities -------------------------------------------------------------------------
_a, _c, _k = sp.symbols("alpha c K", positive=True)


def _etf_loss_identity() -> sp.Expr:
    """CE of the ETF logits `alpha (e_k - 1/K)`: `log(1 + (K-1) e^{-alpha})`, K = 2..8."""
    total = sp.Integer(0)
    for k in range(2, 9):
        z_own = _a * sp.Rational(k - 1, k)
        z_other = -_a / k
        lse = sp.log(sp.exp(z_own) + (k - 1) * sp.exp(z_other))
        # log(X) - z_own = log(1 + (K-1) e^{-alpha})  <=>  X e^{-z_own} = 1 + (K-1) e^{-alpha}
        total += sp.simplify(sp.expand(sp.exp(lse - z_own)) - (1 + (k - 1) * sp.exp(-_a)))
    return sp.simplify(total)


def _stationarity_identity() -> sp.Expr:
    """`f'(alpha) = -(K-1) alpha^{q-1} g(alpha) / (e^alpha + K - 1)`, any K, M = 1..6."""
    total = sp.Integer(0)
    for m in range(1, 7):
        q = sp.Rational(2, m + 1)
        f = sp.log(1 + (_k - 1) * sp.exp(-_a)) + (_k - 1) * sp.Rational(m + 1, 2) * _c * _a**q
        g = _a ** (1 - q) - _c * (sp.exp(_a) + _k - 1)
        total += sp.simplify(sp.diff(f, _a) + (_k - 1) * _a ** (q - 1) * g / (sp.exp(_a) + _k - 1))
    return sp.simplify(total)


def _concavity_identity() -> sp.Expr:
    """`g'' = -(1-q) q alpha^{-q-1} - c e^alpha` (< 0 for alpha > 0), M = 1..6."""
    total = sp.Integer(0)
    for m in range(1, 7):
        q = sp.Rational(2, m + 1)
        g = _a ** (1 - q) - _c * (sp.exp(_a) + 3)
        total += sp.simplify(sp.diff(g, _a, 2) - (-(1 - q) * q * _a ** (-q - 1) - _c * sp.exp(_a)))
    return sp.simplify(total)


def _one_layer_identity() -> sp.Expr:
    """M = 1: `g(alpha) = 1 - c(e^alpha + K - 1)` vanishes at `alpha = log((1 - (K-1)c)/c)`."""
    total = sp.Integer(0)
    for k in range(2, 9):
        alpha = sp.log((1 - (k - 1) * _c) / _c)
        total += sp.simplify(1 - _c * (sp.exp(alpha) + k - 1))
    return sp.simplify(total)


# ---- the claim ---------------------------------------------------------------------------------------
class CEBalanced(BalancedETF):
    id = "ce-balanced"
    title = "Balanced cross-entropy: simplex ETF at every layer (claimed)"
    source = (
        f"{bal.DANG_2023}, appendix: the balanced cross-entropy claim; counterexamples: Garrod, "
        'Keating, "The Persistence of Neural Collapse Despite Low-Rank Bias", NeurIPS 2025, '
        "arXiv 2410.23169"
    )
    status = (
        "true for M = 1 (Zhu et al. 2021); false for K >= 4, M >= 3 and K >= 6, M = 2 "
        "(Garrod & Keating 2025); K = 4, 5 at M = 2: false only inside a lambda window (observed)"
    )
    loss = "ce"
    bias = "none"
    certificates = ("convex-dual", "two-class-scalar", "gram-branch-and-bound")
    # one layer only: deeper heads are refuted for many K (Garrod & Keating 2025) and open elsewhere
    truth_region = TruthRegion(
        basis="proven",
        reference="Zhu et al. 2021, one layer (docs/theory/ce.md#ce-one-layer)",
        loss="ce",
        biases=("none", "regularised"),
        depth=(1, 1),
        wide=True,
        lambda_b=("1e-3", "0.5"),
    )

    def hypotheses(self, problem: Problem) -> list[str]:
        return model_hypotheses(problem, loss="ce", balanced=True, bottleneck=1)

    def default_problem(self) -> Problem:
        return Problem.build(
            classes=4,
            samples=100,
            depth=3,
            width=64,
            lambda_w="5e-4",
            lambda_h="5e-4",
            loss="ce",
            bias="none",
        )

    # ---- closed form ----------------------------------------------------------------------------
    def margin(self, problem: Problem) -> MarginMinimum:
        n_p = Fraction(problem.counts[0]) * problem.lambda_product
        return margin_minimum(problem.K, problem.depth, n_p)

    def critical(self, problem: Problem) -> float:
        """The `c = (nP)^{1/(M+1)}` beyond which zero wins (informational, in floats)."""
        return critical_c(problem.K, problem.depth)

    def _objective_form(self, problem: Problem, alpha: mpmath.mpf) -> str:
        k, m = problem.K, problem.depth
        return (
            f"min(log K, f(alpha)) with f(alpha) = log(1 + {k - 1} e^-alpha) + "
            f"{k - 1}*{m + 1}/2 c alpha^(2/{m + 1}), c = (nP)^(1/{m + 1}); alpha = "
            f"{mpmath.nstr(alpha, 20)}"
        )

    def _limit_notes(self, problem: Problem) -> list[str]:
        """What the max-margin limit says about this `(K, M)` (asymptotic, not a verdict)."""
        k, m = problem.K, problem.depth
        notes = []
        code = max_margin_witness(k, m)
        if code is not None:
            notes.append(
                f"asymptotic, not a verdict at this lambda: in the max-margin limit (lambda -> 0) "
                f"the {code.name} code (K = {k} classes in R^{code.r}, every margin >= 1) has "
                f"value {code.value} < {k - 1} (the ETF's), in units of (M+1) n^(q/2), since "
                f"{code.inequality}; regularised minimisers converge in direction to max-margin "
                "solutions, so the ETF is not the global minimiser for all small enough lambda "
                "(docs/theory/ce.md#max-margin)"
            )
        return notes

    # ---- counterexample search ---------------------------------------------------------------------
    def search(self, problem: Problem, backend: Backend, budget: SearchBudget) -> list[Candidate]:
        """The best point of the K x K reduction search, lifted to full parameters."""
        if problem.loss != "ce" or not problem.balanced:
            return []
        result = ce_search.search(problem, seed=budget.seed, random_starts=budget.random_starts)
        best = result.best
        point = to_backend(ce_search.lift(problem, best), backend)
        info = {
            "summary": result.summary(),
            "reduced_objective": best.value,
            "structures": result.structures,
            "screened": result.screened,
            "random_starts": result.random_starts,
            "families": dict(result.families),
            "rank": best.rank,
            "singular_values": [float(s) for s in best.s],
        }
        return [Candidate(point, f"K x K reduction search, polished from {best.origin}", info)]

    # ---- derivation ----------------------------------------------------------------------------------
    def derivation(self) -> list[Step]:
        return [
            Step(
                "At a minimiser all samples of a class share one feature vector (NC1): given the "
                "weights, F is strictly convex in H (CE is convex, lambda_H > 0) and invariant under "
                "permuting the samples of a class.",
                r"h_{k,i} = \bar h_k \quad \forall i",
                "lemma",
                "tests/test_lemmas.py::test_lemma1_nc1",
            ),
            Step(
                "With balanced classes the loss is the class average of CE at the class-level logits "
                "Z = W_M ... W_1 Hbar, and (lambda_H/2)||H||^2 = (lambda_H/2)||Hbar D||^2, D = sqrt(n) I.",
                r"L = \tfrac1K\sum_k \mathrm{CE}(z_k, k),\qquad Z = W_M\cdots W_1\bar H",
                "test",
                "tests/test_ce.py::test_reduction_equals_full_objective",
            ),
            Step(
                "Lemma 2 bounds the regulariser of any factorisation of A = W_M ... W_1 Hbar D by a "
                "Schatten-q quasi-norm, with equality exactly for balanced layers.",
                r"\sum_m \tfrac{\lambda_{W_m}}{2}\|W_m\|^2 + \tfrac{\lambda_H}{2}\|\bar H D\|^2 \ge "
                r"\tfrac{M+1}{2} P^{1/(M+1)} \sum_i \sigma_i(A)^{q}",
                "lemma",
                "tests/test_lemmas.py::test_lemma2_factorisation_bound",
            ),
            Step(
                "With A = sqrt(n) Z the bound is ((M+1)/2) c sum_i sigma_i(Z)^q, c = (nP)^{1/(M+1)}.",
                r"P^{1/(M+1)}(\sqrt n\, s)^q = (nP)^{1/(M+1)} s^q",
                "sympy",
                "theorems/_etf.py::scale_identity",
                scale_identity,
            ),
            Step(
                "Hence the full problem equals the K x K reduction, and any Z of rank at most R lifts "
                "to balanced full parameters with the same value (width at least its rank).",
                r"\min F = \min_{\operatorname{rank} Z \le R}\ \tfrac1K\sum_k \mathrm{CE}(z_k,k) + "
                r"\tfrac{M+1}{2}c\sum_i\sigma_i(Z)^q",
                "test",
                "tests/test_ce.py::test_lifted_point_has_the_reduced_value",
            ),
            Step(
                "Within ETF configurations Z = alpha C (alpha = logit margin) the loss of every class "
                "is log(1 + (K-1) e^{-alpha}) ...",
                r"\mathrm{CE}(\alpha(e_k - \tfrac1K\mathbf 1), k) = \log(1 + (K-1)e^{-\alpha})",
                "sympy",
                "theorems/ce_balanced.py::_etf_loss_identity",
                _etf_loss_identity,
            ),
            Step(
                "... and alpha C has K - 1 singular values alpha, so the ETF value is the scalar "
                "problem f(alpha).",
                r"f(\alpha) = \log(1 + (K-1)e^{-\alpha}) + (K-1)\tfrac{M+1}{2} c\,\alpha^q",
                "sympy",
                "theorems/_etf.py::etf_spectrum_identity",
                etf_spectrum_identity,
            ),
            Step(
                "f'(alpha) has the sign of -g(alpha), g(alpha) = alpha^{1-q} - c(e^alpha + K - 1).",
                r"f'(\alpha) = -\frac{(K-1)\alpha^{q-1}}{e^\alpha + K - 1}\, g(\alpha)",
                "sympy",
                "theorems/ce_balanced.py::_stationarity_identity",
                _stationarity_identity,
            ),
            Step(
                "g is strictly concave, so f has at most two positive stationary points: a local "
                "maximum and one local minimum r_2; the optimum is min(f(0), f(r_2)) = "
                "min(log K, f(r_2)), decided by comparing enclosures, never by taking the root.",
                r"g''(\alpha) = -(1-q)q\,\alpha^{-q-1} - c\,e^{\alpha} < 0",
                "sympy",
                "theorems/ce_balanced.py::_concavity_identity",
                _concavity_identity,
            ),
            Step(
                "M = 1 recovers Zhu et al. 2021: alpha = log((1 - (K-1)c)/c) while K c < 1, else 0.",
                r"g(\alpha) = 1 - c(e^\alpha + K - 1) = 0 \iff \alpha = \log\tfrac{1-(K-1)c}{c}",
                "sympy",
                "theorems/ce_balanced.py::_one_layer_identity",
                _one_layer_identity,
            ),
            Step(
                "The root is bracketed and f enclosed in interval arithmetic; the enclosure contains "
                "the scalar minimum.",
                r"\min_{\alpha\ge0} f \in [\underline F, \overline F]",
                "test",
                "tests/test_ce.py::test_enclosure_contains_the_scalar_minimum",
            ),
            Step(
                "The balanced factorisation of A = sqrt(n) alpha C is a simplex ETF at every layer with "
                "the claimed value.",
                r"W\bar H = \alpha C,\; \bar H^T\bar H \propto C,\; WW^T \propto C,\; b = 0",
                "test",
                "tests/test_ce.py::test_predicted_point_has_the_claimed_value",
            ),
            Step(
                "Status: the ETF is not the global minimum in general. For M >= 2 the Schatten-q term "
                "(q < 1) favours lower-rank logits; Garrod & Keating (NeurIPS 2025) prove the claim "
                "false for K >= 4, M >= 3 and K >= 6, M = 2, and for K = 4, 5 at M = 2 it fails only "
                "inside a window of lambdas. ncverify refutes such instances with certified "
                "counterexamples.",
                r"\exists Z:\ \operatorname{rank} Z < K-1,\ h(Z) < \min_{\alpha\ge0} f(\alpha)",
                "test",
                "tests/test_ce.py::test_refuted_where_proven_false",
            ),
        ]


claim = CEBalanced()
