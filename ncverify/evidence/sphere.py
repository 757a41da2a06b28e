"""Random-start runs on spheres, claim-agnostic: the normalised problem's
(`ncverify.model.normalised`), and any value at a projection (`gaussian_descents`).

Each run minimises the value at the projection onto the spheres, a smooth function of any point
with non-zero rows and columns, with the project's L-BFGS (`ncverify.evidence.lbfgs`): the
projection makes the constrained problem an unconstrained one, and its gradient is tangent to
the spheres, so the descent never leaves the set it projects from.  The runs work on one feature
per class (`class_weights`), an exact reduction; their starts are Gaussian (`W` and the class
features with i.i.d. standard normal entries: their projections are uniform on the spheres).

>>> from ncverify.model.problem import Problem
>>> p = Problem.build(classes=3, samples=2, depth=1, width=3, loss="normalised-ce",
...                   radius_w=1, radius_h=4)
>>> runs = sphere_runs(p, restarts=2, seed=0)
>>> all(r.message for r in runs) and len(runs) == 2
True
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ncverify.evidence.lbfgs import minimise
from ncverify.model.normalised import class_weights, value_and_grad
from ncverify.model.problem import Problem


@dataclass(frozen=True)
class SphereRun:
    """One run: its start, where it ended (`W`, `K x d`; one feature per class, `d x K`) and
    how (the optimiser's own value there, iterations, evaluations, message, seconds)."""

    index: int
    w: np.ndarray
    g: np.ndarray
    value: float
    iterations: int
    evaluations: int
    message: str
    seconds: float


@dataclass(frozen=True)
class Descent:
    """One run of `gaussian_descents`: its index, where it ended (flat) and how."""

    index: int
    x: np.ndarray
    value: float
    iterations: int
    evaluations: int
    message: str
    seconds: float


def gaussian_descents(
    fun_grad: Callable[[np.ndarray], tuple[float, np.ndarray]],
    size: int,
    restarts: int,
    seed: int = 0,
    max_iter: int = 5000,
) -> list[Descent]:
    """`restarts` L-BFGS runs of `fun_grad` (a value at a projection, and its tangent gradient)
    from seeded standard Gaussian starts in `size` dimensions (run `i` from
    `default_rng([seed, i])`): a Gaussian vector's projection onto a sphere is uniform on it."""
    runs = []
    for i in range(restarts):
        x0 = np.random.default_rng([seed, i]).standard_normal(size)
        t0 = time.perf_counter()
        result = minimise(fun_grad, x0, np, max_iter=max_iter)
        runs.append(
            Descent(
                i,
                result.x,
                float(result.f),
                result.iterations,
                result.evaluations,
                result.message,
                time.perf_counter() - t0,
            )
        )
    return runs


def sphere_runs(
    problem: Problem, restarts: int, seed: int = 0, max_iter: int = 5000
) -> list[SphereRun]:
    """`restarts` seeded runs of the normalised problem (`gaussian_descents`)."""
    k, d = problem.K, problem.widths[0]
    weights = class_weights(problem)

    def fun_grad(x: np.ndarray) -> tuple[float, np.ndarray]:
        w, g = x[: k * d].reshape(k, d), x[k * d :].reshape(d, k)
        value, gw, gg = value_and_grad(problem, w, g, weights)
        return value, np.concatenate([gw.ravel(), gg.ravel()])

    return [
        SphereRun(
            r.index,
            r.x[: k * d].reshape(k, d),
            r.x[k * d :].reshape(d, k),
            r.value,
            r.iterations,
            r.evaluations,
            r.message,
            r.seconds,
        )
        for r in gaussian_descents(fun_grad, 2 * k * d, restarts, seed, max_iter)
    ]
