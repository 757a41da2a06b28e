"""Multistart numerical minimisation of the objective (all `W_m`, `H` and `b` free).

The runs minimise `F` in one of the parameterisations of `ncverify.model.reduction`: over every
sample's features (`"full"`), over the class means (`"class-means"`, exact: the minima and
stationary points of `F` are lifts of its own), or, for the squared loss, over the layers alone
with the class means and the bias at their closed-form minimiser (`"weights"`,
`ncverify.model.elimination`).  Which one is the caller's choice (`multistart(parameterisation=)`);
the verifier takes the exact reduction the head allows.

Every run starts at random — seeded, never at or near a prediction — at one of several start
scales `s`: `W_m` is `s` times a Haar-random orthogonal matrix (rescaled to the mean-square gain
of i.i.d. `N(0, s^2 / d_{m-1})` entries where it widens) and `H` has `N(0, s^2 / d)` entries
(each times `sqrt(lambda_bar / lambda)` when the weight decays differ, see `random_start`).
The minimiser is `ncverify.evidence.lbfgs` on the flattened parameters, on the backend's namespace.

By default each run does not descend on the problem straight away but continues in the weight
decays (`Continuation`, the why in `multistart`): first at all lambdas divided by 8, then at the
true lambdas, then up a ladder of raised lambdas, back at the true lambdas after each rung that
collapsed a mode; it keeps the best end point of its descents at the true lambdas.  None of it
looks at a claim: the factors are fixed, and the end point is chosen by its objective alone.

Runs are independent: run `i` depends only on `(seed, i)` and its scale, and it is computed with
single-threaded BLAS, so its result is the same bit for bit whether the runs execute one after
the other or in parallel worker processes (`jobs`).  Worker processes are the default on the
numpy backend, where a run is too small for threaded BLAS to pay (and threaded BLAS reductions
would make the last bits depend on the thread count); other backends run serially.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar

import numpy as np
from threadpoolctl import threadpool_limits

from ncverify.backend import Backend
from ncverify.evidence import lbfgs, workers
from ncverify.model.elimination import optimal_features
from ncverify.model.flatten import Flattener
from ncverify.model.objective import Objective, Params, norm
from ncverify.model.problem import Problem, exact
from ncverify.model.reduction import Parameterisation

if TYPE_CHECKING:  # pragma: no cover
    from ncverify.evidence.structure import Structure

DEFAULT_SCALES: tuple[float, ...] = (0.5, 1.0, 2.0)

_P = ParamSpec("_P")
_T = TypeVar("_T")


@dataclass(frozen=True)
class Run:
    """One optimiser run: where it started and where it ended (classified by the problem's kind,
    `ncverify.kinds`, which returns a copy with `outcome`, `error_bound` and `structure`)."""

    index: int  # run `index` of `multistart`: its start is drawn with `default_rng([seed, index])`
    scale: float
    objective: float
    grad_norm: float
    iterations: int
    evaluations: int
    time: float
    point: Params  # in the parameterisation of the run (`multistart(parameterisation=...)`)
    message: str = ""
    outcome: str = ""  # at-prediction / worse / better / failed, once classified
    error_bound: float = 0.0  # proven bound on the rounding error of `objective`
    structure: Structure | None = None
    # the lambda factors of the descents before the final one (on the true problem) that ended
    # at `point`, e.g. (0.125,) or (0.125, 1.0, 1.5, 2.0); () for a single descent from the
    # random start (the recipe without continuation).  `iterations`, `evaluations` and `time`
    # count every descent of the run, those of the end points it did not keep too.
    continuation: tuple[float, ...] = ()


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


def random_orthogonal(rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """A Haar-distributed `rows x cols` matrix with orthonormal rows or columns (QR of a Gaussian
    matrix, signs fixed by the diagonal of R so that the distribution is exactly Haar)."""
    g = rng.normal(size=(max(rows, cols), min(rows, cols)))
    q, r = np.linalg.qr(g)
    q = q * np.where(np.diag(r) < 0, -1.0, 1.0)
    return q if rows >= cols else q.T


def random_start(
    problem: Problem,
    rng: np.random.Generator,
    scale: float,
    parameterisation: Parameterisation = "full",
) -> Params:
    """A random point: scaled random orthogonal layers, Gaussian features, zero bias (host arrays).

    In the class-means parameterisation `G` (`d x K`) has the same i.i.d. `N(0, s^2 / d)` entries:
    that is exactly the distribution of `Hbar(H) D` for the Gaussian `H` of the full start
    (column `k` is a sum of `n_k` independent columns over `sqrt(n_k)`), drawn without the
    `d x N` matrix.

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
    columns = problem.N if parameterisation == "full" else problem.K
    h = rng.normal(0.0, scale / np.sqrt(problem.widths[0]), size=(problem.widths[0], columns))
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


