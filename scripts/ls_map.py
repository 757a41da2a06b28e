"""Record where label smoothing's ETF is beaten at depth: for `alpha = 0.01, 0.1`, `K = 3..8`
and `M = 2, 3`, the verdict of `ncverify check ls-balanced` on a geometric grid of
`c = (nP)^{1/(M+1)}` from `1e-5` to `0.3` (one sample per class and every weight decay `c`, so
`c = lambda`), each `(alpha, K, M)` one `ncverify sweep` (Dask) over `--lambda-w` with
`--lambda-h tied`.  Written to `docs/theory/ls-map.json`, which
docs/theory/label-smoothing.md#map renders and `tests/test_ls_map.py` checks (the refuted
cells re-run under the heavy marker).

    python scripts/ls_map.py            # 24 sweeps of 12 points: about 10 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sweep_reports import sweep_reports  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "theory" / "ls-map.json"

SMOOTHINGS = ("0.01", "0.1")
CLASSES = range(3, 9)
DEPTHS = (2, 3)
#: the grid of c: geometric from C_MIN to C_MAX
C_MIN, C_MAX, GRID = 1e-5, 0.3, 12


def command(alpha: str, k: int, m: int, c: str) -> list[str]:
    """The `ncverify check` arguments of one cell."""
    return [
        "ls-balanced", "--classes", str(k), "--samples", "1", "--depth", str(m),
        "--width", str(k), "--lambda-w", c, "--lambda-h", c, "--smoothing", alpha,
    ]  # fmt: skip


def row(alpha: str, k: int, m: int, work: Path, workers: int) -> dict[str, object]:
    """One sweep over the grid of c: each point's verdict and where a counterexample came from."""
    args = command(alpha, k, m, "1")
    args[args.index("--lambda-w") + 1] = f"{C_MIN:g}:{C_MAX:g}:{GRID}:log"
    args[args.index("--lambda-h") + 1] = "tied"
    out = work / f"ls-map-a{alpha}-K{k}-M{m}.jsonl"
    cells = []
    for report in sweep_reports(args, out, workers):
        c = report["sweep"]["point"]["lambda_w"]["value"]
        found = report["counterexample"]
        cells.append(
            {
                "c": c,
                "verdict": report["verdict"],
                "origin": None if found is None else found["origin"],
                "command": command(alpha, k, m, c),
            }
        )
    cells.sort(key=lambda cell: float(cell["c"]))
    return {"alpha": alpha, "K": k, "M": m, "cells": cells}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="Dask worker processes")
    parser.add_argument("--work", type=Path, default=None, help="folder of the sweeps' files")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="ls-map-"))
    work.mkdir(parents=True, exist_ok=True)
    rows = []
    for alpha in SMOOTHINGS:
        for m in DEPTHS:
            for k in CLASSES:
                rows.append(row(alpha, k, m, work, args.workers))
                refuted = [cell["c"] for cell in rows[-1]["cells"] if cell["verdict"] == "refuted"]
                print(
                    f"alpha = {alpha}, K = {k}, M = {m}: refuted at {refuted or 'none'}", flush=True
                )
    OUT.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
