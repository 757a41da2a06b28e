r"""The leaf bound of the `frame-branch-and-bound` certificate: proposed in floating point, proven
in interval arithmetic (docs/theory/depth-certificates.md#frame).

Notation.  Four balanced classes of the max-margin problem at depth $M$, $p = 1/(M+1)$.  The
centred logits of class $k$ are $Uy_k$ in the *cube basis* $U$, whose rows are
$u_0 = (1,1,1)/2$, $u_1 = (1,-1,-1)/2$, $u_2 = (-1,1,-1)/2$, $u_3 = (-1,-1,1)/2$; the margins
are $(u_k - u_j)^T y_k \ge 1$ and $G = \sum_k y_k y_k^T$.  A *leaf* is a box $[l, u]$ of
diagonal values $x_i = q_i^T G q_i$ and a cell of frames $Q = [q_1\, q_2\, q_3]$ with
$\lVert Q - C\rVert_2 \le \varepsilon$ ($C$ the cell's centre).  For every weight $w \ge 0$ and
every matrix $W' \preceq Q\operatorname{diag}(w)Q^T$ (for all $Q$ of the cell),

$$\textstyle\sum_i x_i^p \;\ge\; d(W') + \sum_i \min\big(l_i^p - w_i l_i,\; u_i^p - w_i u_i\big),
\qquad d(W) = \sum_k \min_{A_k y \ge 1} y^T W y,$$

and the leaf holds no point at all when $d(W') > w^T u$.  `robust_multipliers` makes the $W'$
(lemma F of the page: two ways of paying for the cell's width), `margin_duals` proposes the
multipliers of $d$, and `proven_leaf` evaluates the inequality in `mpmath.iv`.
"""

from __future__ import annotations

import functools
import itertools
from dataclasses import dataclass
from typing import Any

import mpmath
import numpy as np

from ncverify.evidence.certificates.gram_bounds import eigenvalue_bounds, power
from ncverify.model.intervals import ends

#: The cube basis of the centred vectors of R^4 (rows u_k), in which relabelling the classes acts
#: by signed permutations of the coordinates.
CUBE = ((1, 1, 1), (1, -1, -1), (-1, 1, -1), (-1, -1, 1))
#: Half-side of the Rodrigues box that holds the cubic fundamental zone: a dyadic number above
#: tan(pi/8) = 0.41421..., so that every cell's centre and half-side are exact in floats.
ZONE = 425 / 1024
#: Lemma F's parameters, tried in turn by the proposals: the shrink factors of the first form and
#: the multiples of epsilon of the second.
SHRINKS = (0.01, 0.03, 0.1, 0.3, 1.0, 3.0)
MULTIPLES = (1.0, 3.0, 10.0, 30.0)


def cube_basis() -> np.ndarray:
    return np.array(CUBE, float) / 2


@functools.cache
def margin_rows() -> np.ndarray:
    """(4, 3, 3): row j of block k is `u_k - u_j'` over the classes j' != k."""
    u = cube_basis()
    return np.array([[u[k] - u[j] for j in range(4) if j != k] for k in range(4)])


def rodrigues(r: np.ndarray) -> np.ndarray:
    """The rotation of Rodrigues vector `r`: `((1 - |r|^2) I + 2 r r^T + 2 [r]_x) / (1 + |r|^2)`."""
    r = np.asarray(r, float)
    cross = np.array([[0, -r[2], r[1]], [r[2], 0, -r[0]], [-r[1], r[0], 0]])
    return ((1 - r @ r) * np.eye(3) + 2 * np.outer(r, r) + 2 * cross) / (1 + r @ r)


def rodrigues_iv(r: np.ndarray, iv: Any) -> list[list[Any]]:
    """`rodrigues` in intervals, from the float (exact) coordinates of `r`."""
    a = [iv.mpf(float(x)) for x in r]
    n2 = sum(x * x for x in a)
    cross = [[0, -a[2], a[1]], [a[2], 0, -a[0]], [-a[1], a[0], 0]]
    return [
        [((1 - n2) * (i == j) + 2 * a[i] * a[j] + 2 * cross[i][j]) / (1 + n2) for j in range(3)]
        for i in range(3)
    ]


def cell_radius(h: float, iv: Any) -> Any:
    """An upper bound on `||Q(r) - Q(c)||_2` over the cube of half-side `h` around `c`: the
    rotation angle between them is at most `2 |r - c| <= 2 sqrt(3) h` (the page, lemma R),
    and `||R - I||_2 = 2 sin(angle/2)` is at most the angle."""
    return 2 * iv.sqrt(3) * iv.mpf(float(h))


@dataclass(frozen=True)
class LeafProposal:
    """A leaf's bound as floats proposed it: the weights `w`, lemma F's form (1 or 2) and its
    parameters, the multipliers `mu` (4 x 3) of d(W'), the value, its value at a cell of one
    frame (which tells the search whether to split the cell); the value is infinite where the
    leaf holds no point."""

    value: float
    value_at_centre: float
    w: np.ndarray
    form: int
    params: tuple[float, ...]
    mu: np.ndarray | None


