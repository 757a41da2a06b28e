"""Record where the ETF is beaten for deep cross-entropy: for `K = 3..8` and `M = 2, 3`, the set
of `c` (the one constant of the balanced reduction, docs/theory/ce.md) at which `ncverify check
ce-balanced` refutes the claim, as intervals whose every end is bracketed by a refuted and a
not-refuted check at values of `c` within 5 % of each other.

With one sample per class and every weight decay equal to `lambda`, `c = (n P)^{1/(M+1)} =
lambda`, so each point is the check

    ncverify check ce-balanced --classes K --samples 1 --depth M --width K \\
        --lambda-w c --lambda-h c

A coarse geometric grid of `c` is checked first, as one `ncverify sweep` (through Dask) for each
`(K, M)`; between two neighbours with different verdicts, a finer geometric grid (`FINE` points,
consecutive values within 5 % of each other) is checked as another sweep, and each change of
verdict on it is an edge.  "Not refuted" is what the checks say (consistent: no search found a
better point), not a proof that the ETF is optimal there.  The result is written to
`docs/theory/ce-window.json`, which docs/theory/ce.md renders and `tests/test_ce_window.py`
re-runs (heavy).

    python scripts/ce_window.py            # every (K, M), 26 sweeps: about 5 minutes on 2 cores
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
OUT = ROOT / "docs" / "theory" / "ce-window.json"
NCVERIFY = str(Path(sys.executable).with_name("ncverify"))

CLASSES = range(3, 9)
DEPTHS = (2, 3)
#: the coarse grid of c: geometric from C_MIN to C_MAX
C_MIN, C_MAX, GRID = 1e-5, 0.3, 16
#: an edge is bracketed when its two checks' values of c are within this ratio
BRACKET = 1.05
#: points of the finer grid between two neighbours of the coarse one (ends included): the coarse
#: ratio (C_MAX / C_MIN)^(1/15) = 1.99 in 16 steps is 1.044, within BRACKET
FINE = 17


def command(k: int, m: int, c: float) -> list[str]:
    lam = f"{c:.6g}"
    return [
        "ce-balanced", "--classes", str(k), "--samples", "1", "--depth", str(m),
        "--width", str(k), "--lambda-w", lam, "--lambda-h", lam,
    ]  # fmt: skip


def verdict(args: list[str]) -> str:
    """The check as a user runs it."""
    proc = subprocess.run(
        [NCVERIFY, "check", *args, "--quiet", "--json", "-"],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    return json.loads(proc.stdout)["verdict"]


def grid(
    k: int, m: int, lo: float, hi: float, count: int, work: Path, workers: int
) -> dict[float, str]:
    """The verdict at each of `count` values of `c` from `lo` to `hi` (geometric), by one sweep."""
    args = command(k, m, lo)
    args[args.index("--lambda-w") + 1] = f"{lo:.6g}:{hi:.6g}:{count}:log"
    args[args.index("--lambda-h") + 1] = "tied"
    out = work / f"ce-window-K{k}-M{m}-{lo:.6g}-{hi:.6g}.jsonl"
    reports = sweep_reports(args, out, workers)
    return {float(r["sweep"]["point"]["lambda_w"]["value"]): r["verdict"] for r in reports}


def edge(k: int, m: int, a: tuple[float, str], b: tuple[float, str]) -> dict[str, object]:
    """Neighbours `a < b` (in c) of which exactly one is refuted."""
    (c_refuted, _), (c_not, verdict_not) = (a, b) if a[1] == "refuted" else (b, a)
    return {
        "kind": "upper" if a[1] == "refuted" else "lower",  # the refuted side below an upper end
        "refuted": {"c": c_refuted, "command": command(k, m, c_refuted)},
        "not_refuted": {"c": c_not, "command": command(k, m, c_not), "verdict": verdict_not},
    }


def edges(k: int, m: int, work: Path, workers: int) -> dict[str, object]:
    """The coarse grid's verdicts and each of its changes located on a finer grid."""
    coarse = sorted(grid(k, m, C_MIN, C_MAX, GRID, work, workers).items())
    brackets = []
    for (lo, v_lo), (hi, v_hi) in zip(coarse, coarse[1:], strict=False):
        if (v_lo == "refuted") == (v_hi == "refuted"):
            continue
        fine = sorted(grid(k, m, lo, hi, FINE, work, workers).items())
        brackets += [
            edge(k, m, a, b)
            for a, b in zip(fine, fine[1:], strict=False)
            if (a[1] == "refuted") != (b[1] == "refuted")
        ]
    return {
        "K": k,
        "M": m,
        "grid": [{"c": c, "refuted": v == "refuted"} for c, v in coarse],
        "beaten_at_smallest": coarse[0][1] == "refuted",
        "beaten_at_largest": coarse[-1][1] == "refuted",
        "edges": brackets,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2, help="Dask worker processes")
    parser.add_argument("--work", type=Path, default=None, help="folder of the sweeps' files")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="ce-window-"))
    work.mkdir(parents=True, exist_ok=True)
    records = []
    for m in DEPTHS:
        for k in CLASSES:
            rec = edges(k, m, work, args.workers)
            records.append(rec)
            ends = ", ".join(
                f"{e['kind']} {e['refuted']['c']:.4g}/{e['not_refuted']['c']:.4g}"
                for e in rec["edges"]
            )
            print(f"K = {k}, M = {m}: {ends or 'no edge'}", flush=True)
    OUT.write_text(json.dumps(records, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
