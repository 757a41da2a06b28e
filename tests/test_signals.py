"""Signals: no orphaned worker processes, interrupts exit 130 / 143 with nothing half-written.

Each test runs the installed `ncverify` in its own session (`start_new_session`), so that a
signal sent to its process group reaches it and its workers only.  `check` runs on an instance
whose optimiser runs take minutes, with two worker processes (`NCVERIFY_JOBS=2`), or whose
batched search or certificate keeps two workers busy; the tests wait until the workers exist
before sending anything.  No test measures speed: the only times are
generous bounds on polling (`scripts/signal_response.py` measures the response times).
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

psutil = pytest.importorskip("psutil")  # comes with distributed (the `test` extra)

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "signal_response.py"
_spec = importlib.util.spec_from_file_location("signal_response", SCRIPT)
signal_response = importlib.util.module_from_spec(_spec)
sys.modules["signal_response"] = signal_response  # dataclasses look their module up
_spec.loader.exec_module(signal_response)

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")

# the instance the measurement script times: optimiser runs in flight for minutes
CHECK = signal_response.CHECK
SWEEP = [
    "sweep",
    "mse-balanced-biasfree",
    "--counts",
    "5,5,5",
    "--depth",
    "2",
    "--width",
    "4",
    "--restarts",
    "2",
    "--lambda-w",
    "1e-3:2e-2:12:log",
    "--workers",
    "2",
    "--quiet",
]
POINTS = 12  # of SWEEP's grid
BOUND = 150.0  # seconds: generous bounds on waiting, never a speed check


def _ncverify() -> str:
    return str(Path(sys.executable).with_name("ncverify"))


def _gone(process: psutil.Process) -> bool:
    """Whether `process` has ended (a zombie has: its exit status waits for a parent, and an
    orphan's parent, init, may never collect it in a container)."""
    try:
        return process.status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _survivors(workers: list[psutil.Process], bound: float = 60.0) -> list[int]:
    """Poll until every worker has ended or `bound` seconds have passed; the pids still there."""
    deadline = time.monotonic() + bound
    while (left := [w.pid for w in workers if not _gone(w)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


# an instance whose batched search runs its chunks in the two workers for several seconds
SEARCH_CHECK = [
    "check", "dnc-multiclass", "--classes", "20", "--samples", "1", "--depth", "3",
    "--width", "20", "--activation", "relu", "--lambda-w", "1e-3", "--lambda-h", "1e-3",
    "--search-starts", "512", "--quiet",
]  # fmt: skip
# an instance whose certificate proves its leaves in worker processes for minutes (the first
# processes the check starts: its certificate runs before its optimiser)
CERTIFICATE_CHECK = [
    "check", "maxmargin-sel", "--classes", "4", "--samples", "1", "--depth", "2", "--width", "4",
    "--certificate-boxes", "45000", "--quiet",
]  # fmt: skip


@pytest.fixture
def check(tmp_path: Path) -> Iterator[tuple[subprocess.Popen, list[psutil.Process], Path]]:
    """A `check` writing its report into an empty folder, once its two workers run; whatever
    the test does, its process group is killed at the end."""
    yield from _running(CHECK, tmp_path)


@pytest.fixture
def searching(tmp_path: Path) -> Iterator[tuple[subprocess.Popen, list[psutil.Process], Path]]:
    """The same, the workers descending chunks of the batched search."""
    yield from _running(SEARCH_CHECK, tmp_path)


@pytest.fixture
def certifying(tmp_path: Path) -> Iterator[tuple[subprocess.Popen, list[psutil.Process], Path]]:
    """The same, the workers proving the leaves of `frame-branch-and-bound` (which leaves one
    of the jobs to its search: three jobs make two workers)."""
    yield from _running(CERTIFICATE_CHECK, tmp_path, jobs=3)


def _running(
    command: list[str], tmp_path: Path, jobs: int = 2
) -> Iterator[tuple[subprocess.Popen, list[psutil.Process], Path]]:
    folder = tmp_path / "out"
    folder.mkdir()
    proc = subprocess.Popen(
        [_ncverify(), *command, "--json", str(folder / "report.json")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "NCVERIFY_JOBS": str(jobs)},
        start_new_session=True,
    )
    workers: list[psutil.Process] = []
    try:
        deadline = time.monotonic() + BOUND
        while len(workers := psutil.Process(proc.pid).children(recursive=True)) < 2:
            assert proc.poll() is None, f"check ended before its runs: {proc.communicate()[1]}"
            assert time.monotonic() < deadline, "check started no workers in time"
            time.sleep(0.05)
        yield proc, workers, folder
    finally:
        for p in [proc.pid, *(w.pid for w in workers)]:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        proc.communicate(timeout=BOUND)


def test_workers_end_when_check_is_killed(check: tuple) -> None:
    # SIGKILL leaves the parent no chance to stop them: they must notice its death themselves
    # (their runs here take minutes, so finishing them is not an option)
    proc, workers, _ = check
    os.kill(proc.pid, signal.SIGKILL)
    assert proc.wait(timeout=BOUND) == -signal.SIGKILL
    assert _survivors(workers) == [], "optimiser workers outlived their killed parent"


@pytest.mark.parametrize(
    ("sig", "code", "group"),
    [
        (signal.SIGINT, 130, True),  # Ctrl-C at a terminal: the whole process group
        (signal.SIGTERM, 143, False),  # kill, timeout: the process alone
    ],
    ids=["SIGINT", "SIGTERM"],
)
def test_interrupted_check_exits_cleanly(
    check: tuple, sig: signal.Signals, code: int, group: bool
) -> None:
    proc, workers, folder = check
    (os.killpg if group else os.kill)(proc.pid, sig)
    _, err = proc.communicate(timeout=BOUND)
    assert proc.returncode == code, err
    assert "Traceback" not in err, err
    assert list(folder.iterdir()) == []  # no report, partial or whole, and no temporary file
    assert _survivors(workers) == []


@pytest.mark.parametrize("stage", ["searching", "certifying"])
def test_a_check_terminated_in_its_search_or_certificate_leaves_no_worker(
    stage: str, request: pytest.FixtureRequest
) -> None:
    proc, workers, folder = request.getfixturevalue(stage)
    os.kill(proc.pid, signal.SIGTERM)
    _, err = proc.communicate(timeout=BOUND)
    assert proc.returncode == 143, err
    assert "Traceback" not in err, err
    assert list(folder.iterdir()) == []
    assert _survivors(workers) == []


def test_interrupted_sweep_says_one_line_and_resumes(tmp_path: Path) -> None:
    # Ctrl-C reaches the sweep's process and its Dask workers alike: the workers stay quiet, the
    # sweep says what is saved and exits 130, and --resume finishes the grid
    results = tmp_path / "points.jsonl"
    proc = subprocess.Popen(
        [_ncverify(), *SWEEP, "--out", str(results)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + BOUND
        while not (results.exists() and results.read_text().count("\n") >= 1):
            assert proc.poll() is None, f"sweep ended early: {proc.communicate()[1]}"
            assert time.monotonic() < deadline, "no point finished in time"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=BOUND)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate(timeout=BOUND)
    assert proc.returncode == 130, err
    assert "Traceback" not in err, err
    assert [line for line in err.splitlines() if line.startswith("interrupted:")], err
    done = [json.loads(line) for line in results.read_text().splitlines()]
    assert 1 <= len(done) < POINTS  # whole records only, and the grid not finished
    resumed = subprocess.run(
        [_ncverify(), *SWEEP, "--out", str(results), "--resume"],
        capture_output=True,
        text=True,
        timeout=BOUND,
        start_new_session=True,
    )
    assert resumed.returncode == 0, resumed.stderr
    keys = [json.loads(line)["sweep"]["key"] for line in results.read_text().splitlines()]
    assert len(keys) == POINTS and len(set(keys)) == POINTS
    assert f"{len(done)} reused" in resumed.stdout
