"""Every malformed invocation of `scripts/malformed_invocations.py`, run as a user runs it (the
installed script in a subprocess): its documented exit code, one sentence, no traceback.  The
script itself also checks that each one fails within seconds; tests never time anything."""

from __future__ import annotations

import importlib.util
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "malformed_invocations.py"
_spec = importlib.util.spec_from_file_location("malformed_invocations", SCRIPT)
malformed = importlib.util.module_from_spec(_spec)
sys.modules["malformed_invocations"] = malformed  # dataclasses look their module up
_spec.loader.exec_module(malformed)


@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    tmp = malformed.scratch_folder()
    yield tmp
    shutil.rmtree(tmp, ignore_errors=True)


@pytest.mark.parametrize("inv", malformed.INVOCATIONS, ids=lambda inv: inv.name)
def test_fails_as_documented(inv, scratch: Path) -> None:  # noqa: ANN001
    outcome = malformed.run(inv, scratch, str(Path(sys.executable).with_name("ncverify")))
    assert outcome.problems(with_time=False) == [], (outcome.code, outcome.stderr)


def test_the_list_covers_at_least_thirty_invocations() -> None:
    assert len({inv.name for inv in malformed.INVOCATIONS}) >= 30
