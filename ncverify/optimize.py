"""Multistart numerical minimisation of the full objective (all `W_m`, `H` and `b` free).

Every run starts at random — seeded, never at or near a prediction — at one of several start
scales `s`: `W_m` is `s` times a Haar-random orthogonal matrix (rescaled to the mean-square gain
of i.i.d. `N(0, s^2 / d_{m-1})` entries where it widens) and `H` has `N(0, s^2 / d)` entries
(each times `sqrt(lambda_bar / lambda)` when the weight decays differ, see `random_start`).
The minimiser is `ncverify.lbfgs` on the flattened parameters, on the backend's namespace.

Runs are independent: run `i` depends only on `(seed, i)` and its scale, and it is computed with
single-threaded BLAS, so its result is the same bit for bit whether the runs execute one after
the other or in parallel worker processes (`jobs`).  Worker processes are the default on the
numpy backend, where a run is too small for threaded BLAS to pay (and threaded BLAS reductions
would make the last bits depend on the thread count); other backends run serially.
"""

from __future__ import annotations

import functools
import math
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

import numpy as np
from threadpoolctl import threadpool_limits

from . import lbfgs
from .backend import Backend
from .objective import Objective, Params
from .problem import Problem

DEFAULT_SCALES: tuple[float, ...] = (0.5, 1.0, 2.0)

_P = ParamSpec("_P")
_T = TypeVar("_T")


@dataclass
class Run:
    """One optimiser run: where it started and where it ended."""

    seed: int
    scale: float
    objective: float
    grad_norm: float
    iterations: int
    evaluations: int
    time: float
    point: Params
    message: str = ""
    outcome: str = ""  # set by the verifier: at-prediction / worse / better / failed
    error_bound: float = 0.0  # proven bound on the rounding error of `objective`
    structure: dict | None = None


def single_threaded_blas(fn: Callable[_P, _T]) -> Callable[_P, _T]:
    """Decorate `fn` to run with one BLAS thread (threadpoolctl), restoring the limit after.

    The verifier's products are small or memory-bound: with threaded BLAS on a few shared cores
    they mostly wait for each other (a 64 x 64 pseudo-inverse took 30x longer with 2 threads
    while another process ran), and threaded reductions would tie the last bits of a result to
    the thread count.  Parallelism comes from running restarts in separate processes instead.
    """

    @functools.wraps(fn)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _T:
        with threadpool_limits(limits=1, user_api="blas"):
            return fn(*args, **kwargs)

    return wrapper


class Flattener:
    """Views between a flat vector and `Params` of a problem's shapes, on any namespace."""

    def __init__(self, problem: Problem, xp: Any) -> None:
        self.xp = xp
        self.shapes = [*problem.layer_shapes, (problem.widths[0], problem.N)]
        if problem.bias != "none":
            self.shapes.append((problem.K,))
        sizes = [int(np.prod(s)) for s in self.shapes]
        self.offsets = [int(o) for o in np.cumsum([0, *sizes])]
        self.has_bias = problem.bias != "none"
        self.depth = problem.depth

    @property
    def size(self) -> int:
        return self.offsets[-1]

    def unflatten(self, x: Any) -> Params:
        """`Params` whose arrays are views into the flat vector `x` (no copy)."""
        xp = self.xp
        parts = [
            xp.reshape(x[a:b], s)
            for a, b, s in zip(self.offsets[:-1], self.offsets[1:], self.shapes, strict=True)
        ]
        return Params(
            tuple(parts[: self.depth]),
            parts[self.depth],
            parts[self.depth + 1] if self.has_bias else None,
        )

    def flatten(self, p: Params) -> Any:
        """One flat vector (a copy) of `p`'s arrays, in the order `W_1 .. W_M, H, b`."""
        xp = self.xp
        return xp.concat([xp.reshape(a, (-1,)) for a in p.arrays()])


