"""How often the optimiser's random-start runs reach the global optimum on random MSE instances.

Run by hand (not a test):

    .venv/bin/python scripts/random_instances.py                 # 200 instances, seed 0
    .venv/bin/python scripts/random_instances.py -n 500 --seed 1
    NCVERIFY_JOBS=1 .venv/bin/python scripts/random_instances.py  # serial runs (shared cores)
    .venv/bin/python scripts/random_instances.py --no-continuation  # the old start recipe

Each instance is drawn from a fixed seed, independently of the others (instance `i` depends only
on `(seed, i)`), on a claim believed true on it:

- `mse-balanced-biasfree`: balanced counts, no bias;
- `mse-balanced-bias`: balanced counts, free (unregularised) bias;
- `mse-imbalanced-biasfree`: random counts, no bias;

with `K` uniform in 2..6, the depth `M` uniform in 1..5, every width `d, d_1, ..., d_{M-1}`
drawn on its own, uniform from 1 (below `K`) to 16, and `lambda_W`, `lambda_H` log-uniform in
`[1e-4, 1e-1]` (one `lambda_W` for all layers), rounded to three significant digits so that the
instance prints exactly.  Each is checked with `verify` at 4 restarts, no escalation and no
certificate, and the script reports the fraction where at least one run reaches the prediction
(outcome `at-prediction`) and the number of `refuted` verdicts (a claim believed true: a refuted
verdict is a false alarm of the optimiser or of a check).  The instances where no run reached the
prediction, or that were refuted, are listed with their parameters and where the runs ended.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import math
import sys
import time
from collections import Counter

import numpy as np

import theorems
from ncverify import Problem, verify
from ncverify.evidence.optimize import multistart
from ncverify.verify import Settings

CLAIMS = ("mse-balanced-biasfree", "mse-balanced-bias", "mse-imbalanced-biasfree")


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> str:
    """A log-uniform number in `[lo, hi]`, as a decimal string of 3 significant digits."""
    return f"{math.exp(rng.uniform(math.log(lo), math.log(hi))):.3g}"


def draw(seed: int, index: int) -> tuple[str, Problem]:
    """Instance `index` of the stream `seed`: a claim id and a problem it applies to."""
    rng = np.random.default_rng([seed, index])
    claim_id = CLAIMS[int(rng.integers(len(CLAIMS)))]
    k = int(rng.integers(2, 7))
    depth = int(rng.integers(1, 6))
    widths = [int(w) for w in rng.integers(1, 17, size=depth)]
    if claim_id == "mse-imbalanced-biasfree":
        counts = [int(c) for c in rng.integers(5, 201, size=k)]
    else:
        counts = [int(rng.integers(5, 101))] * k
    problem = Problem.build(
        counts=counts,
        depth=depth,
        widths=widths,
        lambda_w=_log_uniform(rng, 1e-4, 1e-1),
        lambda_h=_log_uniform(rng, 1e-4, 1e-1),
        bias="free" if claim_id == "mse-balanced-bias" else "none",
    )
    return claim_id, problem


def describe(claim_id: str, p: Problem) -> str:
    return (
        f"{claim_id} counts={','.join(map(str, p.counts))} depth={p.depth} "
        f"widths={','.join(map(str, p.widths))} lambda_w={float(p.lambda_w[0]):g} "
        f"lambda_h={float(p.lambda_h):g}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", "--instances", type=int, default=200, help="instances (200)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the instance stream (0)")
    parser.add_argument("--restarts", type=int, default=4, help="runs per check (4)")
    parser.add_argument(
        "--no-continuation",
        action="store_true",
        help="runs without the continuation in lambda (multistart(..., continuation=None))",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="one line per instance")
    args = parser.parse_args(argv)

    if args.no_continuation:
        # `verify` calls `ncverify.verify.multistart` (the module: `ncverify.verify` the
        # attribute is the function `verify`)
        verify_module = importlib.import_module("ncverify.verify")
        verify_module.multistart = functools.partial(multistart, continuation=None)

    settings = Settings(restarts=args.restarts, escalate=0, certificate=False)
    reached = 0
    verdicts: Counter[str] = Counter()
    misses: list[str] = []
    runs_at = 0
    runs_total = 0
    t0 = time.perf_counter()
    for i in range(args.instances):
        claim_id, problem = draw(args.seed, i)
        claim = theorems.get(claim_id)
        assert not claim.hypotheses(problem), (claim_id, claim.hypotheses(problem))
        report = verify(claim, problem, settings=settings)
        verdict = str(getattr(report.verdict, "value", report.verdict))
        verdicts[verdict] += 1
        outcomes = [run.outcome for run in report.runs]
        runs_at += outcomes.count("at-prediction")
        runs_total += len(outcomes)
        ok = "at-prediction" in outcomes
        reached += ok
        line = (
            f"[{i}] {describe(claim_id, problem)}: {verdict}, "
            f"runs {' '.join(f'{r.objective:.10g}' for r in report.runs)} vs claimed "
            f"{float(report.prediction.objective):.10g}"
        )
        if not ok or verdict == "refuted":
            misses.append(line)
        if args.verbose:
            print(line, flush=True)
    elapsed = time.perf_counter() - t0
    n = args.instances
    print(
        f"{n} instances (seed {args.seed}, {args.restarts} restarts, continuation "
        f"{'off' if args.no_continuation else 'on'}): {reached}/{n} = {reached / n:.1%} with a "
        f"run at the prediction; runs at the prediction {runs_at}/{runs_total} = "
        f"{runs_at / max(runs_total, 1):.1%}; refuted {verdicts['refuted']}; verdicts "
        f"{dict(sorted(verdicts.items()))}; {elapsed:.0f} s"
    )
    for line in misses:
        print("  miss:", line)
    return 0 if verdicts["refuted"] == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
