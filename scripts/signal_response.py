"""How `ncverify check` answers SIGINT, SIGTERM and SIGKILL while its optimiser runs are in flight.

Each case starts a real `check` (two worker processes, `NCVERIFY_JOBS=2`, on an instance whose
runs take minutes), waits until its worker processes exist, sends the signal, and prints the
exit code, the response time (signal to exit of the `check` process) and the time until none of
its workers is left.  SIGINT goes to the whole process group, as Ctrl-C at a terminal sends it;
SIGTERM and SIGKILL go to the `check` process alone, as `kill` and `timeout` send them.

A case misbehaves (exit status 1) when the exit code is not 130 / 143 / -9, when a report or a
temporary file is left in the output folder, when the response takes longer than `--slow`
seconds, or when a worker is still there `--bound` seconds after the signal.  Linux only (it
reads the process table in /proc).

    python scripts/signal_response.py [--cases int,term,kill] [--slow 5] [--bound 60]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

CHECK = [
    "check",
    "mse-balanced-biasfree",
    "--classes",
    "5000",
    "--samples",
    "1",
    "--depth",
    "1",
    "--width",
    "8",
    "--lambda-w",
    "1e-4",
    "--lambda-h",
    "1e-4",
    "--no-certificate",
    "--force",  # its runs are above the work limit: they take minutes
    "--quiet",
]
CASES = {  # name: (signal, to the process group?, expected exit code)
    "int": (signal.SIGINT, True, 130),
    "term": (signal.SIGTERM, False, 143),
    "kill": (signal.SIGKILL, False, -signal.SIGKILL),
}


@dataclass
class Result:
    """One case: what the `check` process did after the signal."""

    name: str
    code: int
    expected: int
    response: float  # seconds from the signal to the exit of `check`
    workers: int
    cleared: float | None  # seconds until no worker was left; None: some still there
    leftovers: list[str]

    def misbehaved(self, slow: float) -> bool:
        return (
            self.code != self.expected
            or self.response > slow
            or self.cleared is None
            or bool(self.leftovers)
        )


def children(pid: int) -> set[int]:
    """The child processes of `pid` (every thread's, from /proc; empty once it is gone)."""
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found.update(int(c) for c in (task / "children").read_text().split())
        except OSError:
            continue
    return found


def alive(pid: int) -> bool:
    """Whether `pid` still runs: it exists and is not a zombie (an orphan's exit status is
    collected by init, and in a container init may never collect it)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def ncverify() -> str:
    """The installed `ncverify` next to this interpreter (a virtual environment's bin/)."""
    return str(Path(sys.executable).with_name("ncverify"))


def start(report: Path) -> tuple[subprocess.Popen, set[int]]:
    """Start `check` (its own session) and wait until its two workers exist."""
    env = {**os.environ, "NCVERIFY_JOBS": "2"}
    proc = subprocess.Popen(
        [ncverify(), *CHECK, "--json", str(report)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while len(workers := children(proc.pid)) < 2:
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"check exited or started no workers: {proc.communicate()[1]!r}")
        time.sleep(0.05)
    time.sleep(0.5)  # let the runs begin
    return proc, workers


def run_case(name: str, bound: float) -> Result:
    """Start a `check`, send the case's signal, measure."""
    sig, group, expected = CASES[name]
    with tempfile.TemporaryDirectory(prefix="ncverify-signals-") as folder:
        report = Path(folder) / "report.json"
        proc, workers = start(report)
        t0 = time.monotonic()
        (os.killpg if group else os.kill)(proc.pid, sig)
        proc.wait()
        response = time.monotonic() - t0
        proc.communicate()
        cleared = None
        while time.monotonic() - t0 < bound:
            if not any(alive(w) for w in workers):
                cleared = time.monotonic() - t0
                break
            time.sleep(0.02)
        for w in workers:  # whatever the outcome, leave nothing running
            if alive(w):
                os.kill(w, signal.SIGKILL)
        leftovers = sorted(p.name for p in Path(folder).iterdir())
    return Result(name, proc.returncode, expected, response, len(workers), cleared, leftovers)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="int,term,kill", help="comma-separated: int,term,kill")
    parser.add_argument("--slow", type=float, default=5.0, help="longest acceptable response (s)")
    parser.add_argument("--bound", type=float, default=60.0, help="how long to wait for workers")
    args = parser.parse_args()
    bad = False
    for name in args.cases.split(","):
        r = run_case(name.strip(), args.bound)
        cleared = "STILL RUNNING" if r.cleared is None else f"{r.cleared:.3f} s"
        flag = "MISBEHAVED" if r.misbehaved(args.slow) else "ok"
        print(
            f"{r.name:5} exit {r.code:4} (expected {r.expected:4})  response {r.response:.3f} s  "
            f"{r.workers} workers gone after {cleared}  leftovers {r.leftovers or 'none'}  {flag}",
            flush=True,
        )
        bad |= r.misbehaved(args.slow)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
