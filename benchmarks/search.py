"""Benchmark of the batched search: starts per second against the per-run search, and the wall
time of the checks that rest on it.

Run by hand, never inside the test suite:

    .venv/bin/python benchmarks/search.py            # both sections (a few minutes on 2 cores)
    .venv/bin/python benchmarks/search.py --quick    # fewer starts

It prints its tables and writes them as Markdown to `docs/benchmarks-search.md` (`--output`).

1. **Starts per second.**  The same starts (`ncverify.evidence.batched_search.start_rows`) of the
   same reduced problem (the class-mean problem, widths cut to `K` with linear layers, as the
   search runs it), one plain descent each, at most `ITERATIONS` iterations: all of them by the
   batched L-BFGS (`ncverify.evidence.batched_lbfgs`) as a check runs it (`descend_starts`:
   chunks cut to the cache, spread over the worker processes), and one after the other by the
   L-BFGS of today's random-start runs (`ncverify.evidence.optimize.descend`, on the class-mean
   `Objective`) in this process, both on numpy in float64 with one BLAS thread.  Reported:
   starts per second of each, their ratio, the best value each found and the share of starts
   that reached it.
2. **Checks.**  The wall time of `ncverify check` (a fresh process, default settings but
   `--no-claim-candidates`) on the instances whose verdicts the search must carry, and the
   verdict; and the verdicts of the first three for each of `--seeds` seeds.

The machines are shared: compare numbers within one run (the ratios).
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ncverify.backend import Backend  # noqa: E402
from ncverify.evidence.batched_search import descend_starts, plan, start_rows  # noqa: E402
from ncverify.evidence.optimize import descend  # noqa: E402
from ncverify.evidence.workers import default_jobs  # noqa: E402
from ncverify.kinds.max_margin import surrogate  # noqa: E402
from ncverify.model.batched import BatchedObjective  # noqa: E402
from ncverify.model.objective import Objective, Params  # noqa: E402
from ncverify.model.problem import Problem  # noqa: E402

ITERATIONS = 1000
NCVERIFY = str(Path(sys.executable).with_name("ncverify"))

INSTANCES = {
    "CE, K = 5, M = 2, lambda = 1.3e-4": Problem.build(
        classes=5, samples=1, depth=2, width=10, lambda_w="1.3e-4", lambda_h="1.3e-4", loss="ce"
    ),
    "max-margin surrogate, K = 6, M = 2": surrogate(
        Problem.build(classes=6, samples=1, depth=2, width=6, loss="max-margin")
    ),
    "DNC, K = 20, L = 3, ReLU": Problem.build(
        classes=20,
        samples=1,
        depth=3,
        width=20,
        lambda_w="1e-3",
        lambda_h="1e-3",
        activation="relu",
    ),  # fmt: skip
}

CHECKS = [
    "dnc-multiclass --classes 20 --samples 1 --depth 3 --width 20 --activation relu "
    "--lambda-w 1e-3 --lambda-h 1e-3",
    "maxmargin-sel --classes 6 --samples 1 --depth 2",
    "ce-balanced --classes 5 --samples 1 --depth 2 --width 10 --lambda-w 1.3e-4 --lambda-h 1.3e-4",
    "dnc-multiclass --classes 12 --samples 1 --depth 3 --width 12 --activation relu "
    "--lambda-w 1e-3 --lambda-h 1e-3",
    "dnc-multiclass --classes 16 --samples 1 --depth 3 --width 16 --activation relu "
    "--lambda-w 1e-3 --lambda-h 1e-3",
]


def reached(values: np.ndarray, best: float) -> float:
    return float(np.mean(values <= best + 1e-6 * abs(best)))


def per_start(problem: Problem, starts: int, per_run: int) -> dict[str, object]:
    """Both searches from the same starts; the per-run one on the first `per_run` of them."""
    f = BatchedObjective(problem, np)
    rows = start_rows(problem, f.layout, plan(problem, starts), seed=0)
    t0 = time.perf_counter()
    plain = np.ones(starts)  # no continuation: one descent on the instance
    batched = descend_starts(problem, Backend.create(), rows, plain, (0, ITERATIONS))[1]
    t_batched = time.perf_counter() - t0
    narrow = problem.with_(widths=tuple(r for r, _ in f.layout.shapes[:-1]))
    single = Objective(narrow, np, parameterisation="class-means")
    values, t0 = [], time.perf_counter()
    for row in rows[:per_run]:
        parts, b = f.layout.unpack(row[None, :], np)
        start = Params(tuple(w[0] for w in parts[:-1]), parts[-1][0], None if b is None else b[0])
        values.append(descend(single, start, max_iter=ITERATIONS)[1]["objective"])
    t_single = time.perf_counter() - t0
    values_ = np.array(values)
    best = float(min(batched.min(), values_.min()))
    return {
        "starts": starts,
        "batched_rate": starts / t_batched,
        "single_rate": per_run / t_single,
        "per_run": per_run,
        "best_batched": float(batched.min()),
        "best_single": float(values_.min()),
        "share_batched": reached(batched, best),
        "share_single": reached(values_, best),
    }


def todays_runs(name: str, problem: Problem, restarts: int) -> float:
    """Starts per second of today's per-run search as a check runs it (E2): the random-start
    runs with their lambda-continuation in worker processes (`optimize.multistart`, class
    means), or for the max-margin problem the SLSQP runs of `margin_search.multistart`."""
    t0 = time.perf_counter()
    if name.startswith("max-margin"):
        from ncverify.evidence.margin_search import multistart as margin_runs

        mm = problem.with_(loss="max-margin")
        margin_runs(mm.counts, mm.depth, restarts, seed=0)
    else:
        from ncverify.evidence.optimize import multistart

        multistart(problem, Backend.create(), restarts=restarts, seed=0,
                   parameterisation="class-means")  # fmt: skip
    return restarts / (time.perf_counter() - t0)


def check_time(command: str, seed: int = 0) -> tuple[float, str]:
    t0 = time.perf_counter()
    args = [NCVERIFY, "check", *command.split(), "--no-claim-candidates", "--seed", str(seed)]
    proc = subprocess.run([*args, "--quiet", "--json", "-"], capture_output=True, text=True)
    return time.perf_counter() - t0, json.loads(proc.stdout)["verdict"]


def markdown(
    rates: dict[str, dict], checks: list[tuple[str, float, str]], seeds: dict[str, list[str]]
) -> str:
    jobs = default_jobs("numpy", 2**20)
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    lines = [
        "# Benchmarks: the batched search",
        "",
        f"Measured by `benchmarks/search.py` on {when}, on numpy (float64, one BLAS thread) on a "
        "shared machine of 2 cores: read the ratios; absolute times will differ on yours. Run "
        "`python benchmarks/search.py` to rewrite this page.",
        "",
        "## Starts per second",
        "",
        "The same starts of the same reduced problem, one plain descent each, at most "
        f"{ITERATIONS} iterations: by the batched L-BFGS as a check runs it (in chunks that fit "
        f"the cache, {jobs} worker processes where there are several chunks), one after the "
        "other by the L-BFGS of the random-start runs, in one process (on the first starts "
        "only, where it is slow). *Today's runs* are the per-run search as a check runs it "
        "(E2): each random-start run with its lambda-continuation (a descent at lambda/8, at "
        f"lambda, and up a ladder of raised lambdas), {jobs} worker processes; for the "
        "max-margin problem its SLSQP runs, in one process. The batched search does one or two "
        "descents a start.",
        "",
        "| instance | starts (per-run) | batched starts/s | per-run descents/s | ratio | "
        "today's runs (E2) starts/s | ratio | best (batched / per-run) | share at best "
        "(batched / per-run) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in rates.items():
        lines.append(
            f"| {name} | {r['starts']} ({r['per_run']}) | {r['batched_rate']:.1f} | "
            f"{r['single_rate']:.2f} | {r['batched_rate'] / r['single_rate']:.1f}x | "
            f"{r['runs_rate']:.3g} | {r['batched_rate'] / r['runs_rate']:.0f}x | "
            f"{r['best_batched']:.10g} / {r['best_single']:.10g} | "
            f"{100 * r['share_batched']:.0f}% / {100 * r['share_single']:.0f}% |"
        )
    lines += [
        "",
        "## Checks that rest on the search",
        "",
        "`ncverify check ... --no-claim-candidates` in a fresh process, default settings "
        "otherwise (256 batched starts), seed 0.",
        "",
        "| command | wall time (s) | verdict |",
        "|---|---|---|",
    ]
    lines += [f"| `{c}` | {t:.1f} | {v} |" for c, t, v in checks]
    lines += [
        "",
        "## Seeds",
        "",
        "The same commands (`--no-claim-candidates`), one check for each seed from 0:",
        "",
        "| command | seeds | refuted | verdicts |",
        "|---|---|---|---|",
    ]
    for c, verdicts in seeds.items():
        tally = ", ".join(f"{v} {verdicts.count(v)}" for v in sorted(set(verdicts)))
        lines.append(f"| `{c}` | {len(verdicts)} | {verdicts.count('refuted')} | {tally} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--seeds", type=int, default=10, help="seeds of each acceptance check")
    parser.add_argument("--output", default=str(ROOT / "docs" / "benchmarks-search.md"))
    args = parser.parse_args()
    rates = {}
    with threadpool_limits(limits=1, user_api="blas"):
        for name, problem in INSTANCES.items():
            starts = (64 if args.quick else 256) * (1 if problem.K > 10 else 4)
            per_run = max(4, starts // (16 if problem.K > 10 else 16))
            rates[name] = per_start(problem, starts, per_run)
            rates[name]["runs_rate"] = todays_runs(name, problem, max(8, per_run // 4))
            print(name, rates[name], flush=True)
    checks = []
    for command in CHECKS:
        t, verdict = check_time(command)
        checks.append((command, t, verdict))
        print(command, f"{t:.1f} s", verdict, flush=True)
    seeds = {}
    for command in CHECKS[:3]:
        seeds[command] = [check_time(command, seed)[1] for seed in range(args.seeds)]
        print(command, seeds[command], flush=True)
    Path(args.output).write_text(markdown(rates, checks, seeds))


if __name__ == "__main__":
    main()
