"""Run `ncverify sweep` as a user runs it and read back its reports: how the scripts that record
the theory pages' maps (`ce_window.py`, `maxmargin_table.py`) run their checks, through Dask.

    from sweep_reports import sweep_reports  # with scripts/ on sys.path
    reports = sweep_reports(["maxmargin-sel", "--classes", "3", "--depth", "1:4:4"], out, 2)
"""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

NCVERIFY = str(Path(sys.executable).with_name("ncverify"))


def sweep_reports(args: list[str], out: Path, workers: int) -> list[dict]:
    """The reports of `ncverify sweep ARGS` (one JSON line a point, in `out`; a sweep interrupted
    earlier resumes where it stopped).  Exit code 3 (a point inconclusive) is a finding."""
    proc = subprocess.run(
        [NCVERIFY, "sweep", *args, "--quiet", "--out", str(out), "--resume",
         "--workers", str(workers)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode not in (0, 3):
        sys.exit(f"ncverify sweep {shlex.join(args)} failed:\n{proc.stderr}")
    return [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
