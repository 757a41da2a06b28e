"""Mathematics shared by the MSE claims: the class gain by the published threshold rule, the
per-mode value, the lengths of the balanced factorisation, the phase boundaries on the lambda
axes, and the whole prediction of a balanced frame (orthogonal frame or simplex ETF)."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from fractions import Fraction

import mpmath
import numpy as np
import sympy as sp

from ncverify.backend import Backend
from ncverify.claim import (
    Boundary,
    ClassPrediction,
    Phase,
    Prediction,
    Quantity,
    Regime,
    Step,
    to_backend,
)
from ncverify.model.factorisations import balanced_layers
from ncverify.model.objective import Params
from ncverify.model.problem import Problem
from ncverify.model.scalar import collapse_threshold, mp

#: The seed paper, as every claim derived from it cites it (theorem numbers: see the docs'
#: theory pages, which name results by subject where the number is not certain).
DANG_2023 = (
    'Dang, Tran, Osher, Tran-The, Ho, Nguyen, "Neural Collapse in Deep Linear Networks: From '
    'Balanced to Imbalanced Data", ICML 2023, arXiv 2301.00437'
)

gamma, n, N, K, P, c = sp.symbols("gamma n N K P c", positive=True)


def rho_of(problem: Problem, count: int) -> Fraction:
    """`rho = N^{M+1} P / n^M` for a class (or mode) of `count` samples."""
    m = problem.depth
    return Fraction(problem.N) ** (m + 1) * problem.lambda_product / Fraction(count) ** m


def threshold_gain(depth: int, rho: Fraction) -> tuple[sp.Expr, Regime]:
    """The claim's rule: `M = 1` soft threshold; `M >= 2` the root in `((M-1)/(2M), 1)` while
    `rho < thr_M`, a tie at `rho = thr_M`, zero beyond."""
    if depth == 1:
        g = 1 - sp.sqrt(sp.Rational(rho.numerator, rho.denominator))
        return (g, Regime.ALIVE) if g > 0 else (sp.Integer(0), Regime.COLLAPSED)
    thr = collapse_threshold(depth)
    if rho > thr:
        return sp.Integer(0), Regime.COLLAPSED
    return alive_root(depth, rho), (Regime.TIE if rho == thr else Regime.ALIVE)


def alive_root(depth: int, rho: Fraction, bits: int = 160) -> sp.Expr:
    """The root of `gamma^{M-1} (1-gamma)^{M+1} = rho` in `((M-1)/(2M), 1)`, for
    `0 < rho <= thr_M` (`M >= 2`): exact when rational, else 50 digits from an interval of width
    `2^-bits` around it.

    On that interval the left side decreases strictly from its maximum to 0, so the root is
    unique and bisection on the exact sign finds it.  With `gamma = a / D` the sign is that of the
    integer `a^{M-1} (D - a)^{M+1} q - p D^{2M}` (`rho = p/q`, `D = 2M 2^j`).  This is the claim's own
    root: the separable certificate isolates the roots of the same polynomial independently
    (`ncverify.model.scalar`), and a verdict may rest on the certificate alone only because the two
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


def lambda_boundaries(
    problem: Problem, effective: float, classes: Sequence[int], change: str
) -> tuple[Boundary, ...]:
    """A boundary at `P^{1/(M+1)} = effective`, along each lambda axis of a sweep.

    Tied (`lambda_W = lambda_H = lambda` for every layer) it is at `lambda = effective`; along
    `lambda_H` alone at `effective^{M+1} / prod_m lambda_{W_m}`; along `lambda_W` (every layer
    set to one value `x`, so `P = lambda_H x^M`) at `(effective^{M+1} / lambda_H)^{1/M}`.
    """
    m, target = problem.depth, effective ** (problem.depth + 1)
    lam_w = math.prod(float(x) for x in problem.lambda_w)
    lam_h = float(problem.lambda_h)
    ks = tuple(classes)
    return (
        Boundary("lambda", effective, ks, change),
        Boundary("lambda_h", target / lam_w, ks, change),
        Boundary("lambda_w", (target / lam_h) ** (1 / m), ks, change),
    )


