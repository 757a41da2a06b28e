"""Benchmarks: ncverify's optimiser against the paper's protocol, and the cost of one `check`.

Run by hand, never inside the test suite:

    .venv/bin/python benchmarks/bench.py            # everything (tens of minutes on 2 cores)
    .venv/bin/python benchmarks/bench.py --quick    # a short run (a few minutes)

It prints its tables and writes them as Markdown to `docs/benchmarks.md` (`--output`).

What is measured, and how:

1. **Protocol**: the paper's optimisation protocol (full-batch SGD, learning rate 0.1, momentum
   0.9, `N(0, 0.1^2)` initialisation, float32, up to 30 000 iterations) against ncverify's
   optimiser (`ncverify.evidence.optimize.descend`: L-BFGS in float64), from the same initial
   points, on the same backend (numpy, one BLAS thread for all), in the same process, one after
   the other.  The protocol's gradient is plain backpropagation, layer by layer, as automatic
   differentiation computes it in the paper's code; a second SGD row uses ncverify's own
   gradient code (products reassociated), so that what the optimiser gains is visible apart
   from what the gradient code gains.  ncverify runs twice: as its checks run it, on the exact
   reduction of `default_parameterisation` (for these MSE problems the class means and the bias
   eliminated in closed form, L-BFGS over the layers alone; docs/theory/model.md, "The
   class-mean reduction"), started from the class-mean coordinates of the same initial point;
   and on the full problem (every `W_m` and `H` free), so that what the reduction gains is
   visible apart from what the optimiser gains.  The gap is relative to the exact optimum of
   `ncverify.evidence.certificates.separable_reduction`, which the reduction shares; the
   protocol's float32 iterate is scored in float64 every `CHECK_EVERY` iterations, off the
   clock.  Several initial points; medians are reported.
2. **Checks**: the wall time of `ncverify check` (the CLI, a fresh process, default settings:
   8 random-start runs, more when none reaches the prediction) on each paper configuration,
   on K = 100 classes of 100 samples, width 256, depth 3, and on K = 1000 classes of 10
   samples, width 1024, depth 3, lambdas 1e-4 (where a size limit skips the random-start runs).
3. **Scaling**: the time of one full check (`ncverify.verify`) as K, N, the width and the depth
   grow one at a time from the paper's imbalanced configuration, with the growth exponent
   fitted by least squares on the log-log points, and a profile of where one check spends its
   time.

The machines these run on are shared: every comparison is made within one run, and what is
reported is the ratio; absolute times are what this machine gave at that moment.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import math
import os
import platform
import pstats
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from threadpoolctl import threadpool_info, threadpool_limits

import theorems
from ncverify.backend import Backend
from ncverify.evidence.certificates import separable_reduction
from ncverify.evidence.optimize import FlatObjective, descend
from ncverify.model.flatten import Flattener
from ncverify.model.objective import Objective, Params
from ncverify.model.problem import Problem
from ncverify.model.reduction import default_parameterisation, to_class_means
from ncverify.verify import Settings, verify

ROOT = Path(__file__).resolve().parent.parent
LAMBDA = "5e-4"
WIDTH = 64
PAPER_COUNTS = ("100,100,100,100", "200,100,50,50")
PAPER_DEPTHS = (1, 3, 6, 9)
TARGETS = (1e-6, 1e-10)
CHECK_EVERY = 10  # the protocol's iterate is scored in float64 every this many iterations
MAX_SGD = 30_000
# the large balanced checks (full mode): classes, samples per class, width, lambda_W = lambda_H;
# at K = 1000 one evaluation of the objective is above the size limit of the random-start runs
BIG_CHECKS: tuple[tuple[int, int, int, str], ...] = (
    (100, 100, 256, LAMBDA),
    (1000, 10, 1024, "1e-4"),
)


# ---- machine ------------------------------------------------------------------------------------
def machine() -> list[tuple[str, str]]:
    """What the numbers were measured on."""
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:
        usable = os.cpu_count() or 1
    blas = [
        f"{i.get('internal_api')} {i.get('version')} ({i.get('architecture')}, "
        f"{i.get('num_threads')} threads by default)"
        for i in threadpool_info()
        if i.get("user_api") == "blas"
    ]
    try:
        load = " / ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        load = "unknown"
    return [
        ("CPU", cpu),
        ("cores usable", str(usable)),
        ("memory", _memory()),
        ("OS", platform.platform()),
        ("Python", platform.python_version()),
        ("numpy", np.__version__),
        ("BLAS", "; ".join(blas) or "unknown"),
        ("load average (1/5/15 min) at start", load),
    ]


def _memory() -> str:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                return f"{int(line.split()[1]) / 2**20:.1f} GiB"
    except OSError:
        pass
    return "unknown"


# ---- the protocols ------------------------------------------------------------------------------
@dataclass
class Trace:
    """One optimiser's progress: when (seconds, evaluations) each target gap was first reached."""

    method: str
    hit_time: dict[float, float] = field(default_factory=dict)
    hit_evals: dict[float, int] = field(default_factory=dict)
    final_gap: float = math.nan
    time: float = 0.0
    evaluations: int = 0
    note: str = ""

    def record(self, gap: float, elapsed: float, evals: int) -> None:
        for target in TARGETS:
            if target not in self.hit_time and gap <= target:
                self.hit_time[target] = elapsed
                self.hit_evals[target] = evals


