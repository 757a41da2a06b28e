"""Record the max-margin (K, M) table: for `K = 3..8` and `M = 1..4`, what `ncverify check
maxmargin-sel` finds on one sample per class, once with the claim's own codes (the orthoplex and
the centred odd-K code) and once with the claim-agnostic search alone (`--no-claim-candidates`):
the verdict, the value of the best point found at margin 1 and where it came from, and for the
search alone the share of its starts that reached its best value.  Written to
`docs/theory/maxmargin-table.json`, rendered by docs/theory/ce.md#max-margin-table and re-run by
`tests/test_maxmargin_table.py` (heavy).

    python scripts/maxmargin_table.py            # 48 checks: about 2 minutes on 2 cores
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "theory" / "maxmargin-table.json"
NCVERIFY = str(Path(sys.executable).with_name("ncverify"))

CLASSES = range(3, 9)
DEPTHS = range(1, 5)


def command(k: int, m: int, alone: bool) -> list[str]:
    args = ["maxmargin-sel", "--classes", str(k), "--samples", "1", "--depth", str(m)]
    return [*args, "--width", str(k), *(["--no-claim-candidates"] if alone else [])]


def run(args: list[str]) -> dict[str, object]:
    """The check as a user runs it: its verdict, the claimed value, the best point found."""
    proc = subprocess.run(
        [NCVERIFY, "check", *args, "--quiet", "--json", "-"],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    report = json.loads(proc.stdout)
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


def main() -> int:
    records = []
    for m in DEPTHS:
        for k in CLASSES:
            rec = {"K": k, "M": m}
            for key, alone in (("with_codes", False), ("search_alone", True)):
                args = command(k, m, alone)
                rec[key] = {"command": args, **run(args)}
            records.append(rec)
            w, a = rec["with_codes"], rec["search_alone"]
            print(
                f"K = {k}, M = {m}: {w['verdict']} {w['best']} | alone {a['verdict']} {a['best']}"
            )
    OUT.write_text(json.dumps(records, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
