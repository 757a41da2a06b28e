"""A fuzzer of the command line: hypothesis draws argument lists for every command (huge and
negative integers, extreme decimals, odd paths, unknown options) and each runs as a user runs it,
in a subprocess, under an address-space limit and a generous hang guard.

What must hold for every argument list: the process ends by itself with a documented exit code
(0 to 4, never 70, the code of an internal error) and prints no traceback; bad input (2) is one
line on stderr.  A case killed by the memory limit or by the guard fails the test.  The guard is
not a speed check: it only tells a hang from an end.

The suite runs a small profile; `NCVERIFY_FUZZ_EXAMPLES=200 pytest tests/test_cli_fuzz.py` runs a
large one (examples per command).
"""

from __future__ import annotations

import importlib.util
import os
import resource
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SCRIPT = str(Path(sys.executable).with_name("ncverify"))
_MALFORMED = Path(__file__).resolve().parents[1] / "scripts" / "malformed_invocations.py"
_spec = importlib.util.spec_from_file_location("malformed_invocations", _MALFORMED)
malformed = importlib.util.module_from_spec(_spec)
sys.modules["malformed_invocations"] = malformed  # dataclasses look their module up
_spec.loader.exec_module(malformed)
#: Address space of one case: far above what a refused or small check needs (about 1 GB with
#: numpy, sympy and cvxpy loaded), far below what an unbounded allocation would reach.
ADDRESS_SPACE = 6 * 2**30
HANG_GUARD_S = 600
DOCUMENTED = {0, 1, 2, 3, 4}
EXAMPLES = int(os.environ.get("NCVERIFY_FUZZ_EXAMPLES", "3"))
CLAIM = "mse-balanced-biasfree"
#: A small valid instance that the drawn options override (click keeps an option's last value).
BASE = ["--counts", "3,3", "--depth", "1", "--width", "2", "--restarts", "1", "--escalate", "0"]


# ---- values ------------------------------------------------------------------------------------
def _integers() -> st.SearchStrategy[str]:
    """Small integers (valid or just not), or far beyond every limit, or not integers at all."""
    return st.one_of(
        st.integers(-3, 6).map(str),
        st.integers(10**5, 10**40).map(str),
        st.integers(-(10**40), -1).map(str),
        st.sampled_from(["", " ", "1e9", "0x10", "3.5", "١٢", "nan", "--", "1,2"]),
    )


def _decimals() -> st.SearchStrategy[str]:
    """Ordinary weight decays, or exponents far outside float64, or not numbers."""
    exponent = st.one_of(st.integers(-400, 400), st.integers(-(10**12), 10**12))
    return st.one_of(
        st.sampled_from(["1e-3", "5e-4", "0.01", "1/2000", "2"]),
        exponent.map(lambda e: f"1e{e}"),
        st.sampled_from(["0", "-1", "nan", "inf", "-inf", "1/0", "", "e", "1e", "0x1p-3"]),
        # any text a shell can pass (an argument holds no NUL and no lone surrogate)
        st.text(st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), max_size=6),
        st.integers(1, 3).map(lambda n: "9" * (150 * n)),  # long decimals
    )


def _lists() -> st.SearchStrategy[str]:
    return st.one_of(
        st.lists(st.integers(-2, 5), min_size=0, max_size=5).map(lambda v: ",".join(map(str, v))),
        st.sampled_from(["3,,3", ",", "a,b", "3;3", "10" + "0" * 40 + ",3"]),
    )


def _paths() -> st.SearchStrategy[str]:
    """Output or input paths: a folder, a missing folder, a device, odd names (no FIFO: writing
    to one without a reader blocks by design, as a shell redirection does)."""
    return st.sampled_from(
        [
            "{tmp}/out.json",
            "{tmp}",
            "{tmp}/missing/out.json",
            "/dev/null",
            "{tmp}/a file with spaces.png",
            "{tmp}/é.svg",
            "{tmp}/plot.xyz",
            "{tmp}/sock",
            "-",
        ]
    )


def _inputs() -> st.SearchStrategy[str]:
    return st.sampled_from(
        [
            "{tmp}/head.npz",
            "{tmp}/empty.npz",
            "{tmp}/file.txt",
            "{tmp}/pickle.npz",
            "{tmp}/missing.npz",
            "{tmp}",
            "/dev/null",
        ]
    )


UNKNOWN = st.sampled_from(["--colour", "--restart", "-x", "--lambda", "--json=", "--", "-"])
CLAIMS = st.sampled_from([CLAIM, "ce-balanced", "dnc-binary", "maxmargin-sel", "no-such", "", "é"])

PROBLEM = {
    "--counts": _lists(),
    "--classes": _integers(),
    "--samples": _integers(),
    "--depth": _integers(),
    "--width": _integers(),
    "--widths": _lists(),
    "--lambda-w": _decimals(),
    "--lambda-h": _decimals(),
    "--lambda-b": _decimals(),
    "--bias": st.sampled_from(["none", "free", "regularised", "both"]),
    "--loss": st.sampled_from(["mse", "ce", "max-margin", "hinge"]),
    "--activation": st.sampled_from(["linear", "relu", "tanh"]),
}
RUN = {
    "--restarts": _integers(),
    "--search-starts": _integers(),
    "--escalate": _integers(),
    "--seed": _integers(),
    "--scales": st.one_of(_decimals(), _lists()),
    "--parameterisation": st.sampled_from(["auto", "full", "weights", "class-means", "none"]),
    "--backend": st.sampled_from(["numpy", "abacus"]),
    "--dtype": st.sampled_from(["float64", "float32", "float16"]),
}
FLAGS = ["--probe", "--no-certificate", "--no-continuation", "--quiet", "--force"]