def paper_start(problem: Problem, seed: int) -> Params:
    """The paper's initialisation: every entry of every `W_m` and of `H` is `N(0, 0.1^2)`."""
    rng = np.random.default_rng([seed, 2023])
    ws = tuple(rng.normal(0.0, 0.1, size=shape) for shape in problem.layer_shapes)
    h = rng.normal(0.0, 0.1, size=(problem.widths[0], problem.N))
    return Params(ws, h, None)


class LayerByLayer(Objective):
    """The objective with its gradient computed layer by layer (forward, then backward through
    every layer), as automatic differentiation computes it in the paper's code."""

    product_first = False  # type: ignore[assignment]


def sgd_protocol(
    problem: Problem,
    start: Params,
    optimum: float,
    *,
    max_iter: int,
    stop_at: float | None,
    layer_by_layer: bool,
) -> Trace:
    """Full-batch SGD with momentum (PyTorch semantics: `v = 0.9 v + g`, `x -= 0.1 v`), float32.

    `layer_by_layer`: the gradient by plain backpropagation, as the paper's code computes it;
    otherwise with ncverify's reassociated products (the same code as ncverify's optimiser),
    the strongest version of the protocol.  The clock runs only around the optimiser's own work
    (gradient and update); scoring the iterate in float64 every `CHECK_EVERY` iterations is off
    the clock.
    """
    be = Backend.create("numpy", dtype="float32")
    xp = be.xp
    obj32 = (LayerByLayer if layer_by_layer else Objective)(problem, xp, dtype=xp.float32)
    obj64 = Objective(problem, xp)
    flat = Flattener(problem, xp)
    fun_grad = FlatObjective(obj32, flat)
    trace = Trace(
        "paper's protocol: SGD (lr 0.1, momentum 0.9, float32), backpropagation layer by layer"
        if layer_by_layer
        else "the same SGD with ncverify's gradient (products reassociated)"
    )
    x = flat.flatten(start.map(be.asarray))
    v = xp.zeros_like(x)
    lr, momentum = xp.asarray(0.1, dtype=xp.float32), xp.asarray(0.9, dtype=xp.float32)
    clock = 0.0
    it = 0
    with threadpool_limits(limits=1, user_api="blas"):
        for it in range(1, max_iter + 1):
            t0 = time.perf_counter()
            _, grad = fun_grad(x)
            v = momentum * v + grad
            x = x - lr * v
            clock += time.perf_counter() - t0
            if it % CHECK_EVERY == 0 or it == max_iter:
                value = obj64.value(flat.unflatten(xp.astype(x, xp.float64)))
                if not math.isfinite(value):
                    trace.note = f"diverged at iteration {it}"
                    break
                gap = (value - optimum) / optimum
                trace.final_gap = gap
                trace.record(gap, clock, it)
                if stop_at is not None and gap <= stop_at:
                    break
    trace.time, trace.evaluations = clock, it
    return trace


class _Counting(Objective):
    """An objective that counts its gradient evaluations (every path goes through
    `loss_and_grad`: `value_and_grad`, the optimiser's flat objective and its projected one
    over the layers alone alike)."""

    evaluations = 0

    def loss_and_grad(self, p: Params) -> tuple[Any, Params]:
        self.evaluations += 1
        return super().loss_and_grad(p)


def ncverify_run(problem: Problem, start: Params, optimum: float, *, reduced: bool) -> Trace:
    """`ncverify.evidence.optimize.descend` (L-BFGS, float64) from `start`, run to its own stop.

    `reduced`: as ncverify's checks run it, in `default_parameterisation(problem)` (for MSE the
    layers alone, the class means and the bias at their closed-form minimiser), from the
    class-mean coordinates of `start`; otherwise on the full problem from `start` itself.  The
    reduction has the same minimum as the full problem, so both are scored against the same
    `optimum`; its objective at a point is the full objective at that point's lift.
    """
    xp = Backend.create().xp
    if reduced:
        parameterisation = default_parameterisation(problem)
        start = to_class_means(problem.counts, start, xp)
        label = f"ncverify: L-BFGS, float64, exact reduction ({parameterisation})"
    else:
        parameterisation = "full"
        label = "ncverify: L-BFGS, float64, full problem"
    obj = _Counting(problem, xp, parameterisation=parameterisation)
    trace = Trace(label)
    t0 = time.perf_counter()

    def callback(it: int, f: float, point: Params) -> None:
        trace.record((f - optimum) / optimum, time.perf_counter() - t0, obj.evaluations)

    _, info = descend(obj, start, callback=callback)
    trace.time = time.perf_counter() - t0
    trace.evaluations = obj.evaluations
    trace.final_gap = (info["objective"] - optimum) / optimum
    return trace


