"""Safe writes (issue 27): what a write does depends on what the output path *is*.

A regular file is replaced atomically, a FIFO or a character device is written through (and
stays what it was), a symlink is followed, and a folder, a socket or a block device is refused
before anything is computed.  Unit tests of `ncverify.paths`, then the installed `ncverify` run
as a user runs it.
"""

from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from ncverify.app.sweep.results import ResultsFile
from ncverify.paths import (
    OutputError,
    append_text,
    check_file,
    open_for_write,
    write_bytes,
    write_text,
)

SCRIPT = str(Path(sys.executable).with_name("ncverify"))
SMALL = ["--counts", "5,5,5", "--depth", "2", "--width", "4", "--restarts", "2"]


# ---- helpers ------------------------------------------------------------------------------------
class FifoReader:
    """Reads a FIFO to its end in a thread, as `jq` behind `>(jq .)` would."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.data = b""
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        with open(self.path, "rb") as fh:
            self.data = fh.read()

    def join(self) -> bytes:
        """The bytes read; a writer that never came is replaced by an empty one, so that a
        failing test fails instead of hanging."""
        self.thread.join(timeout=30)
        if self.thread.is_alive():
            os.close(os.open(self.path, os.O_WRONLY | os.O_NONBLOCK))
            self.thread.join(timeout=30)
        return self.data


def make_char_device(path: Path) -> None:
    """A character device like /dev/null (1, 3) in the tmp folder; skipped where not root."""
    try:
        os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    except PermissionError:
        pytest.skip("creating a character device needs root (os.mknod: permission denied)")


@pytest.fixture
def unix_socket(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(path))
        yield path


def is_fifo(path: Path) -> bool:
    return stat.S_ISFIFO(os.lstat(path).st_mode)


def is_char_device(path: Path) -> bool:
    return stat.S_ISCHR(os.lstat(path).st_mode)


def ncverify(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([SCRIPT, *args], capture_output=True, text=True, timeout=600, check=False)


# ---- regular files: replaced atomically ---------------------------------------------------------
def test_a_new_file_is_created_with_the_usual_permissions(tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    write_text(str(target), "{}\n")
    assert target.read_text() == "{}\n"
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~mask  # not mkstemp's 0600
    assert os.listdir(tmp_path) == ["r.json"]


def test_an_existing_file_is_replaced_atomically(tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    target.write_text("old contents")
    before = target.stat().st_ino
    write_bytes(str(target), b"x" * 100_000)
    assert target.stat().st_ino != before  # a new file renamed over it, not rewritten in place
    assert target.read_bytes() == b"x" * 100_000
    assert os.listdir(tmp_path) == ["r.json"]


@pytest.mark.parametrize("error", [RuntimeError, KeyboardInterrupt, SystemExit])
def test_a_failed_write_keeps_the_old_contents_and_leaves_no_temporary(
    tmp_path: Path, error: type[BaseException]
) -> None:
    target = tmp_path / "r.json"
    target.write_text("old contents")
    with pytest.raises(error), open_for_write(str(target)) as fh:
        fh.write("half of a rep")
        raise error
    assert target.read_text() == "old contents"
    assert os.listdir(tmp_path) == ["r.json"]


def test_a_failed_write_of_a_new_file_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(KeyboardInterrupt), open_for_write(str(tmp_path / "new.png"), binary=True):
        raise KeyboardInterrupt
    assert os.listdir(tmp_path) == []


# ---- symlinks: followed -------------------------------------------------------------------------
def test_a_symlink_to_a_file_stays_a_link_and_its_target_is_replaced(tmp_path: Path) -> None:
    target = tmp_path / "data" / "r.json"
    target.parent.mkdir()
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    write_text(str(link), "new\n")
    assert link.is_symlink()
    assert os.readlink(link) == str(target)
    assert target.read_text() == "new\n"
    assert sorted(os.listdir(target.parent)) == ["r.json"]  # the temporary was beside the target


def test_a_chain_of_symlinks_is_followed_to_the_end(tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    target.write_text("old")
    (tmp_path / "b").symlink_to("r.json")
    (tmp_path / "a").symlink_to("b")
    write_text(str(tmp_path / "a"), "new")
    assert (tmp_path / "a").is_symlink() and (tmp_path / "b").is_symlink()
    assert target.read_text() == "new"


def test_a_dangling_symlink_creates_its_target_where_its_folder_exists(tmp_path: Path) -> None:
    link = tmp_path / "link.json"
    link.symlink_to(tmp_path / "made.json")
    write_text(str(link), "{}")
    assert link.is_symlink()
    assert (tmp_path / "made.json").read_text() == "{}"


def test_a_dangling_symlink_into_a_missing_folder_is_refused(tmp_path: Path) -> None:
    link = tmp_path / "link.json"
    link.symlink_to(tmp_path / "no-such-folder" / "r.json")
    with pytest.raises(OutputError, match="folder .* does not exist"):
        check_file(str(link), "JSON report")
    with pytest.raises(OutputError):
        write_text(str(link), "{}")
    assert not (tmp_path / "no-such-folder").exists()


def test_a_symlink_loop_is_refused(tmp_path: Path) -> None:
    loop = tmp_path / "loop"
    loop.symlink_to("loop")
    with pytest.raises(OutputError, match="loop"):
        check_file(str(loop), "JSON report")


# ---- FIFOs and character devices: written through -----------------------------------------------
def test_a_fifo_is_written_through_and_stays_a_fifo(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = FifoReader(fifo)
    write_text(str(fifo), '{"a": 1}\n')
    assert json.loads(reader.join()) == {"a": 1}
    assert is_fifo(fifo)
    assert os.listdir(tmp_path) == ["pipe"]


def test_a_character_device_is_written_through_and_stays_one(tmp_path: Path) -> None:
    null = tmp_path / "null"
    make_char_device(null)
    write_text(str(null), "into the void\n")
    assert is_char_device(null)
    assert null.read_bytes() == b""  # it is /dev/null: nothing was stored in a file
    assert os.listdir(tmp_path) == ["null"]


# ---- refused: folders, sockets, unwritable places -----------------------------------------------
def test_a_folder_is_refused(tmp_path: Path) -> None:
    with pytest.raises(OutputError, match="is a folder, not a file") as info:
        check_file(str(tmp_path), "JSON report")
    assert str(tmp_path) in str(info.value)


def test_a_symlink_to_a_folder_is_refused(tmp_path: Path) -> None:
    (tmp_path / "link").symlink_to(tmp_path)
    with pytest.raises(OutputError, match="a symlink to .* is a folder"):
        write_text(str(tmp_path / "link"), "{}")
    assert sorted(os.listdir(tmp_path)) == ["link"]


def test_a_socket_is_refused_and_left_alone(tmp_path: Path, unix_socket: Path) -> None:
    with pytest.raises(OutputError, match="is a socket, not a file"):
        write_text(str(unix_socket), "{}")
    assert stat.S_ISSOCK(os.lstat(unix_socket).st_mode)
    with pytest.raises(OutputError, match="socket"):
        append_text(str(unix_socket), "{}\n")


def test_an_unwritable_folder_is_refused(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("running as root: permissions do not stop a write")
        with pytest.raises(OutputError, match="folder is not writable"):
            check_file(str(locked / "r.json"), "JSON report")
    finally:
        locked.chmod(0o700)


# ---- appending: the sweep's results file --------------------------------------------------------
def test_appending_follows_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "points.jsonl"
    target.write_text("1\n")
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    append_text(str(link), "2\n")
    assert link.is_symlink()
    assert target.read_text() == "1\n2\n"


def test_appending_to_a_fifo_writes_through(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = FifoReader(fifo)
    append_text(str(fifo), "line\n")
    assert reader.join() == b"line\n"
    assert is_fifo(fifo)


def test_a_results_file_at_a_fifo_has_nothing_to_resume(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    results = ResultsFile(str(fifo), resume=False)  # not "exists; pass --resume"
    assert results.records == {}


def test_resuming_through_a_symlink_keeps_the_link(tmp_path: Path) -> None:
    target = tmp_path / "points.jsonl"
    record = {"sweep": {"key": "a"}}
    target.write_text(json.dumps(record) + "\n" + '{"sweep": {"ke')  # a cut last line
    link = tmp_path / "link.jsonl"
    link.symlink_to(target)
    results = ResultsFile(str(link), resume=True)
    assert results.dropped == 1
    assert link.is_symlink()
    assert target.read_text() == json.dumps(record) + "\n"


# ---- the installed command line -----------------------------------------------------------------
def test_predict_writes_its_json_through_a_fifo(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = FifoReader(fifo)
    proc = ncverify("predict", "mse-balanced-biasfree", "--json", str(fifo))
    data = reader.join()
    assert proc.returncode == 0, proc.stderr
    assert json.loads(data)["claim"] == "mse-balanced-biasfree"
    assert is_fifo(fifo)


def test_check_writes_its_json_through_a_fifo(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    reader = FifoReader(fifo)
    args = ["check", "mse-balanced-biasfree", *SMALL, "--no-certificate", "--json", str(fifo)]
    proc = ncverify(*args)
    data = reader.join()
    assert proc.returncode in (0, 3), proc.stderr  # certified or inconclusive: never a crash
    assert json.loads(data)["claim"] == "mse-balanced-biasfree"
    assert is_fifo(fifo)
    assert os.listdir(tmp_path) == ["pipe"]


def test_predict_through_a_symlink_to_a_file(tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    target.write_text("old")
    link = tmp_path / "link.json"
    link.symlink_to(target)
    proc = ncverify("predict", "mse-balanced-biasfree", "--json", str(link))
    assert proc.returncode == 0, proc.stderr
    assert link.is_symlink()
    assert json.loads(target.read_text())["claim"] == "mse-balanced-biasfree"
    assert sorted(os.listdir(tmp_path)) == ["link.json", "r.json"]


def test_predict_through_a_symlink_to_a_fifo(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    link = tmp_path / "link.json"
    link.symlink_to(fifo)
    reader = FifoReader(fifo)
    proc = ncverify("predict", "mse-balanced-biasfree", "--json", str(link))
    data = reader.join()
    assert proc.returncode == 0, proc.stderr
    assert json.loads(data)["claim"] == "mse-balanced-biasfree"
    assert link.is_symlink() and is_fifo(fifo)


def test_predict_into_a_character_device_leaves_it_a_device(tmp_path: Path) -> None:
    null = tmp_path / "null"
    make_char_device(null)
    proc = ncverify("predict", "mse-balanced-biasfree", "--json", str(null))
    assert proc.returncode == 0, proc.stderr
    assert is_char_device(null)
    assert os.listdir(tmp_path) == ["null"]


@pytest.mark.parametrize("kind", ["folder", "socket"])
def test_check_refuses_a_folder_or_a_socket_before_computing(
    tmp_path: Path, unix_socket: Path, kind: str
) -> None:
    path = tmp_path / "out" if kind == "folder" else unix_socket
    if kind == "folder":
        path.mkdir()
    proc = ncverify("check", "mse-balanced-biasfree", *SMALL, "--json", str(path))
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1, proc.stderr
    assert str(path) in lines[0] and kind in lines[0], lines[0]
    assert proc.stdout == ""  # no report: nothing was computed
    assert path.is_dir() if kind == "folder" else stat.S_ISSOCK(os.lstat(path).st_mode)
