"""Record where the claim-agnostic search finds the minority columns distinct, tied or zero at
depth 1, 2 and 3, for the counts of docs/theory/minority.md (100, 100, 10, 10; lambda_b = 0.02;
every lambda_W and lambda_H tied to one lambda), into docs/theory/minority-depth.json, which
the page renders and tests/test_minority.py re-runs in part.

At one layer the phases are certified (`ncverify check ce-imbalanced-minority`); at depth the
problem is not convex and no claim predicts them, so this is what the search finds, not a
proof: the best end of `ncverify.evidence.batched_search` (256 starts), its minority logit
columns read off.

    python scripts/minority_depth.py
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from ncverify.backend import Backend
from ncverify.evidence.batched_search import batched_search
from ncverify.model.objective import Params
from ncverify.model.problem import Problem

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "theory" / "minority-depth.json"
COUNTS = "100,100,10,10"
LAMBDA_B = "0.02"
DEPTHS = (1, 2, 3)
#: every lambda from 0.010 to 0.024 in steps of 0.0005
LAMBDAS = tuple(f"{0.010 + 0.0005 * i:.4f}" for i in range(29))
STARTS = 256
#: a minority structure holds when its size, relative to the class-level logits, is below this
HOLDS = 1e-5


def instance(depth: int, lam: str) -> Problem:
    return Problem.build(
        counts=COUNTS, depth=depth, width=4, lambda_w=lam, lambda_h=lam, lambda_b=LAMBDA_B,
        loss="ce",
    )  # fmt: skip


def minority_structure(problem: Problem, point: Params) -> tuple[float, float]:
    """`(spread, size)` of the minority class-level logit columns, relative to all of them:
    `||zbar_2 - zbar_3|| / ||Zbar||` and `||(zbar_2, zbar_3)|| / ||Zbar||`."""
    z = np.asarray(point.H)
    for w in point.Ws:
        z = np.asarray(w) @ z
    means = z[:, [sum(problem.counts[:k]) for k in range(problem.K)]]
    size = float(np.linalg.norm(means))
    return (
        float(np.linalg.norm(means[:, 2] - means[:, 3])) / size,
        float(np.linalg.norm(means[:, 2:])) / size,
    )


def phase(spread: float, size: float) -> str:
    if size < HOLDS:
        return "zero"
    return "tied" if spread < HOLDS else "distinct"


def record(depth: int, lam: str) -> dict[str, object]:
    """The search at one instance: the best end's value, minority structure and phase."""
    problem = instance(depth, lam)
    found = batched_search(
        problem, Backend.create("numpy"), float("inf"), 1e-8, starts=STARTS, seed=0, max_iter=2000
    )
    best = found.ends[0]
    spread, size = minority_structure(problem, best.point)
    return {
        "depth": depth,
        "lambda": lam,
        "value": best.value,
        "spread": spread,
        "size": size,
        "phase": phase(spread, size),
        "reached_best": found.coverage.reached_best,
        "starts": STARTS,
    }


def main() -> int:
    rows = [record(depth, lam) for depth in DEPTHS for lam in LAMBDAS]
    for row in rows:
        print(f"M = {row['depth']}  lambda = {row['lambda']}  {row['phase']}")
    OUT.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
