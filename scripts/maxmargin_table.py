"""Record the max-margin (K, M) table: for `K = 3..8` and `M = 1..4`, what `ncverify check
maxmargin-sel` finds on one sample per class, once with the claim's own codes (the orthoplex and
the centred odd-K code) and once with the claim-agnostic search alone (`--no-claim-candidates`):
the verdict, the value of the best point found at margin 1 and where it came from, and for the
search alone the share of its starts that reached its best value.  The checks run as sweeps
(Dask), one `ncverify sweep` over the depths for each K and setting.  Written to
`docs/theory/maxmargin-table.json`, rendered by docs/theory/ce.md#max-margin-table and re-run by
`tests/test_maxmargin_table.py` (heavy).

    python scripts/maxmargin_table.py            # 48 checks in 12 sweeps: a few minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sweep_reports import sweep_reports  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "theory" / "maxmargin-table.json"
NCVERIFY = str(Path(sys.executable).with_name("ncverify"))

CLASSES = range(3, 9)
DEPTHS = range(1, 5)


def command(k: int, m: int, alone: bool) -> list[str]:
    args = ["maxmargin-sel", "--classes", str(k), "--samples", "1", "--depth", str(m)]
    return [*args, "--width", str(k), *(["--no-claim-candidates"] if alone else [])]


def row(report: dict) -> dict[str, object]:
    """What the table keeps of a check: its verdict, the claimed value, the best point found."""
    found, search = report.get("counterexample"), report.get("search")
    basins = search["coverage"]["basins"] if search else []
    return {
        "verdict": report["verdict"],
        "claimed": report["prediction"]["objective"],
        "best": None if found is None else found["objective"],
        "origin": None if found is None else found["origin"],
        "search_best_share": basins[0]["share"] if basins else None,
        "search_starts": search["starts"] if search else None,
    }


def run(args: list[str]) -> dict[str, object]:
    """One check as a user runs it: its row (the tests re-run each recorded check)."""
    proc = subprocess.run(
        [NCVERIFY, "check", *args, "--quiet", "--json", "-"],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    return row(json.loads(proc.stdout))


def by_depth(k: int, alone: bool, work: Path, workers: int) -> dict[int, dict]:
    """One sweep over the depths of one K: each depth's row."""
    args = command(k, DEPTHS[0], alone)
    args[args.index("--depth") + 1] = f"{DEPTHS[0]}:{DEPTHS[-1]}:{len(DEPTHS)}"
    out = work / f"maxmargin-K{k}{'-alone' if alone else ''}.jsonl"
    return {r["problem"]["depth"]: row(r) for r in sweep_reports(args, out, workers)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="Dask worker processes")
    parser.add_argument("--work", type=Path, default=None, help="folder of the sweeps' files")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="maxmargin-table-"))
    work.mkdir(parents=True, exist_ok=True)
    settings = {key: {k: by_depth(k, alone, work, args.workers) for k in CLASSES}
                for key, alone in (("with_codes", False), ("search_alone", True))}  # fmt: skip
    records = []
    for m in DEPTHS:
        for k in CLASSES:
            rec: dict[str, object] = {"K": k, "M": m}
            for key, alone in (("with_codes", False), ("search_alone", True)):
                rec[key] = {"command": command(k, m, alone), **settings[key][k][m]}
            records.append(rec)
            w, a = rec["with_codes"], rec["search_alone"]
            print(
                f"K = {k}, M = {m}: {w['verdict']} {w['best']} | alone {a['verdict']} {a['best']}"
            )
    OUT.write_text(json.dumps(records, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
