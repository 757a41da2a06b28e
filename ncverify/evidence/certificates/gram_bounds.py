r"""The box bound of the `gram-branch-and-bound` certificate: proposed in floating point,
proven in interval arithmetic (docs/theory/depth-certificates.md#gram).

Notation.  $K$ classes, $n = K - 1$, $U$ the $K \times n$ Helmert basis of the centred vectors
(orthonormal columns, $UU^T = I - J/K$), $y_k = U^T z_k$ the centred logits of class $k$ in
that basis, $G = \sum_k w_k\, y_k y_k^T$ their Gram matrix ($w_k = 1$ for cross-entropy,
$w_k = n_k$ for the max-margin problem, whose penalty is on $ZD$) and $p = 1/(M+1) = q/2$, so
that $S_q = \operatorname{tr} G^p$.  For every symmetric $W \succ 0$ and every point whose Gram
matrix lies in a box $B$,

$$F \;\ge\; \underbrace{\textstyle\sum_k \min_y \big[\ell_k(y) + w_k\, y^T W y\big]}_{d(W)}
\;+\; \min_{G \in \text{corners of } B}\Big[\kappa \textstyle\sum_i g_\varepsilon(\lambda_i(G))
- \langle W, G\rangle\Big],$$

where $\ell_k$ is class $k$'s loss ($\mathrm{CE}_k(Uy)/K$, or 0 under the margin constraints of
the max-margin problem) and $g_\varepsilon(t) = t^p$ for $t \ge \varepsilon$,
$\varepsilon^{p-1} t$ below: concave on the real line and at most $t^p$ for $t \ge 0$.  The
second bracket is concave in $G$ (a trace function of a concave scalar function), so over a
box its least value is at a corner.  Each minimum in $d(W)$ is of a strongly convex function
(modulus $2 w_k \lambda_{\min}(W)$), so at any point $\hat y$ it is at least
$f(\hat y) - \lVert\nabla f(\hat y)\rVert^2 / (4 w_k\lambda_{\min}(W))$; under margin
constraints $A_k y \ge 1$ the same holds for the Lagrangian with multipliers $\mu \ge 0$ (weak
duality).

The float functions only *propose* $W$, $\hat y$, $\mu$ and $\varepsilon$; `proven_bound`
evaluates the inequality above in `mpmath.iv`, with every eigenvalue enclosed by
`eigenvalue_bounds`.
"""

from __future__ import annotations

import functools
import itertools
import math
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import mpmath
import numpy as np

from ncverify.model.intervals import ends

#: The floor of W's eigenvalues, relative to the box's widest side: W = kappa grad tr G^p at
#: the box's centre, whose eigenvalues p lambda^(p-1) blow up where G is singular; flooring
#: lambda at a tenth of the box keeps the corners' term -<W, G> in step with the box's size.
FLOOR = 0.1


@dataclass(frozen=True)
class GramProblem:
    """The reduced problem: `K` classes, the exponent `p = 1/(M+1)`, `kappa` (float, for the
    proposals; the proofs take it as an interval), the class weights `w_k`, the loss (`"ce"`
    or `"max-margin"`) and the share `target` of the true class's logit in cross-entropy's
    target term: `1 - alpha` with label smoothing `alpha` (its loss `lse(z) - q^T z` with
    `q = (1 - alpha) e_k + alpha 1/K` is `lse(z) - (1 - alpha) z_k` on centred logits)."""

    K: int
    p: float
    kappa: float
    weights: tuple[int, ...]
    loss: str
    target: Fraction = Fraction(1)

    @property
    def n(self) -> int:
        return self.K - 1

    @functools.cached_property
    def basis(self) -> np.ndarray:
        """The Helmert basis in floats (the proofs use `helmert_iv`)."""
        return np.array(helmert(self.K, float, math.sqrt))

    @functools.cached_property
    def coordinates(self) -> tuple[np.ndarray, np.ndarray]:
        """Where the box's coordinates sit in G: its upper triangle, row by row."""
        return np.triu_indices(self.n)

    @functools.cached_property
    def position(self) -> dict[tuple[int, int], int]:
        """Where each entry `(i, j)`, `i <= j`, of G sits among the box's coordinates."""
        return {(r, c): i for i, (r, c) in enumerate(zip(*self.coordinates, strict=True))}

    @functools.cached_property
    def diagonal(self) -> np.ndarray:
        """Whether each coordinate is a diagonal entry of G."""
        return np.array([r == c for r, c in zip(*self.coordinates, strict=True)])

    def gram(self, v: np.ndarray) -> np.ndarray:
        """The symmetric matrix of coordinates `v` (one per entry of the upper triangle)."""
        g = np.zeros((self.n, self.n))
        g[self.coordinates] = v
        return g + np.triu(g, 1).T

    def margins(self, k: int) -> np.ndarray:
        """The rows `u_k - u_j` (j != k) whose products with `y_k` are class k's margins."""
        u = self.basis
        return np.array([u[k] - u[j] for j in range(self.K) if j != k])


