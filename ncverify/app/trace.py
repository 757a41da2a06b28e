"""Neural-collapse metrics traced over the iterations of one optimiser run.

`nc_trace` starts one random-start run exactly as `ncverify.evidence.optimize.multistart` starts its run
`index` (same seed, same start scale), over every sample's features (`parameterisation="full"`:
the reduced runs of a check have collapsed features from their first iteration, so NC1 could
not be seen to fall), descends with the same minimiser through the same
descents (with the continuation in lambda, those that led to the end point the run keeps:
`ncverify.evidence.optimize.replay`), and records after every `every`-th iteration, counted over those
descents, the objective of the true problem, its gap to the claimed optimum and the NC metrics
of `ncverify.evidence.metrics` against the claim's predicted point:

- `nc1`: NC1 of the features of layer 1 (`None` where undefined, e.g. at the zero solution);
- `nc`: the largest NC2/NC3 distance over all layers (normalised matrices, `ncverify.evidence.metrics`);
- `rel`: the largest relative error over all layers (the scale as well as the shape).

The docs plot these curves on every claim page; nothing here is used to decide a verdict.

>>> import theorems
>>> from ncverify import Problem
>>> problem = Problem.build(classes=3, samples=2, depth=2, width=3)
>>> claim = next(c for c in theorems.registry().values() if not c.hypotheses(problem))
>>> t = nc_trace(claim, problem, max_iter=50)
>>> t.points[0].iteration, t.points[-1].iteration > t.points[0].iteration
(0, True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from ncverify.backend import Backend
from ncverify.claim import Claim
from ncverify.evidence.metrics import nc_metrics, worst
from ncverify.evidence.optimize import (
    DEFAULT_CONTINUATION,
    DEFAULT_SCALES,
    Continuation,
    Objectives,
    continued_descent,
    random_start,
    replay,
    run_scales,
)
from ncverify.model.objective import Objective, Params
from ncverify.model.problem import Problem


@dataclass(frozen=True)
class TracePoint:
    """The state of the run after `iteration` iterations (0 is the random start)."""

    iteration: int
    objective: float
    gap: float  # objective minus the claimed optimum
    nc1: float | None
    nc: float | None
    rel: float | None


@dataclass
class Trace:
    """One traced run: where it started, its points, and the claimed optimum it is measured by."""

    seed: int
    index: int
    scale: float
    claimed: float
    points: list[TracePoint] = field(default_factory=list)
    message: str = ""

    def column(self, name: str) -> list[float | None]:
        return [getattr(p, name) for p in self.points]


def _summary(objective: Objective, point: Params, predicted: Params) -> tuple:
    rows = nc_metrics(objective, point, predicted)
    nc1 = rows[0]["nc1"] if rows else None
    return nc1, worst(rows, "nc_"), worst(rows, "rel_")


def nc_trace(
    claim: Claim,
    problem: Problem,
    backend: Backend | None = None,
    *,
    seed: int = 0,
    index: int = 0,
    restarts: int = 8,
    scale: float | None = None,
    max_iter: int = 20000,
    every: int = 1,
    continuation: Continuation | None = DEFAULT_CONTINUATION,
) -> Trace:
    """Trace run `index` of `multistart(problem, seed=seed)` against the claim's prediction.

    Args:
        claim: the claim whose predicted point the metrics compare against.
        problem: the instance.
        backend: where to compute (numpy on the CPU by default).
        seed: the seed of `multistart`; run `index` uses `numpy.random.default_rng([seed, index])`.
        index: which run of `multistart` to reproduce.
        restarts: how many runs that `multistart` made (its start scales depend on it).
        scale: the start scale (by default the one `multistart(restarts=restarts)` gives run
            `index`: the same recipe, `run_scales`).
        max_iter: iteration limit of the minimiser, for each descent.
        every: record every `every`-th iteration (the first and the last are always recorded).
        continuation: the `continuation` of `multistart` (None: a single descent).
    """
    if every < 1:
        raise ValueError("every must be a positive integer.")
    backend = backend or Backend.create()
    if not 0 <= index < restarts:
        raise ValueError(f"index must be one of the {restarts} runs, not {index}.")
    if scale is None:  # one recipe for the optimiser and the trace
        scale = run_scales(DEFAULT_SCALES, restarts)[index]
    objective = Objective(problem, backend.xp, dtype=backend.dtype, device=backend.device)
    claimed = float(claim.closed_form(problem).objective)
    predicted = claim.minimiser(problem, backend)
    rng = np.random.default_rng([seed, index])
    start = random_start(problem, rng, scale).map(backend.asarray)
    objectives = Objectives(problem, backend, objective)
    # the run itself first, to learn which of its descents led to the end point it keeps
    _, kept = continued_descent(objectives, start, continuation, max_iter=max_iter)
    trace = Trace(seed=seed, index=index, scale=scale, claimed=claimed)

    def record(iteration: int, value: float, point: Params) -> None:
        value = float(value)
        nc1, nc, rel = _summary(objective, point, predicted)
        gap = value - claimed if math.isfinite(value) else math.nan
        trace.points.append(TracePoint(iteration, value, gap, nc1, nc, rel))

    record(0, objective.value(start), start)
    last: list = []

    def callback(factor: float, iteration: int, value: float, point: Params) -> None:
        if factor != 1:  # a descent at scaled lambdas: record the true problem's objective
            value = objective.value(point)
        last[:] = [iteration, value, point]
        if iteration % every == 0:
            record(iteration, value, point)

    _, info = replay(
        objectives,
        start,
        kept["continuation"],
        continuation,
        max_iter=max_iter,
        callback=callback,
    )
    if last and (not trace.points or trace.points[-1].iteration != last[0]):
        record(*last)
    trace.message = str(info.get("message", ""))
    return trace
