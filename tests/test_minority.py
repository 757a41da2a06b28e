"""`ce-imbalanced-minority`: the claim's convex programs decide the phase of minority collapse,
its thresholds separate certified checks of neighbouring phases, and the issue's instance is
certified in each phase as the theory page's commands run it."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import theorems
from ncverify.model.problem import Problem
from ncverify.testing import assert_predicted_point_is_stationary
from theorems.ce_imbalanced_minority import class_program, minority_classes, phase_at

NCVERIFY = str(Path(sys.executable).with_name("ncverify"))
CLAIM = theorems.get("ce-imbalanced-minority")
PAGE = Path(__file__).resolve().parents[1] / "docs" / "theory" / "minority.md"


def issue_instance(lam: str) -> Problem:
    return Problem.build(
        counts="100,100,10,10", depth=1, width=4, lambda_w=lam, lambda_h=lam, lambda_b="0.02",
        loss="ce",
    )  # fmt: skip


def check(argv: list[str]) -> tuple[int, dict]:
    proc = subprocess.run(
        [NCVERIFY, *argv, "--json", "-", "--quiet"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    return proc.returncode, json.loads(proc.stdout)


def test_the_groups_are_two_counts_with_at_least_two_small_classes() -> None:
    assert minority_classes(issue_instance("0.016")) == (2, 3)
    three = Problem.build(counts="100,50,10,10", depth=1, width=4, loss="ce")
    lone = Problem.build(counts="100,100,100,10", depth=1, width=4, loss="ce")
    assert minority_classes(three) is None and minority_classes(lone) is None
    assert CLAIM.hypotheses(three) and CLAIM.hypotheses(lone)


@pytest.mark.parametrize(("lam", "tied", "zero"), [("0.012", False, False),
                                                    ("0.016", True, False),
                                                    ("0.025", True, True)])  # fmt: skip
def test_the_tied_program_meets_the_free_one_exactly_in_its_phase(
    lam: str, tied: bool, zero: bool
) -> None:
    """A constrained program is never below the free one; it meets it exactly where the
    minimiser has the structure, and costs a visible amount where it has not."""
    problem = issue_instance(lam)
    s = float(lam)
    free, a, _ = class_program(problem, s, "distinct")
    for structure, meets in (("tied", tied), ("zero", zero)):
        cost = class_program(problem, s, structure)[0] - free
        assert cost >= -1e-7 * abs(free)
        assert (cost <= 1e-7 * abs(free)) == meets, (structure, cost)
    # the free minimiser shows the same: its minority columns are equal (and zero) or not
    columns = a[:, [2, 3]] / np.sqrt(10)
    spread = np.linalg.norm(columns[:, 0] - columns[:, 1]) / np.linalg.norm(a)
    assert (spread < 1e-4) == tied
    assert (np.linalg.norm(columns) / np.linalg.norm(a) < 1e-4) == zero


def test_the_phases_come_in_order_with_the_located_thresholds() -> None:
    """2 % on either side of each located threshold, the checks are certified in the phases on
    either side of it."""
    phase = CLAIM.closed_form(issue_instance("0.016")).phase
    s1, s2 = phase.quantity("s_tied").value, phase.quantity("s_zero").value
    assert s1 < 0.016 < s2
    for s, expected in ((0.98 * s1, "distinct"), (1.02 * s1, "tied"), (0.98 * s2, "tied"),
                        (1.02 * s2, "zero")):  # fmt: skip
        lam = f"{s:.8g}"
        assert phase_at(issue_instance(lam), float(lam)) == expected
        code, report = check(["check", "ce-imbalanced-minority", "--counts", "100,100,10,10",
                              "--depth", "1", "--width", "4", "--lambda-w", lam, "--lambda-h",
                              lam, "--lambda-b", "0.02"])  # fmt: skip
        assert code == 0 and report["verdict"] == "certified", (lam, report["verdict"])
        assert report["prediction"]["geometry"] == f"minority columns {expected}"


def test_each_phase_of_the_issue_instance_is_certified() -> None:
    """The theory page's commands, verbatim: certified, in the phase the page names, with the
    convex-dual bound meeting the structured point's value."""
    (block,) = re.findall(r"```bash\n(.*?)```", PAGE.read_text(), flags=re.S)
    commands = [shlex.split(line) for line in block.strip().splitlines()]
    assert len(commands) == 3
    for argv, expected in zip(commands, ("distinct", "tied", "zero"), strict=True):
        assert argv[:2] == ["ncverify", "check"]
        code, report = check(argv[1:])
        assert code == 0 and report["verdict"] == "certified", report["verdict"]
        assert report["prediction"]["geometry"] == f"minority columns {expected}"
        cert, claimed = report["certificate"], report["prediction"]["objective"]
        assert cert["kind"] == "convex-dual" and cert["rigorous"] and cert["exact"]
        assert cert["bound"] <= claimed <= cert["bound"] * (1 + report["tolerances"]["certificate"])


def test_predict_shows_both_thresholds() -> None:
    proc = subprocess.run(
        [NCVERIFY, "predict", "ce-imbalanced-minority", "--counts", "100,100,10,10", "--width",
         "4", "--lambda-w", "0.016", "--lambda-h", "0.016", "--lambda-b", "0.02"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "the minority columns coincide beyond it" in proc.stdout
    assert "the minority columns vanish beyond it" in proc.stdout


@pytest.mark.parametrize("lam", ["0.012", "0.016", "0.025"])
def test_predicted_point_has_the_claimed_value(lam: str) -> None:
    assert_predicted_point_is_stationary(CLAIM, issue_instance(lam))


def test_a_probe_at_depth_says_the_claim_predicts_nothing() -> None:
    code, report = check(["check", "ce-imbalanced-minority", "--counts", "100,100,10,10",
                          "--depth", "2", "--width", "4", "--probe"])  # fmt: skip
    assert code == 4 and report["verdict"] == "not-applicable"
    assert any("predicts nothing" in note for note in report["notes"])
