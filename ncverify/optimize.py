"""Multistart numerical minimisation of the full objective (all `W_m`, `H` and `b` free).

Every run starts at random — seeded, never at or near a prediction — at one of several start
scales: `W_m` has i.i.d. `N(0, s^2 / d_{m-1})` entries and `H` has `N(0, s^2 / d)` entries.
The minimiser is `ncverify.lbfgs` on the flattened parameters, on the backend's namespace.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from . import lbfgs
from .backend import Backend
from .objective import Objective, Params
from .problem import Problem

DEFAULT_SCALES: tuple[float, ...] = (0.5, 1.0, 2.0)


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


class Flattener:
    """Views between a flat vector and `Params` of a problem's shapes, on any namespace."""

    def __init__(self, problem: Problem, xp) -> None:  # noqa: ANN001
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

    def unflatten(self, x):  # noqa: ANN001, ANN201
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

    def flatten(self, p: Params):  # noqa: ANN201
        xp = self.xp
        return xp.concat([xp.reshape(a, (-1,)) for a in p.arrays()])


def random_start(problem: Problem, rng: np.random.Generator, scale: float) -> Params:
    """A random point: fan-in scaled Gaussian layers and features, zero bias (host arrays)."""
    ws = tuple(
        rng.normal(0.0, scale / np.sqrt(cols), size=(rows, cols))
        for rows, cols in problem.layer_shapes
    )
    h = rng.normal(0.0, scale / np.sqrt(problem.widths[0]), size=(problem.widths[0], problem.N))
    b = None if problem.bias == "none" else np.zeros(problem.K)
    return Params(ws, h, b)


def descend(objective: Objective, start: Params, *, max_iter: int = 20000) -> tuple[Params, dict]:
    """Minimise from `start` (arrays on the objective's namespace) with array-API L-BFGS."""
    flat = Flattener(objective.problem, objective.xp)

    def fun_grad(x):  # noqa: ANN001, ANN202
        value, grad = objective.value_and_grad(flat.unflatten(x))
        return float(value), flat.flatten(grad)

    with threadpool_limits(limits=1, user_api="blas"):
        res = lbfgs.minimise(fun_grad, flat.flatten(start), objective.xp, max_iter=max_iter)
    return flat.unflatten(res.x), {
        "iterations": res.iterations,
        "evaluations": res.evaluations,
        "message": res.message,
        "grad_norm": res.grad_norm,
        "objective": res.f,
    }


def multistart(
    problem: Problem,
    backend: Backend,
    *,
    restarts: int = 8,
    seed: int = 0,
    scales: tuple[float, ...] = DEFAULT_SCALES,
    max_iter: int = 20000,
    progress: Callable[[int, Run], None] | None = None,
) -> list[Run]:
    """`restarts` seeded random-start runs, cycling through `scales`."""
    if restarts < 1:
        raise ValueError("restarts must be at least 1.")
    objective = Objective(problem, backend.xp, dtype=backend.dtype, device=backend.device)
    runs = []
    for i in range(restarts):
        scale = scales[i % len(scales)]
        rng = np.random.default_rng([seed, i])
        start = random_start(problem, rng, scale).map(backend.asarray)
        t0 = time.perf_counter()
        end, info = descend(objective, start, max_iter=max_iter)
        elapsed = time.perf_counter() - t0
        run = Run(
            seed=i,
            scale=scale,
            objective=info["objective"],
            grad_norm=info["grad_norm"],
            iterations=info["iterations"],
            evaluations=info["evaluations"],
            time=elapsed,
            point=end,
            message=info["message"],
        )
        runs.append(run)
        if progress is not None:
            progress(i, run)
    return runs
