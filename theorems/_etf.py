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
    to_backend,
)
from ncverify.model.factorisations import balanced_layers, simplex_directions
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
