"""L-BFGS written against the array API: the iterates never leave their namespace or device.

The inverse-Hessian approximation is used in its *compact representation* (Byrd, Nocedal &
Schnabel 1994, eq. 3.1, with `H_0 = gamma I`):

    H g = gamma g + S p + gamma Y q,
    u = R^{-1} S^T g,  p = R^{-T} ((D + gamma Y^T Y) u - gamma Y^T g),  q = -u,

where the columns of `S`, `Y` are the last `m` steps and gradient changes, `R` is the upper
triangle of `S^T Y` and `D` its diagonal.  It is the same matrix as the classical two-loop
recursion (Nocedal & Wright, Alg. 7.4; kept here as `two_loop_direction` for tests), but it costs
two matrix-vector products over one `(2m + 1, n)` array holding the gradient and the pairs as
rows instead of `4m` separate inner products and axpys: on vectors of 10^4..10^6 entries the
two-loop recursion spent more time in Python and memory traffic than the objective did.  The
`O(m^2)` algebra on the `2m + 1` numbers those products return runs on the host in float64.

A strong-Wolfe line search (Nocedal & Wright, Alg. 3.5/3.6, cubic interpolation in the zoom)
picks the step.  Only scalars and `(2m + 1)`-vectors cross to the host.  It runs until it can no
longer decrease `F` in floating point, so converged runs sit at the attainable accuracy (relative
gaps of 1e-16..1e-14 to the exact optimum on the paper's configurations) rather than at a loose
tolerance.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from array_api_compat import device as array_device

from ncverify.backend import to_host

Array = Any
FunGrad = Callable[[Array], tuple[float, Array]]


@dataclass
class LBFGSResult:
    """Where a minimisation ended and why."""

    x: Array
    f: float
    grad_norm: float
    iterations: int
    evaluations: int
    message: str


@dataclass
class StepResult:
    """An accepted line-search step: `x + alpha d`, with its value and gradient."""

    alpha: float
    x: Array
    f: float
    g: Array
    evaluations: int


def _dot(xp, a: Array, b: Array) -> float:  # noqa: ANN001
    return float(xp.vecdot(a, b))


def _set_row(buf: Array, i: int, v: Array) -> Array:
    """`buf[i, :] = v`, also on namespaces with immutable arrays (jax); returns the buffer."""
    try:
        buf[i, :] = v
        return buf
    except (TypeError, ValueError, NotImplementedError):
        return buf.at[i, :].set(v)


class CompactHistory:
    """The last `memory` curvature pairs, stored as rows of one array with the gradient.

    Row 0 holds the gradient of the current `direction` call and rows `1 + 2j`, `2 + 2j` the
    pair `s_j`, `y_j` of slot `j`; slots are filled in order and then reused circularly, and
    `order` lists them from the oldest pair to the newest.  The inner products `s_i . y_j`
    (i no newer than j) and `y_i . y_j` are kept on the host.  A direction costs two passes over
    the stored rows: `[g; S; Y] g`, which gives `g . g` as well, and `[g; S; Y]^T c`, which gives
    `-H g` whole.  When the new `y` is the change of gradient between two `direction` calls
    (`push(..., gradient_change=True)`, as in `minimise`), its inner products with the stored
    rows come free as `[S; Y] g_new - [S; Y] g_old`; their rounding error,
    `eps |S| (|g_new| + |g_old|)`, is below the error that `y` itself carries from evaluating
    the two gradients.  Otherwise they cost one more pass, `[S; Y] y`.
    """

    def __init__(self, xp, memory: int) -> None:  # noqa: ANN001
        if memory < 1:
            raise ValueError("memory must be at least 1.")
        self.xp = xp
        self.memory = memory
        self.buf: Array | None = None  # (1 + 2 * memory, n), allocated on first use
        self.order: list[int] = []
        # host bookkeeping in plain Python floats: with a few pairs, numpy's per-call overhead
        # (ix_, triu, solve: ~10 us each) cost more than the two passes over the rows
        self.sty = [[0.0] * memory for _ in range(memory)]
        self.yty = [[0.0] * memory for _ in range(memory)]
        self._pending: tuple[int, Array, float, float, bool] | None = None
        self._last_prod: list[float] | None = None  # [S; Y] g of the last direction, by slot

    def __len__(self) -> int:
        return len(self.order)

    def clear(self) -> None:
        self.order = []
        self._pending = None
        self._last_prod = None

    def _allocate(self, like: Array) -> None:
        if self.buf is None:
            self.buf = self.xp.zeros(
                (1 + 2 * self.memory, like.shape[0]), dtype=like.dtype, device=array_device(like)
            )

    def push(self, s: Array, y: Array, sy: float, *, gradient_change: bool = False) -> None:
        """Store a pair with `sy = s . y > 0`.

        `gradient_change`: `y` is the gradient passed to the next `direction` call minus the one
        passed to the previous call (which lets the next direction skip a pass).
        """
        self._allocate(s)
        if len(self.order) < self.memory:
            slot = len(self.order)
        else:
            slot = self.order.pop(0)
        self.buf = _set_row(self.buf, 1 + 2 * slot, s)
        self.buf = _set_row(self.buf, 2 + 2 * slot, y)
        self.order.append(slot)
        reuse = gradient_change and self._last_prod is not None
        self._pending = (slot, y, float(sy), _dot(self.xp, y, y), reuse)

    def _record_new_pair(self, prod: list[float]) -> None:
        """Inner products of the newest `y` with every stored row, into `sty` and `yty`."""
        if self._pending is None:
            return
        slot, y, sy, yy, reuse = self._pending
        k = len(self.order)
        if reuse:
            old = self._last_prod
            col = [prod[i] - old[i] if i < len(old) else 0.0 for i in range(2 * k)]
        else:
            col = to_host(self.buf[1 : 1 + 2 * k, :] @ y).astype(np.float64).tolist()
        col[2 * slot], col[2 * slot + 1] = sy, yy  # the new pair's own products, computed exactly
        for i in range(k):
            # s_i . y_new: a new column of S^T Y (only i no newer than the new pair is read)
            self.sty[i][slot] = col[2 * i]
            self.yty[i][slot] = self.yty[slot][i] = col[2 * i + 1]
        self._pending = None

    def direction(self, g: Array) -> tuple[Array, float]:
        """`(-H g, g . g)`; `-g` while the history is empty."""
        xp = self.xp
        if not self.order:
            self._last_prod = None
            return -g, _dot(xp, g, g)
        self.buf = _set_row(self.buf, 0, g)
        rows = self.buf[: 1 + 2 * len(self.order), :]
        full = to_host(rows @ g).astype(np.float64).tolist()  # g.g, then S^T g, Y^T g by slot
        gg, prod = full[0], full[1:]
        self._record_new_pair(prod)
        self._last_prod = prod
        idx, k = self.order, len(self.order)
        a = [prod[2 * j] for j in idx]
        b = [prod[2 * j + 1] for j in idx]
        r = [[self.sty[i][j] for j in idx] for i in idx]  # S^T Y in time order; R = its upper part
        yy = [[self.yty[i][j] for j in idx] for i in idx]
        gamma = r[-1][-1] / yy[-1][-1]
        u = [0.0] * k  # R u = S^T g (back substitution)
        for i in range(k - 1, -1, -1):
            u[i] = (a[i] - sum(r[i][j] * u[j] for j in range(i + 1, k))) / r[i][i]
        p = [0.0] * k  # R^T p = (D + gamma Y^T Y) u - gamma Y^T g (forward substitution)
        for i in range(k):
            rhs = r[i][i] * u[i] + gamma * sum(yy[i][j] * u[j] for j in range(k)) - gamma * b[i]
            p[i] = (rhs - sum(r[j][i] * p[j] for j in range(i))) / r[i][i]
        # -H g = -(gamma g + S p - gamma Y u): one combination of the rows [g; S; Y]
        coef = [0.0] * (1 + 2 * k)
        coef[0] = -gamma
        for t, j in enumerate(idx):
            coef[1 + 2 * j] = -p[t]
            coef[2 + 2 * j] = gamma * u[t]
        c = xp.asarray(coef, dtype=g.dtype, device=array_device(g))
        return rows.T @ c, gg


def two_loop_direction(xp, g: Array, pairs: list[tuple[Array, Array]]) -> Array:  # noqa: ANN001
    """`-H g` by the classical two-loop recursion (oldest pair first in `pairs`).

    A reference for the compact representation; `minimise` does not use it.
    """
    q = g
    alphas = []
    rhos = [1.0 / _dot(xp, s, y) for s, y in pairs]
    for (s, y), rho in zip(reversed(pairs), reversed(rhos), strict=True):
        a = rho * _dot(xp, s, q)
        alphas.append(a)
        q = q - a * y
    if pairs:
        s, y = pairs[-1]
        q = q * (_dot(xp, s, y) / _dot(xp, y, y))
    for (s, y), rho, a in zip(pairs, rhos, reversed(alphas), strict=True):
        q = q + (a - rho * _dot(xp, y, q)) * s
    return -q


def _cubic_min(a: float, fa: float, ga: float, b: float, fb: float, gb: float) -> float:
    """Minimiser of the cubic through (a, fa, ga), (b, fb, gb), kept inside the bracket."""
    lo, hi = min(a, b), max(a, b)
    d1 = ga + gb - 3 * (fa - fb) / (a - b)
    disc = d1 * d1 - ga * gb
    if disc >= 0:
        d2 = math.copysign(math.sqrt(disc), b - a)
        denom = gb - ga + 2 * d2
        if denom != 0:
            t = b - (b - a) * (gb + d2 - d1) / denom
            if lo + 0.1 * (hi - lo) <= t <= hi - 0.1 * (hi - lo):
                return t
    return (lo + hi) / 2


def wolfe_search(
    fun_grad: FunGrad,
    xp,  # noqa: ANN001
    x: Array,
    f0: float,
    g0: Array,
    d: Array,
    alpha: float,
    c1: float = 1e-4,
    c2: float = 0.9,
    max_eval: int = 25,
    dg0: float | None = None,
    flat_tol: float = 0.0,
) -> StepResult | None:
    """A strong-Wolfe step along `d` (None when no decrease was found).

    Every probed point is kept with its gradient, so accepting a point never re-evaluates it.
    `flat_tol`: once three probes in a row of the zoom differ from `f0` by no more than this
    (rounding noise), the search stops: at the attainable accuracy no probe can tell a better
    step from a worse one, and the remaining evaluations (up to `max_eval`, which the last
    few searches of every run used to spend in full) would be wasted.
    """
    if dg0 is None:
        dg0 = _dot(xp, g0, d)
    search = _LineSearch(fun_grad, xp, x, f0, d, dg0, c1, c2, max_eval, flat_tol)
    return search.bracket(alpha, (0.0, f0, dg0, x, g0))


#: A probed point: (alpha, f, directional derivative, point, gradient).
_Probe = tuple[float, float, float, Array, Array]


@dataclass
class _LineSearch:
    """The state of one strong-Wolfe search: what it probes along, and how many evaluations it
    has spent."""

    fun_grad: FunGrad
    xp: Any
    x: Array
    f0: float
    d: Array
    dg0: float
    c1: float
    c2: float
    max_eval: int
    flat_tol: float
    evals: int = 0

    def probe(self, a: float) -> _Probe:
        """The point at step `a`; a non-finite value is treated as "too far": it can only
        become the upper end of the bracket."""
        self.evals += 1
        xa = self.x + self.d if a == 1.0 else self.x + a * self.d
        f, g = self.fun_grad(xa)
        f = f if math.isfinite(f) else math.inf
        return a, f, _dot(self.xp, g, self.d), xa, g

    def done(self, pt: _Probe) -> StepResult:
        return StepResult(pt[0], pt[3], pt[1], pt[4], self.evals)

    def sufficient(self, pt: _Probe) -> bool:
        """The Armijo condition at `pt`."""
        return pt[1] <= self.f0 + self.c1 * pt[0] * self.dg0

    def curvature(self, pt: _Probe) -> bool:
        """The strong curvature condition at `pt`."""
        return abs(pt[2]) <= -self.c2 * self.dg0

    def bracket(self, alpha: float, prev: _Probe) -> StepResult | None:
        """Double the step until a Wolfe point is found or one is bracketed."""
        a = alpha
        while self.evals < self.max_eval:
            pt = self.probe(a)
            if not self.sufficient(pt) or (self.evals > 1 and pt[1] >= prev[1]):
                return self.zoom(prev, pt)
            if self.curvature(pt):
                return self.done(pt)
            if pt[2] >= 0:
                return self.zoom(pt, prev)
            prev = pt
            a *= 2.0
        return None

    def zoom(self, lo: _Probe, hi: _Probe) -> StepResult | None:
        """Shrink the bracket `[lo, hi]` by cubic interpolation to a Wolfe point."""
        flat = 0
        while self.evals < self.max_eval:
            fhi = hi[1] if math.isfinite(hi[1]) else lo[1] + 1.0
            t = _cubic_min(lo[0], lo[1], lo[2], hi[0], fhi, hi[2])
            pt = self.probe(t)
            flat = flat + 1 if abs(pt[1] - self.f0) <= self.flat_tol else 0
            if flat >= 3:
                break
            if not self.sufficient(pt) or pt[1] >= lo[1]:
                hi = pt
            else:
                if self.curvature(pt):
                    return self.done(pt)
                if pt[2] * (hi[0] - lo[0]) >= 0:
                    hi = lo
                lo = pt
            if abs(hi[0] - lo[0]) <= 1e-16 * max(1.0, abs(lo[0])):
                break
        if lo[1] < self.f0:  # no Wolfe point, but a decrease: accept it
            return self.done(lo)
        return None


def _descent(hist: CompactHistory, xp: Any, g: Array) -> tuple[Array, float, float]:
    """The L-BFGS direction, its slope and the gradient's norm; steepest descent (and the history
    cleared) where the direction does not descend (or is NaN)."""
    d, gg = hist.direction(g)
    gnorm = math.sqrt(gg) if gg >= 0 else math.nan
    gd = _dot(xp, g, d)
    if not gd < 0:
        hist.clear()
        d, gd = -g, -gg
    return d, gd, gnorm


def minimise(
    fun_grad: FunGrad,
    x0: Array,
    xp,  # noqa: ANN001
    *,
    memory: int = 3,
    max_iter: int = 20000,
    gtol: float = 0.0,
    callback: Callable[[int, float, Array], None] | None = None,
) -> LBFGSResult:
    """Minimise until no further decrease is possible (or `||grad|| <= gtol`, or `max_iter`).

    `memory` pairs are kept, each costing two passes over an `n`-vector per iteration.  On the
    paper's configurations the iteration count hardly depends on it (16 random starts, counts
    200,100,50,50: depth 3, 5166 / 5073 / 4899 iterations with 3 / 5 / 8 pairs; depth 9,
    12389 / 15758 / 14367), so the fewest pairs took the least time (depth 9: 21 s / 33 s /
    36 s of CPU).  `callback(iteration, F, x)` is called after every accepted step.
    """
    evals = 0

    def counted(x: Array) -> tuple[float, Array]:
        nonlocal evals
        evals += 1
        return fun_grad(x)

    # differences of F below this are rounding noise (F is a sum of non-negative terms, each
    # evaluated to a few ulps)
    noise = 16 * float(xp.finfo(x0.dtype).eps)
    x = x0
    f, g = counted(x)
    hist = CompactHistory(xp, memory)
    message = "max_iter reached"
    stalls = 0
    it = 0
    for it in range(1, max_iter + 1):
        d, gd, gnorm = _descent(hist, xp, g)
        if not math.isfinite(f) or not math.isfinite(gnorm):
            message = "non-finite objective"
            break
        if gnorm <= gtol:
            message = "gradient below tolerance"
            break
        step = 1.0 if len(hist) else min(1.0, 1.0 / gnorm)
        found = wolfe_search(counted, xp, x, f, g, d, step, dg0=gd, flat_tol=noise * abs(f))
        if found is None:
            if len(hist):
                hist.clear()
                stalls += 1
                if stalls > 2:
                    message = "line search cannot decrease F further"
                    break
                continue
            message = "line search cannot decrease F further"
            break
        s_vec = d if found.alpha == 1.0 else found.alpha * d
        y_vec = found.g - g
        sy = _dot(xp, s_vec, y_vec)
        if sy > 1e-300:
            hist.push(s_vec, y_vec, sy, gradient_change=True)
        decreased = found.f < f
        x, f, g = found.x, found.f, found.g
        stalls = 0 if decreased else stalls + 1
        if stalls > 2:
            message = "no further decrease in floating point"
            break
        if callback is not None:
            callback(it, f, x)
    return LBFGSResult(x, f, math.sqrt(_dot(xp, g, g)), it, evals, message)