METHODS = ("sgd", "sgd-fast", "ncverify-full", "ncverify")


@dataclass
class ProtocolRow:
    """One configuration: every method's traces, one per seed (the same starts for all)."""

    counts: str
    depth: int
    traces: dict[str, list[Trace]]

    def ratios(self, baseline: str = "sgd", method: str = "ncverify") -> list[float | None]:
        """Per seed: the baseline's time to 1e-6 over `method`'s time to 1e-10."""
        out: list[float | None] = []
        for base, ours in zip(self.traces[baseline], self.traces[method], strict=True):
            if TARGETS[0] in base.hit_time and TARGETS[1] in ours.hit_time:
                out.append(base.hit_time[TARGETS[0]] / ours.hit_time[TARGETS[1]])
            else:
                out.append(None)
        return out

    def median_ratio(self, baseline: str = "sgd", method: str = "ncverify") -> float | None:
        rs = self.ratios(baseline, method)
        return None if any(r is None for r in rs) else float(np.median(rs))


def protocol_table(
    counts_list: Sequence[str],
    depths: Sequence[int],
    *,
    max_sgd: int,
    stop_sgd: float | None,
    seeds: Sequence[int],
    log: Callable[[str], None],
) -> list[ProtocolRow]:
    rows = []
    for counts in counts_list:
        for depth in depths:
            problem = Problem.build(
                counts=counts, depth=depth, width=WIDTH, lambda_w=LAMBDA, lambda_h=LAMBDA
            )
            cert = separable_reduction(problem)
            assert cert is not None
            optimum = cert.bound
            traces: dict[str, list[Trace]] = {m: [] for m in METHODS}
            for seed in seeds:
                start = paper_start(problem, seed)
                traces["ncverify"].append(ncverify_run(problem, start, optimum, reduced=True))
                traces["ncverify-full"].append(ncverify_run(problem, start, optimum, reduced=False))
                traces["sgd"].append(
                    sgd_protocol(
                        problem,
                        start,
                        optimum,
                        max_iter=max_sgd,
                        stop_at=stop_sgd,
                        layer_by_layer=True,
                    )
                )
                # only its time to 1e-6 is compared: it stops there
                traces["sgd-fast"].append(
                    sgd_protocol(
                        problem,
                        start,
                        optimum,
                        max_iter=max_sgd,
                        stop_at=TARGETS[0],
                        layer_by_layer=False,
                    )
                )
            row = ProtocolRow(counts, depth, traces)
            rows.append(row)
            log(
                f"  counts {counts} depth {depth}: ratio to the paper's protocol "
                f"{_ratios(row.ratios())} (full problem {_ratios(row.ratios('sgd', 'ncverify-full'))}), "
                f"to SGD with ncverify's gradient {_ratios(row.ratios('sgd-fast'))} "
                f"(full problem {_ratios(row.ratios('sgd-fast', 'ncverify-full'))})"
            )
    return rows


def _t(trace: Trace, target: float) -> str:
    return f"{trace.hit_time[target]:.3g} s" if target in trace.hit_time else "never"


def _ratio(r: float | None) -> str:
    return "-" if r is None else f"{r:.0f}x"


def _ratios(rs: Sequence[float | None]) -> str:
    return ", ".join(_ratio(r) for r in rs)


def _median(values: Sequence[float]) -> float:
    return float(np.median(values)) if values else math.nan


# ---- full checks --------------------------------------------------------------------------------
@dataclass
class CheckRow:
    claim: str
    counts: str
    depth: int
    width: int
    wall: float
    verdict: str
    exit_code: int
    runs: int = 0
    lambda_w: str = LAMBDA
    lambda_h: str = LAMBDA
    skipped: list[str] = field(default_factory=list)  # the report's notes that a step was skipped


def claim_for(counts: str) -> str:
    balanced = len(set(counts.split(","))) == 1
    registry = theorems.registry()
    if balanced or "mse-imbalanced-biasfree" not in registry:
        return "mse-balanced-biasfree"
    return "mse-imbalanced-biasfree"


