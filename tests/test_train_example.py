"""The training example of docs/measure.md, run as a user runs it: its two commands, verbatim,
in subprocesses.  The run trains (`examples/train_digits.py`), its NC1 falls over training, and
`ncverify measure` reads the head it saved."""

from __future__ import annotations

import importlib.util
import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
HAS_TORCH = importlib.util.find_spec("torch") is not None
pytestmark = pytest.mark.heavy  # each trains a network (10 to 20 s)
PAGE = (ROOT / "docs" / "measure.md").read_text(encoding="utf-8")


def commands() -> list[list[str]]:
    """The page's bash block, one argv per command; `.venv/bin/` is this interpreter's, and the
    example script is the repository's."""
    (block,) = re.findall(r"```bash\n(.*?)```", PAGE, flags=re.S)
    out = []
    for line in block.replace("\\\n", " ").splitlines():
        argv = shlex.split(line)
        argv[0] = str(BIN / argv[0].removeprefix(".venv/bin/"))
        out.append([str(ROOT / a) if a.startswith("examples/") else a for a in argv])
    return out


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed (the train extra)")
def test_the_training_example_collapses_and_measure_reads_its_head(tmp_path: Path) -> None:
    train, measure = commands()
    assert Path(train[1]).name == "train_digits.py" and measure[1] == "measure"
    run = subprocess.run(train, capture_output=True, text=True, cwd=tmp_path, check=False)
    assert run.returncode == 0, run.stderr
    out = tmp_path / train[train.index("--out") + 1]
    summary = json.loads((out / "metrics.json").read_text())
    first, last = summary["history"][0]["nc1"], summary["history"][-1]["nc1"]
    assert len(first) == len(last) == summary["depth"]  # one NC1 per head layer
    # within-class variability falls by at least an order of magnitude over the run
    assert all(b <= a / 10 for a, b in zip(first, last, strict=True)), (first, last)
    measured = subprocess.run(
        [*measure, "--json", "-"], capture_output=True, text=True, cwd=tmp_path, check=False
    )
    # a prediction (0) or, for a head too far from stationary, a fit that allows none (3)
    assert measured.returncode in (0, 3), measured.stderr
    data = json.loads(measured.stdout)
    assert data["counts"] == summary["counts"]
    # the fit is a least-squares one: lambda = 0 already leaves a relative residual of 1
    assert 0 <= data["lambda_h"]["residual"] <= 1 + 1e-12


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed (the train extra)")
def test_the_training_page_is_regenerated_by_its_script(tmp_path: Path) -> None:
    # a short version of examples/theory_meets_training.py, written outside docs/
    page = tmp_path / "training.md"
    run = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "theory_meets_training.py")]
        + ["--epochs", "200", "--output", str(page)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    text = page.read_text()
    for heading in ("## Balanced classes", "## Imbalanced classes", "## Calibrate on one run"):
        assert heading in text
    assert (tmp_path / "training" / "nc1.png").stat().st_size > 0
    assert (tmp_path / "training" / "gains.png").stat().st_size > 0


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed (the train extra)")
def test_a_short_mnist1d_run_collapses(tmp_path: Path) -> None:
    """MNIST-1D, generated procedurally (no download): NC1 falls by an order of magnitude."""
    out = tmp_path / "mnist1d"
    run = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "train_digits.py"), "--dataset", "mnist1d"]
        + ["--epochs", "600", "--every", "100", "--out", str(out)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    summary = json.loads((out / "metrics.json").read_text())
    assert sum(summary["counts"]) == 4000 and len(summary["counts"]) == 10
    first, last = summary["history"][0]["nc1"][0], summary["history"][-1]["nc1"][0]
    assert last <= first / 10, (first, last)
