"""Run malformed `ncverify` invocations as a user would and check how each one fails.

Each must end with its documented exit code (2: bad input) and exactly one sentence on stderr,
no traceback, and — what a test may not check, so this script does — within 10 seconds and
under 1 GB resident, that is before any long computation or large allocation.  The list is also imported by `tests/test_malformed.py`, which
checks everything but the time.

    python scripts/malformed_invocations.py          # prints a table; exit 1 if any fails
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

LIMIT_S = 10.0
LIMIT_MB = 1024.0  # peak resident memory of the ncverify process
BAD_INPUT = 2
CLAIM = "mse-balanced-biasfree"
SMALL = ["--counts", "5,5,5", "--depth", "2", "--width", "4", "--restarts", "2"]


@dataclass(frozen=True)
class Invocation:
    name: str
    args: tuple[str, ...]  # `{tmp}` is replaced by a scratch folder holding the files below
    word: str  # a word the one-sentence message must contain (case-insensitive)
    code: int = BAD_INPUT


def _check(*extra: str) -> tuple[str, ...]:
    return ("check", CLAIM, *SMALL, *extra)


def _sweep(*extra: str) -> tuple[str, ...]:
    return ("sweep", CLAIM, *SMALL, *extra)


def _measure(file: str, *extra: str) -> tuple[str, ...]:
    return ("measure", file, "--claim", CLAIM, "--lambda-w", "1e-2", *extra)


INVOCATIONS: tuple[Invocation, ...] = (
    Invocation("a count below 1", ("check", CLAIM, "--counts", "10,0,10"), "count"),
    Invocation("one class", ("check", CLAIM, "--classes", "1", "--samples", "5"), "class"),
    Invocation("depth 0", ("check", CLAIM, "--counts", "5,5", "--depth", "0"), "depth"),
    Invocation("width 0", ("check", CLAIM, "--counts", "5,5", "--width", "0"), "width"),
    Invocation(
        "negative lambda", ("check", CLAIM, "--counts", "5,5", "--lambda-w", "-1"), "lambda"
    ),
    Invocation("NaN lambda", ("check", CLAIM, "--counts", "5,5", "--lambda-h", "nan"), "lambda"),
    Invocation(
        "infinite lambda", ("check", CLAIM, "--counts", "5,5", "--lambda-w", "inf"), "lambda"
    ),
    Invocation("empty list entry", ("check", CLAIM, "--counts", "10,,10"), "counts"),
    Invocation("letters for counts", ("check", CLAIM, "--counts", "a,b"), "counts"),
    Invocation(
        "too many layer lambdas",
        ("check", CLAIM, "--counts", "5,5", "--depth", "2", "--lambda-w", "1e-3,1e-3,1e-3"),
        "lambda",
    ),
    Invocation(
        "widths of the wrong length",
        ("check", CLAIM, "--counts", "5,5", "--depth", "3", "--widths", "4,4"),
        "width",
    ),
    Invocation("unknown claim", ("check", "no-such-claim", "--counts", "5,5"), "no-such-claim"),
    Invocation("no claim", ("check",), "claim"),
    Invocation("a claim and --all", ("check", CLAIM, "--all"), "--all"),
    Invocation("--all with problem options", ("check", "--all", "--depth", "2"), "--all"),
    Invocation("unknown backend", _check("--backend", "abacus"), "backend"),
    Invocation("unknown dtype", _check("--dtype", "float16"), "dtype"),
    Invocation("restarts not a number", _check("--restarts", "many"), "restarts"),
    Invocation("seed not a number", _check("--seed", "abc"), "seed"),
    Invocation("negative escalate", _check("--escalate", "-1"), "escalate"),
    Invocation("zero start scale", _check("--scales", "0,1"), "scales"),
    Invocation("unknown option", _check("--colour"), "colour"),
    Invocation("JSON into a missing folder", _check("--json", "{tmp}/missing/r.json"), "folder"),
    Invocation("JSON onto a folder", _check("--json", "{tmp}"), "folder"),
    Invocation(
        "counterexamples into a file", _check("--save-counterexample", "{tmp}/file.txt"), "file"
    ),
    Invocation("recheck of a missing file", ("recheck", "{tmp}/missing.npz"), "no such file"),
    Invocation("recheck of an empty file", ("recheck", "{tmp}/empty.npz"), "not an ncverify"),
    Invocation("recheck of a text file", ("recheck", "{tmp}/file.txt"), "not an ncverify"),
    Invocation("show an unknown claim", ("show", "no-such-claim"), "no-such-claim"),
    Invocation("derive in an unknown format", ("derive", CLAIM, "--format", "pdf"), "format"),
    Invocation("sweep: a range of no points", _sweep("--lambda-w", "1e-3:1e-2:0"), "lambda"),
    Invocation("sweep: plot format", _sweep("--plot", "{tmp}/p.gif"), "plot"),
    Invocation("sweep: zero workers", _sweep("--workers", "0"), "workers"),
    Invocation("sweep: --resume without --out", _sweep("--resume"), "--out"),
    Invocation(
        "weights parameterisation for cross-entropy",
        ("check", "ce-balanced", "--parameterisation", "weights"),
        "MSE only",
    ),
    Invocation(
        "a reduction with a ReLU",
        _check("--activation", "relu", "--parameterisation", "class-means", "--probe"),
        "linear layers only",
    ),
    Invocation("unknown activation", _check("--activation", "tanh"), "activation"),
    Invocation("measure: a missing file", _measure("{tmp}/missing.npz"), "no such file"),
    Invocation("measure: an empty file", _measure("{tmp}/empty.npz"), "not a NumPy"),
    # "not a PyTorch file" with torch installed, "needs torch" without: bad input either way
    Invocation("measure: a text file as PyTorch", _measure("{tmp}/file.pt"), "torch"),
    Invocation("measure: no --claim", ("measure", "{tmp}/head.npz", "--lambda-w", "1e-2"), "claim"),
    Invocation("measure: no --lambda-w", ("measure", "{tmp}/head.npz", "--claim", CLAIM), "lambda"),
    Invocation("measure: a bad lambda", _measure("{tmp}/head.npz", "--lambda-h", "-1"), "lambda"),
    Invocation(
        "measure: a layer name not in the file",
        _measure("{tmp}/head.npz", "--layer-keys", "W1,W9"),
        "W9",
    ),
    Invocation(
        "measure: --lambda-b without a bias", _measure("{tmp}/head.npz", "--lambda-b", "1"), "bias"
    ),
    # hostile sizes and numbers: refused before any allocation (issue 27)
    Invocation("a billion restarts", _check("--restarts", "1000000000"), "restarts"),
    Invocation(
        "a billion classes of a billion",
        ("check", CLAIM, "--classes", "1000000000", "--samples", "1000000000"),
        "classes",
    ),
    Invocation(
        "depth a million", ("check", CLAIM, "--counts", "5,5", "--depth", "1000000"), "depth"
    ),
    Invocation(
        "a billion-digit lambda",
        ("check", CLAIM, "--counts", "5,5", "--lambda-h", "1e999999999"),
        "lambda_H",
    ),
    Invocation(
        "lambda 1e400", ("check", CLAIM, "--counts", "5,5", "--lambda-h", "1e400"), "lambda_H"
    ),
    Invocation(
        "lambda 1e-400", ("check", CLAIM, "--counts", "5,5", "--lambda-h", "1e-400"), "lambda_H"
    ),
    Invocation("a negative seed", _check("--seed", "-1"), "seed"),
    Invocation(
        "width 10^12", ("check", CLAIM, "--counts", "5,5", "--width", "1000000000000"), "memory"
    ),
    Invocation(
        "10^30 classes", ("check", CLAIM, "--classes", "1" + "0" * 30, "--samples", "2"), "classes"
    ),
    Invocation(
        "sweep: a billion grid points",
        _sweep("--lambda-w", "1e-3:2e-2:1000000000:log"),
        "lambda-w",
    ),
    Invocation(
        "predict: a million classes",
        ("predict", CLAIM, "--classes", "1000000", "--samples", "1"),
        "classes",
    ),
    Invocation("measure: a pickle in an .npz", _measure("{tmp}/pickle.npz"), "pickle"),
    Invocation("recheck of a file with a NaN", ("recheck", "{tmp}/nan.npz"), "finite"),
    Invocation("measure: plot format", _measure("{tmp}/head.npz", "--plot", "{tmp}/g.xyz"), "plot"),
    Invocation(
        "sweep: unreachable scheduler",
        _sweep("--scheduler", "tcp://127.0.0.1:9", "--out", "{tmp}/points.jsonl"),
        "scheduler",
    ),
)


@dataclass(frozen=True)
class Outcome:
    invocation: Invocation
    code: int
    stderr: str
    stdout: str
    seconds: float
    peak_mb: float = 0.0

    def problems(self, with_time: bool = True) -> list[str]:
        inv = self.invocation
        lines = [line for line in self.stderr.splitlines() if line.strip()]
        found = []
        if self.code != inv.code:
            found.append(f"exit code {self.code}, expected {inv.code}")
        if len(lines) != 1:
            found.append(f"{len(lines)} lines on stderr, expected one")
        if "Traceback" in self.stderr or "Traceback" in self.stdout:
            found.append("a traceback")
        if lines and inv.word.lower() not in lines[0].lower():
            found.append(f"the message does not mention {inv.word!r}")
        if with_time and self.seconds > LIMIT_S:
            found.append(f"took {self.seconds:.1f} s, more than {LIMIT_S:.0f} s")
        if with_time and self.peak_mb > LIMIT_MB:
            found.append(f"peaked at {self.peak_mb:.0f} MB resident, more than {LIMIT_MB:.0f} MB")
        return found


def scratch_folder() -> Path:
    """A folder with the files the invocations name: an empty `.npz`, a text file (also as
    `.pt`) and a small well-formed trained head (two classes, two layers, no bias)."""
    import numpy as np

    tmp = Path(tempfile.mkdtemp(prefix="ncverify-malformed-"))
    (tmp / "empty.npz").write_bytes(b"")
    (tmp / "file.txt").write_text("not a counterexample\n")
    (tmp / "file.pt").write_text("not a tensor file\n")
    np.savez(tmp / "pickle.npz", features=np.array([{"a": 1}], dtype=object))
    _nan_counterexample(tmp / "nan.npz")
    rng = np.random.default_rng(0)
    np.savez(
        tmp / "head.npz",
        features=rng.normal(size=(6, 3)),
        labels=np.array([0, 1, 2, 0, 1, 2]),
        W1=rng.normal(size=(3, 3)),
        W2=rng.normal(size=(3, 3)),
    )
    return tmp


def _nan_counterexample(path: Path) -> None:
    """A counterexample file in the saved format whose W1 holds a NaN: well formed up to the
    arrays' values, so that what refuses it is the check that every entry is finite."""
    import json

    import numpy as np

    from ncverify.model.problem import Problem
    from ncverify.report import COUNTEREXAMPLE_SCHEMA

    problem = Problem.build(counts="2,2", depth=1, width=2, lambda_w="1e-2", lambda_h="1e-2")
    meta = {
        "schema": COUNTEREXAMPLE_SCHEMA,
        "ncverify": "0.1.0",
        "claim": CLAIM,
        "claim_origin": {"kind": "built-in", "ncverify": "0.1.0"},
        "problem": problem.describe(),
        "objective": 0.1,
        "claimed": 0.2,
        "gap": 0.1,
        "error_bound": 1e-16,
        "origin": "a forged file",
        "certificate": None,
    }
    w1 = np.array([[np.nan, 0.0], [0.0, 1.0]])
    np.savez_compressed(path, meta=np.array(json.dumps(meta)), W1=w1, H=np.ones((2, 4)))


