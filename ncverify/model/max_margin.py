r"""The max-margin problem over collapsed features: its objective, its constraints, and a smooth
surrogate for optimisers (docs/theory/ce.md#max-margin).

As every weight decay tends to zero, the directions of the regularised cross-entropy minimisers
converge to the solutions of $\min \sum_m \lVert W_m\rVert_F^2 + \lVert H\rVert_F^2$ subject to
every margin $(w_{y_i} - w_j)^T h_i \ge 1$.  With collapsed features and balanced factors this is
$(M+1)$ times

$$\min_Z\; S_q(Z D) = \sum_i \sigma_i(Z D)^q \quad\text{s.t.}\quad z_{kk} - z_{jk} \ge 1
\;\; (j \ne k),$$

over the $K \times K$ class-mean logits $Z$ (column $k$: the logits of class $k$),
$D = \operatorname{diag}(\sqrt{n_k})$, $q = 2/(M+1)$.  For $M = 1$ it is convex (the nuclear
norm); for $M \ge 2$, $S_q$ is a Schatten quasi-norm, and neither smooth nor convex.

>>> z = np.eye(3) - np.ones((3, 3)) / 3
>>> round(schatten(z, (4, 4, 4), 1.0), 12), min_margin(z)
(4.0, 1.0)
"""

from __future__ import annotations

from fractions import Fraction

import mpmath
import numpy as np
import sympy as sp

from ncverify.model.intervals import ends, interval_precision
from ncverify.model.objective import Params
from ncverify.model.problem import Problem

#: Singular values below this fraction of the largest count as zero.
RANK_TOL = 1e-10


def margins(z: np.ndarray) -> np.ndarray:
    """`z_kk - z_jk` for every class `k` and `j != k` (a `K x K` array, `inf` on the
    diagonal)."""
    m = np.diag(z)[None, :] - z
    np.fill_diagonal(m, np.inf)
    return m


def min_margin(z: np.ndarray) -> float:
    return float(np.min(margins(z)))


def scaled(counts: tuple[int, ...]) -> np.ndarray:
    """`D = diag(sqrt(n_k))`."""
    return np.diag(np.sqrt(np.asarray(counts, dtype=np.float64)))


def schatten(z: np.ndarray, counts: tuple[int, ...], q: float) -> float:
    """`S_q(Z D) = sum_i sigma_i(Z D)^q` over the non-zero singular values."""
    s = np.linalg.svd(z @ scaled(counts), compute_uv=False)
    s = s[s > RANK_TOL * max(float(s[0]), 1e-300)] if s.size else s
    return float(np.sum(s**q))


def scale_free(z: np.ndarray, counts: tuple[int, ...], q: float) -> float:
    """`S_q(Z D) / (min margin)^q`: the value of `Z` rescaled to margin 1 (`inf` when the
    margin is not positive); invariant under `Z -> t Z`, `t > 0`."""
    m = min_margin(z)
    return schatten(z, counts, q) / m**q if m > 0 else float("inf")


def smooth_schatten(z: np.ndarray, counts: tuple[int, ...], q: float, eps: float) -> tuple:
    """`sum_i (sigma_i(Z D)^2 + eps^2)^{q/2}` and its gradient in `Z`: a smooth surrogate of
    `S_q(Z D)` that tends to it as `eps -> 0` (from above, by at most `K eps^q`)."""
    d = scaled(counts)
    x = z @ d
    u, s, vt = np.linalg.svd(x, full_matrices=False)
    w = (s**2 + eps**2) ** (q / 2)
    grad_x = u @ np.diag(q * s * (s**2 + eps**2) ** (q / 2 - 1)) @ vt
    return float(np.sum(w)), grad_x @ d


def rational_matrix(rows: list[list[Fraction]]) -> sp.Matrix:
    return sp.Matrix([[sp.Rational(x.numerator, x.denominator) for x in row] for row in rows])


def gram(z: list[list[Fraction]], counts: tuple[int, ...]) -> sp.Matrix:
    """`Z diag(n) Z^T`: the Gram matrix of the rows of `Z D` (rational), whose eigenvalues are
    the squared singular values of `Z D`."""
    m = rational_matrix(z)
    return m * sp.diag(*counts) * m.T