class ProjectedObjective:
    """`w -> (f(w), grad f(w))` for the variable projection `f(W) = F(W, G*(W), b*(W))` on the
    flat vector of the layers alone (`ncverify.model.elimination`); by the envelope theorem its
    gradient is the layers' part of `grad F` at `(W, G*, b*)`."""

    def __init__(self, objective: Objective) -> None:
        self.objective = objective
        shapes = objective.problem.layer_shapes
        self.shapes = shapes
        self.offsets = [int(o) for o in np.cumsum([0, *(r * c for r, c in shapes)])]
        self.evaluations = 0

    def layers(self, x: Any) -> tuple[Any, ...]:
        xp = self.objective.xp
        return tuple(
            xp.reshape(x[a:b], s)
            for a, b, s in zip(self.offsets[:-1], self.offsets[1:], self.shapes, strict=True)
        )

    def point(self, x: Any) -> Params:
        """The class-mean point `(W, G*(W), b*(W))` of the flat layers `x`."""
        return optimal_features(self.objective, self.layers(x))

    def flatten(self, p: Params) -> Any:
        xp = self.objective.xp
        return xp.concat([xp.reshape(w, (-1,)) for w in p.Ws])

    def __call__(self, x: Any) -> tuple[float, Any]:
        self.evaluations += 1
        obj = self.objective
        p = self.point(x)
        loss, grad = obj.loss_and_grad(p)
        value = loss + obj.regulariser(p)
        grads = [g + lam * w for g, lam, w in zip(grad.Ws, obj.lambda_w, p.Ws, strict=True)]
        return float(value), obj.xp.concat([obj.xp.reshape(g, (-1,)) for g in grads])


