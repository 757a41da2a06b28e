"""Benchmarks: ncverify's optimiser against the paper's protocol, and the cost of one `check`.

Run by hand, never inside the test suite:

    .venv/bin/python benchmarks/bench.py            # everything (tens of minutes on 2 cores)
    .venv/bin/python benchmarks/bench.py --quick    # a short run (a few minutes)

It prints its tables and writes them as Markdown to `docs/benchmarks.md` (`--output`).

What is measured, and how:

1. **Protocol**: the paper's optimisation protocol (full-batch SGD, learning rate 0.1, momentum
   0.9, `N(0, 0.1^2)` initialisation, float32, up to 30 000 iterations) against ncverify's
   optimiser (`ncverify.optimize.descend`: L-BFGS in float64) on the *full* problem (every `W_m`
   and `H` free), from the same initial point, on the same backend (numpy, one BLAS thread for
   both), in the same process, one after the other.  Both use the same gradient code.  The gap
   is relative to the exact optimum of `ncverify.certify.separable_reduction`; the protocol's
   float32 iterate is scored in float64 every `CHECK_EVERY` iterations, off the clock.  A
   proven exact reduction (eliminating `H`, a ridge problem given the weights) is a separate
   row, never in place of the full problem.
2. **Checks**: the wall time of `ncverify check` (the CLI, a fresh process, default settings:
   8 random-start runs) on each paper configuration, and on K = 100 classes of 100 samples,
   width 256, depth 3.
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
from ncverify import lbfgs
from ncverify.backend import Backend
from ncverify.certify import separable_reduction
from ncverify.objective import Objective, Params
from ncverify.optimize import Flattener, descend
from ncverify.problem import Problem
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


def sgd_protocol(
    problem: Problem, start: Params, optimum: float, *, max_iter: int, stop_at: float | None
) -> Trace:
    """Full-batch SGD with momentum (PyTorch semantics: `v = 0.9 v + g`, `x -= 0.1 v`), float32.

    The clock runs only around the optimiser's own work (gradient and update); scoring the
    iterate in float64 every `CHECK_EVERY` iterations is off the clock.
    """
    be = Backend.create("numpy", dtype="float32")
    xp = be.xp
    obj32 = Objective(problem, xp, dtype=xp.float32)
    obj64 = Objective(problem, xp)
    flat = Flattener(problem, xp)
    trace = Trace("paper protocol: SGD lr 0.1, momentum 0.9, float32")
    x = flat.flatten(start.map(be.asarray))
    v = xp.zeros_like(x)
    lr, momentum = xp.asarray(0.1, dtype=xp.float32), xp.asarray(0.9, dtype=xp.float32)
    clock = 0.0
    it = 0
    with threadpool_limits(limits=1, user_api="blas"):
        for it in range(1, max_iter + 1):
            t0 = time.perf_counter()
            _, grad = obj32.value_and_grad(flat.unflatten(x))
            v = momentum * v + flat.flatten(grad)
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
    """An objective that counts its gradient evaluations."""

    evaluations = 0

    def value_and_grad(self, p: Params) -> tuple[Any, Params]:
        self.evaluations += 1
        return super().value_and_grad(p)


def ncverify_run(problem: Problem, start: Params, optimum: float) -> Trace:
    """`ncverify.optimize.descend` (L-BFGS, float64) from `start`, run to its own stop."""
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


@dataclass
class ProtocolRow:
    counts: str
    depth: int
    traces: list[Trace]

    @property
    def ratio(self) -> float | None:
        """Protocol time to 1e-6 over ncverify's time to 1e-10 (None if either never got there)."""
        sgd, ours = self.traces[0], self.traces[1]
        if TARGETS[0] not in sgd.hit_time or TARGETS[1] not in ours.hit_time:
            return None
        return sgd.hit_time[TARGETS[0]] / ours.hit_time[TARGETS[1]]


