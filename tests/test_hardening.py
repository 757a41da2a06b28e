"""Regressions of the hardening issue, each run as a user runs it: the installed `ncverify`
script (or `python` on a user's script) in a subprocess, with its real exit code and output.

1. `check --all` (the README's main command) printed its table only after crashing in the
   summary; `--all --json FILE` wrote nothing.
3. An internal error exited 3, the code of `inconclusive`.
4. Output paths were checked only after the computation; a sweep whose scheduler could not be
   reached left an empty results file that blocked the rerun.
5. `recheck` of an empty file exited 130 ("interrupted") without a message.
6. A claim whose predicted point cannot be built crashed `verify` instead of being refuted.
7. The README's pytest example failed with hypothesis' `DeadlineExceeded` outside this project.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import theorems

BIN = Path(sys.executable).parent
SCRIPT = BIN / "ncverify"
ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--counts", "5,5,5", "--depth", "2", "--width", "4", "--restarts", "2"]
INTERNAL_ERROR = 70  # docs/verdicts.md: "70 internal error"


def ncverify(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, timeout=600, cwd=cwd, check=False
    )


def python(code: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=cwd,
        check=False,
    )


def one_sentence(proc: subprocess.CompletedProcess[str], code: int, word: str) -> None:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == code, (proc.returncode, proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert word.lower() in lines[0].lower(), lines[0]


# ---- 1 ------------------------------------------------------------------------------------------
@pytest.mark.heavy  # every claim's default check (the README's main command runs it in CI too)
def test_check_all_prints_its_table_and_writes_every_report(tmp_path: Path) -> None:
    target = tmp_path / "all.json"
    # few runs and no batched search: the table and the reports are the subject here (the
    # README's main command runs `check --all` with the defaults)
    proc = ncverify(
        "check", "--all", "--restarts", "2", "--search-starts", "0", "--json", str(target)
    )
    assert proc.returncode == 0, proc.stderr
    registry = theorems.registry()
    for claim_id in registry:  # one row per claim in the summary table
        assert claim_id in proc.stdout
    reports = json.loads(target.read_text())
    assert [r["claim"] for r in reports] == list(registry)
    for report, claim in zip(reports, registry.values(), strict=True):
        assert report["schema"] == "ncverify.report/6"
        default = claim.default_problem()
        assert report["problem"]["counts"] == list(default.counts)
        assert report["verdict"] in ("certified", "consistent", "refuted")


def test_check_all_refuses_problem_options() -> None:
    one_sentence(ncverify("check", "--all", "--depth", "2"), 2, "--all")


# ---- 3 ------------------------------------------------------------------------------------------
def test_an_internal_error_has_its_own_exit_code(tmp_path: Path) -> None:
    # a user's script whose verifier breaks: the console entry point must not say "inconclusive"
    proc = python(
        """
        import importlib
        import sys

        def broken(*args, **kwargs):
            raise RuntimeError("simulated bug")

        importlib.import_module("ncverify.verify").verify = broken
        sys.argv = ["ncverify", "check", "mse-balanced-biasfree", "--counts", "5,5"]
        from ncverify.app.cli import main
        main()
        """
    )
    one_sentence(proc, INTERNAL_ERROR, "internal error")
    assert "simulated bug" in proc.stderr


# ---- 4 ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("option", "make", "word"),
    [
        ("--json", lambda d: str(d / "no-such-folder" / "r.json"), "folder"),
        ("--json", lambda d: str(d), "folder"),
        ("--save-counterexample", lambda d: str(d / "plain-file"), "file"),
    ],
    ids=["json-missing-folder", "json-is-a-folder", "counterexample-is-a-file"],
)
def test_output_paths_are_checked_before_the_computation(
    tmp_path: Path, option: str, make, word: str
) -> None:  # noqa: ANN001
    (tmp_path / "plain-file").write_text("not a folder")
    proc = ncverify("check", "mse-balanced-biasfree", *SMALL, option, make(tmp_path))
    one_sentence(proc, 2, word)
    assert proc.stdout == ""  # no report: nothing was computed


def test_an_unwritable_counterexample_folder_is_bad_input(tmp_path: Path) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):  # root ignores permissions: use a path under a file
            target = str(tmp_path / "plain-file" / "sub")
            (tmp_path / "plain-file").write_text("x")
        else:
            target = str(locked / "sub")
        proc = ncverify("check", "mse-balanced-biasfree", *SMALL, "--save-counterexample", target)
    finally:
        locked.chmod(0o700)
    one_sentence(proc, 2, "counterexample folder")


def test_an_unreachable_scheduler_leaves_no_results_file(tmp_path: Path) -> None:
    out = tmp_path / "points.jsonl"
    args = ["sweep", "mse-balanced-biasfree", *SMALL, "--lambda-w", "1e-3:1e-2:2:log"]
    proc = ncverify(*args, "--scheduler", "tcp://127.0.0.1:9", "--out", str(out))
    one_sentence(proc, 2, "scheduler")
    assert not out.exists()
    # the rerun with a local cluster is not blocked by a leftover file
    proc = ncverify(*args, "--workers", "1", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert len(out.read_text().splitlines()) == 2


def test_the_json_report_is_written_whole(tmp_path: Path) -> None:
    target = tmp_path / "r.json"
    target.write_text("old contents")
    proc = ncverify("check", "mse-balanced-biasfree", *SMALL, "--json", str(target))
    assert proc.returncode == 0, proc.stderr
    assert json.loads(target.read_text())["claim"] == "mse-balanced-biasfree"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]  # no temporary left


# ---- 5 ------------------------------------------------------------------------------------------
def test_recheck_of_an_empty_file_is_bad_input(tmp_path: Path) -> None:
    empty = tmp_path / "empty.npz"
    empty.write_bytes(b"")
    one_sentence(ncverify("recheck", str(empty)), 2, "not an ncverify counterexample file")


# ---- 6 ------------------------------------------------------------------------------------------
def test_a_prediction_that_cannot_be_built_is_refuted() -> None:
    # a wrong variant: the orthogonal frame keeps all K classes alive even where the bottleneck
    # R < K allows only R of them, so its point cannot be built
    proc = python(
        """
        from ncverify import Problem, verify
        from ncverify.model.factorisations import balanced_layers
        import numpy as np
        import theorems

        base = theorems.get("mse-balanced-biasfree")

        class AllAlive(type(base)):
            id = "all-alive-variant"

            def minimiser(self, problem, backend):
                k = problem.K
                return balanced_layers(problem, np.eye(k), np.ones(k), np.eye(k), None)

        problem = Problem.build(counts="4,4,4,4", depth=2, widths="3,3", lambda_w="1e-3",
                                lambda_h="1e-3")
        report = verify(AllAlive(), problem)
        print(report.verdict)
        print([c.detail for c in report.checks if c.passed is False][0])
        """
    )
    assert proc.returncode == 0, proc.stderr
    verdict, detail = proc.stdout.strip().splitlines()
    assert verdict == "refuted"
    assert "cannot be built" in detail and "bottleneck" in detail


# ---- 7 ------------------------------------------------------------------------------------------
def readme_blocks(language: str) -> list[str]:
    text = (ROOT / "README.md").read_text()
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


def test_the_readme_pytest_example_passes_in_a_users_project(tmp_path: Path) -> None:
    snippet = next(b for b in readme_blocks("python") if "assert_claim_holds" in b)
    (tmp_path / "test_mine.py").write_text(snippet)
    # a user's project: none of this repository's conftest or hypothesis profiles
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "test_mine.py"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env={k: v for k, v in os.environ.items() if k != "HYPOTHESIS_PROFILE"},
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "1 passed" in proc.stdout
