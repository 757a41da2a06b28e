"""L-BFGS for a batch of independent problems, advanced together in one array computation.

Each row of `x` (`(B, n)`) is its own minimisation with its own curvature pairs, step length and
stopping state; every operation acts on all rows at once (`xp.where` masks, never a loop over
rows), so a batch of thousands of small problems costs a few batched products per iteration, on
whichever namespace and device holds it.  The direction is the classical two-loop recursion
(Nocedal & Wright, Alg. 7.4) with `H_0 = gamma I`, `gamma = s^T y / y^T y` of the newest pair; a
pair with `s^T y <= 0` is stored with `rho = 0`, which makes it a no-op in both loops.  The step
is found by backtracking until the Armijo condition holds (at most `BACKTRACKS` trials,
each at the minimiser of a parabola, `_armijo`), from twice the row's last step or 1, whichever
is smaller; a row whose direction is not a descent direction restarts from `-g`.  A row stops
(is frozen, keeping its point) when

- the decrease its quasi-Newton model still promises, `-g^T d / 2`, is below `ftol` of its
  value (relative to its value or, for a value falling towards zero, to `1e-10` times its first
  value): a line search there would only backtrack through rounding noise;
- its line search fails on a steepest-descent direction (a failure on a quasi-Newton direction
  is retried once along `-g`), a search failing once no trial step can promise `ftol` of the
  value;
- or its value stops falling: a relative decrease below `ftol` for `PATIENCE` iterations.

Frozen rows are set aside whenever they are half of the rows still carried, so an iteration
costs what the rows still moving cost, and they come back in their order at the end.

>>> import numpy as np
>>> a = np.array([[1.0, 100.0], [3.0, 0.5]])  # two diagonal quadratics 1/2 sum a_i x_i^2
>>> def fg(x, rows):
...     ax = a * x if rows is None else a[rows] * x
...     return (ax * x).sum(1) / 2, ax
>>> res = batched_lbfgs(fg, np.ones((2, 2)), np, 200)
>>> bool(np.all(np.abs(res.x) < 1e-6)), res.converged.tolist()
(True, [True, True])
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Array = Any
#: rows (and their indices in the batch, None for all of them) -> values `(B,)`, gradients `(B, n)`
BatchFunGrad = Callable[[Array, Array | None], tuple[Array, Array]]

#: Halvings of the step in one line search at most: a row that needs more is at the rounding
#: level of its value (or its direction is useless) and is frozen.
BACKTRACKS = 20
#: Iterations in a row without a relative decrease above `ftol` before a row is frozen.
PATIENCE = 5
#: Curvature pairs kept per row.
MEMORY = 6
#: Sufficient-decrease constant of the Armijo condition.
ARMIJO = 1e-4


@dataclass(frozen=True)
class BatchDescent:
    """Where each row ended: its point, value, and whether it stopped by itself (converged or
    unable to decrease) rather than at the iteration limit."""

    x: Array
    f: Array
    converged: Array
    iterations: int
    evaluations: int


def batched_lbfgs(
    fun_grad: BatchFunGrad,
    x0: Array,
    xp: Any,
    max_iter: int,
    *,
    ftol: float = 1e-13,
) -> BatchDescent:
    """Minimise every row of `x0` under `fun_grad` (rows -> values `(B,)`, gradients `(B, n)`)."""
    x = x0
    f, g = fun_grad(x, None)
    floor_f = 1e-10 * xp.abs(f)  # a value falling towards 0 is measured against where it began
    t = xp.ones_like(f)  # each row's last accepted step
    floor = xp.finfo(f.dtype).smallest_normal ** 0.5  # a smaller s^T y overflows rho
    pairs: list[tuple[Array, Array, Array]] = []  # (s, y, rho), oldest first
    gamma = 1.0 / xp.maximum(xp.sqrt(xp.sum(g * g, axis=1)), 1.0)  # a first step of length <= 1
    active = xp.isfinite(f)
    stalled = xp.zeros_like(f, dtype=xp.int64)
    retry = xp.zeros_like(active)  # rows whose quasi-Newton step failed: next, steepest descent
    # The working set: the rows still active, by their index in the batch.  Most rows stop
    # long before the slowest, so the frozen ones are set aside (`done`) whenever they are half
    # of it, and the arithmetic of an iteration costs what the rows still moving cost.
    work = xp.arange(x.shape[0], dtype=xp.int64, device=_device(f))
    done: list[tuple[Array, Array, Array]] = []  # (rows, points, values) set aside
    evaluations, it = 1, 0
    for it in range(1, max_iter + 1):  # noqa: B007 - the count is reported
        d = _direction(g, pairs, gamma, xp)
        gd = xp.vecdot(g, d)
        restart = (gd >= 0) | retry
        d = xp.where(restart[:, None], -gamma[:, None] * g, d)
        gd = xp.where(restart, -gamma * xp.sum(g * g, axis=1), gd)
        # -gd / 2 is the decrease the quasi-Newton model still promises (its decrement): a row
        # promised less than `ftol` of its value has converged, and a line search there would
        # only backtrack through rounding noise
        least = ftol * xp.maximum(xp.abs(f), floor_f)  # the least decrease that is progress
        active = active & (-gd > 2 * least)
        if not bool(xp.any(active)):
            break
        d = xp.where(active[:, None], d, 0.0)
        x_new, f_new, g_new, accepted, t, used = _armijo(
            _on(fun_grad, work, xp), x, f, g, d, gd, active, xp.minimum(2 * t, 1.0), least, xp
        )
        evaluations += used
        s, y = x_new - x, g_new - g
        ys, yy = xp.vecdot(s, y), xp.vecdot(y, y)
        # a pair of rounding-level curvature would give an overflowing rho: kept as a no-op
        good = accepted & (ys > 1e-10 * xp.sqrt(xp.vecdot(s, s) * yy)) & (ys > floor)
        pairs.append((s, y, xp.where(good, 1.0 / xp.where(good, ys, 1.0), 0.0)))
        pairs = pairs[-MEMORY:]
        gamma = xp.where(good, ys / xp.where(good, yy, 1.0), gamma)
        small = (f - f_new) <= ftol * xp.maximum(xp.abs(f_new), floor_f)
        stalled = xp.where(small, stalled + 1, 0)
        retry = active & ~accepted & ~restart
        t = xp.where(retry, 1.0, t)
        active = active & (accepted | retry) & (stalled < PATIENCE)
        x, f, g = x_new, f_new, g_new
        moving = int(xp.count_nonzero(active))
        if moving == 0:
            break
        if 2 * moving <= active.shape[0]:
            stop = xp.nonzero(~active)[0]
            done.append((xp.take(work, stop), xp.take(x, stop, axis=0), xp.take(f, stop)))
            keep = xp.nonzero(active)[0]
            state = (work, x, f, g, t, gamma, floor_f, stalled, retry)
            work, x, f, g, t, gamma, floor_f, stalled, retry = _rows(state, keep, xp)
            pairs = [_rows(pair, keep, xp) for pair in pairs]
            active = xp.ones_like(f, dtype=xp.bool)
    return _in_batch_order(done, work, x, f, active, it, evaluations, xp)


def _rows(arrays: tuple[Array, ...], keep: Array, xp: Any) -> tuple[Array, ...]:
    return tuple(xp.take(a, keep, axis=0) for a in arrays)


def _in_batch_order(
    done: list[tuple[Array, Array, Array]],
    work: Array,
    x: Array,
    f: Array,
    active: Array,
    it: int,
    evaluations: int,
    xp: Any,
) -> BatchDescent:
    """The rows set aside and the rows still carried, back in the order of the batch."""
    rows = xp.concat([*(r for r, _, _ in done), work])
    order = xp.argsort(rows)
    x_all = xp.take(xp.concat([*(p for _, p, _ in done), x], axis=0), order, axis=0)
    f_all = xp.take(xp.concat([*(v for _, _, v in done), f]), order)
    stopped = xp.zeros(rows.shape[0] - work.shape[0], dtype=xp.bool, device=_device(f))
    still = xp.concat([stopped, active])
    return BatchDescent(x_all, f_all, ~xp.take(still, order), it, evaluations)


def _on(fun_grad: BatchFunGrad, work: Array, xp: Any) -> BatchFunGrad:
    """`fun_grad` on rows of the working set, told their indices in the whole batch."""

    def on_work(x: Array, rows: Array | None) -> tuple[Array, Array]:
        return fun_grad(x, work if rows is None else xp.take(work, rows))

    return on_work


def _direction(g: Array, pairs: list[tuple[Array, Array, Array]], gamma: Array, xp: Any) -> Array:
    """`-H g` by the two-loop recursion, row by row (all rows at once)."""
    q = g
    alphas = []
    for s, y, rho in reversed(pairs):
        a = rho * xp.vecdot(s, q)
        q = q - a[:, None] * y
        alphas.append(a)
    r = gamma[:, None] * q
    for (s, y, rho), a in zip(pairs, reversed(alphas), strict=True):
        beta = rho * xp.vecdot(y, r)
        r = r + (a - beta)[:, None] * s
    return -r


def _armijo(
    fun_grad: BatchFunGrad,
    x: Array,
    f: Array,
    g: Array,
    d: Array,
    gd: Array,
    active: Array,
    t: Array,
    least: Array,
    xp: Any,
) -> tuple[Array, Array, Array, Array, Array, int]:
    """Backtracking from the trial steps `t` until each active row decreases enough; rows that
    never do keep their point (`accepted` False).  A failed trial is followed by the minimiser
    of the parabola through `f`, the slope `gd` and the trial's value, kept within `[t/10, t/2]`
    (Nocedal & Wright, section 3.5); a row gives up (is not `accepted`) once a trial step's
    first-order decrease `-t gd` is below `least`, the decrease that counts as progress.  Only
    the rows still pending are evaluated, and the trials' rows are gathered into the new
    iterate once, at the end: a few badly scaled rows do not make the whole batch pay."""
    pending, used = active, 0
    gave_up = xp.zeros_like(active)
    tried_x, tried_f, tried_g = [], [], []
    rows = x.shape[0]
    source = xp.full(f.shape, -1, dtype=xp.int64, device=_device(f))  # trial row of each row
    offset = 0
    for _ in range(BACKTRACKS):
        idx = xp.nonzero(pending)[0]
        ts = xp.take(t, idx, axis=0)
        xt = xp.take(x, idx, axis=0) + ts[:, None] * xp.take(d, idx, axis=0)
        ft, gt = fun_grad(xt, idx)
        used += 1
        f0, slope = xp.take(f, idx, axis=0), xp.take(gd, idx, axis=0)
        ok_sub = xp.isfinite(ft) & (ft <= f0 + ARMIJO * ts * slope)
        here = offset + xp.arange(idx.shape[0], dtype=xp.int64, device=_device(f))
        ok = _scatter(ok_sub, pending, False, xp)
        source = xp.where(ok, _scatter(here, pending, 0, xp), source)
        tried_x, tried_f, tried_g = [*tried_x, xt], [*tried_f, ft], [*tried_g, gt]
        offset += idx.shape[0]
        pending = pending & ~ok
        if not bool(xp.any(pending)):
            break
        curve = ft - f0 - slope * ts
        parabola = -slope * ts * ts / (2 * xp.where(curve > 0, curve, 1.0))
        step = xp.where(xp.isfinite(ft) & (curve > 0), parabola, ts / 2)
        step = xp.minimum(xp.maximum(step, ts / 10), ts / 2)
        t = xp.where(pending, _scatter(step, pending, 1.0, xp), t)
        # a step whose first-order decrease is below the least progress cannot make any
        hopeless = pending & (-t * gd <= least)
        gave_up, pending = gave_up | hopeless, pending & ~hopeless
        if not bool(xp.any(pending)):
            break
    accepted = active & ~pending & ~gave_up
    where = xp.where(accepted, source, offset + xp.arange(rows, dtype=xp.int64, device=_device(f)))
    x_new = xp.take(xp.concat([*tried_x, x], axis=0), where, axis=0)
    f_new = xp.take(xp.concat([*tried_f, f], axis=0), where, axis=0)
    g_new = xp.take(xp.concat([*tried_g, g], axis=0), where, axis=0)
    return x_new, f_new, g_new, accepted, t, used


def _scatter(values: Array, mask: Array, fill: Any, xp: Any) -> Array:
    """The rows of `values` at the rows where `mask` holds (in order), `fill` elsewhere: a
    scatter written as a gather, which every array namespace has."""
    pad = xp.full((1, *values.shape[1:]), fill, dtype=values.dtype, device=_device(values))
    padded = xp.concat([values, pad], axis=0)
    position = xp.cumulative_sum(xp.astype(mask, xp.int64)) - 1
    position = xp.where(mask, position, values.shape[0])
    return xp.take(padded, position, axis=0)


def _device(a: Array) -> Any:
    return getattr(a, "device", None)
