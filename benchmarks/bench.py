"""Benchmarks: ncverify's optimiser against the paper's protocol, and the cost of one `check`.

Run by hand, never inside the test suite:

    .venv/bin/python benchmarks/bench.py            # everything (tens of minutes on 2 cores)
    .venv/bin/python benchmarks/bench.py --quick    # a short run (a few minutes)

It prints its tables and writes them as Markdown to `docs/benchmarks.md` (`--output`).

What is measured, and how:

1. **Protocol**: the paper's optimisation protocol (full-batch SGD, learning rate 0.1, momentum
   0.9, `N(0, 0.1^2)` initialisation, float32, up to 30 000 iterations) against ncverify's
   optimiser (`ncverify.evidence.optimize.descend`: L-BFGS in float64) on the *full* problem (every `W_m`
   and `H` free), from the same initial points, on the same backend (numpy, one BLAS thread for
   all), in the same process, one after the other.  The protocol's gradient is plain
   backpropagation, layer by layer, as automatic differentiation computes it in the paper's
   code; a second SGD row uses ncverify's own gradient code (products reassociated), so that
   what the optimiser gains is visible apart from what the gradient code gains.  The gap is
   relative to the exact optimum of `ncverify.evidence.certificates.separable_reduction`; the protocol's
   float32 iterate is scored in float64 every `CHECK_EVERY` iterations, off the clock.  A
   proven exact reduction (eliminating `H`, a ridge problem given the weights) is a separate
   row, never in place of the full problem.  Several initial points; medians are reported.
2. **Checks**: the wall time of `ncverify check` (the CLI, a fresh process, default settings:
   8 random-start runs, more when none reaches the prediction) on each paper configuration,
   and on K = 100 classes of 100 samples, width 256, depth 3.
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
from ncverify.evidence import lbfgs
from ncverify.evidence.certificates import separable_reduction
from ncverify.evidence.optimize import FlatObjective, descend
from ncverify.model.flatten import Flattener
from ncverify.model.objective import Objective, Params
from ncverify.model.problem import Problem
from ncverify.verify import Settings, verify

ROOT = Path(__file__).resolve().parent.parent
LAMBDA = "5e-4"
WIDTH = 64
PAPER_COUNTS = ("100,100,100,100", "200,100,50,50")
PAPER_DEPTHS = (1, 3, 6, 9)
TARGETS = (1e-6, 1e-10)
CHECK_EVERY = 10  # the protocol's iterate is scored in float64 every this many iterations
MAX_SGD = 30_000


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
    `loss_and_grad`: `value_and_grad` and the optimiser's flat objective alike)."""

    evaluations = 0

    def loss_and_grad(self, p: Params) -> tuple[Any, Params]:
        self.evaluations += 1
        return super().loss_and_grad(p)


def ncverify_run(problem: Problem, start: Params, optimum: float) -> Trace:
    """`ncverify.evidence.optimize.descend` (L-BFGS, float64) from `start`, run to its own stop."""
    obj = _Counting(problem, Backend.create().xp)
    trace = Trace("ncverify: L-BFGS, float64, full problem")
    t0 = time.perf_counter()

    def callback(it: int, f: float, point: Params) -> None:
        trace.record((f - optimum) / optimum, time.perf_counter() - t0, obj.evaluations)

    _, info = descend(obj, start, callback=callback)
    trace.time = time.perf_counter() - t0
    trace.evaluations = obj.evaluations
    trace.final_gap = (info["objective"] - optimum) / optimum
    return trace


