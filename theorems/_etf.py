"""The simplex-ETF claims of balanced classes with a loss of the logits (`ce-balanced`,
`ls-balanced`): what they share once the loss's scalar problem is solved -- the prediction, its
phase, the lengths of the balanced factorisation and the predicted point.  Each claim supplies
its scalar problem (`margin`), where zero starts to win (`critical`) and its words
(`_objective_form`, `_limit_notes`)."""

from __future__ import annotations

import math
from abc import abstractmethod
from dataclasses import dataclass
from fractions import Fraction
from typing import Any, Protocol

import mpmath
import numpy as np
import sympy as sp

from ncverify.backend import Backend
from ncverify.claim import (
    Claim,
    ClassPrediction,
    Phase,
    Prediction,
    Quantity,
    Regime,
    Step,
    to_backend,
)
from ncverify.model.factorisations import balanced_layers, simplex_directions
from ncverify.model.intervals import ends
from ncverify.model.objective import Params
from ncverify.model.problem import Problem
from theorems import _balanced as bal

#: bits of the interval arithmetic that encloses the scalar minimum
PREC = 200


@dataclass(frozen=True)
class MarginMinimum:
    """The global minimum of `f(alpha) = log(1 + (K-1) e^{-alpha}) + (K-1)((M+1)/2) c alpha^q`.

    Attributes:
        value: `(lo, hi)`, a rigorous enclosure of `min_{alpha >= 0} f`.
        alpha: `(lo, hi)`, an enclosure of the minimising margin (`(0, 0)` when zero wins).
        regime: `"alive"` (the positive stationary point wins), `"collapsed"` (zero wins) or
            `"tie"` (the enclosures cannot separate them; both are reported).
        positive: enclosure of `f` at the positive local minimiser, or None if there is none.
        stationary: number of positive stationary points (0, 1 or 2; `g` is concave).
    """

    value: tuple[mpmath.mpf, mpmath.mpf]
    alpha: tuple[mpmath.mpf, mpmath.mpf]
    regime: Regime
    positive: tuple[mpmath.mpf, mpmath.mpf] | None
    stationary: int

    @property
    def mid(self) -> mpmath.mpf:
        with mpmath.workprec(PREC):
            return (self.value[0] + self.value[1]) / 2

    @property
    def alpha_mid(self) -> mpmath.mpf:
        with mpmath.workprec(PREC):
            return (self.alpha[0] + self.alpha[1]) / 2


#: the scalar branch and bound stops refining once a box's lower bound is this close (relative) to the
#: best value found, or the box is this narrow (relative to its position)
TARGET_GAP = mpmath.mpf(2) ** -140
NARROWEST = mpmath.mpf(2) ** -150


# ---- the identities every balanced ETF claim's derivation shares ------------------------------
_m, _n, _P, _s = sp.symbols("m n P s", positive=True)


def etf_spectrum_identity() -> sp.Expr:
    """`m C` has `K - 1` singular values `m` and one zero, K = 2..8."""
    total = sp.Integer(0)
    for k in range(2, 9):
        cmat = sp.eye(k) - sp.ones(k, k) / k
        eig = (_m * cmat).eigenvals()
        total += (eig.get(_m, 0) - (k - 1)) ** 2 + (eig.get(sp.Integer(0), 0) - 1) ** 2
    return total


def scale_identity() -> sp.Expr:
    """`P^{1/(M+1)} (sqrt(n) s)^q = (n P)^{1/(M+1)} s^q`, M = 1..6 (A = sqrt(n) Z)."""
    total = sp.Integer(0)
    for m in range(1, 7):
        q = sp.Rational(2, m + 1)
        lhs = _P ** sp.Rational(1, m + 1) * (sp.sqrt(_n) * _s) ** q
        rhs = (_n * _P) ** sp.Rational(1, m + 1) * _s**q
        total += sp.simplify(sp.expand_power_base(lhs - rhs, force=True))
    return sp.simplify(total)


def factorisation_step() -> Step:
    """Lemma 2 in the class-level logits, the step every balanced ETF claim takes."""
    return Step(
        "Lemma 2 bounds the regulariser of any factorisation of A = W_M ... W_1 Hbar D by "
        "((M+1)/2) c sum_i sigma_i(Z)^q with Z = A / sqrt(n), c = (nP)^{1/(M+1)}.",
        r"P^{1/(M+1)}(\sqrt n\, s)^q = (nP)^{1/(M+1)} s^q",
        "sympy",
        "theorems/_etf.py::scale_identity",
        scale_identity,
    )


def spectrum_step(scalar_problem: str) -> Step:
    """The ETF logits' spectrum, which turns the claim's loss at `m C` into its scalar problem
    (`scalar_problem`, in LaTeX)."""
    return Step(
        "... and m C has K - 1 singular values m, so the ETF value is the scalar problem f(m).",
        scalar_problem,
        "sympy",
        "theorems/_etf.py::etf_spectrum_identity",
        etf_spectrum_identity,
    )


