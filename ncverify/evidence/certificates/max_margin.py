r"""The one-layer max-margin problem: the value of the simplex-encoded labels, and a rigorous
lower bound on the optimum by weak duality (docs/theory/ce.md#max-margin-one-layer).

With collapsed features and one layer, the max-margin problem over the $K \times K$ class-mean
logits $Z$ (column $k$ holds the logits of class $k$) is the convex program

$$\min_Z \lVert Z D \rVert_* \quad\text{s.t.}\quad z_{kk} - z_{jk} \ge 1 \;\; (j \ne k),
\qquad D = \operatorname{diag}(\sqrt{n_k}).$$

**Weak duality.**  With multipliers $\mu_{jk} \ge 0$ ($\mu_{kk} = 0$) the margins enter the
Lagrangian as $\langle A(\mu), Z\rangle$, where $A(\mu) = \operatorname{diag}(\mathbf 1^T \mu) -
\mu$ (column $k$: $\sum_j \mu_{jk}$ on the diagonal, $-\mu_{jk}$ in row $j$).  The infimum over
$Z$ of $\lVert ZD\rVert_* - \langle A(\mu), Z\rangle + \sum \mu$ is $\sum\mu$ when
$\lVert A(\mu) D^{-1}\rVert_{op} \le 1$ and $-\infty$ otherwise, so for every $\mu \ge 0$ and
$t \ge \lVert A(\mu) D^{-1}\rVert_{op}$

$$\textstyle\sum_{jk} \mu_{jk} / t \;\le\; \min_Z \lVert Z D\rVert_*.$$

The bound is *rigorous* when $\mu$ and $t$ are rational and $t^2 D^2 - A^T A$ is positive
semidefinite (it is congruent to $t^2 I - D^{-1} A^T A D^{-1}$ and $D^2 = \operatorname{diag}(n)$
is an integer matrix).  That is checked exactly: the characteristic polynomial of a symmetric
matrix has only real roots, and for such a polynomial Descartes' rule of signs counts the
positive roots exactly, so the signs of its coefficients show whether a root is negative.  A
solver (cvxpy) only *finds* $\mu$; the bound rests on the exact check alone.

**Exact values.**  For rational $Z$, $S_q(ZD) = \sum_i \lambda_i^{q/2}$ over the non-zero
eigenvalues of $Z \operatorname{diag}(n) Z^T$ (rational), enclosed by isolating the roots of its
characteristic polynomial in rational intervals.  The simplex-encoded labels $Z = I - J/K$ are
feasible with every margin 1; a float point (an optimiser's end point) is read as the exact
rationals its floats are and divided by its exact smallest margin, which makes a new,
exactly feasible point whose value is enclosed the same way.

>>> lo, hi = sel_value((4, 4, 4))
>>> float(lo) <= 2 * 2.0 <= float(hi)  # balanced: (K - 1) sqrt(n)
True
>>> bound = dual_bound((4, 4, 4))
>>> 4.0 - 1e-6 < float(bound.value) <= 4.0 + 1e-12
True
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from fractions import Fraction

import mpmath
import numpy as np
import sympy as sp

from ncverify.evidence.certificates.certificate import Certificate
from ncverify.model.intervals import round_down
from ncverify.model.max_margin import factor_constant, rational_matrix, sel_value
from ncverify.model.problem import Loss, Problem

__all__ = [
    "DualBound",
    "a_of",
    "dual_bound",
    "max_margin_dual",
    "negative_eigenvalues",
    "sel_value",
]


def negative_eigenvalues(m: sp.Matrix) -> int:
    """How many eigenvalues of the symmetric rational matrix `m` are negative (exact): the sign
    changes of the coefficients of `p(-x)`, `p` its characteristic polynomial (Descartes' rule,
    exact for real-rooted polynomials)."""
    x = sp.Symbol("x")
    coeffs = [c for c in sp.Poly(m.charpoly(x).as_expr().subs(x, -x), x).all_coeffs() if c != 0]
    return sum(1 for a, b in zip(coeffs, coeffs[1:], strict=False) if (a > 0) != (b > 0))


def a_of(mu: list[list[Fraction]]) -> list[list[Fraction]]:
    """`A(mu) = diag(1^T mu) - mu`: `<A(mu), Z> = sum_jk mu_jk (z_kk - z_jk)`."""
    k = len(mu)
    out = [[-mu[j][c] for c in range(k)] for j in range(k)]
    for c in range(k):
        out[c][c] = sum((mu[j][c] for j in range(k) if j != c), Fraction(0))
    return out


@dataclass(frozen=True)
class DualBound:
    """A rigorous lower bound `value = sum(mu) / t` on the one-layer max-margin optimum."""

    value: Fraction
    mu: tuple[tuple[Fraction, ...], ...]
    t: Fraction

    def holds(self, counts: tuple[int, ...]) -> bool:
        """Re-check the bound exactly: `mu >= 0`, zero diagonal, `t^2 diag(n) - A^T A` PSD."""
        mu = [list(r) for r in self.mu]
        if any(x < 0 for r in mu for x in r) or any(mu[i][i] for i in range(len(mu))):
            return False
        a = rational_matrix(a_of(mu))
        t = sp.Rational(self.t.numerator, self.t.denominator)
        return negative_eigenvalues(t**2 * sp.diag(*counts) - a.T * a) == 0


def _solve_dual(counts: tuple[int, ...]) -> np.ndarray:
    """`max sum(mu)` s.t. `mu >= 0`, `diag(mu) = 0`, `||A(mu) D^{-1}||_op <= 1` (cvxpy)."""
    import cvxpy as cp

    k = len(counts)
    mu = cp.Variable((k, k), nonneg=True)
    a = cp.diag(cp.sum(mu, axis=0)) - mu
    d_inv = np.diag(1 / np.sqrt(np.asarray(counts, dtype=float)))
    problem = cp.Problem(cp.Maximize(cp.sum(mu)), [cp.diag(mu) == 0, cp.sigma_max(a @ d_inv) <= 1])
    for solver in ("CLARABEL", "SCS"):
        try:
            problem.solve(solver=solver)
        except cp.error.SolverError:
            continue
        if mu.value is not None:
            return np.clip(np.asarray(mu.value), 0.0, None)
    raise RuntimeError("no conic solver could solve the max-margin dual")


def dual_bound(counts: tuple[int, ...], guess: np.ndarray | None = None) -> DualBound:
    """The weak-duality lower bound, rigorous: multipliers (`guess`, else the conic solver's)
    read as the exact rationals their floats are, and `t` raised from the float operator norm
    until the exact PSD check passes.  The bound is as tight as the multipliers are good."""
    counts = tuple(int(c) for c in counts)
    k = len(counts)
    approx = _solve_dual(counts) if guess is None else np.clip(np.asarray(guess, float), 0, None)
    mu = [
        [Fraction(0) if i == j else Fraction(float(approx[i, j])) for j in range(k)]
        for i in range(k)
    ]
    a = np.array([[float(x) for x in row] for row in a_of(mu)])
    op = float(np.linalg.norm(a / np.sqrt(np.asarray(counts, dtype=float))[None, :], 2))
    t = Fraction(op * (1 + 1e-14))
    total = sum((x for r in mu for x in r), Fraction(0))
    for _ in range(40):
        bound = DualBound(total / t, tuple(map(tuple, mu)), t)
        if bound.holds(counts):
            return bound
        t *= 1 + Fraction(1, 10**12)
    raise RuntimeError("the multipliers did not pass the exact check")


def tightest_bound(counts: tuple[int, ...]) -> DualBound:
    """A rigorous bound, as tight as can be had: from the KKT multipliers of the simplex-encoded
    labels, which close the bracket to rounding where the labels are optimal; only where they
    do not, from the conic solver's multipliers too (about 1e-9), the better of the two."""
    from ncverify.evidence.margin_kkt import kkt
    from ncverify.model.max_margin import labels

    k = len(counts)
    z = np.array([[float(x) for x in row] for row in labels(k)])
    bound = dual_bound(counts, kkt(z, counts, 1).multipliers)
    lo, _ = sel_value(counts)
    if float(bound.value) >= float(lo) * (1 - 1e-12):  # the bracket is closed: nothing to gain
        return bound
    return max(bound, dual_bound(counts), key=lambda b: b.value)


def max_margin_dual(problem: Problem) -> Certificate | None:
    """The `max-margin-dual` certificate kind: at one layer, the weak-duality bound times the
    factorisation constant (both enclosed, the product rounded down), bracketed with the labels'
    value; None for another loss or depth (the program is convex at one layer only)."""
    if problem.loss != Loss.MAX_MARGIN or problem.depth != 1:
        return None
    t0 = time.perf_counter()
    bound = tightest_bound(problem.counts)
    c_lo, c_hi = factor_constant(problem)
    s_lo, s_hi = sel_value(problem.counts)
    with mpmath.workprec(220):
        lower = c_lo * mpmath.mpf(bound.value.numerator) / bound.value.denominator
        upper = c_hi * s_hi
    gap = float((upper - lower) / upper)
    return Certificate(
        kind="max-margin-dual",
        bound=round_down(lower),
        primal=float(upper),
        gap=gap,
        solver="cvxpy (CLARABEL or SCS), then exact rational checks",
        status="optimal",
        rigorous=True,
        detail=(
            f"weak duality: sum(mu)/t = {float(bound.value):.12g} with t^2 diag(n) - A^T A "
            f"checked PSD exactly; the labels' value {float(s_hi):.12g} is feasible "
            f"({time.perf_counter() - t0:.2f} s)"
        ),
        bound_exact=lower,
        exact=True,  # no relaxation: [bound, labels' value] brackets the optimum
        unique=False,
    )