@st.composite
def _options(draw: st.DrawFn, table: dict[str, st.SearchStrategy[str]]) -> list[str]:
    names = draw(st.lists(st.sampled_from(sorted(table)), max_size=3, unique=True))
    args: list[str] = []
    for name in names:
        args += [name, draw(table[name])]
    return args


@st.composite
def _extras(draw: st.DrawFn, flags: list[str], outputs: list[str]) -> list[str]:
    args = list(draw(st.lists(st.sampled_from(flags), max_size=2, unique=True))) if flags else []
    for name in draw(st.lists(st.sampled_from(outputs), max_size=1)) if outputs else []:
        args += [name, draw(_paths())]
    if draw(st.booleans()) and draw(st.booleans()):
        args.append(draw(UNKNOWN))
    return args


def _command(name: str) -> st.SearchStrategy[list[str]]:
    """Argument lists of one command."""
    if name == "check":
        return st.builds(
            lambda c, p, r, e: ["check", c, *BASE, *p, *r, *e],
            CLAIMS,
            _options(PROBLEM),
            _options(RUN),
            _extras(FLAGS, ["--json", "--save-counterexample"]),
        )
    if name == "predict":
        return st.builds(
            lambda c, p, e: ["predict", c, *p, *e],
            CLAIMS,
            _options(PROBLEM),
            _extras([], ["--json"]),
        )
    if name == "sweep":
        grid = st.builds(lambda a, b, n: f"{a}:{b}:{n}", _decimals(), _decimals(), _integers())
        return st.builds(
            lambda c, g, p, e: ["sweep", c, *BASE, "--workers", "1", "--lambda-w", g, *p, *e],
            CLAIMS,
            grid,
            _options({k: v for k, v in PROBLEM.items() if k != "--lambda-w"}),
            _extras(["--no-certificate", "--quiet"], ["--out", "--plot"]),
        )
    if name == "recheck":
        return st.builds(lambda f, e: ["recheck", f, *e], _inputs(), _extras(["--json"], []))
    if name == "measure":
        measured = {"--lambda-w": _decimals(), "--lambda-h": _decimals(), **RUN}
        return st.builds(
            lambda f, c, p, e: ["measure", f, "--claim", c, *p, *e],
            _inputs(),
            CLAIMS,
            _options({k: measured[k] for k in ("--lambda-w", "--lambda-h")}),
            _extras([], ["--json", "--plot"]),
        )
    # list, show, derive: a claim (or none) and maybe a format or an unknown option
    return st.builds(
        lambda c, f, e: [name, *c, *f, *e],
        st.lists(CLAIMS, max_size=1),
        st.sampled_from([[], ["--format", "latex"], ["--format", "pdf"], ["--check"], ["--json"]]),
        _extras([], []),
    )


# ---- running a case ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def scratch() -> Iterator[Path]:
    """The files of `scripts/malformed_invocations.py` (an empty `.npz`, a text file, a pickle,
    a small trained head) and a unix socket."""
    import shutil
    import socket

    tmp = malformed.scratch_folder()
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tmp / "sock"))
    yield tmp
    sock.close()
    shutil.rmtree(tmp, ignore_errors=True)


def _limit_address_space() -> None:  # runs in the child before exec
    resource.setrlimit(resource.RLIMIT_AS, (ADDRESS_SPACE, ADDRESS_SPACE))


def run_case(args: list[str], tmp: Path) -> subprocess.CompletedProcess[str]:
    argv = [SCRIPT, *(a.replace("{tmp}", str(tmp)) for a in args)]
    env = {**os.environ, "NCVERIFY_JOBS": "1"}
    return subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=HANG_GUARD_S,
        check=False,
        env=env,
        preexec_fn=_limit_address_space,
        cwd=tmp,
    )


def assert_ends_as_documented(proc: subprocess.CompletedProcess[str]) -> None:
    shown = f"{proc.args}\nexit {proc.returncode}\n{proc.stderr[-2000:]}"
    assert proc.returncode in DOCUMENTED, shown  # a negative code: killed (memory limit)
    assert "Traceback" not in proc.stderr + proc.stdout, shown
    if proc.returncode == 2:
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), shown


COMMANDS = ["check", "predict", "sweep", "recheck", "measure", "list", "show", "derive"]


@pytest.mark.parametrize("command", COMMANDS)
def test_every_argument_list_ends_as_documented(command: str, scratch: Path) -> None:
    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        database=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    @given(_command(command))
    def case(args: list[str]) -> None:
        assert_ends_as_documented(run_case(args, scratch))

    case()


def test_the_guard_and_the_limit_would_catch_a_hang_and_an_abort(tmp_path: Path) -> None:
    """The harness itself: a process that allocates beyond the limit dies with no documented
    code, and one that sleeps past the guard raises; either fails a case."""
    hog = [sys.executable, "-c", "b = bytearray(8 * 2**30)"]
    proc = subprocess.run(
        hog, capture_output=True, text=True, preexec_fn=_limit_address_space, check=False
    )
    assert "MemoryError" in proc.stderr
    with pytest.raises(AssertionError):
        assert_ends_as_documented(proc)
    with pytest.raises(subprocess.TimeoutExpired):
        subprocess.run([sys.executable, "-c", "import time; time.sleep(5)"], timeout=0.5)
