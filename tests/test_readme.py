"""Every command and example of the README, run as a user runs it.

The set-up command, the test command, the extras' installs and the docs build are what
`.ci/run` itself runs verbatim; every other shell command is run here, in a scratch folder, by the
installed `ncverify` script (a subprocess with its real exit code), and every Python block is
executed in a fresh interpreter.
"""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text(encoding="utf-8")
BIN = Path(sys.executable).parent
# run by .ci/run itself: the set-up and test commands, installs, the docs build
RUN_BY_CI = ("python3 -m venv", "pip install", "-m pytest", "mkdocs ")


def _blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def _commands() -> list[str]:
    out = []
    for block in _blocks("bash"):
        for command in block.replace("\\\n", " ").splitlines():
            command = command.split("  #")[0].strip()
            if command and not any(marker in command for marker in RUN_BY_CI):
                out.append(command)
    return out


def test_the_readme_shows_commands() -> None:
    assert any(c.startswith(".venv/bin/ncverify check") for c in _commands())


@pytest.mark.parametrize(
    "command",
    # a sweep starts a Dask cluster and runs twenty checks: under the heavy marker
    [pytest.param(c, marks=pytest.mark.heavy) if " sweep " in c else c for c in _commands()],
)
def test_readme_command(command: str, tmp_path: Path) -> None:
    argv = shlex.split(command)
    assert argv[0].startswith(".venv/bin/"), command
    argv[0] = str(BIN / argv[0].removeprefix(".venv/bin/"))
    proc = subprocess.run(
        argv, capture_output=True, text=True, timeout=600, cwd=tmp_path, check=False
    )
    assert proc.returncode == 0, (command, proc.stderr[-2000:])
    assert "Traceback" not in proc.stderr
    for produced in re.findall(r"--(?:out|plot) (\S+)", command):
        assert (tmp_path / produced).stat().st_size > 0, produced


@pytest.mark.parametrize("block", _blocks("python"), ids=lambda b: b.splitlines()[0][:40])
def test_readme_python_block(block: str, tmp_path: Path) -> None:
    if "def test_" in block:  # a test for the user's own suite: run by pytest, as a user would
        (tmp_path / "test_readme_block.py").write_text(block)
        argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(tmp_path)]
    else:
        argv = [sys.executable, "-c", block]
    proc = subprocess.run(
        argv, capture_output=True, text=True, timeout=600, cwd=tmp_path, check=False
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    # `print(x)  # value`: the README promises that output
    for promised in re.findall(r"print\(.*\)\s+#\s*(\S+)", block):
        assert promised in proc.stdout, (promised, proc.stdout)
