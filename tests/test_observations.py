"""The observations the theory pages state (`docs/theory/observations.json`, rendered by
docs/theory/ce.md and dnc.md): every recorded `ncverify check` gives the recorded verdict again
when run as a user runs it, so that a page cannot say more than a check says."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from recorded import script

ROOT = Path(__file__).resolve().parents[1]
record = script("record_observations")
RECORDED = json.loads((ROOT / "docs" / "theory" / "observations.json").read_text())


def test_the_file_records_every_observation_of_the_script() -> None:
    assert [o["command"] for o in RECORDED] == [list(args) for _, _, args in record.OBSERVATIONS]


@pytest.mark.heavy  # eight checks, one of them about 40 s
@pytest.mark.parametrize("observed", RECORDED, ids=lambda o: f"{o['section']}: {o['instance']}")
def test_each_recorded_check_gives_its_verdict_again(observed: dict) -> None:
    outcome = record.run(tuple(observed["command"]))
    assert outcome["verdict"] == observed["verdict"]
    assert (
        outcome["exit_code"] == {"refuted": 1, "consistent": 0, "certified": 0}[outcome["verdict"]]
    )
