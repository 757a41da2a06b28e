"""The (K, L) map of deep neural collapse with a ReLU head: where it holds, where it fails.

For every number of classes K and depth L of the grid, checks `dnc-binary` (K = 2) or
`dnc-multiclass` (K >= 3) on K classes of n = 1 sample, width 2K, every lambda 4e-3, with a
fixed number of random starts (seed 0), and writes the page `dnc-map.md` with its plot
`dnc-map.png` into the output folder (docs/theory by default):

    python examples/dnc_phase_map.py

Each cell says what refuted DNC, or that nothing did:

- *witness*: the triangular-graph witness (K = r(r-1)/2), by the exact comparison of its
  constant with DNC's and the exact evaluation of the point (a run may find a point lower still);
- *search*: a random-start run, certified by the exact evaluation of its point;
- *none better*: no run ended below the DNC value.  For K = 2 that is the theorem's prediction;
  for K >= 3 it is not a proof of anything, only the absence of a counterexample.
"""

from __future__ import annotations

import argparse
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

LAMBDA = "4e-3"


@dataclass(frozen=True)
class Cell:
    classes: int
    depth: int
    outcome: str  # "witness", "search" or "none better"
    dnc: float  # the DNC value
    best: float  # the best value found (witness or run)


def check_cell(classes: int, depth: int, restarts: int) -> Cell:
    import theorems
    from ncverify.model.problem import Problem
    from ncverify.verify import Settings, verify
    from theorems._dnc import triangular_r, witness_wins

    claim = theorems.get("dnc-binary" if classes == 2 else "dnc-multiclass")
    problem = Problem.build(
        classes=classes,
        samples=1,
        depth=depth,
        width=2 * classes,
        lambda_w=LAMBDA,
        lambda_h=LAMBDA,
        activation="relu",
    )
    report = verify(claim, problem, settings=Settings(restarts=restarts, escalate=0))
    dnc = float(report.prediction.objective)
    best = min([dnc, *(r.objective for r in report.runs)])
    cx = report.counterexample
    if cx is not None:
        best = min(best, cx.objective)
    r = triangular_r(classes)
    if r is not None and witness_wins(r, depth):  # exact, at every lambda where DNC is not zero
        outcome = "witness"
    elif cx is not None:
        outcome = "search"
    else:
        outcome = "none better"
    return Cell(classes, depth, outcome, dnc, best)


def table(cells: list[Cell], restarts: int) -> str:
    depths = sorted({c.depth for c in cells})
    classes = sorted({c.classes for c in cells})
    by = {(c.classes, c.depth): c for c in cells}
    head = "| K \\ L | " + " | ".join(str(d) for d in depths) + " |"
    rule = "| --- |" + " --- |" * len(depths)
    rows = []
    for k in classes:
        entries = []
        for d in depths:
            c = by[(k, d)]
            ratio = f"{c.best / c.dnc:.3f}"
            entries.append(f"{c.outcome} ({ratio})")
        rows.append(f"| {k} | " + " | ".join(entries) + " |")
    return "\n".join([head, rule, *rows]) + (
        f"\n\nIn brackets: the best value found over the DNC value ({restarts} random starts "
        "per cell, seed 0)."
    )


def plot(cells: list[Cell], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {"witness": "#c0392b", "search": "#e67e22", "none better": "#2e86c1"}
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for outcome, colour in colours.items():
        chosen = [c for c in cells if c.outcome == outcome]
        ax.scatter(
            [c.depth for c in chosen],
            [c.classes for c in chosen],
            s=260,
            marker="s",
            color=colour,
            label=outcome,
        )
    ax.set_xlabel("depth L (weight matrices)")
    ax.set_ylabel("classes K")
    ax.set_xticks(sorted({c.depth for c in cells}))
    ax.set_yticks(sorted({c.classes for c in cells}))
    ax.set_title(f"DNC with a ReLU head: n = 1, width 2K, every lambda {LAMBDA}")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), title="outcome")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def page(cells: list[Cell], restarts: int, command: str) -> str:
    return f"""# The (K, L) map of deep neural collapse

Where deep neural collapse (DNC) is the best configuration of the ReLU deep unconstrained-feature
model, and where something beats it, for K classes and L weight matrices: each cell is one check
of [`dnc-binary`](../claims/dnc-binary.md) (K = 2) or
[`dnc-multiclass`](../claims/dnc-multiclass.md) (K >= 3) on K classes of n = 1 sample, width 2K,
every lambda {LAMBDA}.  The mathematics is on [the DNC page](dnc.md).  This page and its plot
are written by

```bash
{command}
```

![The (K, L) map](dnc-map.png)

{table(cells, restarts)}

How to read a cell:

- **witness**: the triangular-graph witness beats DNC.  The comparison of its constant with
  DNC's is exact (integers), and so is the evaluation of the point (`recheck` repeats it).  It
  wins for every lambda at which DNC is not zero, not just this one.  The ratio in brackets is
  that of the best point found, which may be a random-start run below the witness.
- **search**: a random-start run ended below DNC, and the exact evaluation of its point
  certifies it.  This is a counterexample at this instance only.
- **none better**: no run ended below the DNC value.  For K = 2 this is what the theorem
  predicts.  For K >= 3 it refutes nothing and proves nothing: DNC is *not refuted* here by
  this family or this search.  More starts, other widths or another lambda may find more.
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", default="2,3,4,5,6,7,8,9,10", help="K values, e.g. 2,3,6")
    parser.add_argument("--depths", default="2,3,4,5,6", help="L values, e.g. 2,3,4")
    parser.add_argument("--restarts", type=int, default=8, help="random starts per cell")
    parser.add_argument("--workers", type=int, default=2, help="processes")
    parser.add_argument("--out", type=Path, default=Path("docs/theory"), help="output folder")
    args = parser.parse_args()
    ks = [int(x) for x in args.classes.split(",")]
    ls = [int(x) for x in args.depths.split(",")]
    if min(ks) < 2 or min(ls) < 2 or args.restarts < 1 or args.workers < 1:
        parser.error("K and L must be at least 2, restarts and workers at least 1")
    args.out.mkdir(parents=True, exist_ok=True)
    grid = [(k, d) for k in ks for d in ls]
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        futures = [pool.submit(check_cell, k, d, args.restarts) for k, d in grid]
        cells = []
        for (k, d), future in zip(grid, futures, strict=True):
            cells.append(future.result())
            print(f"K = {k}, L = {d}: {cells[-1].outcome}", flush=True)
    plot(cells, args.out / "dnc-map.png")
    defaults = ["--classes", "2,3,4,5,6,7,8,9,10", "--depths", "2,3,4,5,6", "--restarts", "8"]
    given = ["--classes", args.classes, "--depths", args.depths, "--restarts", str(args.restarts)]
    command = "python examples/dnc_phase_map.py" + (
        "" if given == defaults else " " + " ".join(given)
    )
    (args.out / "dnc-map.md").write_text(page(cells, args.restarts, command))
    print(f"wrote {args.out / 'dnc-map.md'} and {args.out / 'dnc-map.png'}")


if __name__ == "__main__":
    main()