# ---- the scalar problem's rigorous minimum ---------------------------------------------------
class ScalarProblem(Protocol):
    """A claim's ETF scalar problem `f(m)`, `m >= 0`, in interval arithmetic: `f`, `f'` on an
    interval, and a margin beyond which `f > f(0)`."""

    def f(self, m: Any) -> Any: ...

    def df(self, m: Any) -> Any: ...

    def beyond(self) -> mpmath.mpf: ...


def scalar_minimum(sc: ScalarProblem) -> MarginMinimum:
    """The rigorous global minimum of `sc.f` over `m >= 0` (call inside interval precision), by
    interval branch and bound on `[0, beyond]`: a box on which `f'` is positive (negative) has
    its minimum at its left (right) end; any other is bounded below by the mean-value form
    `f(mid) + f'(box)(box - mid)`, split until its bound is within `TARGET_GAP` of the best value
    found, and dropped once its bound exceeds it.  Zero wins, a positive margin wins, or the
    enclosures cannot separate them (a tie)."""
    final, positive_upper = _branch_and_bound(sc)
    return _regime(sc, final, positive_upper)


Box = tuple[mpmath.mpf, mpmath.mpf, mpmath.mpf]  # (lower bound, left end, right end)


def _branch_and_bound(sc: ScalarProblem) -> tuple[list[Box], mpmath.mpf]:
    """The boxes that may hold the minimum (each with its lower bound), and the least value
    proven at a positive margin (`inf` where no box midpoint was evaluated)."""
    iv = mpmath.iv
    upper, positive = ends(sc.f(iv.mpf(0)))[1], mpmath.inf
    stack, final = [(mpmath.mpf(0), sc.beyond())], []
    while stack:
        a, b = stack.pop()
        box = iv.mpf([a, b])
        d = sc.df(box)
        rising, falling = ends(d)[0] > 0, ends(d)[1] < 0
        if rising or falling:
            lower = ends(sc.f(iv.mpf(a if rising else b)))[0]
        else:
            mid = (a + b) / 2
            at_mid = sc.f(iv.mpf(mid))
            positive = min(positive, ends(at_mid)[1])
            upper = min(upper, positive)
            lower = ends(at_mid + d * (box - mid))[0]
        if lower > upper:
            continue
        settled = upper - lower <= TARGET_GAP * abs(upper) or b - a <= NARROWEST * (1 + b)
        if rising or falling or settled:
            final.append((lower, a, b))
        else:
            stack += [(a, (a + b) / 2), ((a + b) / 2, b)]
    return [x for x in final if x[0] <= upper], positive


def _regime(sc: ScalarProblem, final: list[Box], positive_upper: mpmath.mpf) -> MarginMinimum:
    """Zero against the best positive margin, from the boxes that survived."""
    iv = mpmath.iv
    f0 = ends(sc.f(iv.mpf(0)))
    zero = (mpmath.mpf(0), mpmath.mpf(0))
    # a box rising from 0 has its minimum at 0 itself: the others hold the positive candidates
    candidates = sorted(
        (x for x in final if x[1] > 0 or ends(sc.df(iv.mpf([x[1], x[2]])))[0] <= 0),
        key=lambda x: x[1],
    )
    if not candidates or min(x[0] for x in candidates) > f0[1]:
        return MarginMinimum(f0, zero, Regime.COLLAPSED, None, 0)
    low = min(x[0] for x in candidates)
    hull = (candidates[0][1], max(x[2] for x in candidates))
    clusters = 1 + sum(1 for x, y in zip(candidates, candidates[1:], strict=False) if y[1] > x[2])
    value = (low, positive_upper)
    if positive_upper < f0[0]:
        return MarginMinimum(value, hull, Regime.ALIVE, value, clusters)
    return MarginMinimum((min(low, f0[0]), f0[1]), hull, Regime.TIE, value, clusters)


def critical_c_on_grid(
    k: int, depth: int, grid: np.ndarray, loss: np.ndarray, at_zero: float
) -> float:
    """The `c` beyond which zero wins for the ETF loss `loss` (floats, at the positive margins
    `grid`; `at_zero` its value at 0): where `min_m loss(m) + c (K-1)(M+1)/2 m^q` first reaches
    `at_zero`, found by bisection in `log c` (informational; no verdict uses it)."""
    power = (k - 1) * (depth + 1) / 2 * grid ** (2 / (depth + 1))

    def zero_wins(c: float) -> bool:
        return bool(np.min(loss + c * power) >= at_zero)

    lo, hi = 1e-12, 1.0
    while not zero_wins(hi):
        hi *= 2
    for _ in range(80):
        mid = math.sqrt(lo * hi)
        lo, hi = (lo, mid) if zero_wins(mid) else (mid, hi)
    return math.sqrt(lo * hi)


