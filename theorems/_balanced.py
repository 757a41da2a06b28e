"""Pieces shared by the balanced MSE claims (3.1 and 3.2): the class gain by the published
threshold rule, the per-mode value and the lengths of the balanced factorisation."""

from __future__ import annotations

from fractions import Fraction

import mpmath
import sympy as sp

from ncverify.claim import Step
from ncverify.problem import Problem
from ncverify.symbolic import collapse_threshold, mp

gamma, n, N, K, P, c = sp.symbols("gamma n N K P c", positive=True)


def rho_of(problem: Problem, count: int) -> Fraction:
    """`rho = N^{M+1} P / n^M` for a class (or mode) of `count` samples."""
    m = problem.depth
    return Fraction(problem.N) ** (m + 1) * problem.lambda_product / Fraction(count) ** m


def threshold_gain(depth: int, rho: Fraction) -> tuple[sp.Expr, str]:
    """The claim's rule: `M = 1` soft threshold; `M >= 2` the root in `((M-1)/(2M), 1)` while
    `rho < thr_M`, a tie at `rho = thr_M`, zero beyond."""
    if depth == 1:
        g = 1 - sp.sqrt(sp.Rational(rho.numerator, rho.denominator))
        return (g, "alive") if g > 0 else (sp.Integer(0), "collapsed")
    thr = collapse_threshold(depth)
    if rho > thr:
        return sp.Integer(0), "collapsed"
    return alive_root(depth, rho), ("tie" if rho == thr else "alive")


def alive_root(depth: int, rho: Fraction, bits: int = 160) -> sp.Expr:
    """The root of `gamma^{M-1} (1-gamma)^{M+1} = rho` in `((M-1)/(2M), 1)`, for
    `0 < rho <= thr_M` (`M >= 2`): exact when rational, else 50 digits from an interval of width
    `2^-bits` around it.

    On that interval the left side decreases strictly from its maximum to 0, so the root is
    unique and bisection on the exact sign finds it.  With `gamma = a / D` the sign is that of the
    integer `a^{M-1} (D - a)^{M+1} q - p D^{2M}` (`rho = p/q`, `D = 2M 2^j`).  This is the claim's own
    root: the separable certificate isolates the roots of the same polynomial independently
    (`ncverify.symbolic`), and a verdict may rest on the certificate alone only because the two
    share no code.
    """
    m, p, q = depth, rho.numerator, rho.denominator

    def excess(a: int, den: int) -> int:  # the sign of f(a / den) - rho
        return a ** (m - 1) * (den - a) ** (m + 1) * q - p * den ** (2 * m)

    # start at the maximiser (M-1)/(2M), where f = gap_top > thr_M >= rho, and at 1, where f = 0
    lo, hi, den = m - 1, 2 * m, 2 * m
    while (hi - lo) * 2**bits > den:
        lo, hi, den = 2 * lo, 2 * hi, 2 * den
        mid = (lo + hi) // 2
        sign = excess(mid, den)
        if sign == 0:
            return sp.Rational(mid, den)
        lo, hi = (mid, hi) if sign > 0 else (lo, mid)
    guess = Fraction(lo + hi, 2 * den).limit_denominator(10**6)  # rational roots are small
    if lo * guess.denominator <= guess.numerator * den <= hi * guess.denominator:
        if guess ** (m - 1) * (1 - guess) ** (m + 1) == rho:
            return sp.Rational(guess.numerator, guess.denominator)
    with mpmath.workdps(60):
        return sp.Float(mpmath.mpf(lo + hi) / (2 * den), 50)


def mode_value(problem: Problem, count: int, g: sp.Expr) -> mpmath.mpf:
    """`n (gamma-1)^2/(2N) + ((M+1)/2) P^{1/(M+1)} n^{1/(M+1)} gamma^q`, high precision."""
    m = problem.depth
    with mpmath.workdps(50):
        gv = mp(g)
        pv = mp(problem.lambda_product)
        loss = mpmath.mpf(count) * (gv - 1) ** 2 / (2 * problem.N)
        reg = (
            mpmath.mpf(m + 1) / 2 * mpmath.root(pv * count, m + 1) * gv ** (mpmath.mpf(2) / (m + 1))
        )
        return loss + reg


def lengths(problem: Problem, count: int, g: float) -> tuple[float, float]:
    """`(||w_k||, ||hbar_k||)` of the balanced factorisation with gain `g`:
    `t = P^{1/(M+1)} (sqrt(n) g)^q`, `||w_k|| = prod_m sqrt(t/lambda_{W_m})`,
    `sqrt(n) ||hbar_k|| = sqrt(t/lambda_H)`."""
    m = problem.depth
    t = float(problem.lambda_product) ** (1 / (m + 1)) * (count**0.5 * g) ** (2 / (m + 1))
    w = 1.0
    for lam in problem.lambda_w:
        w *= (t / float(lam)) ** 0.5
    return w, (t / float(problem.lambda_h)) ** 0.5 / count**0.5


def critical_lambda(problem: Problem, count: int) -> float:
    """Tied lambdas: the class is alive iff `lambda < (thr_M n_k^M / N^{M+1})^{1/(M+1)}`."""
    m = problem.depth
    thr = float(collapse_threshold(m))
    return (thr * count**m / problem.N ** (m + 1)) ** (1 / (m + 1))