def protocol_table(
    counts_list: Sequence[str],
    depths: Sequence[int],
    *,
    max_sgd: int,
    stop_sgd: float | None,
    seed: int,
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
            start = paper_start(problem, seed)
            ours = ncverify_run(problem, start, optimum)
            sgd = sgd_protocol(problem, start, optimum, max_iter=max_sgd, stop_at=stop_sgd)
            ridge = ridge_reduced_run(problem, start, optimum)
            row = ProtocolRow(counts, depth, [sgd, ours, ridge])
            rows.append(row)
            log(
                f"  counts {counts} depth {depth}: protocol {_t(sgd, TARGETS[0])} to 1e-6, "
                f"ncverify {_t(ours, TARGETS[1])} to 1e-10, ratio {_ratio(row.ratio)}"
            )
    return rows


def _t(trace: Trace, target: float) -> str:
    return f"{trace.hit_time[target]:.3g} s" if target in trace.hit_time else "never"


def _ratio(r: float | None) -> str:
    return "-" if r is None else f"{r:.0f}x"


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
    verdict = "?"
    try:
        import json

        verdict = json.loads(proc.stdout).get("verdict", "?")
    except ValueError:
        verdict = f"(no JSON; exit {proc.returncode})"
    return CheckRow(claim, counts, depth, width, wall, verdict, proc.returncode)


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


def check_once(problem: Problem) -> tuple[float, dict[str, float], float, str]:
    claim = theorems.get(claim_for(",".join(map(str, problem.counts))))
    t0 = time.perf_counter()
    report = verify(claim, problem, Backend.create(), Settings())
    total = time.perf_counter() - t0
    its = float(np.mean([r.iterations for r in report.runs])) if report.runs else 0.0
    return total, dict(report.timing), its, report.verdict


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
            total, parts, its, verdict = check_once(problem)
            rows.append(ScalingRow(axis, value, problem, total, parts, its, verdict))
            log(f"  {axis} = {value}: {total:.2f} s ({verdict})")
    return rows


def fitted_exponent(xs: Sequence[float], ys: Sequence[float]) -> float:
    """Least-squares slope of log y on log x."""
    lx, ly = np.log(np.asarray(xs, float)), np.log(np.asarray(ys, float))
    return float(np.polyfit(lx, ly, 1)[0])


# ---- profile ------------------------------------------------------------------------------------
CATEGORIES: list[tuple[str, tuple[str, ...]]] = [
    ("objective and gradient (ncverify/objective.py)", ("ncverify/objective.py",)),
    ("L-BFGS bookkeeping (ncverify/lbfgs.py)", ("ncverify/lbfgs.py",)),
    ("curvature (Lanczos)", ("ncverify/curvature.py",)),
    ("metrics and run classification", ("ncverify/metrics.py", "ncverify/verify.py")),
    (
        "symbolic: closed form and certificate (sympy, mpmath)",
        ("sympy/", "mpmath/", "ncverify/symbolic.py", "ncverify/certify.py", "theorems/"),
    ),
    ("numpy / linear algebra outside the above", ("numpy/",)),
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


def protocol_markdown(rows: list[ProtocolRow]) -> str:
    header = [
        "counts",
        "M",
        "method",
        "time to 1e-6",
        "evals to 1e-6",
        "time to 1e-10",
        "evals to 1e-10",
        "final gap",
        "time run",
        "evals run",
    ]
    out = []
    for row in rows:
        for tr in row.traces:
            name = tr.method + (f" ({tr.note})" if tr.note else "")
            out.append(
                [
                    row.counts,
                    str(row.depth),
                    name,
                    _t(tr, TARGETS[0]),
                    str(tr.hit_evals.get(TARGETS[0], "never")),
                    _t(tr, TARGETS[1]),
                    str(tr.hit_evals.get(TARGETS[1], "never")),
                    fmt_gap(tr.final_gap),
                    f"{tr.time:.3g} s",
                    str(tr.evaluations),
                ]
            )
    ratios = md_table(
        ["counts", "M", "protocol to 1e-6 / ncverify to 1e-10", "acceptance (>= 20x, M = 1, 3, 6)"],
        [
            [
                r.counts,
                str(r.depth),
                _ratio(r.ratio),
                ("pass" if (r.ratio or 0) >= 20 else "FAIL")
                if r.depth in (1, 3, 6)
                else "reported",
            ]
            for r in rows
        ],
    )
    return md_table(header, out) + "\n\n" + ratios


def checks_markdown(rows: list[CheckRow], limits: dict[tuple[str, int, int], float]) -> str:
    out = []
    for r in rows:
        limit = limits.get((r.counts, r.depth, r.width))
        verdict = "-" if limit is None else ("pass" if r.wall < limit else "FAIL")
        k = len(r.counts.split(","))
        counts = r.counts if k <= 4 else f"{k} classes of {r.counts.split(',')[0]}"
        out.append(
            [
                r.claim,
                counts,
                str(r.depth),
                str(r.width),
                f"{r.wall:.2f} s",
                r.verdict,
                "-" if limit is None else f"< {limit:.0f} s: {verdict}",
            ]
        )
    return md_table(["claim", "counts", "M", "width", "wall time", "verdict", "acceptance"], out)


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
        parts.append(f"{table}\n\nFitted growth: total time ~ {axis.split()[0]}^{exp:.2f}.")
    return "\n\n".join(parts)


def profile_markdown(problem: Problem, totals: list[tuple[str, float]]) -> str:
    whole = sum(v for _, v in totals) or 1.0
    table = md_table(
        ["where", "own time", "share"],
        [[name, f"{v:.2f} s", f"{100 * v / whole:.0f} %"] for name, v in totals],
    )
    return (
        f"One check of counts {','.join(map(str, problem.counts))}, depth {problem.depth}, "
        f"width {problem.widths[0]}, run serially under cProfile (which inflates Python-heavy "
        f"parts):\n\n{table}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a short run (a few minutes)")
    parser.add_argument(
        "--output", default=str(ROOT / "docs" / "benchmarks.md"), help="Markdown file to write"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--skip",
        default="",
        help="comma-separated sections to skip: protocol, checks, big, scaling, profile",
    )
    args = parser.parse_args(argv)
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    started = time.perf_counter()

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    info = machine()
    sections = [
        "# Benchmarks",
        "Generated by `benchmarks/bench.py`"
        + (" `--quick`" if args.quick else "")
        + f" on {time.strftime('%Y-%m-%d %H:%M')}; do not edit by hand. Run it with "
        "`python benchmarks/bench.py` (`--quick` for a short run). Every comparison below is "
        "measured in the same run on the same backend (numpy, float64 unless said, one BLAS "
        "thread per process); the machines are shared, so ratios are the result and absolute "
        "times are this machine at that moment.",
        "## Machine\n\n" + md_table(["", ""], [[k, v] for k, v in info]),
    ]

    if "protocol" not in skip:
        log("protocol: paper's SGD against ncverify's L-BFGS")
        depths = (3,) if args.quick else PAPER_DEPTHS
        counts = ("200,100,50,50",) if args.quick else PAPER_COUNTS
        rows = protocol_table(
            counts,
            depths,
            max_sgd=MAX_SGD,
            stop_sgd=TARGETS[0] if args.quick else None,
            seed=args.seed,
            log=log,
        )
        sections.append(
            "## The paper's protocol against ncverify's optimiser\n\n"
            "K = 4, width 64, all lambdas 5e-4, every `W_m` and `H` free, the same "
            "`N(0, 0.1^2)` initial point for every method. Gap = (F - F*) / F*, F* the exact "
            "optimum of the separable reduction. The protocol runs "
            + (
                "until it reaches 1e-6 (quick mode)"
                if args.quick
                else f"its {MAX_SGD} iterations (float32 cannot resolve 1e-10)"
            )
            + "; its iterate is scored in float64 every "
            f"{CHECK_EVERY} iterations, off the clock. ncverify runs until F stops decreasing "
            "in floating point. The H-eliminated row is an exact reduction, shown for "
            "comparison only.\n\n" + protocol_markdown(rows)
        )

    check_rows: list[CheckRow] = []
    limits: dict[tuple[str, int, int], float] = {}
    if "checks" not in skip:
        log("checks: ncverify check on the paper's configurations")
        depths = (3,) if args.quick else PAPER_DEPTHS
        for counts in PAPER_COUNTS:
            for depth in depths:
                row = cli_check(claim_for(counts), counts, depth, WIDTH)
                check_rows.append(row)
                limits[(counts, depth, WIDTH)] = 10.0
                log(f"  {counts} depth {depth}: {row.wall:.2f} s, {row.verdict}")
    if "big" not in skip and not args.quick:
        log("checks: K = 100, 100 samples each, width 256, depth 3")
        counts = ",".join(["100"] * 100)
        row = cli_check("mse-balanced-biasfree", counts, 3, 256)
        check_rows.append(row)
        limits[(counts, 3, 256)] = 300.0
        log(f"  {row.wall:.1f} s, {row.verdict}")
    if check_rows:
        sections.append(
            "## Full checks\n\n`ncverify check CLAIM --counts ... --depth M --width d` in a "
            "fresh process (Python start-up and imports included), default settings (8 "
            "random-start runs, certificate, curvature, metrics).\n\n"
            + checks_markdown(check_rows, limits)
        )

    if "scaling" not in skip:
        log("scaling: one full check as K, N, width and depth grow")
        rows_s = scaling_table(args.quick, log)
        sections.append(
            "## Scaling of one check\n\nOne parameter at a time from counts 200,100,50,50 "
            "(K = 4, N = 400), width 64, depth 3; K and N keep the paper's shape (one class "
            "of twice, one of once, the rest of half the weight). Time of `ncverify.verify` "
            "in-process with default settings; the exponent is the least-squares slope of "
            "log(time) on log(parameter).\n\n" + scaling_markdown(rows_s)
        )

    if "profile" not in skip:
        log("profile: where one check spends its time")
        problem = Problem.build(
            counts="200,100,50,50", depth=3, width=WIDTH, lambda_w=LAMBDA, lambda_h=LAMBDA
        )
        sections.append(
            "## Where the time goes\n\n" + profile_markdown(problem, profile_check(problem))
        )

    sections.append(f"Total benchmark time: {time.perf_counter() - started:.0f} s.")
    text = "\n\n".join(sections) + "\n"
    print(text)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    log(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