def cli_check(
    claim: str,
    counts: str,
    depth: int,
    width: int,
    *,
    lambda_w: str = LAMBDA,
    lambda_h: str = LAMBDA,
) -> CheckRow:
    """Wall time of `ncverify check` in a fresh process (imports included), default settings.

    The lambdas are passed explicitly (as decimals, read exactly), so that a row does not depend
    on the CLI's defaults."""
    exe = Path(sys.executable).with_name("ncverify")
    cmd = [
        str(exe) if exe.exists() else "ncverify",
        "check",
        claim,
        "--counts",
        counts,
        "--depth",
        str(depth),
        "--width",
        str(width),
        "--lambda-w",
        lambda_w,
        "--lambda-h",
        lambda_h,
        "--quiet",
        "--json",
        "-",
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
    wall = time.perf_counter() - t0
    row = CheckRow(claim, counts, depth, width, wall, "?", proc.returncode, 0, lambda_w, lambda_h)
    try:
        data = json.loads(proc.stdout)
    except ValueError:
        row.verdict = f"(no JSON; exit {proc.returncode})"
        return row
    row.verdict = data.get("verdict", "?")
    # numerical is null where the runs were not attempted (skipped by a size limit)
    row.runs = len((data.get("numerical") or {}).get("runs") or [])
    row.skipped = [str(n) for n in data.get("notes") or [] if "skipped" in str(n)]
    return row


# ---- scaling ------------------------------------------------------------------------------------
@dataclass
class ScalingRow:
    axis: str
    value: int
    problem: Problem
    total: float
    parts: dict[str, float]
    iterations: float
    verdict: str
    why: str = ""
    parameterisation: str = ""  # what the check optimised (`Report.parameterisation`)


def check_once(problem: Problem) -> tuple[float, dict[str, float], float, str, str, str]:
    """Time, time per phase, mean iterations, verdict, unless certified why (the report's notes
    and best run), and the parameterisation the check optimised in."""
    claim = theorems.get(claim_for(",".join(map(str, problem.counts))))
    t0 = time.perf_counter()
    report = verify(claim, problem, Backend.create(), Settings())
    total = time.perf_counter() - t0
    its = float(np.mean([r.iterations for r in report.runs])) if report.runs else 0.0
    why = ""
    if report.verdict != "certified":
        best = min((r.objective for r in report.runs), default=math.nan)
        why = "; ".join(
            [
                *report.prediction.notes,
                *report.notes,
                f"claimed optimum {float(report.prediction.objective):.6g}, best of "
                f"{len(report.runs)} runs {best:.6g}",
            ]
        )
    return total, dict(report.timing), its, report.verdict, why, report.parameterisation


def scaling_axes(quick: bool) -> dict[str, list[tuple[int, Problem]]]:
    """One axis at a time from the paper's imbalanced configuration (K 4, N 400, d 64, M 3)."""

    def build(counts: Sequence[int], depth: int = 3, width: int = WIDTH) -> Problem:
        return Problem.build(
            counts=",".join(map(str, counts)),
            depth=depth,
            width=width,
            lambda_w=LAMBDA,
            lambda_h=LAMBDA,
        )

    def imbalanced(k: int, n_total: int) -> list[int]:
        # the paper's 200,100,50,50 shape stretched to K classes: halving sizes, then flat
        weights = np.array([2.0] + [1.0] + [0.5] * (k - 2))
        counts = np.maximum(1, np.round(weights / weights.sum() * n_total)).astype(int)
        return [int(c) for c in counts]

    ks = [4, 10, 25] if quick else [4, 10, 25, 50, 100, 250, 1000]
    ns = [400, 1000, 2500] if quick else [400, 1000, 2500, 10_000, 25_000, 100_000]
    ds = [16, 32, 64] if quick else [16, 32, 64, 128, 256, 512, 1024]
    ms = [1, 2, 3] if quick else [1, 2, 3, 4, 6, 9, 12]
    return {
        # N grows with K (10 samples per class on average): at a fixed N, K = 1000 would leave
        # one or two samples in most classes
        "K (N = 10 K)": [(k, build(imbalanced(k, 10 * k))) for k in ks],
        "N (K = 4)": [(n, build(imbalanced(4, n))) for n in ns],
        "width d": [(d, build((200, 100, 50, 50), width=d)) for d in ds],
        "depth M": [(m, build((200, 100, 50, 50), depth=m)) for m in ms],
    }


def scaling_table(quick: bool, log: Callable[[str], None]) -> list[ScalingRow]:
    rows = []
    for axis, points in scaling_axes(quick).items():
        for value, problem in points:
            total, parts, its, verdict, why, param = check_once(problem)
            rows.append(ScalingRow(axis, value, problem, total, parts, its, verdict, why, param))
            log(f"  {axis} = {value}: {total:.2f} s ({verdict}, {param})")
    return rows


def fitted_exponent(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of log y on log x."""
    lx, ly = np.log(np.asarray(xs, float)), np.log(np.asarray(ys, float))
    return float(np.polyfit(lx, ly, 1)[0])


# ---- profile ------------------------------------------------------------------------------------
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    (
        "objective: loss and gradient, feature elimination "
        "(objective.py, elimination.py, reduction.py)",
        (
            "ncverify/model/objective.py",
            "ncverify/model/elimination.py",
            "ncverify/model/reduction.py",
        ),
    ),
    (
        "optimiser driver: flat objective, regulariser, flatten (optimize.py)",
        ("ncverify/evidence/optimize.py",),
    ),
    (
        "L-BFGS: direction (with its two passes over the stored pairs) and line search",
        ("ncverify/evidence/lbfgs.py",),
    ),
    ("curvature at the predicted point (Lanczos)", ("ncverify/evidence/curvature.py",)),
    (
        "metrics, run classification, pipeline, report",
        (
            "ncverify/evidence/metrics.py",
            "ncverify/evidence/structure.py",
            "ncverify/kinds/",
            "ncverify/pipeline/",
            "ncverify/report.py",
        ),
    ),
    (
        "symbolic: closed form and certificate (sympy, mpmath)",
        (
            "sympy/",
            "mpmath/",
            "ncverify/model/scalar.py",
            "ncverify/evidence/certificates/__init__.py",
            "theorems/",
        ),
    ),
    ("numpy functions called from the above (reductions, small linear algebra)", ("numpy/",)),
]


def profile_check(problem: Problem) -> list[tuple[str, float]]:
    """Own time of one serial check (`NCVERIFY_JOBS=1`), grouped by where the code lives."""
    claim = theorems.get(claim_for(",".join(map(str, problem.counts))))
    old = os.environ.get("NCVERIFY_JOBS")
    os.environ["NCVERIFY_JOBS"] = "1"
    prof = cProfile.Profile()
    try:
        prof.enable()
        verify(claim, problem, Backend.create(), Settings())
        prof.disable()
    finally:
        if old is None:
            os.environ.pop("NCVERIFY_JOBS", None)
        else:
            os.environ["NCVERIFY_JOBS"] = old
    stats = pstats.Stats(prof, stream=io.StringIO())
    totals = {name: 0.0 for name, _ in CATEGORIES}
    totals["other (Python, imports, reports)"] = 0.0
    for (filename, _, _), (_, _, tottime, _, _) in stats.stats.items():  # type: ignore[attr-defined]
        path = filename.replace(os.sep, "/")
        for name, keys in CATEGORIES:
            if any(k in path for k in keys):
                totals[name] += tottime
                break
        else:
            totals["other (Python, imports, reports)"] += tottime
    return sorted(totals.items(), key=lambda kv: -kv[1])


# ---- output -------------------------------------------------------------------------------------
def md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def fmt_gap(g: float) -> str:
    return "-" if not math.isfinite(g) else f"{g:.1e}"


def _protocol_rows(rows: list[ProtocolRow]) -> list[list[str]]:
    """One table row per configuration and method: medians of the times and evaluations."""

    def med_time(trs: list[Trace], target: float) -> str:
        if any(target not in t.hit_time for t in trs):
            reached = sum(target in t.hit_time for t in trs)
            return "never" if reached == 0 else f"{reached}/{len(trs)} runs"
        return f"{_median([t.hit_time[target] for t in trs]):.3g} s"

    def med_evals(trs: list[Trace], target: float) -> str:
        if any(target not in t.hit_evals for t in trs):
            return "-"
        return f"{_median([t.hit_evals[target] for t in trs]):.0f}"

    names = {
        "sgd": "paper's protocol (SGD, float32, layer-by-layer backprop)",
        "sgd-fast": "SGD as above with ncverify's gradient (stops at 1e-6)",
        "ncverify-full": "ncverify's L-BFGS (float64) on the full problem",
        "ncverify": "**ncverify** (L-BFGS, float64, exact reduction: the layers alone)",
    }
    out = []
    for row in rows:
        for key in METHODS:
            trs = row.traces[key]
            notes = sorted({t.note for t in trs if t.note})
            out.append(
                [
                    row.counts,
                    str(row.depth),
                    names[key] + (f" ({'; '.join(notes)})" if notes else ""),
                    med_time(trs, TARGETS[0]),
                    med_evals(trs, TARGETS[0]),
                    med_time(trs, TARGETS[1]),
                    med_evals(trs, TARGETS[1]),
                    fmt_gap(_median([t.final_gap for t in trs])),
                    f"{_median([t.time for t in trs]):.3g} s",
                ]
            )
    return out


def _ratio_table(rows: list[ProtocolRow]) -> str:
    """The speed-ups of ncverify (as its checks run, and on the full problem) over the two SGD
    baselines, per configuration."""
    ratio_rows = [
        [
            r.counts,
            str(r.depth),
            _ratio(r.median_ratio()),
            _ratios(r.ratios()),
            _ratio(r.median_ratio("sgd", "ncverify-full")),
            _ratio(r.median_ratio("sgd-fast")),
            _ratio(r.median_ratio("sgd-fast", "ncverify-full")),
        ]
        for r in rows
    ]
    return md_table(
        [
            "counts",
            "M",
            "faster than the paper's protocol: ncverify (median)",
            "for each initial point",
            "ncverify on the full problem (median)",
            "faster than SGD with ncverify's gradient: ncverify (median)",
            "ncverify on the full problem (median)",
        ],
        ratio_rows,
    )


def protocol_markdown(rows: list[ProtocolRow], n_seeds: int) -> str:
    header = [
        "counts",
        "M",
        "method",
        "time to 1e-6",
        "evals to 1e-6",
        "time to 1e-10",
        "evals to 1e-10",
        "final gap",
        "time of the run",
    ]

    out = _protocol_rows(rows)
    ratios = _ratio_table(rows)

    def span(baseline: str, method: str = "ncverify") -> str:
        meds = [m for m in (r.median_ratio(baseline, method) for r in rows) if m is not None]
        if not meds:
            return "not measured (a method did not reach its target)"
        lo, hi = _ratio(min(meds)), _ratio(max(meds))
        return lo if lo == hi else f"{lo} to {hi}"

    return (
        f"Medians over {n_seeds} initial point(s). *time to 1e-6*: the time until the gap "
        "first fell to 1e-6 or below (*never*: not within the run); *evals*: evaluations of "
        "the objective and its gradient until then (for ncverify on the reduction, each "
        "includes solving for the class means and the bias); *time of the run*: the whole "
        "run (for the paper's protocol, its float64 scoring not included).\n\n"
        + md_table(header, out)
        + "\n\n### Speed-up\n\nHow many times faster ncverify is: the time an SGD run took "
        "to reach a gap of 1e-6, divided by the time ncverify took to reach 1e-10, a gap ten "
        "thousand times smaller (compared at 1e-6 for both, the ratios would be larger). All "
        "times come from the same run on the same backend. Over all configurations, the "
        f"median speed-up of ncverify as its checks run it is {span('sgd')} over the paper's "
        f"protocol and {span('sgd-fast')} over SGD with ncverify's gradient; of its L-BFGS on "
        f"the full problem, {span('sgd', 'ncverify-full')} and "
        f"{span('sgd-fast', 'ncverify-full')}. The ratio between the two is what the "
        "exact reduction gains; what separates the full-problem row from SGD with the same "
        "gradient is what the optimiser gains.\n\n" + ratios
    )


def _lambdas(row: CheckRow) -> str:
    if row.lambda_w == row.lambda_h:
        return row.lambda_w
    return f"W {row.lambda_w}, H {row.lambda_h}"


def _counts_label(counts: str) -> str:
    parts = counts.split(",")
    return counts if len(parts) <= 4 else f"{len(parts)} classes of {parts[0]}"


def checks_markdown(rows: list[CheckRow]) -> str:
    out = [
        [
            r.claim,
            _counts_label(r.counts),
            str(r.depth),
            str(r.width),
            _lambdas(r),
            str(r.runs),
            f"{r.wall:.2f} s",
            r.verdict,
        ]
        for r in rows
    ]
    table = md_table(
        ["claim", "counts", "M", "width", "lambdas", "random-start runs", "wall time", "verdict"],
        out,
    )
    return table + "".join(_skip_notes(r) for r in rows if r.skipped)


def _skip_notes(row: CheckRow) -> str:
    """The steps the report says it skipped, under the table: a verdict without them rests on
    the evidence that remains."""
    notes = "; ".join(row.skipped)
    text = (
        f"\n\n*{row.claim}, {_counts_label(row.counts)}, M = {row.depth}, width {row.width}*: "
        f"{notes}."
    )
    if any("random-start runs are skipped" in n for n in row.skipped):
        text += (
            " Without the random-start runs the verdict rests on the predicted point (E1: "
            "value, gradient and curvature) and the certificate."
        )
    return text


def scaling_markdown(rows: list[ScalingRow]) -> str:
    parts = []
    for axis in dict.fromkeys(r.axis for r in rows):
        sub = [r for r in rows if r.axis == axis]
        table = md_table(
            [
                axis,
                "parameters",
                "parameterisation",
                "total",
                "optimiser runs",
                "predicted point (E1)",
                "closed form",
                "certificate",
                "mean iterations",
                "verdict",
            ],
            [
                [
                    str(r.value),
                    f"{r.problem.n_parameters:,}",
                    r.parameterisation,
                    f"{r.total:.2f} s",
                    f"{r.parts.get('optimise', 0.0):.2f} s",
                    f"{r.parts.get('predicted_point', 0.0):.2f} s",
                    f"{r.parts.get('closed_form', 0.0):.2f} s",
                    f"{r.parts.get('certificate', 0.0):.2f} s",
                    f"{r.iterations:.0f}",
                    r.verdict,
                ]
                for r in sub
            ],
        )
        exp = fitted_exponent([r.value for r in sub], [r.total for r in sub])
        whys = "".join(
            f"\n\n{axis.split()[0]} = {r.value}, {r.verdict}: {r.why}." for r in sub if r.why
        )
        parts.append(f"{table}\n\nFitted growth: total time ~ {axis.split()[0]}^{exp:.2f}.{whys}")
    return "\n\n".join(parts)


def samples_exponent(rows: list[ScalingRow]) -> str:
    """A sentence on how the time of a check grows with N (the number of samples), or "" when
    that axis was not measured."""
    sub = [r for r in rows if r.axis.startswith("N ")]
    if len(sub) < 2:
        return ""
    exp = fitted_exponent([r.value for r in sub], [r.total for r in sub])
    lo, hi = min(r.value for r in sub), max(r.value for r in sub)
    params = sorted({r.parameterisation for r in sub})
    return (
        f"**Growth with the number of samples**: from N = {lo:,} to N = {hi:,} (K = 4) the "
        f"fitted exponent is {exp:.2f} (total time ~ N^{exp:.2f}). The runs optimise "
        f"in the {' and '.join(f'`{q}`' for q in params)} parameterisation, an exact "
        "reduction whose size does not depend on N "
        "([the class-mean reduction](theory/model.md#the-class-mean-reduction)).\n\n"
    )


def profile_markdown(problem: Problem, totals: list[tuple[str, float]]) -> str:
    whole = sum(v for _, v in totals) or 1.0
    table = md_table(
        ["where", "own time", "share"],
        [[name, f"{v:.2f} s", f"{100 * v / whole:.0f} %"] for name, v in totals],
    )
    return (
        f"One check of counts {','.join(map(str, problem.counts))}, depth {problem.depth}, "
        f"width {problem.widths[0]}, run serially under cProfile, own time by where the code "
        "lives. cProfile charges a matrix product written `A @ B` to the function that "
        "contains it (so the products of the objective count under the objective and the "
        "optimiser's passes over its stored pairs under L-BFGS), and it inflates "
        f"Python-heavy parts.\n\n{table}"
    )


def _arguments(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run (a few minutes)")
    parser.add_argument(
        "--output", default=str(ROOT / "docs" / "benchmarks.md"), help="Markdown file to write"
    )
    parser.add_argument("--seed", type=int, default=0, help="first initial point")
    parser.add_argument(
        "--seeds", type=int, default=3, help="initial points per configuration (full mode)"
    )
    parser.add_argument(
        "--skip",
        default="",
        help="comma-separated sections to skip: protocol, checks, big, scaling, profile",
    )
    return parser.parse_args(argv)


def _log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _introduction(args: argparse.Namespace) -> list[str]:
    """What the page measures and on which machine."""
    info = machine()
    return [
        "# Benchmarks",
        "How fast ncverify is: its optimiser against the optimisation protocol of the paper "
        "on the same problems, the wall time of a full `ncverify check`, how the time of one "
        "check grows with the number of classes, the number of samples, the width and the "
        "depth, and where that time goes. Measured by `benchmarks/bench.py`"
        + (" `--quick` (a short run)" if args.quick else "")
        + f" on {time.strftime('%Y-%m-%d %H:%M')}, on the machine described below. Every "
        "comparison is made within that one run, on the same backend (numpy, float64 unless "
        "said otherwise, one BLAS thread per process). The machine is shared with other jobs: "
        "the ratios are the result to read, while absolute times are what this machine gave "
        "at that moment and will differ on yours. To measure your own machine, run "
        "`python benchmarks/bench.py` (tens of minutes on 2 cores; `--quick` for a run of a "
        "few minutes); it rewrites this page.",
        "## Machine\n\n" + md_table(["", ""], [[k, v] for k, v in info]),
    ]


def _protocol_section(args: argparse.Namespace) -> str:
    """ncverify's optimiser against the paper's protocol, on the paper's configurations."""
    log = _log
    log("protocol: paper's SGD against ncverify's L-BFGS")
    depths = (1, 3) if args.quick else PAPER_DEPTHS
    counts = ("200,100,50,50",) if args.quick else PAPER_COUNTS
    seeds = list(range(args.seed, args.seed + (1 if args.quick else args.seeds)))
    rows = protocol_table(
        counts,
        depths,
        max_sgd=MAX_SGD,
        stop_sgd=TARGETS[0] if args.quick else None,
        seeds=seeds,
        log=log,
    )
    return (
        "## ncverify's optimiser against the paper's protocol\n\n"
        "The problems: K = 4 classes with the counts below, width 64, depth M, every "
        "lambda 5e-4, the squared loss without bias. Every method starts from the same "
        "`N(0, 0.1^2)` initial point (ncverify on the reduction from its class-mean "
        "coordinates: the same layers, the class means and the bias at their minimiser for "
        "them). "
        "Progress is the relative gap `(F - F*) / F*` of the full objective, where `F*` is the "
        "exact optimum (from the separable reduction). The methods compared:\n\n"
        "- **the paper's protocol**: full-batch SGD (learning rate 0.1, momentum 0.9) in "
        "float32 on the full problem (every `W_m` and `H` free), its gradient computed by "
        "backpropagation layer by layer, as automatic differentiation does in the paper's "
        "code. It runs "
        + (
            "until it reaches a gap of 1e-6 (quick run)"
            if args.quick
            else f"its {MAX_SGD} iterations (float32 cannot reach a gap of 1e-10)"
        )
        + f"; its iterate is scored in float64 every {CHECK_EVERY} iterations, off the "
        "clock.\n"
        "- **SGD with ncverify's gradient**: the same protocol with ncverify's own gradient "
        "code (products reassociated around W_M ... W_1), stopped at 1e-6. It is the "
        "strongest SGD baseline on the full problem.\n"
        "- **ncverify's L-BFGS on the full problem**: L-BFGS in float64 "
        "(`ncverify.evidence.optimize.descend`) over every `W_m` and `H`, run until F stops "
        "decreasing in floating point. What separates it from SGD with the same gradient is "
        "what the optimiser itself gains.\n"
        "- **ncverify**: the same L-BFGS as ncverify's checks run it, on an exact reduction "
        "of the problem ([the class-mean reduction](theory/model.md#the-class-mean-reduction)): "
        "the minima of `F` have collapsed features, so it optimises one feature column per "
        "class, and for the squared loss the class means and the bias are eliminated in "
        "closed form (a ridge problem given the layers), leaving L-BFGS over the layers "
        "alone. Its minimum is `F*` and its points lift to points of the full problem with "
        "the same objective. The full-problem row is shown so that what the reduction gains "
        "is visible apart from what the optimiser gains.\n\n" + protocol_markdown(rows, len(seeds))
    )


def _checks_section(args: argparse.Namespace, skip: set[str]) -> str | None:
    """The wall time of a full `ncverify check` in a fresh process."""
    log = _log
    check_rows: list[CheckRow] = []
    if "checks" not in skip:
        log("checks: ncverify check on the paper's configurations")
        depths = (3,) if args.quick else PAPER_DEPTHS
        for counts in PAPER_COUNTS:
            for depth in depths:
                row = cli_check(claim_for(counts), counts, depth, WIDTH)
                check_rows.append(row)
                log(f"  {counts} depth {depth}: {row.wall:.2f} s, {row.verdict}")
    if "big" not in skip and not args.quick:
        for k, n, width, lam in BIG_CHECKS:
            log(f"checks: K = {k}, {n} samples each, width {width}, depth 3, lambdas {lam}")
            counts = ",".join([str(n)] * k)
            row = cli_check("mse-balanced-biasfree", counts, 3, width, lambda_w=lam, lambda_h=lam)
            check_rows.append(row)
            log(f"  {row.wall:.1f} s, {row.verdict}" + "".join(f"; {note}" for note in row.skipped))
    if check_rows:
        return (
            "## Time of a full check\n\nThe wall time of `ncverify check CLAIM --counts ... "
            "--depth M --width d --lambda-w L --lambda-h L` run as a new process, so Python's "
            "start-up and the imports are included, with the default settings: 8 random-start "
            "runs (doubled, up to twice, while none of them reaches the prediction or beats "
            "it), the certificate, the curvature at the predicted point and the NC metrics. "
            "*lambdas*: `lambda_W` and `lambda_H` (5e-4 is the paper's value). Steps that the "
            "report says were skipped are listed under the table.\n\n" + checks_markdown(check_rows)
        )
    return None


def _scaling_section(args: argparse.Namespace) -> str:
    log = _log
    log("scaling: one full check as K, N, width and depth grow")
    rows_s = scaling_table(args.quick, log)
    return (
        "## Scaling of one check\n\nOne parameter at a time from counts 200,100,50,50 "
        "(K = 4, N = 400), width 64, depth 3; K and N keep the paper's shape (one class "
        "of twice, one of once, the rest of half the weight), and along the K axis N grows "
        "with K (N = 10 K, 10 samples per class on average), so that no class is left with "
        "one or two samples. Time of `ncverify.verify` in-process with default settings (8 "
        "random-start runs); *parameterisation*: what the check optimised "
        "(`numerical.parameterisation` of the report). The exponent is the least-squares "
        "slope of log(time) on log(parameter).\n\n"
        + samples_exponent(rows_s)
        + scaling_markdown(rows_s)
    )


def _profile_section() -> str:
    log = _log
    log("profile: where one check spends its time")
    problem = Problem.build(
        counts="200,100,50,50", depth=3, width=WIDTH, lambda_w=LAMBDA, lambda_h=LAMBDA
    )
    return "## Where the time goes\n\n" + profile_markdown(problem, profile_check(problem))


def main(argv: Sequence[str] | None = None) -> int:
    args = _arguments(argv)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    started = time.perf_counter()
    sections = _introduction(args)
    if "protocol" not in skip:
        sections.append(_protocol_section(args))
    checks = _checks_section(args, skip)
    if checks is not None:
        sections.append(checks)
    if "scaling" not in skip:
        sections.append(_scaling_section(args))
    if "profile" not in skip:
        sections.append(_profile_section())
    sections.append(f"Total benchmark time: {time.perf_counter() - started:.0f} s.")
    text = "\n\n".join(sections) + "\n"
    print(text)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    _log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