def ridge_reduced_run(problem: Problem, start: Params, optimum: float) -> Trace:
    """L-BFGS over the weights only, `H` eliminated exactly (MSE, no bias).

    Given the weights, `F` is a strictly convex ridge problem in `H` with the minimiser
    `H* = P^T (P P^T + N lambda_H I)^{-1} Y`, `P = W_M ... W_1`; by the envelope theorem the
    gradient of `min_H F` is the weight gradient of `F` at `H*`.  An exact reduction, so it is
    reported beside the full problem, not in its place.
    """
    xp = Backend.create().xp
    obj = _Counting(problem, xp)
    flat = Flattener(problem, xp)
    offsets = flat.offsets[: problem.depth + 1]  # the weight blocks of the full flat vector
    lam = float(problem.lambda_h) * problem.N
    trace = Trace("exact reduction: H eliminated (ridge), L-BFGS over the weights")

    def weights(x: Any) -> tuple[Any, ...]:
        return tuple(
            xp.reshape(x[a:b], s)
            for a, b, s in zip(offsets[:-1], offsets[1:], flat.shapes[: problem.depth], strict=True)
        )

    def optimal_h(ws: tuple[Any, ...]) -> Any:
        prod = ws[-1]
        for w in reversed(ws[:-1]):
            prod = prod @ w
        gram = prod @ prod.T + lam * xp.eye(problem.K, dtype=prod.dtype)
        return prod.T @ xp.linalg.solve(gram, obj.Y)

    def fun_grad(x: Any) -> tuple[float, Any]:
        ws = weights(x)
        value, grad = obj.value_and_grad(Params(ws, optimal_h(ws), None))
        return float(value), xp.concat([xp.reshape(g, (-1,)) for g in grad.Ws])

    x0 = xp.concat([xp.reshape(w, (-1,)) for w in start.Ws])
    t0 = time.perf_counter()

    def callback(it: int, f: float, x: Any) -> None:
        trace.record((f - optimum) / optimum, time.perf_counter() - t0, obj.evaluations)

    with threadpool_limits(limits=1, user_api="blas"):
        res = lbfgs.minimise(fun_grad, x0, xp, callback=callback)
        ws = weights(res.x)
        value = obj.value(Params(ws, optimal_h(ws), None))
    trace.time = time.perf_counter() - t0
    trace.evaluations = obj.evaluations
    trace.final_gap = (value - optimum) / optimum
    return trace


METHODS = ("sgd", "sgd-fast", "ncverify", "ridge")


@dataclass
class ProtocolRow:
    """One configuration: every method's traces, one per seed (the same starts for all)."""

    counts: str
    depth: int
    traces: dict[str, list[Trace]]

    def ratios(self, baseline: str = "sgd") -> list[float | None]:
        """Per seed: the baseline's time to 1e-6 over ncverify's time to 1e-10."""
        out: list[float | None] = []
        for base, ours in zip(self.traces[baseline], self.traces["ncverify"], strict=True):
            if TARGETS[0] in base.hit_time and TARGETS[1] in ours.hit_time:
                out.append(base.hit_time[TARGETS[0]] / ours.hit_time[TARGETS[1]])
            else:
                out.append(None)
        return out

    def median_ratio(self, baseline: str = "sgd") -> float | None:
        rs = self.ratios(baseline)
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
                traces["ncverify"].append(ncverify_run(problem, start, optimum))
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
                traces["ridge"].append(ridge_reduced_run(problem, start, optimum))
            row = ProtocolRow(counts, depth, traces)
            rows.append(row)
            log(
                f"  counts {counts} depth {depth}: ratio to the paper's protocol "
                f"{_ratios(row.ratios())}, to SGD with ncverify's gradient "
                f"{_ratios(row.ratios('sgd-fast'))}"
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


def claim_for(counts: str) -> str:
    balanced = len(set(counts.split(","))) == 1
    registry = theorems.registry()
    if balanced or "mse-imbalanced-biasfree" not in registry:
        return "mse-balanced-biasfree"
    return "mse-imbalanced-biasfree"


def cli_check(claim: str, counts: str, depth: int, width: int) -> CheckRow:
    """Wall time of `ncverify check` in a fresh process (imports included), default settings."""
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
        "--quiet",
        "--json",
        "-",
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, check=False)
    wall = time.perf_counter() - t0
    verdict, runs = "?", 0
    try:
        data = json.loads(proc.stdout)
        verdict = data.get("verdict", "?")
        runs = len((data.get("numerical") or {}).get("runs") or [])
    except ValueError:
        verdict = f"(no JSON; exit {proc.returncode})"
    return CheckRow(claim, counts, depth, width, wall, verdict, proc.returncode, runs)


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


