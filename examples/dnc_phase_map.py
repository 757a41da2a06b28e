"""The (K, L) map of deep neural collapse with a ReLU head: where something beats it, and the
smallest K on the grid at which a check refutes it, for each depth L.

Every cell is one check of `dnc-binary` (K = 2) or `dnc-multiclass` (K >= 3) on K classes of
n = 1 sample, width K, every lambda 1e-3 (DNC is alive there for every K <= 100 and L <= 6),
with the default search (the batched search and the random-start runs, seed 0).  The checks run
as sweeps, one `ncverify sweep` over the depths for each K (through Dask); the script keeps what
each check found in `dnc-map.json` and writes the page `dnc-map.md` with its plot `dnc-map.png`
into the output folder (docs/theory by default):

    python examples/dnc_phase_map.py

Each cell says what refuted DNC, or that nothing did:

- *witness*: a k-subset witness (K = C(r, k)) beats DNC by the exact comparison of its constant
  with DNC's (the counterexample reported is the lowest point found, which may be the search's,
  below the witness);
- *search*: a point of the claim-agnostic search (the batched search or a random-start run)
  ended below DNC, certified by the exact evaluation of its point;
- *not refuted*: nothing ended below the DNC value, and the search reached it.  For K = 2 that
  is the theorem's prediction; for K >= 3 it is not a proof of anything, only the absence of a
  counterexample, and the cell says how much search backs it;
- *inconclusive*: nothing ended below the DNC value, nor at it.
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

LAMBDA = "1e-3"
CLASSES = "2,3,4,5,6,8,10,12,16,20,30,45,70,100"
DEPTHS = "2,3,4,5,6"
NCVERIFY = str(Path(sys.executable).with_name("ncverify"))


@dataclass(frozen=True)
class Cell:
    classes: int
    depth: int
    verdict: str  # the check's verdict
    outcome: str  # "witness", "search" or "not refuted"
    origin: str | None  # where the counterexample came from
    dnc: float  # the DNC value
    best: float  # the best value the check found
    backing: str  # how much search backs the verdict
    command: str  # the check, as a user runs it
    seconds: float  # the check's wall time in the sweep


def claim_of(classes: int) -> str:
    return "dnc-binary" if classes == 2 else "dnc-multiclass"


def check_args(classes: int, depth: int, extra: list[str]) -> list[str]:
    """The `ncverify check` arguments of one cell."""
    return [
        claim_of(classes), "--classes", str(classes), "--samples", "1", "--depth", str(depth),
        "--width", str(classes), "--activation", "relu", "--lambda-w", LAMBDA,
        "--lambda-h", LAMBDA, *extra,
    ]  # fmt: skip


def sweep(classes: int, depths: list[int], extra: list[str], work: Path, workers: int) -> Path:
    """One `ncverify sweep` over the depths of one K (a Dask sweep), its reports in a file."""
    out = work / f"dnc-map-K{classes}.jsonl"
    lo, hi = min(depths), max(depths)
    args = check_args(classes, lo, extra)
    args[args.index("--depth") + 1] = f"{lo}:{hi}:{hi - lo + 1}"
    proc = subprocess.run(
        [NCVERIFY, "sweep", *args, "--quiet", "--out", str(out), "--resume",
         "--workers", str(workers)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode not in (0, 3):
        sys.exit(f"ncverify sweep failed for K = {classes}:\n{proc.stderr}")
    return out


def cell_of(report: dict, extra: list[str]) -> Cell:
    from theorems._dnc import subset_codes, witness_wins

    problem = report["problem"]
    classes, depth = len(problem["counts"]), problem["depth"]
    dnc = float(report["prediction"]["objective"])
    found = report["counterexample"]
    runs = (report["numerical"] or {}).get("runs", [])
    values = [dnc, *(r["objective"] for r in runs)]
    if report.get("search"):
        values += [end["value"] for end in report["search"]["best"]]
    if found is not None:
        values.append(found["objective"])
    origin = None if found is None else found["origin"]
    if found is None:
        outcome = "not refuted" if report["verdict"] != "inconclusive" else "inconclusive"
    elif any(witness_wins(code, depth) for code in subset_codes(classes)):
        outcome = "witness"  # exact, at every lambda where DNC is not zero
    else:
        outcome = "search"
    return Cell(
        classes, depth, report["verdict"], outcome, origin, dnc, min(values),
        backing(report), "ncverify check " + shlex.join(check_args(classes, depth, extra)),
        round(float(report["timing"]["total"]), 1),
    )  # fmt: skip


def backing(report: dict) -> str:
    """The search behind the verdict, in a few words."""
    runs = len((report["numerical"] or {}).get("runs", []))
    search = report.get("search")
    if search:
        batched = f"{search['starts']} batched starts"
    elif any("batched search is skipped" in note for note in report["notes"]):
        batched = "batched search skipped (work limit)"
    else:
        batched = "no batched search"
    return f"{batched}, {runs} random-start runs"


def table(cells: list[Cell]) -> str:
    depths = sorted({c.depth for c in cells})
    classes = sorted({c.classes for c in cells})
    by = {(c.classes, c.depth): c for c in cells}
    head = "| K \\ L | " + " | ".join(str(d) for d in depths) + " |"
    rule = "| --- |" + " --- |" * len(depths)
    rows = []
    for k in classes:
        entries = [f"{by[k, d].outcome} ({by[k, d].best / by[k, d].dnc:.3f})" for d in depths]
        rows.append(f"| {k} | " + " | ".join(entries) + " |")
    return "\n".join([head, rule, *rows])


def smallest(cells: list[Cell]) -> dict[int, int | None]:
    """For each depth, the smallest K on the grid at which the check refutes."""
    out: dict[int, int | None] = {}
    for d in sorted({c.depth for c in cells}):
        refuted = [c.classes for c in cells if c.depth == d and c.verdict == "refuted"]
        out[d] = min(refuted, default=None)
    return out


def plot(cells: list[Cell], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    colours = {
        "witness": "#c0392b",
        "search": "#e67e22",
        "not refuted": "#2e86c1",
        "inconclusive": "#f1c40f",
    }
    ks = sorted({c.classes for c in cells})
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    for outcome, colour in colours.items():
        chosen = [c for c in cells if c.outcome == outcome]
        ax.scatter(
            [c.depth for c in chosen],
            [ks.index(c.classes) for c in chosen],
            s=200,
            marker="s",
            color=colour,
            label=outcome,
        )
    ax.set_xlabel("depth L (weight matrices)")
    ax.set_ylabel("classes K")
    ax.set_xticks(sorted({c.depth for c in cells}))
    ax.set_yticks(range(len(ks)), [str(k) for k in ks])
    ax.set_title(f"DNC with a ReLU head: n = 1, width K, every lambda {LAMBDA}")
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), title="outcome")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def page(cells: list[Cell], command: str) -> str:
    first = smallest(cells)
    lines = [
        f"- L = {d}: " + (f"**K = {k}**" if k is not None else "none on the grid")
        for d, k in first.items()
    ]
    commands = "\n".join(
        f"| {c.classes} | {c.depth} | {c.verdict} | {c.origin or '-'} | {c.backing} | "
        f"{c.seconds:.0f} | `{c.command}` |"
        for c in sorted(cells, key=lambda c: (c.depth, c.classes))
    )
    return f"""# The (K, L) map of deep neural collapse

