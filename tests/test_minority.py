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
from recorded import script

import theorems
from ncverify import verify
from ncverify.model.problem import Problem
from ncverify.testing import assert_predicted_point_is_stationary
from ncverify.verify import Settings
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
        # in this process (the page's commands run as a user runs them, below): the claim's
        # thresholds, which depend on the counts and lambda_b only, are located once
        report = verify(CLAIM, issue_instance(lam), settings=Settings(restarts=2))
        assert report.verdict == "certified", (lam, report.verdict)
        assert report.prediction.geometry == f"minority columns {expected}"


def test_each_phase_of_the_issue_instance_is_certified() -> None:
    """The theory page's commands, verbatim: certified, in the phase the page names, with the
    convex-dual bound meeting the structured point's value."""
    block = re.findall(r"```bash\n(.*?)```", PAGE.read_text(), flags=re.S)[0]
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


# ---- at depth: what the search finds (docs/theory/minority.md#depth) ---------------------------
DEPTH = script("minority_depth")
RECORDED = json.loads((PAGE.parent / "minority-depth.json").read_text())


def _rows(depth: int) -> list[dict]:
    return [r for r in RECORDED if r["depth"] == depth]


def test_the_depth_record_covers_the_scripts_grid() -> None:
    grid = [(d, lam) for d in DEPTH.DEPTHS for lam in DEPTH.LAMBDAS]
    assert [(r["depth"], r["lambda"]) for r in RECORDED] == grid
    assert all(r["phase"] == DEPTH.phase(r["spread"], r["size"]) for r in RECORDED)


def test_at_one_layer_the_search_finds_the_certified_phases() -> None:
    """Every one-layer grid point more than 2 % from a located threshold: the search's best end
    has the phase the claim's convex programs decide."""
    phase = CLAIM.closed_form(issue_instance("0.016")).phase
    thresholds = (phase.quantity("s_tied").value, phase.quantity("s_zero").value)
    for row in _rows(1):
        lam = float(row["lambda"])
        if any(abs(lam / t - 1) < 0.02 for t in thresholds):
            continue
        assert row["phase"] == phase_at(issue_instance(row["lambda"]), lam), row


def test_the_pages_sentences_about_depth_hold_in_the_record() -> None:
    """At depth 2 and 3 the minority columns vanish at a smaller lambda than at one layer, and
    at the last distinct point their spread is large (above 0.5), where at one layer it is
    small (below 0.1): a jump, not a gradual merging."""

    def first_zero(depth: int) -> float:
        return min(float(r["lambda"]) for r in _rows(depth) if r["phase"] == "zero")

    def last_spread(depth: int) -> float:
        return [r for r in _rows(depth) if r["phase"] == "distinct"][-1]["spread"]

    assert first_zero(2) < first_zero(1) and first_zero(3) < first_zero(1)
    assert last_spread(1) < 0.1 and last_spread(2) > 0.5 and last_spread(3) > 0.5


@pytest.mark.heavy  # six batched searches
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_the_search_finds_the_recorded_phase_on_either_side_of_the_jump(depth: int) -> None:
    rows = _rows(depth)
    last = max(i for i, r in enumerate(rows) if r["phase"] == "distinct")
    for row in rows[last : last + 2]:
        again = DEPTH.record(depth, row["lambda"])
        assert again["phase"] == row["phase"], (again, row)


def test_the_sweep_of_the_page_certifies_every_point(tmp_path: Path) -> None:
    """The page's sweep, verbatim, with its results and plot written aside (later options win):
    every point certified, each in the phase the claim names, and the plot written."""
    block = re.findall(r"```bash\n(.*?)```", PAGE.read_text(), flags=re.S)[1]
    argv = shlex.split(block.strip())
    assert argv[:3] == ["ncverify", "sweep", "ce-imbalanced-minority"]
    out, plot = tmp_path / "sweep.jsonl", tmp_path / "sweep.png"
    proc = subprocess.run(
        [NCVERIFY, *argv[1:], "--out", str(out), "--plot", str(plot), "--workers", "2",
         "--quiet"],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    points = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(points) == 9 and plot.stat().st_size > 0
    assert all(p["verdict"] == "certified" for p in points), proc.stdout
