"""Deliberately wrong variants of `mse-imbalanced-biasfree`, for the verifier-power tests.

Each variant is the true claim with one method overridden, the way a plausible mistake looks:

- `LargestRootRule`: the published reference code's rule — the largest root of
  `gamma^{M-1}(1-gamma)^{M+1} = rho_k` in `(0, 1)`, never compared with the zero solution (zero only
  when no root exists, where the published code crashes instead).  Wrong in the gap
  `thr_M < rho_k < max_g g^{M-1}(1-g)^{M+1}`, where the root exists but zero is better.
- `ThresholdTenPercentHigh`: the collapse threshold `1.1 thr_M` instead of `thr_M`; wrong for
  `thr_M < rho_k < 1.1 thr_M`.
- `LengthsProportionalToCounts`: `||w_k||` and `||hbar_k||` proportional to `n_k` (fixed at the
  largest class, where they agree with the closed form) instead of `sqrt(t_k / ...)`; the frame
  stays aligned, so the gains follow as `gamma_k = ||w_k|| ||hbar_k||` and the claimed optimum is
  the value of that point.  Wrong wherever two live classes have different counts.

`instance(...)` builds problems with one class's `rho_k = N^{M+1} P / n_k^M` exactly equal to a
given rational, so that an instance can be placed exactly between a true and a wrong threshold.
"""

from __future__ import annotations

from fractions import Fraction

import mpmath
import numpy as np
import sympy as sp

from ncverify.backend import Backend
from ncverify.claim import ClassPrediction, Prediction, to_backend
from ncverify.model.factorisations import balanced_layers
from ncverify.model.objective import Params
from ncverify.model.problem import Problem
from ncverify.model.scalar import collapse_threshold, largest_root_in
from theorems import _balanced as bal
from theorems.mse_imbalanced_biasfree import MSEImbalancedBiasFree


def instance(
    counts: tuple[int, ...],
    depth: int,
    width: int,
    rho: Fraction,
    *,
    cls: int = -1,
    lambda_w: Fraction = Fraction(1, 10),
) -> Problem:
    """A bias-free MSE problem whose class `cls` has `rho_k = N^{M+1} P / n_k^M = rho` exactly.

    Every `lambda_{W_m}` is `lambda_w`; `lambda_H` absorbs the rest of `P`, exactly.
    """
    total = sum(counts)
    count = counts[cls]
    p = Fraction(rho) * Fraction(count) ** depth / Fraction(total) ** (depth + 1)
    problem = Problem(
        counts=tuple(counts),
        depth=depth,
        widths=(width,) * depth,
        lambda_w=(lambda_w,) * depth,
        lambda_h=p / lambda_w**depth,
    )
    assert bal.rho_of(problem, count) == rho  # the construction is exact
    return problem


class LargestRootRule(MSEImbalancedBiasFree):
    """The published rule: the largest stationary root, without comparing it with zero."""

    id = "imbalanced-largest-root"

    def gain(self, problem: Problem, count: int) -> tuple[sp.Expr, str]:
        root = largest_root_in(problem.depth, self.rho(problem, count), Fraction(0), Fraction(1))
        return (sp.Integer(0), "collapsed") if root is None else (root, "alive")


class ThresholdTenPercentHigh(MSEImbalancedBiasFree):
    """The collapse threshold `1.1 thr_M`: classes just past the true threshold stay alive."""

    id = "imbalanced-threshold-10pc-high"

    def threshold(self, depth: int) -> Fraction:
        return collapse_threshold(depth) * Fraction(11, 10)

    def gain(self, problem: Problem, count: int) -> tuple[sp.Expr, str]:
        m = problem.depth
        rho = self.rho(problem, count)
        if m == 1:
            return bal.threshold_gain(1, rho)
        if rho >= self.threshold(m):
            return sp.Integer(0), "collapsed"
        root = largest_root_in(m, rho, Fraction(m - 1, 2 * m), Fraction(1))
        return (sp.Integer(0), "collapsed") if root is None else (root, "alive")


