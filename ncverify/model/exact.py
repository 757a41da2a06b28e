"""Exact and interval evaluation of a point, and the certificate that it beats a claim.

A point's arrays are floats, i.e. exact dyadic rationals.  When its features are
*class-constant* (every column of `H` in a class is bit-for-bit the same — checked, never
assumed), the sum over samples is `n_k` times a per-class term, and the objective is evaluated
with no rounding anywhere except in `log`/`exp`: the class-level logits `W_M ... W_1 hbar_k (+ b)`,
the MSE loss and the regulariser in exact integer/rational arithmetic, the cross-entropy in mpmath
interval arithmetic (`PREC` bits, outward rounding).  The result is a rigorous enclosure of `F` at
that point; `ncverify.evidence.point_certificate.certify_point` compares it with the claim's
rigorous enclosure of its optimum, and a counterexample is certified only when the enclosures
are disjoint, i.e. the gap exceeds the sum of their radii.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import mpmath
import numpy as np

from ncverify.model.intervals import interval_precision
from ncverify.model.objective import Params
from ncverify.model.problem import Problem

#: bits of the interval arithmetic of the high-precision certificate
PREC = 200


# ---- high-precision evaluation ---------------------------------------------------------------------
def dyadic(a: np.ndarray) -> tuple[np.ndarray, int] | None:
    """`a = M 2^E` exactly, `M` a Python-int array (dtype object); None if `a` is not finite."""
    a = np.asarray(a, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        return None
    frac, expo = np.frexp(a)
    man = (frac * 2.0**53).astype(np.int64)  # exact: frexp's fraction has 53 bits
    expo = expo.astype(np.int64) - 53
    out = np.zeros(a.shape, dtype=object)
    nz = man != 0
    if not nz.any():
        return out, 0
    base = int(expo[nz].min())
    for idx in zip(*np.nonzero(nz), strict=True):
        out[idx] = int(man[idx]) << int(expo[idx] - base)
    return out, base


def class_constant(problem: Problem, h: np.ndarray) -> bool:
    """True when every column of `H` in a class equals the class's first column exactly."""
    start = 0
    for n in problem.counts:
        block = h[:, start : start + n]
        if not np.array_equal(block, np.repeat(block[:, :1], n, axis=1)):
            return False
        start += n
    return True


def first_columns(problem: Problem) -> list[int]:
    return [sum(problem.counts[:k]) for k in range(problem.K)]


def _iv_of(x: int | Fraction) -> Any:
    iv = mpmath.iv
    x = Fraction(x)
    return iv.mpf(x.numerator) / iv.mpf(x.denominator)


def _sumsq(m: np.ndarray) -> int:
    """Exact sum of squares of a Python-int array (its zero entries skipped)."""
    return int(sum(int(v) * int(v) for v in m.ravel() if v))


