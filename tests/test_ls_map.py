"""The label-smoothing map of docs/theory/label-smoothing.md (`docs/theory/ls-map.json`,
recorded by `scripts/ls_map.py`): every cell is recorded with the script's command, and the
checks that decide where refutation starts give their recorded verdicts again."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from recorded import script

ROOT = Path(__file__).resolve().parents[1]
NCVERIFY = str(Path(sys.executable).with_name("ncverify"))
LS_MAP = script("ls_map")
RECORDED = json.loads((ROOT / "docs" / "theory" / "ls-map.json").read_text())


def test_every_cell_is_recorded_with_its_command() -> None:
    assert [(r["alpha"], r["M"], r["K"]) for r in RECORDED] == [
        (a, m, k) for a in LS_MAP.SMOOTHINGS for m in LS_MAP.DEPTHS for k in LS_MAP.CLASSES
    ]
    for r in RECORDED:
        assert len(r["cells"]) == LS_MAP.GRID
        cs = [float(cell["c"]) for cell in r["cells"]]
        assert cs == sorted(cs) and cs[0] == LS_MAP.C_MIN and cs[-1] == LS_MAP.C_MAX
        for cell in r["cells"]:
            assert cell["command"] == LS_MAP.command(r["alpha"], r["K"], r["M"], cell["c"])
            assert (cell["origin"] is not None) == (cell["verdict"] == "refuted")


def deciding_cells() -> list[dict]:
    """For each alpha and M: the first refuted cell at the smallest K with one (where the page
    shows the ETF first beaten), one check each."""
    chosen = []
    for alpha in LS_MAP.SMOOTHINGS:
        for m in LS_MAP.DEPTHS:
            rows = sorted((r for r in RECORDED if r["alpha"] == alpha and r["M"] == m),
                          key=lambda r: r["K"])  # fmt: skip
            refuted = (c for r in rows for c in r["cells"] if c["verdict"] == "refuted")
            first = next(refuted, None)
            chosen += [] if first is None else [first]
    return chosen


@pytest.mark.heavy  # a few checks of a few seconds each
@pytest.mark.parametrize("cell", deciding_cells(), ids=lambda c: " ".join(c["command"][2::2]))
def test_the_deciding_checks_give_their_verdicts_again(cell: dict) -> None:
    proc = subprocess.run(
        [NCVERIFY, "check", *cell["command"], "--quiet", "--json", "-"],
        capture_output=True, text=True, timeout=900, check=False,
    )  # fmt: skip
    assert json.loads(proc.stdout)["verdict"] == cell["verdict"], cell["command"]