def schatten_enclosure(
    z: list[list[Fraction]], counts: tuple[int, ...], q: Fraction, bits: int = 200
) -> tuple[mpmath.mpf, mpmath.mpf]:
    """A rigorous enclosure of `S_q(Z D) = sum_i sigma_i(Z D)^q` for rational `Z`: the
    non-zero eigenvalues of `Z diag(n) Z^T` isolated in rational intervals (with multiplicity),
    raised to `q/2` in outward-rounded interval arithmetic."""
    x = sp.Symbol("x")
    poly = sp.Poly(gram(z, tuple(counts)).charpoly(x).as_expr(), x)
    with interval_precision(bits + 20) as iv:
        total = iv.mpf(0)
        half_q = iv.mpf(q.numerator) / (2 * q.denominator)
        for (a, b), mult in poly.intervals(eps=sp.Rational(1, 2**bits)):
            if a == b == 0:
                continue  # a zero singular value contributes nothing
            lo, hi = iv.mpf(int(a.p)) / int(a.q), iv.mpf(int(b.p)) / int(b.q)
            total += mult * iv.exp(half_q * iv.log(iv.mpf([max(lo.a, 0), hi.b])))
        return ends(total)


def labels(k: int) -> list[list[Fraction]]:
    """The simplex-encoded labels `I - J/K` (exact)."""
    return [[Fraction(int(i == j)) - Fraction(1, k) for j in range(k)] for i in range(k)]


def sel_value(counts: tuple[int, ...], bits: int = 200) -> tuple[mpmath.mpf, mpmath.mpf]:
    """A rigorous enclosure of `||(I - J/K) D||_*`, the labels' one-layer value."""
    return schatten_enclosure(labels(len(counts)), counts, Fraction(1), bits)


def at_margin_one(z: np.ndarray) -> list[list[Fraction]]:
    """The float logits `Z` as the exact rationals they are, divided by their smallest margin
    (exact): a new point, feasible with margin exactly 1.  (`ValueError` if no margin is
    positive.)"""
    q = [[Fraction(float(x)) for x in row] for row in np.asarray(z, dtype=np.float64)]
    k = len(q)
    m = min(q[c][c] - q[j][c] for c in range(k) for j in range(k) if j != c)
    if m <= 0:
        raise ValueError("the logits have a non-positive margin")
    return [[x / m for x in row] for row in q]


def factor_constant(problem: Problem) -> tuple[mpmath.mpf, mpmath.mpf]:
    """A rigorous enclosure of `((M+1)/2) P^{1/(M+1)}`: the regulariser of the balanced
    factors of logits `Z` is this times `S_q(Z D)` (the factorisation lemma)."""
    m1, p = problem.depth + 1, problem.lambda_product
    with interval_precision(220) as iv:
        c = iv.mpf(m1) / 2 * iv.exp(iv.log(iv.mpf(p.numerator) / iv.mpf(p.denominator)) / m1)
        return ends(c)


def class_logits(point: Params, counts: tuple[int, ...]) -> np.ndarray:
    """`W_M ... W_1 Hbar` (floats): the logits of the class means (column `k`: class `k`)."""
    h = np.asarray(point.H, dtype=np.float64)
    starts = np.cumsum((0, *counts[:-1]))
    z = np.stack([h[:, s : s + n].mean(axis=1) for s, n in zip(starts, counts, strict=True)], 1)
    for w in point.Ws:
        z = np.asarray(w, dtype=np.float64) @ z
    return z


def lift_logits(problem: Problem, z: np.ndarray) -> Params:
    """The balanced point of the full problem whose class-mean logits are `Z` (host arrays):
    its regulariser is `((M+1)/2) P^{1/(M+1)} S_q(Z D)`, the least of any point with them."""
    from ncverify.model.factorisations import balanced_layers

    u, s, vt = np.linalg.svd(z @ scaled(problem.counts))
    r = min(int(np.sum(s > RANK_TOL * max(float(s[0]), 1e-300))), problem.bottleneck)
    return balanced_layers(problem, u[:, :r], s[:r], vt[:r].T)


def value_at_margin_one(problem: Problem, point: Params) -> float:
    """The regulariser of `point` with its features divided by the smallest class margin (a
    feasible point), in floats; `inf` when no margin is positive.  (The exact enclosure is
    `ncverify.model.exact.enclose_objective`.)"""
    m = min_margin(class_logits(point, problem.counts))
    if not m > 0:
        return float("inf")
    reg = sum(
        float(lam) / 2 * float(np.sum(np.asarray(w, dtype=np.float64) ** 2))
        for lam, w in zip(problem.lambda_w, point.Ws, strict=True)
    )
    h = np.asarray(point.H, dtype=np.float64)
    return reg + float(problem.lambda_h) / 2 * float(np.sum(h**2)) / m**2
