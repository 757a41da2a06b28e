r"""First-order optimality (KKT) of a point of the max-margin problem (docs/theory/ce.md#max-margin).

The problem $\min_Z S_q(ZD)$ s.t. $z_{kk} - z_{jk} \ge 1$ has no gradient where $ZD$ loses
rank, so stationarity is the KKT condition of the smooth piece.  With the thin SVD
$ZD = U\Sigma V^T$ (rank $r$) and $U_\perp, V_\perp$ completing the bases, the Fréchet
subdifferential of $X \mapsto S_q(X)$ at $X = ZD$ is

$$q\,U\Sigma^{q-1}V^T + U_\perp Y V_\perp^T \quad (Y \text{ free for } q < 1,\;
\lVert Y\rVert_{op} \le 1 \text{ for } q = 1),$$

because a zero singular value grows at infinite slope when $q < 1$.  A point is a KKT point when
some multipliers $\mu_{jk} \ge 0$, zero on the inactive margins, satisfy
$A(\mu) D^{-1} \in \partial S_q(ZD)$, with $A(\mu) = \operatorname{diag}(\mathbf 1^T\mu) - \mu$
the map of the margins.  Projected onto the part that $Y$ cannot reach this is linear in $\mu$:

$$U^T\big(A(\mu)D^{-1} - qU\Sigma^{q-1}V^T\big) = 0, \qquad
\big(A(\mu)D^{-1} - qU\Sigma^{q-1}V^T\big) V = 0,$$

solved by non-negative least squares; the relative residual says how far the point is from KKT
(0 at a KKT point, up to rounding).  For $q = 1$ the bound on $Y$ is reported too; at one layer
the rigorous statement is the dual certificate (`certificates/max_margin.py`).

>>> z = np.eye(4) - np.ones((4, 4)) / 4
>>> kkt(z, (3, 3, 3, 3), depth=2).residual < 1e-12
True
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import nnls

from ncverify.model.max_margin import RANK_TOL, margins, scaled

#: A margin within this (relative) distance of 1 counts as active.
ACTIVE_TOL = 1e-9


@dataclass(frozen=True)
class KKT:
    """The KKT residual of a point and its multipliers."""

    residual: float  # relative: ||projected stationarity|| / ||q U Sigma^{q-1} V^T||
    multipliers: np.ndarray  # K x K, zero on the diagonal and on inactive margins
    active: int  # margins at 1
    rank: int  # of Z D
    leftover_norm: float | None  # ||U_perp^T A D^-1 V_perp||_op, the Y of q = 1 (None if q < 1)


def kkt(z: np.ndarray, counts: tuple[int, ...], depth: int, rank_tol: float = RANK_TOL) -> KKT:
    """The KKT residual of `Z` (scaled to margin 1 first: KKT is about the constrained point).

    Singular values below `rank_tol` times the largest count as zero: an optimiser's end point
    keeps tiny ones where the exact point has none (their `sigma^{q-1}` would dominate), so judge
    such a point with a tolerance above its accuracy."""
    k, q = z.shape[0], 2 / (depth + 1)
    z = z / float(np.min(margins(z)))
    d_inv = np.linalg.inv(scaled(counts))
    u, s, vt = np.linalg.svd(z @ scaled(counts))
    r = int(np.sum(s > rank_tol * s[0]))
    ur, vr = u[:, :r], vt[:r].T
    target = q * ur @ np.diag(s[:r] ** (q - 1)) @ vr.T
    gaps = margins(z)
    active = [(j, c) for c in range(k) for j in range(k) if j != c and gaps[j, c] <= 1 + ACTIVE_TOL]

    def project(m: np.ndarray) -> np.ndarray:  # the part of m that Y cannot absorb
        return np.concatenate([(ur.T @ m).ravel(), (m @ vr).ravel()])

    columns = []
    for j, c in active:
        a = np.zeros((k, k))
        a[c, c], a[j, c] = 1.0, -1.0  # A of the unit multiplier on margin (j, c)
        columns.append(project(a @ d_inv))
    rhs = project(target)
    if columns:
        mu_active, res = nnls(np.stack(columns, axis=1), rhs)
    else:
        mu_active, res = np.zeros(0), float(np.linalg.norm(rhs))
    mu = np.zeros((k, k))
    for (j, c), value in zip(active, mu_active, strict=True):
        mu[j, c] = value
    leftover = None
    if depth == 1:
        a = np.diag(mu.sum(axis=0)) - mu
        rest = u[:, r:].T @ (a @ d_inv) @ vt[r:].T
        leftover = float(np.linalg.norm(rest, 2)) if rest.size else 0.0
    return KKT(float(res) / float(np.linalg.norm(rhs)), mu, len(active), r, leftover)