def robust_multipliers(
    w: np.ndarray, centre: np.ndarray, eps: float
) -> tuple[np.ndarray, list[tuple[int, tuple[float, ...]]]]:
    """Every W' of lemma F for the weights `w` (rows), the cell centre `centre` and radius `eps`:
    (m, T, 3, 3) and the T (form, parameters) that made them."""
    made, forms = [], []
    base = np.einsum("ia,na,ja->nij", centre, w, centre)
    for t in SHRINKS:
        made.append(base / (1 + t) - (eps**2 * w.max(1) / t)[:, None, None] * np.eye(3))
        forms.append((1, (t,)))
    order = np.argsort(w, 1)
    wa, wb, wc = (np.take_along_axis(w, order[:, i : i + 1], 1)[:, 0, None, None] for i in range(3))
    ca, cc = centre[:, order[:, 0]].T, centre[:, order[:, 2]].T
    pa, pc = np.einsum("ni,nj->nij", ca, ca), np.einsum("ni,nj->nij", cc, cc)
    eye = np.eye(3)
    for m1, m2 in itertools.product(MULTIPLES, MULTIPLES):
        t1, t2 = eps * m1, min(eps * m2, 0.9)
        made.append(
            wa * eye
            + (wb - wa) * (eye - (1 + t1) * pa - (1 + 1 / t1) * eps**2 * eye)
            + (wc - wb) * ((1 - t2) * pc - (1 / t2 - 1) * eps**2 * eye)
        )
        forms.append((2, (t1, t2)))
    return np.stack(made, 1), forms


