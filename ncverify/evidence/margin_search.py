r"""Random-start runs on the max-margin problem, claim-agnostic (docs/theory/ce.md#max-margin).

Each run minimises the smooth surrogate $\sum_i (\sigma_i(ZD)^2 + \varepsilon^2)^{q/2}$ under
the linear margin constraints $z_{kk} - z_{jk} \ge 1$ with SLSQP, for a decreasing ladder of
$\varepsilon$, from a random start (near the labels, or of low rank) rescaled to margin 1.  A run's result is judged by the exact
objective of its end point rescaled to margin 1 (`scale_free`), never by the surrogate.

>>> runs = multistart((5, 5, 5), depth=1, restarts=2, seed=0)
>>> all(abs(r.value - 2 * 5**0.5) < 1e-6 for r in runs)  # the simplex-encoded labels
True
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from scipy.optimize import minimize

from ncverify.model.max_margin import min_margin, scale_free, smooth_schatten

#: The ladder of smoothing widths, relative to the scale of `Z D` at margin 1.  It starts small:
#: a wide smoothing is nearly the Frobenius norm, which favours spreading the singular values
#: evenly and drives every start to the simplex-encoded labels, hiding low-rank codes.
EPS_LADDER = (1e-3, 1e-6)


@dataclass(frozen=True)
class MarginRun:
    """One run: its end point (rescaled to margin 1), exact value there, and start scale."""

    index: int
    z: np.ndarray
    value: float  # S_q(Z D) at margin 1
    seconds: float  # wall-clock time of the run
    scale: float  # the noise scale of an even run's start, the rank of an odd run's


def constraint_matrix(k: int) -> np.ndarray:
    """`C` with `C vec(Z) = (z_kk - z_jk)_{k, j != k}` (row-major `vec`)."""
    rows = []
    for c in range(k):
        for j in range(k):
            if j != c:
                row = np.zeros((k, k))
                row[c, c], row[j, c] = 1.0, -1.0
                rows.append(row.ravel())
    return np.asarray(rows)


def to_margin_one(z: np.ndarray) -> np.ndarray:
    """`Z` rescaled so that its smallest margin is 1 (a margin-raising identity is added first
    where the margin is not positive)."""
    m = min_margin(z)
    if m <= 0:
        z = z + (1 - m) * np.eye(z.shape[0])
        m = min_margin(z)
    return z / m


def descend(
    counts: tuple[int, ...], depth: int, start: np.ndarray, max_iter: int = 400
) -> np.ndarray:
    """SLSQP on the smooth surrogate under the margin constraints, down the `EPS_LADDER`."""
    k, q = len(counts), 2 / (depth + 1)
    c = constraint_matrix(k)
    z = to_margin_one(start)
    scale = float(np.linalg.norm(z, 2)) * max(counts) ** 0.5
    constraint = {"type": "ineq", "fun": lambda v: c @ v - 1.0, "jac": lambda v: c}
    for eps in EPS_LADDER:

        def f(v: np.ndarray, eps: float = eps * scale) -> tuple[float, np.ndarray]:
            value, grad = smooth_schatten(v.reshape(k, k), counts, q, eps)
            return value, grad.ravel()

        res = minimize(
            f,
            z.ravel(),
            jac=True,
            method="SLSQP",
            constraints=[constraint],
            options={"maxiter": max_iter, "ftol": 1e-15},
        )
        if np.all(np.isfinite(res.x)) and min_margin(res.x.reshape(k, k)) > 0:
            z = to_margin_one(res.x.reshape(k, k))
    return z


def multistart(
    counts: tuple[int, ...], depth: int, restarts: int, seed: int = 0
) -> list[MarginRun]:
    """`restarts` seeded runs, each judged by the exact value of its end point at margin 1.
    Even runs start at `Z = I + s G` (`G` standard normal, `s` spread over `[0.1, 3]`), odd runs
    at a random low-rank `U U^T + G / 10` (`U` of rank 1 to `K - 1`): low-rank codes beat the
    labels at depth, and descents from near the labels rarely find them."""
    rng = np.random.default_rng(seed)
    k, q = len(counts), 2 / (depth + 1)
    runs = []
    for i in range(restarts):
        if i % 2 == 0:
            s = float(rng.uniform(0.1, 3.0))
            start = np.eye(k) + s * rng.standard_normal((k, k))
        else:
            s = float(rng.integers(1, max(k, 2)))
            u = rng.standard_normal((k, int(s)))
            start = u @ u.T + 0.1 * rng.standard_normal((k, k))
        t0 = time.perf_counter()
        z = descend(counts, depth, start)
        value, seconds = scale_free(z, counts, q), time.perf_counter() - t0
        runs.append(MarginRun(i, z, value, seconds=seconds, scale=s))
    return runs