class LengthsProportionalToCounts(MSEImbalancedBiasFree):
    """`||w_k||, ||hbar_k|| ∝ n_k`, matched to the closed form at the largest live class."""

    id = "imbalanced-lengths-prop-counts"

    def _design(self, problem: Problem) -> list[tuple[sp.Expr, float, float]]:
        """Per class `(gain, ||w_k||, ||hbar_k||)` of the variant."""
        true = super().gains(problem)
        live = [k for k, (g, _) in enumerate(true) if g != 0]
        if not live:
            return [(sp.Integer(0), 0.0, 0.0)] * problem.K
        ref = max(live, key=lambda k: problem.counts[k])
        n_ref = problem.counts[ref]
        lw, lh = bal.lengths(problem, n_ref, float(sp.N(true[ref][0], 30)))
        out = []
        for k, count in enumerate(problem.counts):
            if k not in live:
                out.append((sp.Integer(0), 0.0, 0.0))
                continue
            ratio = Fraction(count, n_ref)
            g = true[ref][0] * sp.Rational(ratio.numerator, ratio.denominator) ** 2
            out.append((g, lw * float(ratio), lh * float(ratio)))
        return out

    def closed_form(self, problem: Problem) -> Prediction:
        base = super().closed_form(problem)
        design = self._design(problem)
        classes = tuple(
            ClassPrediction(c.count, c.regime, g, lw, lh, c.critical_lambda)
            for c, (g, lw, lh) in zip(base.classes, design, strict=True)
        )
        return Prediction(
            objective=self._value(problem, design),
            classes=classes,
            bias=None,
            unique=base.unique,
            geometry=base.geometry,
            notes=base.notes,
            zero=base.zero,
            phase=base.phase,
            objective_form="value of the lengths-proportional-to-counts point",
        )

    def _value(self, problem: Problem, design: list[tuple[sp.Expr, float, float]]) -> mpmath.mpf:
        """`F` at the variant's point, in closed form: balanced layers for `s_k = sqrt(n_k) g_k`
        (regulariser `(M+1) t_k / 2` per class), then `hbar_k` scaled by `a_k` and `w_k` by
        `1/a_k`, which turns the last layer's and `H`'s shares `t_k/2` into `t_k/(2 a_k^2)` and
        `a_k^2 t_k / 2`."""
        m = problem.depth
        total = mpmath.mpf(0)
        with mpmath.workdps(50):
            p_root = mpmath.root(bal.mp(problem.lambda_product), m + 1)
            for count, (g, _, lh) in zip(problem.counts, design, strict=True):
                if g == 0:
                    total += mpmath.mpf(count) / (2 * problem.N)
                    continue
                gv = bal.mp(g)
                t = p_root * (mpmath.sqrt(count) * gv) ** (mpmath.mpf(2) / (m + 1))
                a = mpmath.mpf(lh) / (
                    mpmath.sqrt(t / bal.mp(problem.lambda_h)) / mpmath.sqrt(count)
                )
                total += mpmath.mpf(count) * (gv - 1) ** 2 / (2 * problem.N)
                total += t * ((m - 1) + 1 / a**2 + a**2) / 2
        return total

    def minimiser(self, problem: Problem, backend: Backend) -> Params:
        design = self._design(problem)
        alive = [k for k, (g, _, _) in enumerate(design) if g != 0]
        frame = np.eye(problem.K)[:, alive]
        s = np.array([np.sqrt(problem.counts[k]) * float(sp.N(design[k][0], 30)) for k in alive])
        point = balanced_layers(problem, frame, s, frame)
        ws, h = [np.array(w) for w in point.Ws], np.array(point.H)
        labels = np.asarray(problem.labels())
        for k in alive:
            lh_now = float(np.linalg.norm(h[:, labels == k].mean(axis=1)))
            a = design[k][2] / lh_now
            h[:, labels == k] *= a
            ws[-1][k, :] /= a
        return to_backend(Params(tuple(ws), h, None), backend)


VARIANTS = (LargestRootRule(), ThresholdTenPercentHigh(), LengthsProportionalToCounts())
