"""Output paths: checked before any computation, written whole or not at all, never destroyed.

A check can run for minutes; an output path that cannot be written must be reported before that
time is spent (exit code 2), and a write that fails half-way must not leave a truncated file that
looks like a result.  What a write does depends on what the path *is*, decided here and nowhere
else:

- a **regular file**, or a path that does not exist yet, is written to a temporary file in the
  same folder and renamed over the target (atomic on POSIX file systems);
- a **FIFO** or a **character device** is opened and written *through*, never replaced, so that
  `--json >(jq .)` and `--json /dev/null` work and the special file stays special (renaming a
  regular file over `/dev/null` as root would destroy it);
- a **symlink** is followed to its final target, which the same rules govern: the link stays a
  link (a dangling link creates its target where the target's folder exists);
- a **folder**, a **socket** or a **block device** is refused with one sentence (`OutputError`).

`check_file` decides before the work starts; `open_for_write`, `write_text`, `write_bytes` and
`append_text` decide again at write time (the same function), so callers never decide themselves.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any


class OutputError(ValueError):
    """An output path that cannot be written; the message is one sentence."""


@dataclass(frozen=True)
class Target:
    """Where a write to an output path goes.

    `path` is the file to replace (the symlink's final target) for a regular file or a new one,
    and the path as given for a special file (the kernel follows its links, including the
    `/dev/fd/N` links of `>(...)`, which name no real path).  `through` is True for a FIFO or a
    character device: written through, never replaced."""

    path: str
    through: bool


_REFUSED = {stat.S_IFDIR: "a folder", stat.S_IFSOCK: "a socket", stat.S_IFBLK: "a block device"}


def _folder(path: str) -> str:
    return os.path.dirname(os.path.abspath(path)) or "."


def _named(path: str, what: str) -> str:
    """`the JSON report 'r.json'`, with the link's target where `path` is a symlink."""
    text = f"the {what} {path!r}"
    if os.path.islink(path):
        text += f" (a symlink to {os.path.realpath(path)!r})"
    return text


def check_file(path: str, what: str) -> Target:
    """Raise `OutputError` unless `path` can be written as the `what` (e.g. "JSON report");
    return where the write will go.  Nothing is opened or created: a FIFO's reader is not
    woken, and a run that stops early leaves no empty file behind."""
    try:
        st = os.stat(path)  # follows every link, as the write will
    except FileNotFoundError:
        return _new_file(path, what)
    except OSError as exc:  # a symlink loop, a folder that cannot be searched
        raise OutputError(f"cannot write {_named(path, what)}: {exc.strerror}.") from None
    kind = stat.S_IFMT(st.st_mode)
    if kind in _REFUSED:
        raise OutputError(f"{_named(path, what)} is {_REFUSED[kind]}, not a file.")
    if kind in (stat.S_IFIFO, stat.S_IFCHR):
        if not os.access(path, os.W_OK):
            raise OutputError(f"cannot write {_named(path, what)}: it is not writable.")
        return Target(path, through=True)
    if kind != stat.S_IFREG:
        raise OutputError(f"{_named(path, what)} is not a file.")
    return _existing_file(path, what, st)


def _new_file(path: str, what: str) -> Target:
    """A path with nothing there yet (or a dangling symlink): created in its folder."""
    target = os.path.realpath(path)
    folder = _folder(target)
    if not os.path.isdir(folder):
        raise OutputError(f"the folder of {_named(path, what)} does not exist.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {_named(path, what)}: its folder is not writable.")
    return Target(target, through=False)


def _existing_file(path: str, what: str, st: os.stat_result) -> Target:
    """A regular file, replaced by a rename in the folder of its final target."""
    target = os.path.realpath(path)
    try:
        same = os.path.samestat(st, os.stat(target))
    except OSError:
        same = False
    if not same:  # e.g. /proc/self/fd/N of a deleted file: there is no path to rename over
        raise OutputError(f"cannot write {_named(path, what)}: it names no file to replace.")
    if not os.access(_folder(target), os.W_OK | os.X_OK):
        raise OutputError(f"cannot write {_named(path, what)}: its folder is not writable.")
    if not os.access(target, os.W_OK):
        raise OutputError(f"cannot write {_named(path, what)}: the file is not writable.")
    return Target(target, through=False)


#: What matplotlib writes for every plot of ncverify (the file's suffix chooses the format).
PLOT_FORMATS = ("png", "svg", "pdf")


def check_plot_file(path: str) -> Target:
    """`check_file` for a plot, whose suffix must also name a format it can be drawn in: decided
    before the data is computed, not when it is drawn."""
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    if ext not in PLOT_FORMATS:
        raise OutputError(f"--plot must name a .png, .svg or .pdf file, not {path!r}.")
    return check_file(path, "plot file")


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


@contextlib.contextmanager
def open_for_write(
    path: str, *, binary: bool = False, what: str = "output file"
) -> Iterator[IO[Any]]:
    """Yield a file object whose contents become `path` when the block ends without an
    exception: renamed over a regular file, or written through to a FIFO or character device.

    On any exception (`KeyboardInterrupt` and `SystemExit` included) a regular file keeps its
    old contents and no temporary file is left; what was written through cannot be taken back.
    Raises `OutputError` for a path `check_file` refuses, `OSError` when the write fails."""
    target = check_file(path, what)
    mode = "wb" if binary else "w"
    encoding = None if binary else "utf-8"
    if target.through:
        with open(target.path, mode, encoding=encoding) as fh:
            yield fh
        return
    fd, tmp = tempfile.mkstemp(dir=_folder(target.path), prefix=".ncverify-", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, encoding=encoding) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())  # on disk before the rename makes it the result
        os.chmod(tmp, 0o666 & ~_umask())  # as open() would have made it, not mkstemp's 0600
        os.replace(tmp, target.path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_text(path: str, text: str, *, what: str = "output file") -> None:
    """Write `text` (UTF-8) to `path` whole, by the rules of `open_for_write`."""
    with open_for_write(path, what=what) as fh:
        fh.write(text)


def write_bytes(path: str, data: bytes, *, what: str = "output file") -> None:
    """Write `data` to `path` whole, by the rules of `open_for_write`."""
    with open_for_write(path, binary=True, what=what) as fh:
        fh.write(data)


def append_text(path: str, text: str, *, what: str = "output file") -> None:
    """Append `text` to `path` and flush it to disk: the one kind of write that is not atomic,
    for a log that must survive an interruption line by line (a sweep's results file).  The
    path is checked as for every write (a symlink followed, a folder or socket refused)."""
    target = check_file(path, what)
    with open(target.path, "a", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        if not target.through:  # a pipe or a device cannot be synced
            os.fsync(fh.fileno())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