def helmert(k: int, num: Any, sqrt: Any) -> list[list[Any]]:
    """The `K x (K-1)` Helmert basis of the centred vectors (rows), column j being
    `(1, ..., 1, -(j+1), 0, ...)/sqrt((j+1)(j+2))`, with numbers made by `num` and `sqrt`."""

    def entry(i: int, j: int) -> Any:
        scale = sqrt(num((j + 1) * (j + 2)))
        if i <= j:
            return num(1) / scale
        return num(-(j + 1)) / scale if i == j + 1 else num(0)

    return [[entry(i, j) for j in range(k - 1)] for i in range(k)]


@dataclass(frozen=True)
class Proposal:
    """A box's bound as floats proposed it: W, the points y_k (and multipliers) of d(W), the
    chord point epsilon, the value and whether the crude bound `kappa (tr G)^p` was larger."""

    value: float
    W: np.ndarray
    Y: np.ndarray
    mu: np.ndarray | None
    eps: float
    crude: bool


def propose(gp: GramProblem, lo: np.ndarray, hi: np.ndarray, Y0: np.ndarray) -> Proposal:
    """The box bound in floating point, from warm start `Y0` (K x n)."""
    W = _multiplier(gp, lo, hi)
    if gp.loss == "ce":
        Y, d = _ce_points(gp, W, Y0)
        mu = None
    else:
        Y, mu, d = _margin_points(gp, W)
    corners = np.array([gp.gram(np.array(c)) for c in itertools.product(*zip(lo, hi, strict=True))])
    lam = np.linalg.eigvalsh(corners)
    linear = np.einsum("ij,cij->c", W, corners)
    eps_list = [lam[:, 0].min()] if lam[:, 0].min() > 0 else []
    width = float(np.max(hi - lo))
    eps_list += [width * f for f in (1e-3, 1e-2, 1e-1, 1.0)]
    vals = [(np.min(gp.kappa * _chord(lam, e, gp.p).sum(1) - linear), e) for e in eps_list if e > 0]
    corner, eps = max(vals)
    crude_value = crude(gp, lo)
    value = max(d + corner, crude_value)
    return Proposal(value, W, Y, mu, eps, crude_value > d + corner)


def crude(gp: GramProblem, lo: np.ndarray) -> float:
    """`kappa (tr G)^p <= kappa tr G^p` (p <= 1) with the trace at its least in the box."""
    return gp.kappa * max(crude_trace(gp, lo), 0.0) ** gp.p


def _chord(lam: np.ndarray, eps: float, p: float) -> np.ndarray:
    return np.where(lam >= eps, np.maximum(lam, eps) ** p, eps ** (p - 1) * lam)


