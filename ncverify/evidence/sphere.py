"""Random-start runs on the normalised problem (`ncverify.model.normalised`), claim-agnostic.

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


def sphere_runs(
    problem: Problem, restarts: int, seed: int = 0, max_iter: int = 5000
) -> list[SphereRun]:
    """`restarts` seeded runs from Gaussian starts (run `i` from `default_rng([seed, i])`)."""
    k, d = problem.K, problem.widths[0]
    weights = class_weights(problem)

    def fun_grad(x: np.ndarray) -> tuple[float, np.ndarray]:
        w, g = x[: k * d].reshape(k, d), x[k * d :].reshape(d, k)
        value, gw, gg = value_and_grad(problem, w, g, weights)
        return value, np.concatenate([gw.ravel(), gg.ravel()])

    runs = []
    for i in range(restarts):
        rng = np.random.default_rng([seed, i])
        x0 = rng.standard_normal(2 * k * d)
        t0 = time.perf_counter()
        result = minimise(fun_grad, x0, np, max_iter=max_iter)
        w, g = result.x[: k * d].reshape(k, d), result.x[k * d :].reshape(d, k)
        runs.append(
            SphereRun(
                i,
                w,
                g,
                float(result.f),
                result.iterations,
                result.evaluations,
                result.message,
                time.perf_counter() - t0,
            )
        )
    return runs