Where deep neural collapse (DNC) is the best configuration of the ReLU deep unconstrained-feature
model, and where something beats it, for K classes and L weight matrices: each cell is one check
of [`dnc-binary`](../claims/dnc-binary.md) (K = 2) or
[`dnc-multiclass`](../claims/dnc-multiclass.md) (K >= 3) on K classes of n = 1 sample, width K,
every lambda {LAMBDA}, with the default search (seed 0).  The checks run as sweeps, one per K
(Dask).  The mathematics is on [the DNC page](dnc.md).  This page, its plot and the record of
the checks (`dnc-map.json`) are written by

```bash
{command}
```

The smallest K on the grid at which a check refutes DNC, for each depth:

{chr(10).join(lines)}

![The (K, L) map](dnc-map.png)

{table(cells)}

In brackets: the best value the check found over the DNC value.  `tests/test_dnc.py` (heavy)
re-runs, for each depth where a check refutes, the check at the smallest refuting K, and the
not-refuted check at the K below it where that check took under a minute (a search's refutation
that `tests/test_observations.py` re-runs with the claim's candidates off is not run twice); the
other rows are what the sweeps recorded.

How to read a cell:

- **witness**: a k-subset witness beats DNC (docs/theory/dnc.md#witness).  The comparison of
  its constant with DNC's is exact, and it wins for every lambda at which DNC is not zero, not
  just this one.  The check's counterexample is the lowest point it found (the witness or a
  point of the search below it), certified by the exact evaluation of that point.
- **search**: a point of the claim-agnostic search (the batched search or a random-start run)
  ended below DNC, and the exact evaluation of its point certifies it.  This is a
  counterexample at this instance only.
- **not refuted**: nothing ended below the DNC value, and the search reached it (the check is
  *consistent*).  For K = 2 this is what the theorem predicts.  For K >= 3 it refutes nothing
  and proves nothing: DNC is *not refuted* here by this family or this search.
- **inconclusive**: nothing ended below the DNC value, but nothing reached it either.  Where
  the search was cut by its work limit (large K), the check's notes say so; more starts, other
  widths or another lambda may find more.

## The checks

| K | L | verdict | counterexample from | search | time (s) | command |
| --- | --- | --- | --- | --- | --- | --- |
{commands}
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--classes", default=CLASSES, help="K values, e.g. 2,3,6")
    parser.add_argument("--depths", default=DEPTHS, help="consecutive L values, e.g. 2,3,4")
    parser.add_argument("--restarts", type=int, default=None, help="random starts per cell")
    parser.add_argument("--search-starts", type=int, default=None, help="batched starts per cell")
    parser.add_argument("--workers", type=int, default=2, help="Dask worker processes")
    parser.add_argument("--out", type=Path, default=Path("docs/theory"), help="output folder")
    parser.add_argument("--work", type=Path, default=None, help="folder of the sweeps' files")
    args = parser.parse_args()
    ks = [int(x) for x in args.classes.split(",")]
    ls = [int(x) for x in args.depths.split(",")]
    if min(ks) < 2 or min(ls) < 2 or args.workers < 1:
        parser.error("K and L must be at least 2, workers at least 1")
    if ls != list(range(min(ls), max(ls) + 1)):
        parser.error("--depths must be consecutive, e.g. 2,3,4")
    extra = [] if args.restarts is None else ["--restarts", str(args.restarts)]
    if args.search_starts is not None:
        extra += ["--search-starts", str(args.search_starts)]
    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as scratch:
        work = args.work or Path(scratch)
        work.mkdir(parents=True, exist_ok=True)
        cells = []
        for k in ks:
            reports = sweep(k, ls, extra, work, args.workers).read_text().splitlines()
            found = [cell_of(json.loads(line), extra) for line in reports]
            cells += sorted((c for c in found if c.depth in ls), key=lambda c: c.depth)
            print(f"K = {k}: " + ", ".join(f"L = {c.depth} {c.verdict}" for c in found), flush=True)
    plot(cells, args.out / "dnc-map.png")
    given = ["--classes", args.classes, "--depths", args.depths, *extra]
    defaults = ["--classes", CLASSES, "--depths", DEPTHS]
    command = "python examples/dnc_phase_map.py" + (
        "" if given == defaults else " " + " ".join(given)
    )
    (args.out / "dnc-map.json").write_text(
        json.dumps([asdict(c) for c in cells], indent=1) + "\n", encoding="utf-8"
    )
    (args.out / "dnc-map.md").write_text(page(cells, command))
    print(f"wrote {args.out / 'dnc-map.md'}, dnc-map.png and dnc-map.json")


if __name__ == "__main__":
    main()