def _exact_matmul(w: np.ndarray, w_float: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Exact `w @ z` of Python-int arrays, computed on the non-zero rows and columns only
    (balanced lifts are mostly zero; `w_float` is the float array `w` came from)."""
    live = np.array([any(v for v in row) for row in z], dtype=bool)
    rows = np.flatnonzero((w_float[:, live] != 0).any(axis=1))
    out = np.zeros((w.shape[0], z.shape[1]), dtype=object)
    if rows.size and live.any():
        out[rows] = w[np.ix_(rows, np.flatnonzero(live))] @ z[live]
    return out


def enclose_objective(problem: Problem, point: Params) -> Any | None:
    """A rigorous interval (mpmath `iv`, `PREC` bits) containing `F(point)`, or None.

    None when the features are not class-constant or an entry is not finite.  `point` holds
    host (numpy) arrays.  For the max-margin problem `F` is the regulariser of the point with
    its features divided by their exact smallest margin (a feasible point; `+inf` when no
    margin is positive).
    """
    h = np.asarray(point.H, dtype=np.float64)
    if not class_constant(problem, h):
        return None
    return enclose_class_means(problem, Params(point.Ws, h[:, first_columns(problem)], point.b))


def enclose_class_means(problem: Problem, point: Params) -> Any | None:
    """`enclose_objective` of the point whose features are the class means `point.H` (`d x K`,
    class `k` standing for its `n_k` samples): never forms the `N` columns."""
    hbar = dyadic(np.asarray(point.H, dtype=np.float64))
    ws = [dyadic(w) for w in point.Ws]
    b = None if point.b is None else dyadic(point.b)
    if hbar is None or any(w is None for w in ws) or (point.b is not None and b is None):
        return None
    z, ez = _exact_logits(problem, point, hbar, ws, b)  # type: ignore[arg-type]
    scale = Fraction(2) ** ez
    with interval_precision(PREC) as iv:
        # max-margin: no loss; the features are divided by the exact smallest margin, which
        # makes a new point, feasible with margin exactly 1 (infeasible: no finite value)
        shrink = Fraction(1)
        if not problem.loss.penalised:
            margin = _smallest_margin(z)
            if margin <= 0:
                return iv.mpf([mpmath.inf, mpmath.inf])
            shrink = 1 / (margin * scale)
            loss = iv.mpf(0)
        elif problem.loss == "mse":
            loss = _iv_of(_squared_error(problem, z, scale))
        elif problem.loss == "focal":
            loss = _focal(problem, z, ez, iv)
        else:
            loss = _cross_entropy(problem, z, ez, iv)
        reg = _regulariser(problem, hbar, ws, b, shrink)  # type: ignore[arg-type]
        return loss + _iv_of(reg)


Dyadic = tuple[np.ndarray, int]


def _exact_logits(
    problem: Problem, point: Params, hbar: Dyadic, ws: list[Dyadic], b: Dyadic | None
) -> Dyadic:
    """The class-level logits `W_M ... W_1 hbar (+ b)` exactly, as (integers, exponent)."""
    z, ez = hbar
    last = len(ws) - 1
    for m, ((wm, ew), w_float) in enumerate(zip(ws, point.Ws, strict=True)):
        z, ez = _exact_matmul(wm, np.asarray(w_float, dtype=np.float64), z), ez + ew
        if problem.activation == "relu" and m < last:  # exact on integers: max(0, .)
            z = np.where(z > 0, z, 0 * z)
    if b is not None:
        bm, eb = b
        e = min(ez, eb)
        z = z * (1 << (ez - e)) + (bm * (1 << (eb - e)))[:, None]
        ez = e
    return z, ez


def _smallest_margin(z: np.ndarray) -> int:
    """`min_{c != j} z_cc - z_jc` of integer logits (the scale is a common power of two)."""
    k = z.shape[0]
    return min(int(z[c, c]) - int(z[j, c]) for c in range(k) for j in range(k) if j != c)


def _squared_error(problem: Problem, z: np.ndarray, scale: Fraction) -> Fraction:
    total = Fraction(0)
    for k, n in enumerate(problem.counts):
        col = [Fraction(int(v)) * scale for v in z[:, k]]
        col[k] -= 1
        total += n * sum(v * v for v in col)
    return total / (2 * problem.N)


def _cross_entropy(problem: Problem, z: np.ndarray, ez: int, iv: Any) -> Any:
    """The mean cross-entropy in interval arithmetic (only `exp` and `log` round, outward)."""
    two = iv.mpf(mpmath.ldexp(1, ez))  # exact power of two
    loss = iv.mpf(0)
    for k, n in enumerate(problem.counts):
        col = [int(v) for v in z[:, k]]
        top = max(col)
        terms = iv.mpf(0)
        for v in col:
            terms += iv.exp(iv.mpf(v - top) * two)
        # the targets' logit `q^T z` (the label's own, or the smoothed labels'), exactly
        target = sum((q * v for q, v in zip(_targets(problem, k), col, strict=True)), Fraction(0))
        ce = _iv_of(top - target) * two + iv.log(terms)
        loss += _iv_of(Fraction(n)) * ce
    return loss / iv.mpf(problem.N)


def _focal(problem: Problem, z: np.ndarray, ez: int, iv: Any) -> Any:
    """The mean focal loss `-(1 - p_y)^gamma log p_y` in interval arithmetic, with
    `1 - p_y` summed from the other classes' exponentials (no cancellation) and
    `q^gamma = exp(gamma log q)`."""
    two = iv.mpf(mpmath.ldexp(1, ez))
    gamma = _iv_of(problem.focusing)  # type: ignore[arg-type]
    loss = iv.mpf(0)
    for k, n in enumerate(problem.counts):
        col = [int(v) for v in z[:, k]]
        top = max(col)
        exps = [iv.exp(iv.mpf(v - top) * two) for v in col]
        others = sum((e for j, e in enumerate(exps) if j != k), iv.mpf(0))
        terms = others + exps[k]
        log_p = iv.mpf(col[k] - top) * two - iv.log(terms)
        q = others / terms
        weight = iv.exp(gamma * iv.log(q))  # q > 0: mpmath's exponents do not underflow
        loss += _iv_of(Fraction(n)) * (-weight * log_p)
    return loss / iv.mpf(problem.N)


def _targets(problem: Problem, k: int) -> list[Fraction]:
    """The exact targets of class `k`: `e_k`, or `(1 - alpha) e_k + (alpha / K) 1`."""
    alpha = problem.smoothing if problem.loss == "ls" else Fraction(0)
    return [(1 - alpha) * (j == k) + alpha / problem.K for j in range(problem.K)]


def _regulariser(
    problem: Problem, hbar: Dyadic, ws: list[Dyadic], b: Dyadic | None, shrink: Fraction
) -> Fraction:
    """The weight decay of the point, exactly (its features scaled by `shrink`)."""
    reg = Fraction(0)
    for lam, (wm, ew) in zip(problem.lambda_w, ws, strict=True):
        reg += lam / 2 * _sumsq(wm) * Fraction(2) ** (2 * ew)
    hm, eh = hbar
    features = sum(n * _sumsq(hm[:, k]) for k, n in enumerate(problem.counts))
    reg += problem.lambda_h / 2 * features * Fraction(2) ** (2 * eh) * shrink**2
    if b is not None and problem.lambda_b is not None:
        reg += problem.lambda_b / 2 * _sumsq(b[0]) * Fraction(2) ** (2 * b[1])
    return reg