def descend(
    objective: Objective,
    start: Params,
    *,
    max_iter: int = 20000,
    gtol: float = 0.0,
    callback: Callable[[int, float, Params], None] | None = None,
) -> tuple[Params, dict]:
    """Minimise from `start` (arrays on the objective's namespace) with array-API L-BFGS.

    It stops when `F` no longer decreases in floating point, after `max_iter` iterations, or
    once `||grad F|| <= gtol` (0 by default: never).
    `callback(iteration, F, point)` is called after every iteration (e.g. to trace NC metrics).
    The returned `objective` is `objective.value` at the end point, the layer-by-layer
    evaluation that `Objective.error_bound` bounds, not the optimiser's own last value (which
    may come from reassociated products and differ in the last bits).
    """
    if objective.parameterisation == "weights":  # the layers alone, features eliminated
        projected = ProjectedObjective(objective)
        fun_grad: Callable[[Any], tuple[float, Any]] = projected
        to_vector, to_point = projected.flatten, projected.point
    else:
        flat = Flattener(objective.problem, objective.xp, objective.columns)
        fun_grad = FlatObjective(objective, flat)
        to_vector, to_point = flat.flatten, flat.unflatten

    # One BLAS thread: the products here are small, threads only contend (and, for reductions,
    # would make the last bits depend on the thread count); parallelism is across runs instead.
    with threadpool_limits(limits=1, user_api="blas"):
        trace = None if callback is None else (lambda it, f, x: callback(it, f, to_point(x)))
        res = lbfgs.minimise(
            fun_grad,
            to_vector(start),
            objective.xp,
            max_iter=max_iter,
            gtol=gtol,
            callback=trace,
        )
        end = to_point(res.x)
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
    for more restarts on instances near a collapse threshold.  (These counts are of single
    descents, measured before `Continuation`, which reaches such optima far more often.)
    """
    if restarts <= len(scales):
        return [float(scales[i]) for i in range(restarts)]
    lo, hi = min(scales), max(scales)
    return [float(x) for x in np.geomspace(lo, hi, restarts)]


@dataclass(frozen=True)
class Continuation:
    """Continuation in the weight decays inside one run (why: `multistart`).

    From the random start the run descends on the problem with every lambda (`lambda_{W_m}`,
    `lambda_H` and `lambda_b`) multiplied by each factor of `down` in turn, then on the true
    problem: its end point is the first candidate.  Then it climbs a ladder: from the end point
    of the previous rung (the first time from the first candidate) it descends with every lambda
    multiplied by the next factor of `up`; where that rung has collapsed a mode (the map
    `W_M ... W_1 H` has fewer singular values above 1e-6 than after the rung before), it
    descends from there on the true problem again, and that end point is a further candidate (a
    rung that collapsed nothing would lead back to the candidate it started from: 30% fewer
    iterations in all on random instances, reaching the optimum as often).  The climb stops at
    the zero map: larger lambdas cannot revive a mode.  The run keeps the candidate with the
    smallest objective (the first on ties).

    Descents at factors other than 1 only carry the point into another basin: they stop once
    `||grad F|| <= tolerance * ||grad F||` at the start of that descent (1e-3 took 40% fewer
    iterations in all than running them to convergence, and reached the optimum as often).
    Every candidate is the end point of a descent on the true problem, run to convergence.
    """

    down: tuple[float, ...] = (0.125,)
    up: tuple[float, ...] = (1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 4.0)
    tolerance: float = 1e-3

    def __post_init__(self) -> None:
        if not all(0 < f < 1 for f in self.down) or not all(f > 1 for f in self.up):
            raise ValueError("continuation factors: down in (0, 1), up above 1.")
        if not self.tolerance >= 0:
            raise ValueError("continuation tolerance must be non-negative.")

    @property
    def most_descents(self) -> int:
        """Descents of one run at most: each `down` factor, the true problem, and for each rung
        of `up` one descent there and one back on the true problem."""
        return len(self.down) + 1 + 2 * len(self.up)


DEFAULT_CONTINUATION = Continuation()


def scaled_problem(problem: Problem, factor: float) -> Problem:
    """`problem` with every weight decay (`lambda_{W_m}`, `lambda_H`, `lambda_b`) times `factor`
    (exactly: `factor` is read through its shortest decimal representation)."""
    if factor == 1:
        return problem
    c = exact(factor, "continuation factor")
    return problem.with_(
        lambda_w=tuple(lam * c for lam in problem.lambda_w),
        lambda_h=problem.lambda_h * c,
        lambda_b=None if problem.lambda_b is None else problem.lambda_b * c,
    )


class Objectives:
    """The objective of `problem` with its lambdas scaled by each factor, built once each, in one
    parameterisation (that of `objective` where it is given)."""

    def __init__(
        self,
        problem: Problem,
        backend: Backend,
        objective: Objective | None = None,
        parameterisation: Parameterisation = "full",
    ):
        self.problem = problem
        self.backend = backend
        self.parameterisation = (
            objective.parameterisation if objective is not None else parameterisation
        )
        self.cache: dict[float, Objective] = {} if objective is None else {1.0: objective}

    def __call__(self, factor: float) -> Objective:
        factor = float(factor)
        if factor not in self.cache:
            b = self.backend
            self.cache[factor] = Objective(
                scaled_problem(self.problem, factor),
                b.xp,
                dtype=b.dtype,
                device=b.device,
                parameterisation=self.parameterisation,
            )
        return self.cache[factor]


def _stage(
    objectives: Objectives,
    point: Params,
    factor: float,
    tolerance: float,
    max_iter: int,
    callback: Callable[[int, float, Params], None] | None = None,
) -> tuple[Params, dict]:
    """One descent of a run at lambda factor `factor`: to convergence at factor 1, else until
    the gradient norm has fallen below `tolerance` times its value at `point`."""
    objective = objectives(factor)
    if objective.parameterisation == "weights":  # where the projected descent starts from
        point = optimal_features(objective, point.Ws)
    gtol = 0.0
    if factor != 1 and tolerance > 0:
        with threadpool_limits(limits=1, user_api="blas"):
            _, grad = objective.value_and_grad(point)
            gtol = tolerance * norm(grad)
    return descend(objective, point, max_iter=max_iter, gtol=gtol, callback=callback)


def _modes(objectives: Objectives, p: Params) -> int:
    """The number of singular values of the logits without the bias (`W_M ... W_1 H` for linear
    layers) above 1e-6 (the targets have size 1); for class means `G`, those of
    `W_M ... W_1 G`, the same (`(Hbar Y)(Hbar Y)^T = G G^T`)."""
    z = np.asarray(objectives.backend.to_numpy(objectives(1.0).logits(p)), dtype=np.float64)
    with threadpool_limits(limits=1, user_api="blas"):
        return int(np.sum(np.linalg.svd(z, compute_uv=False) > 1e-6))


def continued_descent(
    objectives: Objectives,
    start: Params,
    continuation: Continuation | None,
    *,
    max_iter: int = 20000,
) -> tuple[Params, dict]:
    """The descents of one run from `start` (see `Continuation`); `descend`'s result for the
    candidate it keeps, with `iterations` and `evaluations` summed over all its descents and
    `continuation`, the factors of the descents that led to that candidate before the last."""
    if continuation is None:  # the recipe without continuation: one descent
        end, info = descend(objectives(1.0), start, max_iter=max_iter)
        return end, {**info, "continuation": ()}
    cont = continuation
    total = {"iterations": 0, "evaluations": 0}

    def stage(point: Params, factor: float) -> tuple[Params, dict]:
        end, info = _stage(objectives, point, factor, cont.tolerance, max_iter)
        total["iterations"] += info["iterations"]
        total["evaluations"] += info["evaluations"]
        return end, info

    point = start
    for factor in cont.down:
        point, _ = stage(point, factor)
    best, best_info = stage(point, 1.0)
    best_path: tuple[float, ...] = tuple(float(f) for f in cont.down)
    path = (*best_path, 1.0)
    raised = best
    modes = _modes(objectives, best) if cont.up else 0
    for factor in cont.up:
        if modes == 0:  # the zero map: larger lambdas cannot revive a mode
            break
        raised, _ = stage(raised, factor)
        path = (*path, float(factor))
        fewer = _modes(objectives, raised)
        if fewer >= modes:  # no mode collapsed on this rung: the way back ends where it began
            continue
        modes = fewer
        end, info = stage(raised, 1.0)
        if info["objective"] < best_info["objective"] or not math.isfinite(best_info["objective"]):
            best, best_info, best_path = end, info, path
    return best, {**best_info, **total, "continuation": best_path}


def replay(
    objectives: Objectives,
    start: Params,
    path: tuple[float, ...],
    continuation: Continuation | None,
    *,
    max_iter: int = 20000,
    callback: Callable[[float, int, float, Params], None] | None = None,
) -> tuple[Params, dict]:
    """The descents at the factors `(*path, 1)` from `start`, exactly as `continued_descent`
    runs them (`path` is a `Run.continuation` of a run with this `continuation`), so that they
    end at that run's point.  `callback(factor, iteration, F, point)` is called after every
    iteration of each, `iteration` counted from the start of the first descent and `F` at the
    lambdas of that descent.  Returns the last descent's result, `iterations` summed over all.
    """
    tolerance = 0.0 if continuation is None else continuation.tolerance
    point, info, done = start, {"iterations": 0}, 0

    def tracer(factor: float, offset: int) -> Callable[[int, float, Params], None] | None:
        if callback is None:
            return None
        return lambda it, value, p: callback(factor, offset + it, value, p)

    for factor in (*path, 1.0):
        trace = tracer(factor, done)
        point, info = _stage(objectives, point, factor, tolerance, max_iter, callback=trace)
        done += info["iterations"]
    return point, {**info, "iterations": done}


def one_run(
    problem: Problem,
    backend: Backend,
    objective: Objective | Objectives,
    *,
    seed: int,
    index: int,
    scale: float,
    max_iter: int,
    continuation: Continuation | None = DEFAULT_CONTINUATION,
) -> Run:
    """Run `index` of `multistart(problem, seed=seed, continuation=continuation)` at start scale
    `scale` (`objective`: the problem's, or an `Objectives` cache of the scaled problems)."""
    objectives = (
        objective if isinstance(objective, Objectives) else Objectives(problem, backend, objective)
    )
    objective = objectives(1.0)
    rng = np.random.default_rng([seed, index])
    start = random_start(problem, rng, scale, objectives.parameterisation).map(backend.asarray)
    t0 = time.perf_counter()
    end, info = continued_descent(objectives, start, continuation, max_iter=max_iter)
    elapsed = time.perf_counter() - t0
    # the bound on the rounding error of `objective` that the verifier compares with: computed
    # here so that it runs in the worker process, in parallel with the other runs
    with threadpool_limits(limits=1, user_api="blas"):
        bound = objective.error_bound(end) if math.isfinite(info["objective"]) else 0.0
    return Run(
        index=index,
        scale=scale,
        objective=info["objective"],
        grad_norm=info["grad_norm"],
        iterations=info["iterations"],
        evaluations=info["evaluations"],
        time=elapsed,
        point=end,
        message=info["message"],
        error_bound=bound,
        continuation=info["continuation"],
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
    continuation: Continuation | None,
    parameterisation: Parameterisation,
) -> Run:
    """`one_run` in a worker process; the end point comes back as host numpy arrays."""
    key = (problem, backend_spec, parameterisation)
    if _WORKER.get("key") != key:
        name, device, dtype = backend_spec
        backend = Backend.create(name, device, dtype)
        objectives = Objectives(problem, backend, parameterisation=parameterisation)
        _WORKER.update(key=key, backend=backend, objectives=objectives)
    backend = _WORKER["backend"]
    run = one_run(
        problem,
        backend,  # type: ignore[arg-type]
        _WORKER["objectives"],  # type: ignore[arg-type]
        seed=seed,
        index=index,
        scale=scale,
        max_iter=max_iter,
        continuation=continuation,
    )
    return dataclasses.replace(run, point=run.point.map(backend.to_numpy))


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
    continuation: Continuation | None = DEFAULT_CONTINUATION,
    parameterisation: Parameterisation = "full",
) -> list[Run]:
    """`restarts` seeded random-start runs at the scales of `run_scales(scales, restarts)`.

    `parameterisation` is that of the runs and of their end points (`Run.point`): `"full"`, or
    `"class-means"`, the exact reduction of `ncverify.model.reduction` (its starts have the
    distribution of the full starts' class means; its end points lift to points of the full
    problem with the same objective).

    `jobs` worker processes run them (default `workers.default_jobs`); the runs, their order
    and their results are the same for every `jobs`, only `Run.time` differs.  `progress(i, run)` is called
    for the runs in index order.

    `continuation` (default `DEFAULT_CONTINUATION`; None turns it off) is what each run does
    from its random start: with None a single descent on the problem (the recipe before
    continuation, the same bit for bit); otherwise the descents of `Continuation`, first at
    every lambda divided by 8, then at the true lambdas, then up a ladder of raised lambdas (1.25
    to 4 times), back at the true lambdas after each rung that collapsed a mode, keeping the best
    end point (`Run.continuation` says which).  None of it looks at a claim.

    Why down: in a deep network (`M >= 2`) the zero point is a local minimum, and its basin
    grows as the lambdas approach a collapse threshold, until from most random starts the
    alive modes die before they can grow (balanced, `K = 4`, `n = 100`, `M = 3`, width 16,
    `lambda = 0.02`, 7% below the threshold 0.02152: 2 of 16 single descents reached the optimum
    0.468317, the others ended at 0.5 or with modes missing).  At a smaller lambda the alive
    modes are strongly attracting, and the end point there lies in the basin of the alive
    optimum at the true lambda: 16 of 16 runs reached it.

    Why up: between a threshold and the fold where an alive mode stops being a local minimum
    (for the balanced scalar problem the fold is at `lambda` 1.19, 1.41, 1.89 and 2.89 times the
    threshold at depths 2, 3, 5 and 9, about `M / 4` times for larger `M`), the alive mode is a
    worse local minimum than the collapsed one, and the descent from the small-lambda end point
    keeps it: the instance above at `lambda = 0.03`, where the optimum is the zero point, 0 of 16
    runs reached it after the descent down alone (14 of 16 single descents did).  A rung at
    raised lambdas collapses the modes nearest their threshold first, so the rungs give in turn
    the alive sets that an optimum with some classes collapsed (imbalanced counts) can have, down
    to the zero point; the descent back on the true problem keeps only modes that survive there.
    The rungs are close (ratios 1.14 to 1.33): with rungs 1.5, 2, 3, 4, on counts 200,100,50,50
    at depth 5 and `lambda = 0.025` (only the class of 200 alive at the optimum) the classes of
    200 and 100 collapsed on the same rung, and no run of 8 reached the optimum (5 now).

    With all of it, 16 of 16 runs reached the optimum at `lambda = 0.02` and at 0.03; on 200
    random MSE instances (`K` 2..6, depth 1..5, widths 1..16, `lambda_W` and `lambda_H`
    log-uniform in 1e-4..1e-1, `scripts/random_instances.py`) some run of 4 reached it on 200
    instead of 174, for 1.6 times the iterations.
    """
    if restarts < 1:
        raise ValueError("restarts must be at least 1.")
    per_run = run_scales(scales, restarts)
    default = workers.default_jobs(backend.name, restarts)
    jobs = default if jobs is None else max(1, min(jobs, restarts))
    runs: list[Run] = []
    if jobs == 1:
        objectives = Objectives(problem, backend, parameterisation=parameterisation)
        for i in range(restarts):
            run = one_run(problem, backend, objectives, seed=seed, index=i, scale=per_run[i],
                          max_iter=max_iter, continuation=continuation)  # fmt: skip
            runs.append(run)
            if progress is not None:
                progress(i, run)
        return runs
    spec = (backend.name, backend.device_name, backend.dtype_name)
    # the pool's workers end with this process and leave Ctrl-C to it; an interrupt (or any
    # exception) here kills them at once rather than waiting for their runs (`workers.pool`)
    with workers.pool(jobs) as pool:
        # Largest scales first: they take the most iterations, and starting the longest jobs
        # first keeps the workers busy to the end (results do not depend on the order).
        order = sorted(range(restarts), key=lambda i: -per_run[i])
        submitted = {
            i: pool.submit(
                _worker_run,
                problem,
                spec,
                seed,
                i,
                per_run[i],
                max_iter,
                continuation,
                parameterisation,
            )
            for i in order
        }
        futures = [submitted[i] for i in range(restarts)]
        for i, future in enumerate(futures):
            run = future.result()
            run = dataclasses.replace(run, point=run.point.map(backend.asarray))
            runs.append(run)
            if progress is not None:
                progress(i, run)
    return runs