def margin_duals(ws: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """d(W) for each W of `ws` (n, 3, 3) from the dual `max_{mu >= 0} 1^T mu - mu^T A W^-1 A^T mu
    / 4` of each class, over every active set; -inf where W is not positive definite.  Returns the
    values and the multipliers (n, 4, 3)."""
    n = ws.shape[0]
    values, mus = np.full(n, -np.inf), np.zeros((n, 4, 3))
    ok = np.linalg.eigvalsh(ws)[:, 0] > 0
    if not ok.any():
        return values, mus
    a = margin_rows()
    q = np.einsum("kia,nab,kjb->nkij", a, np.linalg.inv(ws[ok]), a) / 2
    best = np.full(q.shape[:2], -np.inf)
    arg = np.zeros(q.shape[:3])
    for r in (1, 2, 3):
        for act in itertools.combinations(range(3), r):
            sub = q[:, :, list(act)][:, :, :, list(act)]
            mu = np.linalg.solve(sub, np.ones(sub.shape[:3])[..., None])[..., 0]
            val = mu.sum(-1) - np.einsum("nki,nkij,nkj->nk", mu, sub, mu) / 2
            val = np.where(mu.min(-1) >= 0, val, -np.inf)
            full = np.zeros(q.shape[:3])
            full[..., list(act)] = mu
            better = val > best
            best = np.where(better, val, best)
            arg = np.where(better[..., None], full, arg)
    values[ok], mus[ok] = best.sum(1), arg
    return values, mus


def chords(p: float, l: np.ndarray, u: np.ndarray) -> np.ndarray:
    """The slopes of the chords of `t^p` over `[l, u]` (the tangent's where the box is flat)."""
    flat = u <= l
    return np.where(
        flat, p * np.maximum(l, 1e-300) ** (p - 1), (u**p - l**p) / np.where(flat, 1, u - l)
    )


def evaluate(
    p: float, ws: np.ndarray, centre: np.ndarray, eps: float, l: np.ndarray, u: np.ndarray
) -> LeafProposal:
    """The best leaf bound over the candidate weights `ws` (rows) and lemma F's forms."""
    made, forms = robust_multipliers(ws, centre, eps)
    m, t = made.shape[:2]
    at_centre, _ = margin_duals(np.einsum("ia,na,ja->nij", centre, ws, centre))
    d, mus = margin_duals(made.reshape(-1, 3, 3))
    d, mus = d.reshape(m, t), mus.reshape(m, t, 4, 3)
    wu = ws @ u
    rest = np.minimum(l**p - ws * l, u**p - ws * u).sum(1)
    value = np.where(d > wu[:, None], np.inf, d + rest[:, None])
    i, j = np.unravel_index(int(np.argmax(value)), value.shape)
    centre_value = float(np.max(np.where(at_centre > wu, np.inf, at_centre + rest)))
    crude = float(np.sum(l**p))
    return LeafProposal(
        value=max(float(value[i, j]), crude),
        value_at_centre=max(centre_value, crude),
        w=ws[i].copy(),  # copies: a view would keep every candidate's arrays alive in the heap
        form=forms[j][0],
        params=forms[j][1],
        mu=mus[i, j].copy(),
    )


# ---- the proofs -----------------------------------------------------------------------------------
def proven_leaf(
    p: Any,
    l: np.ndarray,
    u: np.ndarray,
    r: np.ndarray,
    h: float,
    prop: LeafProposal,
    iv: Any,
    enough: mpmath.mpf | None = None,
) -> mpmath.mpf:
    """A proven lower bound on `sum_i x_i^p` over the leaf (`l`, `u`, cell centre `r`, half-side
    `h`): `+inf` when the leaf holds no point, the crude `sum_i l_i^p` alone when it reaches
    `enough` or the proposal found nothing better."""
    crude = ends(sum(power(iv.mpf(float(x)), p, iv) for x in l))[0]
    if prop.mu is None or (enough is not None and crude >= enough) or prop.value <= crude:
        return crude
    w = [iv.mpf(float(x)) for x in prop.w]
    made = _proven_multiplier(prop, rodrigues_iv(r, iv), cell_radius(h, iv), w, iv)
    d = _proven_d(made, prop.mu, iv)
    if d is None:
        return crude
    wu = sum(wi * iv.mpf(float(x)) for wi, x in zip(w, u, strict=True))
    if d > ends(wu)[1]:
        return mpmath.inf
    rest = sum(
        min(
            ends(power(iv.mpf(float(lo)), p, iv) - wi * float(lo))[0],
            ends(power(iv.mpf(float(hi)), p, iv) - wi * float(hi))[0],
        )
        for wi, lo, hi in zip(w, l, u, strict=True)
    )
    return max(crude, ends(iv.mpf(d) + iv.mpf(rest))[0])


def _proven_multiplier(
    prop: LeafProposal, c: list[list[Any]], eps: Any, w: list[Any], iv: Any
) -> list[list[Any]]:
    """Lemma F's W' in intervals: form 1, `C diag(w) C^T / (1 + t) - eps^2 max(w) / t I`; form 2,
    `w_a I + (w_b - w_a)(I - (1 + t1) c_a c_a^T - (1 + 1/t1) eps^2 I)
    + (w_c - w_b)((1 - t2) c_c c_c^T - (1/t2 - 1) eps^2 I)` with `w_a <= w_b <= w_c`."""
    eye = [[iv.mpf(int(i == j)) for j in range(3)] for i in range(3)]
    e2 = eps * eps
    if prop.form == 1:
        t = iv.mpf(prop.params[0])
        top = max(w, key=lambda x: ends(x)[1])
        return [
            [
                sum(c[i][k] * w[k] * c[j][k] for k in range(3)) / (1 + t) - e2 * top / t * eye[i][j]
                for j in range(3)
            ]
            for i in range(3)
        ]
    t1, t2 = iv.mpf(prop.params[0]), iv.mpf(prop.params[1])
    a, b, top = (int(x) for x in np.argsort(prop.w))
    return [
        [
            w[a] * eye[i][j]
            + (w[b] - w[a])
            * (eye[i][j] - (1 + t1) * c[i][a] * c[j][a] - (1 + 1 / t1) * e2 * eye[i][j])
            + (w[top] - w[b]) * ((1 - t2) * c[i][top] * c[j][top] - (1 / t2 - 1) * e2 * eye[i][j])
            for j in range(3)
        ]
        for i in range(3)
    ]


def _proven_d(made: list[list[Any]], mu: np.ndarray, iv: Any) -> mpmath.mpf | None:
    """d(W') from below, per class the Lagrangian `y^T W' y + mu^T (1 - A y)` at the point
    `y = W'^-1 A^T mu / 2` (floats), less `|grad|^2 / (4 lambda_min(W'))`; None when W' is not
    proven positive definite.  The margin rows have entries 0 and +-1 (`margin_rows`), so their
    products are sums, taken exactly."""
    mid = np.array([[float(x.mid) for x in row] for row in made])
    lam = eigenvalue_bounds(mid, iv, made)[0][0]
    if lam <= 0:
        return None
    rows = margin_rows()
    one, total, modulus = iv.mpf(1), iv.mpf(0), 4 * iv.mpf(lam)
    for k in range(4):
        m = [iv.mpf(max(float(x), 0.0)) for x in mu[k]]
        y = [iv.mpf(float(x)) for x in np.linalg.solve(mid, rows[k].T @ mu[k]) / 2]
        wy = [made[i][0] * y[0] + made[i][1] * y[1] + made[i][2] * y[2] for i in range(3)]
        value = y[0] * wy[0] + y[1] * wy[1] + y[2] * wy[2]
        pull = [wy[j] + wy[j] for j in range(3)]  # the gradient 2 W'y - A^T mu, built below
        for mi, row in zip(m, rows[k], strict=True):
            margin = _signed_sum(row, y)
            value += mi * (one - margin)
            for j in np.flatnonzero(row):
                pull[j] = pull[j] - mi if row[j] > 0 else pull[j] + mi
        total += value - (pull[0] * pull[0] + pull[1] * pull[1] + pull[2] * pull[2]) / modulus
    return ends(total)[0]


def _signed_sum(row: np.ndarray, y: list[Any]) -> Any:
    """`row . y` for a row of entries 0 and +-1."""
    out = None
    for j in np.flatnonzero(row):
        term = y[j] if row[j] > 0 else -y[j]
        out = term if out is None else out + term
    return out