def _multiplier(gp: GramProblem, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """`W = kappa p G_c^(p-1)` at the box's centre, its eigenvalues floored (FLOOR)."""
    lam, vec = np.linalg.eigh(gp.gram((lo + hi) / 2))
    floor = max(1e-6 * max(float(lam.max()), 1e-300), FLOOR * float(np.max(hi - lo)))
    lam = np.maximum(lam, floor)
    return gp.kappa * (vec * (gp.p * lam ** (gp.p - 1))) @ vec.T


def _ce_terms(gp: GramProblem, W: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per class: `CE_k(U y_k)/K + y_k^T W y_k`, its gradient and the softmax."""
    z = Y @ gp.basis.T
    top = z.max(1, keepdims=True)
    e = np.exp(z - top)
    lse = top[:, 0] + np.log(e.sum(1))
    soft = e / e.sum(1, keepdims=True)
    t = float(gp.target)
    value = (lse - t * np.diag(z)) / gp.K + np.einsum("ka,ab,kb->k", Y, W, Y)
    grad = (soft - t * np.eye(gp.K)) @ gp.basis / gp.K + 2 * Y @ W
    return value, grad, soft


def _ce_points(gp: GramProblem, W: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, float]:
    """Damped Newton on every class's strongly convex `CE_k/K + y^T W y`; returns the points and
    the float bound `sum_k f_k - |grad f_k|^2 / (4 lambda_min(W))`."""
    u = gp.basis
    value, grad, soft = _ce_terms(gp, W, Y)
    for _ in range(60):
        cov = np.einsum("ki,ij->kij", soft, np.eye(gp.K)) - np.einsum("ki,kj->kij", soft, soft)
        hess = np.einsum("ia,kij,jb->kab", u, cov, u) / gp.K + 2 * W
        step = np.linalg.solve(hess, grad[..., None])[..., 0]
        t = np.ones(gp.K)
        for _ in range(40):
            trial = _ce_terms(gp, W, Y - t[:, None] * step)[0]
            worse = trial > value - 1e-4 * t * np.einsum("ka,ka->k", grad, step)
            if not worse.any():
                break
            t = np.where(worse, t / 2, t)
        Y = Y - t[:, None] * step
        value, grad, soft = _ce_terms(gp, W, Y)
        if np.max(np.abs(step) * t[:, None]) < 1e-14 * (1 + np.max(np.abs(Y))):
            break
    mu = 2 * np.linalg.eigvalsh(W)[0]
    return Y, float(np.sum(value - np.einsum("ka,ka->k", grad, grad) / (2 * mu)))


def _margin_points(gp: GramProblem, W: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Every class's `min w_k y^T W y` subject to its margins `A_k y >= 1`, by the dual
    `max_{mu >= 0} 1^T mu - mu^T A W^-1 A^T mu / 4` over every active set."""
    inv = np.linalg.inv(W)
    ys, mus, total = [], [], 0.0
    for k in range(gp.K):
        a = gp.margins(k)
        q = a @ inv @ a.T / 2
        best = (-np.inf, np.zeros(gp.n))
        for r in range(1, gp.n + 1):
            for act in itertools.combinations(range(gp.n), r):
                mu = np.zeros(gp.n)
                mu[list(act)] = np.linalg.solve(q[np.ix_(act, act)], np.ones(r))
                if mu.min() >= 0:
                    best = max(best, (mu.sum() - mu @ q @ mu / 2, mu), key=lambda b: b[0])
        mu = best[1]
        ys.append(inv @ a.T @ mu / 2)
        mus.append(mu)
        total += gp.weights[k] * best[0]
    return np.array(ys), np.array(mus), total


# ---- the proofs -----------------------------------------------------------------------------------
def eigenvalue_bounds(
    g: np.ndarray, iv: Any, exact: list[list[Any]] | None = None
) -> tuple[list[Any], list[Any]]:
    """Lower and upper bounds (mpf, ascending) on the eigenvalues of the symmetric float matrix
    `g` (or of the symmetric matrix that the intervals `exact` enclose, `g` near it).  With `Q` the float eigenvectors, `A = Q^T g Q` and `E = Q^T Q - I` in intervals:
    by Weyl, `lambda_i(A)` is within `||A - diag(A)||_F` of the i-th smallest diagonal entry, and
    by Ostrowski (`g = Q^-T A Q^-1`, a congruence) `lambda_i(g) = theta_i lambda_i(A)` with
    `theta_i` in `[1/(1 + e), 1/(1 - e)]`, `e = ||E||_F`."""
    n = g.shape[0]
    gi = exact or [[iv.mpf(float(g[i, j])) for j in range(n)] for i in range(n)]
    if n == 2:  # the closed form (a + c)/2 -+ sqrt(((a - c)/2)^2 + b^2)
        mean, rad = (
            (gi[0][0] + gi[1][1]) / 2,
            iv.sqrt(((gi[0][0] - gi[1][1]) / 2) ** 2 + gi[0][1] ** 2),
        )
        pair = [mean - rad, mean + rad]
        return [ends(x)[0] for x in pair], [ends(x)[1] for x in pair]
    q = np.linalg.eigh(g)[1]
    qi = [[iv.mpf(float(q[i, j])) for j in range(n)] for i in range(n)]
    gq = [[sum(gi[i][k] * qi[k][j] for k in range(n)) for j in range(n)] for i in range(n)]
    a = [[sum(qi[k][i] * gq[k][j] for k in range(n)) for j in range(n)] for i in range(n)]
    e2 = sum(
        (sum(qi[k][i] * qi[k][j] for k in range(n)) - (1 if i == j else 0)) ** 2
        for i in range(n)
        for j in range(n)
    )
    off = iv.sqrt(sum(a[i][j] ** 2 for i in range(n) for j in range(n) if i != j))
    e = ends(iv.sqrt(e2))[1]
    if e >= 0.5:
        raise ArithmeticError("the float eigenvectors are far from orthonormal")
    lows = sorted(ends(a[i][i] - off)[0] for i in range(n))
    highs = sorted(ends(a[i][i] + off)[1] for i in range(n))
    shrink, grow = iv.mpf(1) / (1 + iv.mpf(e)), iv.mpf(1) / (1 - iv.mpf(e))
    lower = [ends(iv.mpf(x) * (shrink if x >= 0 else grow))[0] for x in lows]
    upper = [ends(iv.mpf(x) * (grow if x >= 0 else shrink))[1] for x in highs]
    return lower, upper


def helmert_iv(k: int, iv: Any) -> list[list[Any]]:
    return helmert(k, iv.mpf, iv.sqrt)


def power(x: Any, p: Any, iv: Any) -> Any:
    """`x^p` for an interval `x >= 0` (0 at 0)."""
    return iv.exp(p * iv.log(x)) if ends(x)[0] > 0 else iv.mpf(0)


def proven_bound(
    gp: GramProblem,
    kappa: Any,
    p: Any,
    lo: np.ndarray,
    hi: np.ndarray,
    prop: Proposal,
    iv: Any,
    enough: mpmath.mpf | None = None,
) -> mpmath.mpf:
    """The box bound of the module docstring, proven: a lower end of interval arithmetic.  The
    crude bound `kappa (tr G)^p` is tried first, and returned alone when it reaches `enough`."""
    crude_iv = kappa * power(iv.mpf(max(float(crude_trace(gp, lo)), 0.0)), p, iv)
    if prop.crude or (enough is not None and ends(crude_iv)[0] >= enough):
        return ends(crude_iv)[0]
    w = prop.W
    lam_w = eigenvalue_bounds(w, iv)[0][0]
    if lam_w <= 0:
        return ends(crude_iv)[0]
    d = _proven_d(gp, w, iv.mpf(lam_w), prop, iv)
    wi = [[iv.mpf(float(w[i, j])) for j in range(gp.n)] for i in range(gp.n)]
    eps = iv.mpf(prop.eps)
    slope = power(eps, p - 1, iv)
    corner = None
    for c in itertools.product(*zip(lo, hi, strict=True)):
        g = gp.gram(np.array(c))
        lam = eigenvalue_bounds(g, iv)[0]
        chord = sum(
            power(iv.mpf(x), p, iv) if x >= ends(eps)[1] else slope * iv.mpf(x) for x in lam
        )
        inner = sum(wi[i][j] * iv.mpf(float(g[i, j])) for i in range(gp.n) for j in range(gp.n))
        low = ends(kappa * chord - inner)[0]
        corner = low if corner is None else min(corner, low)
    return max(ends(d + iv.mpf(corner))[0], ends(crude_iv)[0])


def crude_trace(gp: GramProblem, lo: np.ndarray) -> float:
    """The least trace in the box: the sum of its diagonal lower ends (floats add exactly
    enough here: the proof rounds it down)."""
    diag = lo[gp.diagonal]
    return float(np.nextafter(math.fsum(diag), -np.inf)) if diag.size else 0.0


def _proven_d(gp: GramProblem, w: np.ndarray, lam_w: Any, prop: Proposal, iv: Any) -> Any:
    """d(W) from below: per class, `f(y) - |grad f(y)|^2 / (4 w_k lambda_min(W))` at the
    proposed point (for the max-margin problem, of the Lagrangian with the proposed `mu`)."""
    u = helmert_iv(gp.K, iv)
    n = gp.n
    wi = [[iv.mpf(float(w[i, j])) for j in range(n)] for i in range(n)]
    total = iv.mpf(0)
    for k in range(gp.K):
        y = [iv.mpf(float(x)) for x in prop.Y[k]]
        wy = [sum(wi[i][j] * y[j] for j in range(n)) for i in range(n)]
        quad = sum(y[i] * wy[i] for i in range(n))
        if gp.loss == "ce":
            z = [sum(u[i][j] * y[j] for j in range(n)) for i in range(gp.K)]
            top = max(float(x.mid) for x in z)
            ez = [iv.exp(x - top) for x in z]
            s = sum(ez)
            t = iv.mpf(gp.target.numerator) / gp.target.denominator
            value = (iv.log(s) + top - t * z[k]) / gp.K + quad
            grad = [
                sum(u[i][j] * (ez[i] / s - (t if i == k else 0)) for i in range(gp.K)) / gp.K
                + 2 * wy[j]
                for j in range(n)
            ]
        else:
            assert prop.mu is not None
            mu = [iv.mpf(max(float(x), 0.0)) for x in prop.mu[k]]
            rows = [[u[k][j] - u[i][j] for j in range(n)] for i in range(gp.K) if i != k]
            marg = [sum(r[j] * y[j] for j in range(n)) for r in rows]
            value = gp.weights[k] * (quad + sum(m * (1 - a) for m, a in zip(mu, marg, strict=True)))
            grad = [
                gp.weights[k] * (2 * wy[j] - sum(m * r[j] for m, r in zip(mu, rows, strict=True)))
                for j in range(n)
            ]
        total += value - sum(x**2 for x in grad) / (4 * gp.weights[k] * lam_w)
    return total