def check_once(problem: Problem) -> tuple[float, dict[str, float], float, str, str]:
    """Time, time per phase, mean iterations, verdict and, unless certified, why (the report's
    notes and best run)."""
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
    return total, dict(report.timing), its, report.verdict, why


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

    ks = [4, 10, 25] if quick else [4, 10, 25, 50, 100]
    ns = [400, 1000, 2500] if quick else [400, 1000, 2500, 5000, 10_000]
    ds = [16, 32, 64] if quick else [16, 32, 64, 128, 256, 512]
    ms = [1, 2, 3] if quick else [1, 2, 3, 4, 6, 9]
    return {
        "K (N = 2000)": [(k, build(imbalanced(k, 2000))) for k in ks],
        "N (K = 4)": [(n, build(imbalanced(4, n))) for n in ns],
        "width d": [(d, build((200, 100, 50, 50), width=d)) for d in ds],
        "depth M": [(m, build((200, 100, 50, 50), depth=m)) for m in ms],
    }


def scaling_table(quick: bool, log: Callable[[str], None]) -> list[ScalingRow]:
    rows = []
    for axis, points in scaling_axes(quick).items():
        for value, problem in points:
            total, parts, its, verdict, why = check_once(problem)
            rows.append(ScalingRow(axis, value, problem, total, parts, its, verdict, why))
            log(f"  {axis} = {value}: {total:.2f} s ({verdict})")
    return rows