def _stationarity_identity() -> sp.Expr:
    # (N c' / n)^{M+1} with c' = P^{1/(M+1)} n^{1/(M+1)} equals rho = K^{M+1} n P when N = K n
    total = sp.Integer(0)
    for m in range(1, 7):
        cprime = P ** sp.Rational(1, m + 1) * n ** sp.Rational(1, m + 1)
        total += (
            sp.powsimp(
                sp.expand_power_base((K * n * cprime / n) ** (m + 1), force=True), force=True
            )
            - K ** (m + 1) * n * P
        )
    return sp.simplify(total)


def _zero_comparison_identity() -> sp.Expr:
    # at a stationary gamma: phi(gamma) - phi(0) = n/(2N) gamma (M - 1 - M gamma)
    total = sp.Integer(0)
    for m in range(1, 7):
        q = sp.Rational(2, m + 1)
        cprime = n * (1 - gamma) * gamma ** (1 - q) / N  # from phi'(gamma) = 0
        excess = n * (gamma - 1) ** 2 / (2 * N) + sp.Rational(m + 1, 2) * cprime * gamma**q
        excess -= n / (2 * N)  # phi(0)
        total += sp.simplify(excess - n / (2 * N) * gamma * (m - 1 - m * gamma))
    return total


def _mode_identity() -> sp.Expr:
    # with s = sqrt(n) gamma the per-mode term (s - sqrt n)^2/(2N) + ((M+1)/2) c s^q is phi(gamma)
    total = sp.Integer(0)
    for m in range(1, 7):
        q = sp.Rational(2, m + 1)
        s = sp.sqrt(n) * gamma
        lhs = (s - sp.sqrt(n)) ** 2 / (2 * N) + sp.Rational(m + 1, 2) * P ** sp.Rational(
            1, m + 1
        ) * s**q
        rhs = (
            n * (gamma - 1) ** 2 / (2 * N)
            + sp.Rational(m + 1, 2)
            * P ** sp.Rational(1, m + 1)
            * n ** sp.Rational(1, m + 1)
            * gamma**q
        )
        total += sp.simplify(sp.expand_power_base(lhs - rhs, force=True))
    return sp.simplify(total)


def scalar_steps(modes: str) -> list[Step]:
    """The derivation from lemma 1 to the exact per-mode minimisation (shared by 3.1 and 3.2)."""
    return [
        Step(
            "At a minimiser all samples of a class share one feature vector (NC1): given the "
            "weights, F is strictly convex in H and the targets of a class coincide.",
            r"h_{k,i} = \bar h_k \quad \forall i",
            "lemma",
            "tests/test_lemmas.py::test_lemma1_nc1",
        ),
        Step(
            "The regulariser of any factorisation of A = W_M ... W_1 Hbar D is bounded below by a "
            "Schatten-q quasi-norm, with equality exactly for balanced layers.",
            r"\sum_m \tfrac{\lambda_{W_m}}{2}\|W_m\|^2 + \tfrac{\lambda_H}{2}\|\bar H D\|^2 \ge "
            r"\tfrac{M+1}{2} P^{1/(M+1)} \sum_i \sigma_i(A)^{q}",
            "lemma",
            "tests/test_lemmas.py::test_lemma2_factorisation_bound",
        ),
        Step(
            f"By von Neumann's trace inequality A shares the target's singular vectors, so the "
            f"problem splits into one scalar problem per mode ({modes}).",
            r"\min_A \tfrac{1}{2N}\|A - D\|^2 + c\sum_i \sigma_i(A)^q = \sum_i \min_{s\ge 0}"
            r"\tfrac{1}{2N}(s - d_i)^2 + c\, s^q",
            "lemma",
            "tests/test_lemmas.py::test_lemma3_separation",
        ),
        Step(
            "In the gain gamma = s / sqrt(n) each mode's problem is phi(gamma).",
            r"\varphi(\gamma) = \tfrac{n(\gamma-1)^2}{2N} + \tfrac{M+1}{2}P^{1/(M+1)}n^{1/(M+1)}"
            r"\gamma^{q}",
            "sympy",
            "theorems/_balanced.py::_mode_identity",
            _mode_identity,
        ),
        Step(
            "A stationary gamma > 0 solves a polynomial equation in rho = N^{M+1} P / n^M "
            "(here K^{M+1} n P).",
            r"\gamma^{M-1}(1-\gamma)^{M+1} = \rho",
            "sympy",
            "theorems/_balanced.py::_stationarity_identity",
            _stationarity_identity,
        ),
        Step(
            "At a stationary point phi(gamma) - phi(0) has the sign of (M-1) - M gamma: the "
            "positive root beats zero iff gamma > (M-1)/M, i.e. iff rho < thr_M; equality is a tie.",
            r"\varphi(\gamma) - \varphi(0) = \tfrac{n}{2N}\gamma(M-1-M\gamma),\quad "
            r"\mathrm{thr}_M = \tfrac{(M-1)^{M-1}}{M^{2M}}",
            "sympy",
            "theorems/_balanced.py::_zero_comparison_identity",
            _zero_comparison_identity,
        ),
    ]