def log_distance(rho: Fraction, thr: Fraction, depth: int) -> float:
    """`|log(rho / thr)| / (M+1)`: the distance to the threshold in units of log lambda (tied)."""
    with mpmath.workdps(30):
        ratio = (mpmath.mpf(rho.numerator) / rho.denominator) / (
            mpmath.mpf(thr.numerator) / thr.denominator
        )
        return abs(float(mpmath.log(ratio))) / (depth + 1)


def rho_quantities(rho: Fraction, thr: Fraction, mode: str = "") -> tuple[Quantity, ...]:
    """`rho` and the threshold `thr_M` it is compared with, as report quantities."""
    suffix = f"_{mode}" if mode else ""
    return (
        Quantity(
            f"rho{suffix}",
            float(rho),
            str(rho),
            f"rho = N^(M+1) P / n^M of the {mode or 'class'} mode (the scalar problem's parameter)",
        ),
        Quantity(
            "threshold",
            float(thr),
            str(thr),
            "thr_M = (M-1)^(M-1) / M^(2M): a mode is alive iff rho < thr_M",
        ),
    )


def frame_prediction(
    problem: Problem,
    *,
    gain: tuple[sp.Expr, Regime],
    modes: int,
    share: sp.Expr,
    bias: Sequence[float] | None,
    geometry: str,
) -> Prediction:
    """The prediction of a balanced frame: `modes` equal modes of target `sqrt(n)` each, of which
    at most `R` are alive with mode gain `gamma` (the non-zero singular value of `W Hbar`) and
    class gain `gamma * share` (`(W Hbar)_kk`)."""
    n = problem.counts[0]
    g, regime = gain
    alive = min(modes, problem.bottleneck) if g != 0 else 0
    with mpmath.workdps(50):  # the optimum in high precision, not at mpmath's default 15 digits
        value = mode_value(problem, n, g) * alive + mpmath.mpf(n) / (2 * problem.N) * (
            modes - alive
        )
    lw, lh = lengths(problem, n, float(sp.N(g, 30)))
    lw, lh = lw * float(share) ** 0.5, lh * float(share) ** 0.5
    crit = critical_lambda(problem, n)
    classes = []
    for k in range(problem.K):
        cut = k >= problem.bottleneck and g != 0 and modes == problem.K
        classes.append(
            ClassPrediction(
                n,
                Regime.BOTTLENECK if cut else regime,
                sp.Integer(0) if cut else g * share,
                0.0 if cut else lw,
                0.0 if cut else lh,
                crit,
            )
        )
    notes = []
    if g != 0 and problem.bottleneck < modes:
        notes.append(
            f"bottleneck R = {problem.bottleneck} < {modes} modes: the minimiser is a "
            "rank-R projection and is not unique"
        )
    if regime == Regime.TIE:
        notes.append("rho equals the collapse threshold: zero and the positive root tie")
    rho, thr = rho_of(problem, n), collapse_threshold(problem.depth)
    return Prediction(
        objective=value,
        classes=tuple(classes),
        bias=None if bias is None else tuple(float(x) for x in bias),
        unique=regime != Regime.TIE and (g == 0 or problem.bottleneck >= modes),
        geometry="zero" if g == 0 else geometry,
        zero=g == 0,
        notes=tuple(notes),
        phase=Phase(
            boundaries=lambda_boundaries(
                problem, crit, range(problem.K), "every class collapses beyond it"
            ),
            distance=log_distance(rho, thr, problem.depth),
            quantities=rho_quantities(rho, thr),
        ),
        objective_form=f"{alive} phi(gamma) + {modes - alive} n/(2N), gamma = {sp.N(g, 20)}",
    )


def frame_minimiser(
    problem: Problem,
    backend: Backend,
    *,
    gain: tuple[sp.Expr, Regime],
    modes: int,
    frame: Callable[[Problem, int], tuple[np.ndarray, np.ndarray]],
    bias: np.ndarray | None,
) -> Params:
    """Balanced layers of `W Hbar D = sqrt(n) gamma U V^T`, `(U, V) = frame(problem, r)` for the
    `r` modes the bottleneck lets live."""
    gf = float(sp.N(gain[0], 30))
    r = min(modes, problem.bottleneck) if gf > 0 else 0
    left, right = frame(problem, r)
    s = np.full(r, np.sqrt(problem.counts[0]) * gf)
    return to_backend(balanced_layers(problem, left, s, right, bias), backend)


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
