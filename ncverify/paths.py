"""Output paths: checked before any computation, written whole or not at all.

A check can run for minutes; an output path that cannot be written must be reported before that
time is spent (exit code 2), and a write that fails half-way must not leave a truncated file that
looks like a result.  Every output file is written to a temporary file in the same folder and
renamed over the target, which is atomic on POSIX file systems.
"""

from __future__ import annotations

import os
import tempfile


class OutputError(ValueError):
    """An output path that cannot be written; the message is one sentence."""


def _folder(path: str) -> str:
    return os.path.dirname(os.path.abspath(path)) or "."


def check_file(path: str, what: str) -> None:
    """Raise `OutputError` unless `path` can be created or overwritten as a file."""
    folder = _folder(path)
    if os.path.isdir(path):
        raise OutputError(f"the {what} {path!r} is a folder, not a file.")
    if not os.path.isdir(folder):
        raise OutputError(f"the folder of the {what} {path!r} does not exist.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write the {what} {path!r}: its folder is not writable.")
    if os.path.exists(path) and not os.access(path, os.W_OK):
        raise OutputError(f"cannot write the {what} {path!r}: the file is not writable.")


def check_folder(path: str, what: str) -> None:
    """Raise `OutputError` unless `path` is a writable folder or one that can be created."""
    if os.path.exists(path):
        if not os.path.isdir(path):
            raise OutputError(f"the {what} {path!r} is a file, not a folder.")
        if not os.access(path, os.W_OK | os.X_OK):
            raise OutputError(f"cannot write into the {what} {path!r}: it is not writable.")
        return
    parent = _folder(path)
    while not os.path.exists(parent):  # makedirs creates every missing level
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent) or not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"cannot create the {what} {path!r}: {parent!r} is not writable.")


def write_text(path: str, text: str) -> None:
    """Write `text` to `path` atomically (a temporary file renamed over it)."""
    fd, tmp = tempfile.mkstemp(dir=_folder(path), prefix=".ncverify-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o666 & ~_umask())  # as open() would have made it, not mkstemp's 0600
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
