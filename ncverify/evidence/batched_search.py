"""The batched search: hundreds to thousands of claim-agnostic starts descended together.

Every start is a point of the exact class-mean problem (`ncverify.model.batched`), and all of
them advance at once in one batched L-BFGS (`ncverify.evidence.batched_lbfgs`) on the check's
backend, so that a GPU runs them in the time of one and a CPU spends its time in a few batched
products rather than in per-run Python.  Nothing in it knows the claim: the starts are

- *random*, at scales spread geometrically over `SCALES` (the scale of a start is that of
  `ncverify.evidence.optimize.random_start`: every factor about `s`, balanced to the weight
  decays);
- *random low-rank*: the features of rank `r`, for each `r = 1, ..., R` in turn (`R` the
  bottleneck), so that the codes of every rank are reachable from nearby;
- each of them descended in two stages, plain or with a *lambda-continuation*: first with every
  weight decay multiplied by `t` in `CONTINUATION` (down from a larger lambda, or up from a
  smaller one, towards the max-margin limit), then on the instance itself.

The end values are grouped into basins with the one rule of `ncverify.evidence.coverage`, and
the lowest distinct ends are handed back as full points, to be valued and, where one beats the
claim, certified exactly like any other candidate.  The number of rows advanced at once is
bounded by the memory budget (`ncverify.limits`): a larger batch runs in chunks.  On the host
(numpy) the chunks are also cut to fit the processor's cache (`HOST_CHUNK_BYTES`) and, where
there are several, descended side by side in the worker processes of `ncverify.evidence.workers`.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

from ncverify.backend import Backend, to_host
from ncverify.evidence import workers
from ncverify.evidence.batched_lbfgs import MEMORY, batched_lbfgs
from ncverify.evidence.coverage import Coverage, basins_of
from ncverify.limits import (
    FLOAT_BYTES,
    StepSkipped,
    bytes_text,
    memory_budget,
)
from ncverify.model.batched import BatchedObjective, Layout, pad
from ncverify.model.objective import Params
from ncverify.model.problem import Problem
from ncverify.model.reduction import lift_features

#: Start scales: geometrically spread over this range (relative to `random_start`'s `s`).
SCALES = (0.1, 10.0)
#: The weight-decay factor of each start's first stage, in turn: plain, down from 8 lambda, up
#: from lambda / 8.
CONTINUATION = (1.0, 8.0, 0.125)
#: Share of the starts with random low-rank features.
LOW_RANK_SHARE = 0.5
#: Rows of one batch at most (a larger search runs in chunks), and the share of the memory
#: budget one chunk may hold.
MAX_CHUNK = 4096
MEMORY_SHARE = 4
#: Bytes of one chunk on the host (numpy).  Most of an iteration's work streams the rows'
#: L-BFGS pairs; a chunk whose rows fit the processor's shared cache (two chunks in flight in
#: 32 MiB of L3 on the 2-core machines measured) runs them faster, and the chunks of a search
#: spread over the worker processes.  A constant, not read from the machine: the chunks, and so
#: the last bits of every row's descent, are the same everywhere.
HOST_CHUNK_BYTES = 12 * 2**20
#: Copies of a row that a chunk holds at once: the L-BFGS pairs, the iterate, its gradient, the
#: direction, the trial point and its gradient, the accepted ones.
ROW_COPIES = 2 * MEMORY + 8
#: Iterations of a start over both stages at most, at least (or the search is skipped), and the
#: work of the whole search at most, in multiply-adds (about 20 s on one core).
SEARCH_ITERATIONS = 3000
MIN_ITERATIONS = 200
SEARCH_COST = 3e10
#: Ends within this relative distance of a basin's lowest value are in that basin: a batch's
#: descents stop at an iteration limit or, for a surrogate, at a finite weight decay, so their
#: values agree to fewer digits than converged runs do.
BASIN_TOLERANCE = 1e-6
#: Distinct lowest ends handed back as candidates.
BEST_ENDS = 3

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class SearchEnd:
    """One of the lowest distinct ends: a full point (host arrays) and where it came from."""

    point: Params
    value: float
    origin: str


@dataclass(frozen=True)
class BatchedSearch:
    """What the batched search did and found."""

    starts: int
    families: tuple[tuple[str, int], ...]
    coverage: Coverage
    iterations: int  # of the longest chunk, over both stages
    converged: int  # starts whose descent stopped by itself, not at the iteration limit
    seconds: float
    ends: tuple[SearchEnd, ...]

    def words(self) -> str:
        fams = ", ".join(f"{n} {name}" for name, n in self.families)
        return (
            f"batched search ({fams}; {self.converged} converged within {self.iterations} "
            f"iterations): {self.coverage.words('start')}"
        )

    def to_json(self) -> dict[str, object]:
        return {
            "starts": self.starts,
            "families": [{"family": name, "starts": n} for name, n in self.families],
            "continuation": list(CONTINUATION),
            "scales": list(SCALES),
            "iterations": self.iterations,
            "converged": self.converged,
            "coverage": self.coverage.to_json(),
            "best": [{"value": e.value, "origin": e.origin} for e in self.ends],
        }


@dataclass(frozen=True)
class Start:
    """How row `i` starts: its scale, the rank of its features (None: full), its first stage's
    weight-decay factor."""

    scale: float
    rank: int | None
    factor: float

    @property
    def family(self) -> str:
        return "random" if self.rank is None else "random low-rank"

    def words(self) -> str:
        rank = "" if self.rank is None else f", features of rank {self.rank}"
        stage = "" if self.factor == 1 else f", from {self.factor:g} lambda"
        return f"scale {self.scale:.3g}{rank}{stage}"


def plan(problem: Problem, starts: int) -> list[Start]:
    """The starts, in a fixed order (the seed draws only their random numbers)."""
    scales = np.geomspace(*SCALES, num=max(starts, 2))
    low = int(round(LOW_RANK_SHARE * starts))
    # every scale once, in an order that spreads neighbours over the families: a stride that
    # is coprime to the number of starts permutes them
    stride = next(s for s in range(7, 7 + starts + 1) if math.gcd(s, starts) == 1)
    out = []
    for i in range(starts):
        rank = None if i % 2 == 0 or i // 2 >= low else 1 + (i // 2) % problem.bottleneck
        factor = CONTINUATION[(i // 2) % len(CONTINUATION)]
        out.append(Start(float(scales[(stride * i) % starts]), rank, factor))
    return out


def start_rows(problem: Problem, layout: Layout, starts: list[Start], seed: int) -> np.ndarray:
    """The start points as rows (host, float64)."""
    rng = np.random.default_rng([seed, 24])
    lbar = float(problem.lambda_product) ** (1.0 / (problem.depth + 1))
    rows = np.empty((len(starts), layout.size))
    balance = [math.sqrt(lbar / float(lam)) for lam in problem.lambda_w]
    balance.append(math.sqrt(lbar / float(problem.lambda_h)))
    for i, s in enumerate(starts):
        parts = []
        for j, (r, c) in enumerate(layout.shapes):
            a = rng.normal(
                0.0, s.scale / math.sqrt(r if j == len(layout.shapes) - 1 else c), (r, c)
            )
            if j == len(layout.shapes) - 1 and s.rank is not None:  # features of rank s.rank
                u, sv, vt = np.linalg.svd(a, full_matrices=False)
                a = (u[:, : s.rank] * sv[: s.rank]) @ vt[: s.rank]
            parts.append((a * balance[j]).ravel())
        parts.append(np.zeros(layout.bias))
        rows[i] = np.concatenate(parts)
    return rows


def row_bytes(layout: Layout, problem: Problem) -> int:
    """Bytes one row of a chunk holds: its copies (`ROW_COPIES`) and its layers' features."""
    features = sum(r for r, _ in layout.shapes) * problem.K
    return FLOAT_BYTES * (ROW_COPIES * layout.size + 4 * features)