class BalancedETF(Claim):
    """A claim whose minimisers are the simplex ETF `W Hbar = m C` at every layer, with the
    margin `m` from the claim's scalar problem."""

    @abstractmethod
    def margin(self, problem: Problem) -> MarginMinimum:
        """The rigorous minimum of the claim's scalar problem at this instance."""

    @abstractmethod
    def critical(self, problem: Problem) -> float:
        """The `c = (nP)^{1/(M+1)}` beyond which zero wins (informational, in floats)."""

    @abstractmethod
    def _objective_form(self, problem: Problem, alpha: mpmath.mpf) -> str:
        """The claimed optimum in words, with the margin."""

    @abstractmethod
    def _limit_notes(self, problem: Problem) -> list[str]:
        """What the limit of vanishing lambdas says about this instance."""

    def closed_form(self, problem: Problem) -> Prediction:
        k, m, n = problem.K, problem.depth, problem.counts[0]
        mm = self.margin(problem)
        alpha = mm.alpha_mid if mm.regime != Regime.COLLAPSED else mpmath.mpf(0)
        with mpmath.workdps(40):
            gain_digits = mpmath.nstr(alpha * (k - 1) / k, 35)
        gain = sp.Float(gain_digits, 35) if alpha != 0 else sp.Integer(0)
        lw, lh = self._lengths(problem, float(alpha))
        c_star = self.critical(problem)
        lam_star = c_star / n ** (1.0 / (m + 1))
        classes = tuple(
            ClassPrediction(n, mm.regime, gain, lw, lh, lam_star) for _ in range(problem.K)
        )
        notes = [
            "the claimed optimum is a rigorous enclosure (interval arithmetic, "
            f"{PREC} bits) of the ETF scalar problem, zero included",
        ]
        if mm.regime == Regime.TIE:
            notes.append(
                "zero and the positive margin cannot be separated: the minimiser is not unique"
            )
        if problem.bias == "free":
            notes.append("the free bias is determined only up to t 1; reported with 1^T b = 0")
        notes += self._limit_notes(problem)
        return Prediction(
            objective=mm.mid,
            classes=classes,
            bias=None if problem.bias == "none" else tuple(0.0 for _ in range(k)),
            unique=mm.regime != Regime.TIE,
            geometry="zero" if mm.regime == Regime.COLLAPSED else "simplex ETF",
            notes=tuple(notes),
            zero=mm.regime == Regime.COLLAPSED,
            phase=self._phase(problem, mm, alpha, lam_star),
            objective_form=self._objective_form(problem, alpha),
            objective_enclosure=mm.value,
        )

    def _phase(
        self, problem: Problem, mm: MarginMinimum, alpha: mpmath.mpf, lam_star: float
    ) -> Phase:
        """Zero wins beyond `c*` (located in floats, informational); the margin's enclosures."""
        m, n = problem.depth, problem.counts[0]
        c = float(Fraction(n) * problem.lambda_product) ** (1.0 / (m + 1))
        c_star = self.critical(problem)
        with mpmath.workprec(PREC):
            width = mm.value[1] - mm.value[0]
        return Phase(
            boundaries=bal.lambda_boundaries(
                problem, lam_star, range(problem.K), "every class collapses beyond it"
            ),
            distance=abs(math.log(c / c_star)),
            quantities=(
                Quantity("margin", float(alpha), None, "the logit margin alpha of the ETF"),
                Quantity(
                    "margin_enclosure",
                    [float(mm.alpha[0]), float(mm.alpha[1])],
                    None,
                    "an interval containing the margin",
                ),
                Quantity(
                    "objective_enclosure",
                    [float(mm.value[0]), float(mm.value[1])],
                    f"[{mpmath.nstr(mm.value[0], 40)}, {mpmath.nstr(mm.value[1], 40)}]",
                    "an interval containing the claimed optimum (interval arithmetic)",
                ),
                Quantity("enclosure_width", float(width), None, "its width"),
                Quantity(
                    "positive_stationary_points",
                    mm.stationary,
                    None,
                    "positive stationary points of the margin problem",
                ),
                Quantity("c", c, None, "c = (n P)^(1/(M+1))"),
                Quantity(
                    "critical_c", c_star, None, "the c beyond which zero wins (located in floats)"
                ),
            ),
        )

    def _lengths(self, problem: Problem, alpha: float) -> tuple[float, float]:
        """`(||w_k||, ||hbar_k||)` of the balanced factorisation of `A = sqrt(n) alpha C`."""
        k, m, n = problem.K, problem.depth, problem.counts[0]
        t = float(problem.lambda_product) ** (1 / (m + 1)) * (math.sqrt(n) * alpha) ** (2 / (m + 1))
        w = 1.0
        for lam in problem.lambda_w:
            w *= math.sqrt(t / float(lam))
        row = math.sqrt((k - 1) / k)  # the norm of a row of an orthonormal basis of 1^perp
        return w * row, math.sqrt(t / float(problem.lambda_h)) * row / math.sqrt(n)

    def minimiser(self, problem: Problem, backend: Backend) -> Params:
        k, n = problem.K, problem.counts[0]
        mm = self.margin(problem)
        alpha = 0.0 if mm.regime == Regime.COLLAPSED else float(mm.alpha_mid)
        r = k - 1 if alpha > 0 else 0
        frame = simplex_directions(k)[:, :r]
        bias = None if problem.bias == "none" else np.zeros(k)
        point = balanced_layers(problem, frame, np.full(r, math.sqrt(n) * alpha), frame, bias)
        return to_backend(point, backend)