def random_orthogonal(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """A Haar-distributed `rows x cols` matrix with orthonormal rows or columns (QR of a Gaussian
    matrix, signs fixed by the diagonal of R so that the distribution is exactly Haar)."""
    g = rng.normal(size=(max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(g)
    q = q * np.where(np.diag(r) < 0, -1.0, 1.0)
    return q if rows >= cols else q.T


def random_start(problem: Problem, rng: np.random.Generator, scale: float) -> Params:
    """A random point: scaled random orthogonal layers, Gaussian features, zero bias (host arrays).

    `W_m = s sqrt(max(1, d_m / d_{m-1})) Q_m` with `Q_m` Haar-random with orthonormal rows or
    columns, so that `E |W_m x|^2 = s^2 (d_m / d_{m-1}) |x|^2` exactly as for i.i.d.
    `N(0, s^2 / d_{m-1})` entries, and `H` has i.i.d. `N(0, s^2 / d)` entries: the end-to-end
    product has the same scale (about `s^{M+1}`) as with Gaussian layers.  Orthogonal layers
    (Saxe et al. 2014) do not spread the singular values of the product exponentially with the
    depth, and deep runs from large scales converge in far fewer iterations (depth 9, counts
    200,100,50,50, 8 runs over s = 0.5..2: 6200 L-BFGS iterations in all instead of 10 400, the
    longest run 1400 instead of 4200), while ending in the same kinds of points (at small `s`
    the zero point or partly collapsed minima, as with Gaussian layers).

    With unequal weight decays every factor is also multiplied by `sqrt(lambda_bar / lambda)`
    (`lambda_bar = P^{1/(M+1)}`, the geometric mean): the product `W_M ... W_1 H`, hence the loss,
    is unchanged in distribution, and the layers start balanced with respect to the regulariser
    as every minimiser is (lemma 2).  Without it a start with, e.g., `lambda_W = 5e-4` and
    `lambda_H = 214` sends `H` to zero before `W` can grow, and every run ends at the zero point.
    With equal lambdas the factors are 1 and the start is unchanged.
    """
    ws = tuple(
        scale * np.sqrt(max(1.0, rows / cols)) * random_orthogonal(rng, rows, cols)
        for rows, cols in problem.layer_shapes
    )
    h = rng.normal(0.0, scale / np.sqrt(problem.widths[0]), size=(problem.widths[0], problem.N))
    if len({*problem.lambda_w, problem.lambda_h}) > 1:
        lbar = float(problem.lambda_product) ** (1.0 / (problem.depth + 1))
        factors = [np.sqrt(lbar / float(lam)) for lam in problem.lambda_w]
        ws = tuple(w * f for w, f in zip(ws, factors, strict=True))
        h = h * np.sqrt(lbar / float(problem.lambda_h))
    b = None if problem.bias == "none" else np.zeros(problem.K)
    return Params(ws, h, b)


class FlatObjective:
    """`x -> (F(x), grad F(x))` on the flat parameter vector, for the optimiser.

    The loss and its gradient come from `Objective.loss_and_grad`; the regulariser
    `sum (lambda/2) |.|^2` and its gradient `lambda x` are added on the flat vector, two vector
    operations in place of a few small ones per layer (the per-call overhead of which was a
    good part of an evaluation on the paper's configurations).  `lambda` is one number when all
    blocks share it, else a vector of per-entry weights (0 on a free bias).
    """

    def __init__(self, objective: Objective, flat: Flattener) -> None:
        self.objective = objective
        self.flat = flat
        lams = [*objective.lambda_w, objective.lambda_h]
        if flat.has_bias:
            lams.append(objective.lambda_b)
        self.lam: float | Any
        if len(set(lams)) == 1:
            self.lam = lams[0]
        else:
            xp = objective.xp
            sizes = [b - a for a, b in zip(flat.offsets[:-1], flat.offsets[1:], strict=True)]
            self.lam = xp.concat(
                [
                    xp.full((size,), lam, dtype=objective.dtype, device=objective.device)
                    for size, lam in zip(sizes, lams, strict=True)
                ]
            )
        self.evaluations = 0

    def __call__(self, x: Any) -> tuple[float, Any]:
        self.evaluations += 1
        loss, grad_loss = self.objective.loss_and_grad(self.flat.unflatten(x))
        lx = self.lam * x
        value = loss + 0.5 * self.objective.xp.vecdot(lx, x)
        return float(value), self.flat.flatten(grad_loss) + lx


def descend(
    objective: Objective,
    start: Params,
    *,
    max_iter: int = 20000,
    callback: Callable[[int, float, Params], None] | None = None,
) -> tuple[Params, dict]:
    """Minimise from `start` (arrays on the objective's namespace) with array-API L-BFGS.

    `callback(iteration, F, point)` is called after every iteration (e.g. to trace NC metrics).
    The returned `objective` is `objective.value` at the end point, the layer-by-layer
    evaluation that `Objective.error_bound` bounds, not the optimiser's own last value (which
    may come from reassociated products and differ in the last bits).
    """
    flat = Flattener(objective.problem, objective.xp)
    fun_grad = FlatObjective(objective, flat)

    # One BLAS thread: the products here are small, threads only contend (and, for reductions,
    # would make the last bits depend on the thread count); parallelism is across runs instead.
    with threadpool_limits(limits=1, user_api="blas"):
        trace = None if callback is None else (lambda it, f, x: callback(it, f, flat.unflatten(x)))
        res = lbfgs.minimise(
            fun_grad, flat.flatten(start), objective.xp, max_iter=max_iter, callback=trace
        )
        end = flat.unflatten(res.x)
        value = objective.value(end)
    return end, {
        "iterations": res.iterations,
        "evaluations": res.evaluations,
        "message": res.message,
        "grad_norm": res.grad_norm,
        "objective": value,
    }


def run_scales(scales: tuple[float, ...], restarts: int) -> list[float]:
    """The start scale of each run: `scales` in turn while there are no more runs than scales;
    with more runs, `restarts` scales spaced geometrically from the smallest given scale to the
    largest.

    Why not cycle: in a deep network (`M >= 2`) which classes survive is decided early, by how
    each class's initial product magnitude (about `s^{M+1}`) compares with that class's
    separatrix, so the band of start scales that reaches a minimiser with some classes collapsed
    is narrow in `s` (counts 200,100,50,50, width 64, the two classes of 50 inside the collapse
    gap, depths 3..9: roughly `1.1 <= s <= 2.1`, with a hit rate of one run in three or less
    there; below it every run ends at zero).  With Gaussian layers a grid with ratio 2 left
    depths 5, 6 and 8 without any run of 8 at the prediction.  With the geometric spacing
    (ratio 1.22 for 8 runs over `[0.5, 2]`) and orthogonal layers, 6 of 46 such instances (depths
    2..9, seeds 0..5) still had no run of 8 at the prediction, and none of 42 with 16 runs: ask
    for more restarts on instances near a collapse threshold.
    """
    if restarts <= len(scales):
        return [float(scales[i]) for i in range(restarts)]
    lo, hi = min(scales), max(scales)
    return [float(x) for x in np.geomspace(lo, hi, restarts)]


def default_jobs(backend: Backend, restarts: int) -> int:
    """Worker processes for `restarts` runs: the usable CPUs on numpy, else 1.

    `NCVERIFY_JOBS` overrides it (1 = serial); results do not depend on it.
    """
    env = os.environ.get("NCVERIFY_JOBS", "").strip()
    if env:
        try:
            return max(1, min(int(env), restarts))
        except ValueError:
            pass
    if backend.name != "numpy" or restarts < 2:
        return 1
    # no worker processes from a daemonic process (multiprocessing forbids its children, e.g.
    # inside a Dask worker) or from a thread other than the main one (fork copies only the
    # calling thread, and locks held by the others would stay locked in the child)
    if multiprocessing.current_process().daemon:
        return 1
    if threading.current_thread() is not threading.main_thread():
        return 1
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, restarts))


def one_run(
    problem: Problem,
    backend: Backend,
    objective: Objective,
    *,
    seed: int,
    index: int,
    scale: float,
    max_iter: int,
) -> Run:
    """Run `index` of `multistart(problem, seed=seed)` at start scale `scale`."""
    rng = np.random.default_rng([seed, index])
    start = random_start(problem, rng, scale).map(backend.asarray)
    t0 = time.perf_counter()
    end, info = descend(objective, start, max_iter=max_iter)
    elapsed = time.perf_counter() - t0
    # the bound on the rounding error of `objective` that the verifier compares with: computed
    # here so that it runs in the worker process, in parallel with the other runs
    with threadpool_limits(limits=1, user_api="blas"):
        bound = objective.error_bound(end) if math.isfinite(info["objective"]) else 0.0
    return Run(
        seed=index,
        scale=scale,
        objective=info["objective"],
        grad_norm=info["grad_norm"],
        iterations=info["iterations"],
        evaluations=info["evaluations"],
        time=elapsed,
        point=end,
        message=info["message"],
        error_bound=bound,
    )


# One objective per worker process, built on its first task (a worker serves one multistart).
_WORKER: dict[str, object] = {}


def _worker_run(
    problem: Problem,
    backend_spec: tuple[str, str, str],
    seed: int,
    index: int,
    scale: float,
    max_iter: int,
) -> Run:
    """`one_run` in a worker process; the end point comes back as host numpy arrays."""
    key = (problem, backend_spec)
    if _WORKER.get("key") != key:
        name, device, dtype = backend_spec
        backend = Backend.create(name, device, dtype)
        _WORKER.update(
            key=key,
            backend=backend,
            objective=Objective(problem, backend.xp, dtype=backend.dtype, device=backend.device),
        )
    backend = _WORKER["backend"]
    run = one_run(
        problem,
        backend,  # type: ignore[arg-type]
        _WORKER["objective"],  # type: ignore[arg-type]
        seed=seed,
        index=index,
        scale=scale,
        max_iter=max_iter,
    )
    run.point = run.point.map(backend.to_numpy)  # type: ignore[attr-defined]
    return run


def _pool_context() -> multiprocessing.context.BaseContext:
    # fork starts a worker in milliseconds and shares the already imported modules; spawn is the
    # portable fallback (macOS and Windows default to it for good reasons)
    if sys.platform.startswith("linux"):
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context("spawn")


def multistart(
    problem: Problem,
    backend: Backend,
    *,
    restarts: int = 8,
    seed: int = 0,
    scales: tuple[float, ...] = DEFAULT_SCALES,
    max_iter: int = 20000,
    progress: Callable[[int, Run], None] | None = None,
    jobs: int | None = None,
) -> list[Run]:
    """`restarts` seeded random-start runs at the scales of `run_scales(scales, restarts)`.

    `jobs` worker processes run them (default `default_jobs`); the runs, their order and their
    results are the same for every `jobs`, only `Run.time` differs.  `progress(i, run)` is called
    for the runs in index order.
    """
    if restarts < 1:
        raise ValueError("restarts must be at least 1.")
    per_run = run_scales(scales, restarts)
    jobs = default_jobs(backend, restarts) if jobs is None else max(1, min(jobs, restarts))
    runs: list[Run] = []
    if jobs == 1:
        objective = Objective(problem, backend.xp, dtype=backend.dtype, device=backend.device)
        for i in range(restarts):
            run = one_run(
                problem, backend, objective, seed=seed, index=i, scale=per_run[i], max_iter=max_iter
            )
            runs.append(run)
            if progress is not None:
                progress(i, run)
        return runs
    spec = (backend.name, backend.device_name, backend.dtype_name)
    with ProcessPoolExecutor(max_workers=jobs, mp_context=_pool_context()) as pool:
        # Largest scales first: they take the most iterations, and starting the longest jobs
        # first keeps the workers busy to the end (results do not depend on the order).
        order = sorted(range(restarts), key=lambda i: -per_run[i])
        submitted = {
            i: pool.submit(_worker_run, problem, spec, seed, i, per_run[i], max_iter) for i in order
        }
        futures = [submitted[i] for i in range(restarts)]
        for i, future in enumerate(futures):
            run = future.result()
            run.point = run.point.map(backend.asarray)
            runs.append(run)
            if progress is not None:
                progress(i, run)
    return runs
