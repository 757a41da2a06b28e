r"""Normalised features: cross-entropy with every classifier row and every feature on a sphere.

The problem (`Loss.NORMALISED_CE`, one layer, no bias):

$$\min_{W, H}\ \frac1N \sum_{i} \mathrm{CE}(W h_i, y_i)
  \quad\text{s.t.}\quad \|w_k\| = r_W,\ \|h_i\| = r_H,$$

with $w_k$ the rows of $W$ ($K \times d$) and $h_i$ the columns of $H$ ($d \times N$).  The
radii fix the scale of the logits, $|w_k^\top h_i| \le r_W r_H$, so their product plays the part
of an inverse temperature, and no weight decay enters (the norms are fixed).  A point is given by
any $W, H$ with non-zero rows and columns: its value is that of its projection onto the spheres
(each row and column rescaled to its radius), which makes the problem unconstrained and smooth
away from zero (`value_and_grad`), and is how a float point, never exactly on a sphere, is
evaluated exactly (`enclose`: every value this kind reports is such an enclosure).

The features of one class meet the same loss, so an optimal point may give them one common
feature: the runs optimise one column per class, weighted by its count (`class_weights`), and a
point of that reduction lifts to the full problem by repeating each column.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np

from ncverify.model.exact import class_constant, first_columns
from ncverify.model.intervals import interval_precision
from ncverify.model.objective import Params
from ncverify.model.problem import Problem

#: bits of the interval arithmetic of `enclose`
PREC = 200
#: a row or column below this norm has no direction: the point is not a point of the problem
TINY = 1e-150
#: largest number of exact products (columns x entries of W) that `enclose` computes
MAX_EXACT_TERMS = 2_000_000


def radii(problem: Problem) -> tuple[float, float]:
    if problem.radius_w is None or problem.radius_h is None:
        raise ValueError("a normalised problem needs both radii.")
    return float(problem.radius_w), float(problem.radius_h)


def class_weights(problem: Problem) -> np.ndarray:
    """`n_k / N`: the weight of class `k`'s common feature in the reduced problem."""
    counts = np.asarray(problem.counts, dtype=np.float64)
    return counts / counts.sum()


def _unit(a: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    norms = np.linalg.norm(a, axis=axis, keepdims=True)
    return a / np.maximum(norms, TINY), norms


def value_and_grad(
    problem: Problem, w: np.ndarray, h: np.ndarray, weights: np.ndarray
) -> tuple[float, np.ndarray, np.ndarray]:
    """The value at the projection of `(W, H)` onto the spheres, and its gradient in `W` and `H`
    (the projections' chain rule: the Euclidean gradient on the sphere, made tangent and divided
    by the norm).  `weights[i]` weighs column `i` of `H`, whose label is `labels[i]`:
    `class_weights` for one column per class, `1/N` for every sample's."""
    value, gw, gh, _ = value_grad_scale(problem, w, h, weights)
    return value, gw, gh


def value_grad_scale(
    problem: Problem, w: np.ndarray, h: np.ndarray, weights: np.ndarray
) -> tuple[float, np.ndarray, np.ndarray, float]:
    """`value_and_grad`, and the norm of the gradient before it is made tangent (at a
    stationary point on the spheres the tangent part vanishes, the normal part need not: its
    size is the scale a stationarity test compares with)."""
    r_w, r_h = radii(problem)
    uw, nw = _unit(w, 1)
    uh, nh = _unit(h, 0)
    labels = _labels(problem, h.shape[1])
    z = (r_w * r_h) * (uw @ uh)
    z = z - z.max(axis=0, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=0, keepdims=True)
    cols = np.arange(h.shape[1])
    value = float(np.sum(weights * -np.log(np.maximum(p[labels, cols], 1e-300))))
    g = p.copy()
    g[labels, cols] -= 1.0
    g *= weights[None, :] * (r_w * r_h)  # d value / d (unit logits)
    gw_unit, gh_unit = g @ uh.T, uw.T @ g
    gw = (gw_unit - np.sum(gw_unit * uw, axis=1, keepdims=True) * uw) / np.maximum(nw, TINY)
    gh = (gh_unit - np.sum(gh_unit * uh, axis=0, keepdims=True) * uh) / np.maximum(nh, TINY)
    scale = float(np.linalg.norm(gw_unit) + np.linalg.norm(gh_unit))
    return value, gw, gh, scale


def _labels(problem: Problem, columns: int) -> np.ndarray:
    """The class of each column: one column per class, or every sample (classes in order)."""
    if columns == problem.K:
        return np.arange(problem.K)
    return np.repeat(np.arange(problem.K), problem.counts)


def enclose(problem: Problem, point: Params) -> Any | None:
    """A rigorous interval containing the value at the projection of the point onto the
    spheres (every entry read exactly; the norms, `exp` and `log` in `PREC`-bit interval
    arithmetic), or None where an entry is not finite or a row or column is zero."""
    w = np.asarray(point.Ws[0], dtype=np.float64)
    h = np.asarray(point.H, dtype=np.float64)
    if not (np.all(np.isfinite(w)) and np.all(np.isfinite(h))):
        return None
    if h.shape[1] == problem.N and class_constant(problem, h):  # one column per class suffices
        h = h[:, first_columns(problem)]
    if h.shape[1] * w.size > MAX_EXACT_TERMS:
        return None
    labels = _labels(problem, h.shape[1])
    weight = [Fraction(1, h.shape[1])] * h.shape[1]
    if h.shape[1] == problem.K:
        weight = [Fraction(n, problem.N) for n in problem.counts]
    with interval_precision(PREC) as iv:
        rw, rh = (iv.mpf(r.numerator) / r.denominator for r in (problem.radius_w, problem.radius_h))
        rows = [_exact(w[k]) for k in range(w.shape[0])]
        cols = [_exact(h[:, i]) for i in range(h.shape[1])]
        if any(_sq(v) == 0 for v in rows + cols):
            return None
        nrow = [iv.sqrt(_iv(_sq(v))) for v in rows]
        ncol = [iv.sqrt(_iv(_sq(v))) for v in cols]
        total = iv.mpf(0)
        for i, col in enumerate(cols):
            z = [rw * rh * _iv(_dot(rows[k], col)) / (nrow[k] * ncol[i]) for k in range(len(rows))]
            lse = iv.log(sum((iv.exp(zk - z[labels[i]]) for zk in z), iv.mpf(0)))
            total += _iv(weight[i]) * lse
        return total


def _exact(v: np.ndarray) -> list[Fraction]:
    return [Fraction(float(x)) for x in v]


def _sq(v: list[Fraction]) -> Fraction:
    return sum((x * x for x in v), Fraction(0))


def _dot(a: list[Fraction], b: list[Fraction]) -> Fraction:
    return sum((x * y for x, y in zip(a, b, strict=True)), Fraction(0))


def _iv(x: Fraction) -> Any:
    import mpmath

    return mpmath.iv.mpf(x.numerator) / mpmath.iv.mpf(x.denominator)
