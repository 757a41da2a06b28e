"""Record where the ETF is beaten for deep cross-entropy: for `K = 3..8` and `M = 2, 3`, the set
of `c` (the one constant of the balanced reduction, docs/theory/ce.md) at which `ncverify check
ce-balanced` refutes the claim, as intervals whose every end is bracketed by a refuted and a
not-refuted check at values of `c` within 5 % of each other.

With one sample per class and every weight decay equal to `lambda`, `c = (n P)^{1/(M+1)} =
lambda`, so each point is the check

    ncverify check ce-balanced --classes K --samples 1 --depth M --width K \\
        --lambda-w c --lambda-h c

A coarse geometric grid of `c` is checked first; between two neighbours with different verdicts
the edge is bisected geometrically until the bracket is at most 5 % wide.  "Not refuted" is what
the checks say (consistent: no search found a better point), not a proof that the ETF is optimal
there.  The result is written to `docs/theory/ce-window.json`, which docs/theory/ce.md renders
and `tests/test_ce_window.py` re-runs (heavy).

    python scripts/ce_window.py            # every (K, M): about 10 minutes on 2 cores
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "theory" / "ce-window.json"
NCVERIFY = str(Path(sys.executable).with_name("ncverify"))

CLASSES = range(3, 9)
DEPTHS = (2, 3)
#: the coarse grid of c: geometric from C_MIN to C_MAX
C_MIN, C_MAX, GRID = 1e-5, 0.3, 16
#: an edge is bracketed when its two checks' values of c are within this ratio
BRACKET = 1.05


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


def refuted(k: int, m: int, c: float, seen: dict[float, str]) -> bool:
    c = float(f"{c:.6g}")
    if c not in seen:
        seen[c] = verdict(command(k, m, c))
    return seen[c] == "refuted"


def edges(k: int, m: int) -> dict[str, object]:
    """The grid's verdicts and each edge bracketed to `BRACKET`."""
    seen: dict[float, str] = {}
    grid = [C_MIN * (C_MAX / C_MIN) ** (i / (GRID - 1)) for i in range(GRID)]
    beaten = [refuted(k, m, c, seen) for c in grid]
    brackets = []
    for lo, hi, b_lo, b_hi in zip(grid, grid[1:], beaten, beaten[1:], strict=False):
        if b_lo == b_hi:
            continue
        a, b = lo, hi  # a has verdict b_lo, b has b_hi
        while b / a > BRACKET:
            mid = math.sqrt(a * b)
            if refuted(k, m, mid, seen) == b_lo:
                a = mid
            else:
                b = mid
        c_refuted, c_not = (a, b) if b_lo else (b, a)
        brackets.append(
            {
                "kind": "upper" if b_lo else "lower",  # the refuted side is below an upper end
                "refuted": {"c": float(f"{c_refuted:.6g}"), "command": command(k, m, c_refuted)},
                "not_refuted": {
                    "c": float(f"{c_not:.6g}"),
                    "command": command(k, m, c_not),
                    "verdict": seen[float(f"{c_not:.6g}")],
                },
            }
        )
    return {
        "K": k,
        "M": m,
        "grid": [{"c": float(f"{c:.6g}"), "refuted": r} for c, r in zip(grid, beaten, strict=True)],
        "beaten_at_smallest": beaten[0],
        "beaten_at_largest": beaten[-1],
        "edges": brackets,
    }


def main() -> int:
    records = []
    for m in DEPTHS:
        for k in CLASSES:
            rec = edges(k, m)
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
