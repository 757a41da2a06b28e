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

import numpy as np

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
