"""`ncverify check` as a user runs it (a subprocess of the installed command), with its JSON report
read back, for the tests of one claim."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

NCVERIFY = str(Path(sys.executable).with_name("ncverify"))


def check_claim(claim_id: str, *args: str) -> tuple[int, dict]:
    """The exit code of `ncverify check CLAIM ARGS --quiet --json -` and its report ({} if none)."""
    proc = subprocess.run(
        [NCVERIFY, "check", claim_id, *args, "--quiet", "--json", "-"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    return proc.returncode, json.loads(proc.stdout) if proc.stdout.strip() else {}
