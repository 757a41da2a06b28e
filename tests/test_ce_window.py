"""The window table of docs/theory/ce.md (`docs/theory/ce-window.json`, recorded by
`scripts/ce_window.py`): every edge is bracketed by a refuted and a not-refuted check whose
values of `c` are within 5 % of each other, the grid agrees with the edges, and the bracketing
checks give their recorded verdicts again when run as a user runs them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from recorded import script

ROOT = Path(__file__).resolve().parents[1]
window = script("ce_window")
RECORDED = json.loads((ROOT / "docs" / "theory" / "ce-window.json").read_text())


def test_every_k_and_depth_is_recorded_and_every_edge_is_bracketed_within_five_percent() -> None:
    assert [(r["K"], r["M"]) for r in RECORDED] == [
        (k, m) for m in window.DEPTHS for k in window.CLASSES
    ]
    for rec in RECORDED:
        flips = sum(
            a["refuted"] != b["refuted"] for a, b in zip(rec["grid"], rec["grid"][1:], strict=False)
        )
        assert flips == len(rec["edges"])
        for edge in rec["edges"]:
            lo, hi = sorted((edge["refuted"]["c"], edge["not_refuted"]["c"]))
            assert hi / lo <= window.BRACKET * (1 + 1e-5)
            assert edge["not_refuted"]["verdict"] in ("consistent", "certified")
            below = edge["refuted"]["c"] < edge["not_refuted"]["c"]
            assert below == (edge["kind"] == "upper")
            assert edge["refuted"]["command"] == window.command(rec["K"], rec["M"], edge["refuted"]["c"])  # fmt: skip


EDGES = [
    (rec["K"], rec["M"], side, edge[side])
    for rec in RECORDED
    for edge in rec["edges"]
    for side in ("refuted", "not_refuted")
]


@pytest.mark.heavy  # about 2 s a check
@pytest.mark.parametrize(
    ("k", "m", "side", "point"), EDGES, ids=lambda v: str(v) if not isinstance(v, dict) else ""
)
def test_each_bracketing_check_gives_its_verdict_again(
    k: int, m: int, side: str, point: dict
) -> None:
    got = window.verdict(point["command"])
    assert (got == "refuted") == (side == "refuted"), (k, m, point["c"], got)
