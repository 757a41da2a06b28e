"""The results file: append-only JSON lines, one record per point key, resumable."""

from __future__ import annotations

import json
import os
from typing import Any

from ncverify.app.sweep._common import SweepError


# ---- the results file ---------------------------------------------------------------------------
class ResultsFile:
    """An append-only JSON-lines file of point records, at most one per key.

    Opening it for a resumed sweep drops a line cut short by an interrupted write (the file is
    rewritten without it); opening an existing file without `resume` is refused.
    """

    def __init__(self, path: str | None, resume: bool) -> None:
        self.path = path
        self.records: dict[str, dict[str, Any]] = {}
        self.dropped = 0
        if path is None:
            if resume:
                raise SweepError("--resume needs --out FILE, the results file to continue.")
            return
        # checked, not created: a sweep that stops before its first point (an unreachable
        # scheduler, an interrupt) leaves no empty file behind to block the rerun; a folder or
        # a socket is refused, a symlink followed (ncverify.paths decides)
        from ncverify.paths import OutputError, check_file

        try:
            check_file(path, "results file")
        except OutputError as exc:
            raise SweepError(str(exc)) from None
        # only a regular file holds earlier records: a FIFO or /dev/null has none to resume
        if os.path.isfile(path):
            if not resume:
                raise SweepError(
                    f"the results file {path!r} exists; pass --resume to continue it "
                    "or choose another file."
                )
            self._load(path)

    def _load(self, path: str) -> None:
        try:
            with open(path, encoding="utf-8") as fh:
                lines = fh.read().split("\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise SweepError(f"cannot read the results file {path!r}: {exc}.") from None
        kept: list[str] = []
        for line in lines:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                key = record["sweep"]["key"]
            except (ValueError, KeyError, TypeError):
                self.dropped += 1  # cut short by an interrupted write, or not a sweep record
                continue
            if key in self.records:
                self.dropped += 1
                continue
            self.records[key] = record
            kept.append(line)
        if self.dropped or (lines and lines[-1] != ""):
            from ncverify.paths import write_text

            write_text(path, "".join(line + "\n" for line in kept), what="results file")

    def __contains__(self, key: str) -> bool:
        return key in self.records

    def append(self, record: dict[str, Any]) -> bool:
        """Append a finished point at once (flushed to disk); False if its key is already there."""
        key = record["sweep"]["key"]
        if key in self.records:
            return False
        self.records[key] = record
        if self.path is not None:
            from ncverify.paths import append_text

            line = json.dumps(record, allow_nan=False, separators=(",", ":"))
            append_text(self.path, line + "\n", what="results file")
        return True