def fitted_exponent(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of log y on log x."""
    lx, ly = np.log(np.asarray(xs, float)), np.log(np.asarray(ys, float))
    return float(np.polyfit(lx, ly, 1)[0])


# ---- profile ------------------------------------------------------------------------------------
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("objective: loss and gradient (objective.py)", ("ncverify/model/objective.py",)),
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
        "metrics, run classification, report",
        ("ncverify/evidence/metrics.py", "ncverify/verify.py", "ncverify/report.py"),
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
        "ncverify": "**ncverify** (L-BFGS, float64)",
        "ridge": "exact reduction, H eliminated (ridge): weights only",
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
    """The speed-ups of ncverify over the two SGD baselines, per configuration."""
    ratio_rows = [
        [
            r.counts,
            str(r.depth),
            _ratio(r.median_ratio()),
            _ratios(r.ratios()),
            _ratio(r.median_ratio("sgd-fast")),
        ]
        for r in rows
    ]
    return md_table(
        [
            "counts",
            "M",
            "faster than the paper's protocol (median)",
            "for each initial point",
            "faster than SGD with ncverify's gradient (median)",
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

    def span(baseline: str) -> str:
        meds = [m for m in (r.median_ratio(baseline) for r in rows) if m is not None]
        if not meds:
            return "not measured (a method did not reach its target)"
        lo, hi = _ratio(min(meds)), _ratio(max(meds))
        return lo if lo == hi else f"{lo} to {hi}"

    return (
        f"Medians over {n_seeds} initial point(s). *time to 1e-6*: the time until the gap "
        "first fell to 1e-6 or below (*never*: not within the run); *evals*: evaluations of "
        "the objective and its gradient until then; *time of the run*: the whole run (for "
        "the paper's protocol, its float64 scoring not included).\n\n"
        + md_table(header, out)
        + "\n\n### Speed-up\n\nHow many times faster ncverify is: the time an SGD run took "
        "to reach a gap of 1e-6, divided by the time ncverify took to reach 1e-10, a gap ten "
        "thousand times smaller (compared at 1e-6 for both, the ratios would be larger). Both "
        "times come from the same run on the same backend. Over all configurations, the "
        f"median speed-up is {span('sgd')} over the paper's protocol and {span('sgd-fast')} "
        "over SGD with ncverify's gradient.\n\n" + ratios
    )


def checks_markdown(rows: list[CheckRow]) -> str:
    out = []
    for r in rows:
        k = len(r.counts.split(","))
        counts = r.counts if k <= 4 else f"{k} classes of {r.counts.split(',')[0]}"
        out.append(
            [
                r.claim,
                counts,
                str(r.depth),
                str(r.width),
                str(r.runs),
                f"{r.wall:.2f} s",
                r.verdict,
            ]
        )
    return md_table(
        ["claim", "counts", "M", "width", "random-start runs", "wall time", "verdict"], out
    )


def scaling_markdown(rows: list[ScalingRow]) -> str:
    parts = []
    for axis in dict.fromkeys(r.axis for r in rows):
        sub = [r for r in rows if r.axis == axis]
        table = md_table(
            [
                axis,
                "parameters",
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
        "lambda 5e-4, every `W_m` and `H` free (the full problem, not a reduction of it). "
        "Every method starts from the same `N(0, 0.1^2)` initial point. Progress is the "
        "relative gap `(F - F*) / F*`, where `F*` is the exact optimum (from the separable "
        "reduction). The methods compared:\n\n"
        "- **the paper's protocol**: full-batch SGD (learning rate 0.1, momentum 0.9) in "
        "float32, its gradient computed by backpropagation layer by layer, as automatic "
        "differentiation does in the paper's code. It runs "
        + (
            "until it reaches a gap of 1e-6 (quick run)"
            if args.quick
            else f"its {MAX_SGD} iterations (float32 cannot reach a gap of 1e-10)"
        )
        + f"; its iterate is scored in float64 every {CHECK_EVERY} iterations, off the "
        "clock.\n"
        "- **SGD with ncverify's gradient**: the same protocol with ncverify's own gradient "
        "code (products reassociated around W_M ... W_1), stopped at 1e-6. It is the "
        "strongest SGD baseline: what separates it from ncverify is what the optimiser "
        "itself gains.\n"
        "- **ncverify**: L-BFGS in float64 (`ncverify.evidence.optimize.descend`), run until F stops "
        "decreasing in floating point.\n"
        "- **H eliminated**: an exact reduction (given the weights, H solves a ridge "
        "problem), shown for comparison only; ncverify's checks optimise the full "
        "problem.\n\n" + protocol_markdown(rows, len(seeds))
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
        log("checks: K = 100, 100 samples each, width 256, depth 3")
        counts = ",".join(["100"] * 100)
        row = cli_check("mse-balanced-biasfree", counts, 3, 256)
        check_rows.append(row)
        log(f"  {row.wall:.1f} s, {row.verdict}")
    if check_rows:
        return (
            "## Time of a full check\n\nThe wall time of `ncverify check CLAIM --counts ... "
            "--depth M --width d` run as a new process, so Python's start-up and the imports "
            "are included, with the default settings: 8 random-start runs (doubled, up to "
            "twice, while none of them reaches the prediction or beats it), the certificate, "
            "the curvature at the predicted point and the NC metrics.\n\n"
            + checks_markdown(check_rows)
        )
    return None


def _scaling_section(args: argparse.Namespace) -> str:
    log = _log
    log("scaling: one full check as K, N, width and depth grow")
    rows_s = scaling_table(args.quick, log)
    return (
        "## Scaling of one check\n\nOne parameter at a time from counts 200,100,50,50 "
        "(K = 4, N = 400), width 64, depth 3; K and N keep the paper's shape (one class "
        "of twice, one of once, the rest of half the weight). Time of `ncverify.verify` "
        "in-process with default settings; the exponent is the least-squares slope of "
        "log(time) on log(parameter).\n\n" + scaling_markdown(rows_s)
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