def run(inv: Invocation, tmp: Path, script: str | None = None) -> Outcome:
    script = script or shutil.which("ncverify") or str(Path(sys.executable).with_name("ncverify"))
    args = [a.replace("{tmp}", str(tmp)) for a in inv.args]
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        [script, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    guard = threading.Timer(120, proc.kill)  # a hang guard, not a speed check
    guard.start()
    with ThreadPoolExecutor(2) as pool:  # drain both pipes while the process runs
        out, err = pool.submit(proc.stdout.read), pool.submit(proc.stderr.read)
        # wait4 gives this one child's resource use (its peak resident set, in kB on Linux)
        _, status, usage = os.wait4(proc.pid, 0)
        stdout, stderr = out.result(), err.result()
    guard.cancel()
    proc.returncode = os.waitstatus_to_exitcode(status)
    seconds = time.perf_counter() - t0
    return Outcome(inv, proc.returncode, stderr, stdout, seconds, usage.ru_maxrss / 1024)


def main() -> int:
    tmp = scratch_folder()
    failures = 0
    try:
        print(f"{'invocation':<36} {'exit':>4} {'s':>5} {'MB':>5}  message")
        for inv in INVOCATIONS:
            outcome = run(inv, tmp)
            problems = outcome.problems()
            failures += bool(problems)
            first = (outcome.stderr.strip().splitlines() or [""])[0]
            mark = "FAIL " + "; ".join(problems) if problems else first
            print(
                f"{inv.name:<36} {outcome.code:>4} {outcome.seconds:>5.1f} "
                f"{outcome.peak_mb:>5.0f}  {mark}"
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"{len(INVOCATIONS) - failures} of {len(INVOCATIONS)} fail as documented.")
    return 1 if failures else 0


if __name__ == "__main__":
    os.environ.setdefault("NCVERIFY_JOBS", "1")
    sys.exit(main())
