"""The max-margin table of docs/theory/ce.md (`docs/theory/maxmargin-table.json`, recorded by
`scripts/maxmargin_table.py`): every (K, M) is recorded with the script's commands, a refuted
row has a best value below the claimed one, and every recorded check gives its verdict again
when run as a user runs it (heavy)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from recorded import script

ROOT = Path(__file__).resolve().parents[1]
table = script("maxmargin_table")
RECORDED = json.loads((ROOT / "docs" / "theory" / "maxmargin-table.json").read_text())
CHECKS = [
    (r["K"], r["M"], side, r[side]) for r in RECORDED for side in ("with_codes", "search_alone")
]


def test_every_k_and_depth_is_recorded_with_the_scripts_commands() -> None:
    assert [(r["K"], r["M"]) for r in RECORDED] == [
        (k, m) for m in table.DEPTHS for k in table.CLASSES
    ]
    for k, m, side, rec in CHECKS:
        assert rec["command"] == table.command(k, m, side == "search_alone")
        assert (rec["verdict"] == "refuted") == (rec["best"] is not None)
        if rec["best"] is not None:
            assert rec["best"] < rec["claimed"]


@pytest.mark.heavy  # about 2 s a check
@pytest.mark.parametrize(
    ("k", "m", "side", "rec"), CHECKS, ids=lambda v: str(v) if not isinstance(v, dict) else ""
)
def test_each_recorded_check_gives_its_verdict_again(k: int, m: int, side: str, rec: dict) -> None:
    assert table.run(rec["command"])["verdict"] == rec["verdict"], (k, m, side)
