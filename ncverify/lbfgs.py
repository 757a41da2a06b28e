"""L-BFGS written against the array API: the iterates never leave their namespace or device.

Two-loop recursion (Nocedal & Wright, Alg. 7.4) with a strong-Wolfe line search (Alg. 3.5/3.6,
cubic interpolation in the zoom).  Only scalars (function values, inner products) cross to the
host, once or twice per evaluation.  It runs until it can no longer decrease `F` in floating
point, so converged runs sit at the attainable accuracy rather than at a loose tolerance.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Array = Any
FunGrad = Callable[[Array], tuple[float, Array]]


@dataclass
class LBFGSResult:
    x: Array
    f: float
    grad_norm: float
    iterations: int
    evaluations: int
    message: str


def _dot(xp, a: Array, b: Array) -> float:  # noqa: ANN001
    return float(xp.vecdot(a, b))


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
    xp,
    x: Array,
    f0: float,
    g0: Array,
    d: Array,  # noqa: ANN001
    alpha: float,
    c1: float = 1e-4,
    c2: float = 0.9,
    max_eval: int = 25,
):
    """Strong-Wolfe step along `d`; returns `(alpha, f, g, evaluations)` or None on failure."""
    dg0 = _dot(xp, g0, d)
    prev_a, prev_f, prev_dg = 0.0, f0, dg0
    evals = 0

    def probe(a: float):  # noqa: ANN202
        nonlocal evals
        evals += 1
        f, g = fun_grad(x + a * d)
        return f, g, _dot(xp, g, d)

    def zoom(lo, flo, dglo, hi, fhi, dghi):  # noqa: ANN001, ANN202
        while evals < max_eval:
            a = _cubic_min(lo, flo, dglo, hi, fhi, dghi)
            f, g, dg = probe(a)
            if not math.isfinite(f) or f > f0 + c1 * a * dg0 or f >= flo:
                hi, fhi, dghi = a, f if math.isfinite(f) else flo + 1.0, dg
            else:
                if abs(dg) <= -c2 * dg0:
                    return a, f, g
                if dg * (hi - lo) >= 0:
                    hi, fhi, dghi = lo, flo, dglo
                lo, flo, dglo = a, f, dg
            if abs(hi - lo) <= 1e-16 * max(1.0, abs(lo)):
                break
        if flo < f0:  # no Wolfe point, but a decrease: accept it
            f, g, _ = probe(lo)
            return lo, f, g
        return None

    a = alpha
    while evals < max_eval:
        f, g, dg = probe(a)
        if not math.isfinite(f) or f > f0 + c1 * a * dg0 or (evals > 1 and f >= prev_f):
            out = zoom(prev_a, prev_f, prev_dg, a, f if math.isfinite(f) else f0 + 1.0, dg)
            return None if out is None else (*out, evals)
        if abs(dg) <= -c2 * dg0:
            return a, f, g, evals
        if dg >= 0:
            out = zoom(a, f, dg, prev_a, prev_f, prev_dg)
            return None if out is None else (*out, evals)
        prev_a, prev_f, prev_dg = a, f, dg
        a *= 2.0
    return None


def minimise(
    fun_grad: FunGrad,
    x0: Array,
    xp,
    *,
    memory: int = 20,  # noqa: ANN001
    max_iter: int = 20000,
    gtol: float = 0.0,
    callback: Callable[[int, float], None] | None = None,
) -> LBFGSResult:
    """Minimise until no further decrease is possible (or `||grad|| <= gtol`, or `max_iter`)."""
    x = x0
    f, g = fun_grad(x)
    evals = 1
    hist: deque[tuple[Array, Array, float]] = deque(maxlen=memory)
    message = "max_iter reached"
    stalls = 0
    it = 0
    for it in range(1, max_iter + 1):
        gnorm = math.sqrt(_dot(xp, g, g))
        if not math.isfinite(f) or not math.isfinite(gnorm):
            message = "non-finite objective"
            break
        if gnorm <= gtol:
            message = "gradient below tolerance"
            break
        # two-loop recursion: d = -H_k g
        q = g
        alphas = []
        for s, y, rho in reversed(hist):
            a = rho * _dot(xp, s, q)
            alphas.append(a)
            q = q - a * y
        if hist:
            s, y, _ = hist[-1]
            q = q * (_dot(xp, s, y) / _dot(xp, y, y))
        for (s, y, rho), a in zip(hist, reversed(alphas), strict=True):
            q = q + (a - rho * _dot(xp, y, q)) * s
        d = -q
        if _dot(xp, g, d) >= 0:  # not a descent direction: restart from steepest descent
            hist.clear()
            d = -g
        step = 1.0 if hist else min(1.0, 1.0 / gnorm)
        found = wolfe_search(fun_grad, xp, x, f, g, d, step)
        if found is None:
            if hist:
                hist.clear()
                stalls += 1
                if stalls > 2:
                    message = "line search cannot decrease F further"
                    break
                continue
            message = "line search cannot decrease F further"
            break
        alpha, f_new, g_new, n = found
        evals += n
        s_vec = alpha * d
        y_vec = g_new - g
        sy = _dot(xp, s_vec, y_vec)
        if sy > 1e-300:
            hist.append((s_vec, y_vec, 1.0 / sy))
        decreased = f_new < f
        x, f, g = x + s_vec, f_new, g_new
        stalls = 0 if decreased else stalls + 1
        if stalls > 2:
            message = "no further decrease in floating point"
            break
        if callback is not None:
            callback(it, f)
    return LBFGSResult(x, f, math.sqrt(_dot(xp, g, g)), it, evals, message)