def chunk_rows(layout: Layout, problem: Problem, *, host: bool = False) -> int:
    """Rows one chunk may hold within its share of the memory budget, and on the host within
    `HOST_CHUNK_BYTES`; `StepSkipped` if not one row fits the memory budget."""
    per_row = row_bytes(layout, problem)
    rows = min(MAX_CHUNK, memory_budget() // MEMORY_SHARE // per_row)
    if rows < 1:
        raise StepSkipped(
            f"the batched search is skipped: one of its rows needs about {bytes_text(per_row)}, "
            "more than its share of the memory budget"
        )
    return int(min(rows, max(1, HOST_CHUNK_BYTES // per_row)) if host else rows)


def chunks(starts: int, most: int) -> list[slice]:
    """The starts cut into the fewest chunks of at most `most` rows, of sizes as equal as can be
    (so that the workers finish together)."""
    count = -(-starts // most)
    size = -(-starts // count)
    return [slice(at, min(at + size, starts)) for at in range(0, starts, size)]


def iterations(problem: Problem, layout: Layout, starts: int, max_iter: int) -> tuple[int, int]:
    """Iterations of the two stages: together at most `SEARCH_ITERATIONS` (and `max_iter`), and
    fewer where the search's work would exceed `SEARCH_COST`; the first stage only carries a
    start into a basin and gets a quarter.  `StepSkipped` below `MIN_ITERATIONS`.  `--force`
    does not lift this budget: the number of starts is the user's to choose, and a forced check
    must still end."""
    total = min(max_iter, SEARCH_ITERATIONS)
    total = min(total, int(SEARCH_COST // (starts * row_iteration_cost(problem, layout))))
    if total < MIN_ITERATIONS:
        raise StepSkipped(
            f"the batched search is skipped: {starts} starts of {layout.size} parameters could "
            f"take only {total} iterations within its work limit of {SEARCH_COST:.0e} "
            f"multiply-adds (at least {MIN_ITERATIONS} are needed); fewer --search-starts may fit"
        )
    return total // 4, total - total // 4


def row_iteration_cost(problem: Problem, layout: Layout) -> int:
    """Multiply-adds of one row in one iteration: about two evaluations (forward and backward
    products over `K` columns) and the direction's passes over the row."""
    madds = sum(r * c for r, c in layout.shapes) * problem.K
    return 4 * madds + (4 * MEMORY + 10) * layout.size


def batched_search(
    problem: Problem,
    backend: Backend,
    claimed: float,
    relative: float,
    *,
    starts: int,
    seed: int,
    max_iter: int,
    progress: Progress | None = None,
    valuation: Callable[[Params], float] | None = None,
) -> BatchedSearch:
    """Descend `starts` claim-agnostic starts in batches; their basins and lowest ends.

    `valuation` (a full point -> its value) judges the ends where the problem descended is a
    surrogate of the one the claim is about (the max-margin problem descends cross-entropy at
    small weight decays); by default each end's value is its objective."""
    t0 = time.perf_counter()
    layout = Layout.of(problem)
    plan_ = plan(problem, starts)
    rows = start_rows(problem, layout, plan_, seed)
    cap = iterations(problem, layout, starts, max_iter)
    factors = np.array([s.factor for s in plan_])
    ends, values, most, done = descend_starts(problem, backend, rows, factors, cap, progress)
    if valuation is not None:
        values = np.array([valuation(_full_point(problem, layout, row)) for row in ends])
    outcomes = [_outcome(v, claimed, relative) for v in values]
    ends_ = [(float(v), 0.0, o) for v, o in zip(values, outcomes, strict=True)]
    cov = basins_of(ends_, max(relative, BASIN_TOLERANCE))
    fams: dict[str, int] = {}
    for s in plan_:
        fams[s.family] = fams.get(s.family, 0) + 1
    best = _lowest_ends(problem, layout, ends, values, plan_, cov)
    seconds = time.perf_counter() - t0
    return BatchedSearch(starts, tuple(fams.items()), cov, most, done, seconds, best)


Descended = tuple[np.ndarray, np.ndarray, int, int]  # end rows, values, iterations, converged


def descend_starts(
    problem: Problem,
    backend: Backend,
    rows: np.ndarray,
    factors: np.ndarray,
    caps: tuple[int, int],
    progress: Progress | None = None,
) -> Descended:
    """Every start (a row of `rows`, host) descended in two stages, at most `caps` iterations
    each: first with its weight decays scaled by its factor, then on the instance; in chunks.
    The end rows and values (host), the iterations of the longest chunk, the rows converged."""
    layout = Layout.of(problem)
    parts = chunks(rows.shape[0], chunk_rows(layout, problem, host=backend.name == "numpy"))
    # no more workers than chunks fit side by side in the search's share of the memory budget
    chunk = max(p.stop - p.start for p in parts) * row_bytes(layout, problem)
    fit = max(1, memory_budget() // MEMORY_SHARE // chunk)
    jobs = min(workers.default_jobs(backend.name, len(parts)), fit)
    ends, values, most, done = np.empty_like(rows), np.empty(rows.shape[0]), 0, 0
    for part, (x, f, used, converged) in _chunks_descended(
        problem, backend, rows, factors, parts, caps, jobs, progress
    ):
        ends[part], values[part], most, done = x, f, max(most, used), done + converged
    return ends, values, most, done


def _chunks_descended(
    problem: Problem,
    backend: Backend,
    rows: np.ndarray,
    factors: np.ndarray,
    parts: list[slice],
    caps: tuple[int, int],
    jobs: int,
    progress: Progress | None,
) -> Iterator[tuple[slice, Descended]]:
    """Each chunk of `rows` descended (`_descend`), in order: in this process, or in `jobs`
    worker processes (`workers.pool`, killed with the check).  The chunks are the same for any
    number of workers, so the results are too."""
    if jobs == 1:
        objective = BatchedObjective(
            problem, backend.xp, dtype=backend.dtype, device=backend.device
        )
        for part in parts:
            yield part, _descend(objective, backend, rows[part], factors[part], caps)
            if progress is not None:
                progress("batched search", part.stop, rows.shape[0])
        return
    spec = (backend.name, backend.device_name, backend.dtype_name)
    with workers.pool(jobs) as pool:
        futures = [
            pool.submit(_descend_in_worker, problem, spec, rows[p], factors[p], caps) for p in parts
        ]
        for part, future in zip(parts, futures, strict=True):
            yield part, future.result()
            if progress is not None:
                progress("batched search", part.stop, rows.shape[0])


def _descend_in_worker(
    problem: Problem,
    spec: tuple[str, str, str],
    rows: np.ndarray,
    factors: np.ndarray,
    caps: tuple[int, int],
) -> Descended:
    """`_descend` in a worker process, its BLAS on one thread as in the check's process."""
    backend = Backend.create(*spec)
    objective = BatchedObjective(problem, backend.xp, dtype=backend.dtype, device=backend.device)
    with threadpool_limits(limits=1, user_api="blas"):
        return _descend(objective, backend, rows, factors, caps)


def _descend(
    objective: BatchedObjective,
    backend: Backend,
    rows: np.ndarray,
    factors_: np.ndarray,
    caps: tuple[int, int],
) -> Descended:
    """Both stages of a chunk: its end rows and values, iterations, and rows that converged."""
    xp = backend.xp
    x = backend.asarray(rows)
    factors = backend.asarray(factors_)

    def staged(v: Any, rows: Any) -> tuple[Any, Any]:
        return objective.value_and_grad(v, factors if rows is None else xp.take(factors, rows))

    first = batched_lbfgs(staged, x, xp, caps[0])
    second = batched_lbfgs(lambda v, rows: objective.value_and_grad(v), first.x, xp, caps[1])
    converged = int(np.sum(to_host(second.converged)))
    return to_host(second.x), to_host(second.f), first.iterations + second.iterations, converged


def _outcome(value: float, claimed: float, relative: float) -> str:
    if not math.isfinite(value):
        return "failed"
    if abs(value - claimed) <= relative * abs(claimed):
        return "at-prediction"
    return "better" if value < claimed else "worse"


def _lowest_ends(
    problem: Problem,
    layout: Layout,
    ends: np.ndarray,
    values: np.ndarray,
    plan_: list[Start],
    cov: Coverage,
) -> tuple[SearchEnd, ...]:
    """The lowest end of each of the `BEST_ENDS` lowest basins, as full points."""
    order = np.argsort(np.where(np.isfinite(values), values, np.inf))
    out = []
    for basin in cov.basins[:BEST_ENDS]:
        i = int(next(j for j in order if values[j] >= basin.value))
        out.append(
            SearchEnd(
                _full_point(problem, layout, ends[i]),
                float(values[i]),
                f"batched search start {i} ({plan_[i].words()})",
            )
        )
    return tuple(out)


def _full_point(problem: Problem, layout: Layout, row: np.ndarray) -> Params:
    parts, b = layout.unpack(row[None, :], np)
    ws, g = pad(problem, [w[0] for w in parts[:-1]], parts[-1][0], np)
    h = lift_features(problem.counts, g, np)
    return Params(tuple(ws), h, None if b is None else b[0].copy())
