"""The claim contract, over every registered claim: what the engine relies on, checked the same
way for each, so that a new claim module is held to it the moment it is registered.

Each claim's certificate kinds exist, its default instance builds and satisfies its hypotheses,
its predicted point has the claimed value and is stationary, its phase is typed, its derivation
cites tests and lemmas that exist, and a sweep of it draws its phase diagram.  (Its docs page is
built for every registered claim by `tests/test_docs.py`.)
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path

import pytest

import theorems
from ncverify.claim import Claim, Phase, Regime
from ncverify.evidence.certificates import CERTIFIERS
from ncverify.kinds import kind_of
from ncverify.model.problem import Problem
from ncverify.testing import assert_predicted_point_is_stationary

ROOT = Path(__file__).resolve().parents[1]
CLAIMS = sorted(theorems.registry())
AXES = {"lambda", "lambda_w", "lambda_h", "lambda_b"}


@pytest.fixture(params=CLAIMS)
def claim(request: pytest.FixtureRequest) -> Claim:
    return theorems.get(request.param)


def test_no_claim_subclasses_another() -> None:
    classes = {type(c) for c in theorems.registry().values()}
    for cls in classes:
        assert not any(issubclass(cls, other) for other in classes - {cls}), cls


def test_certificate_kinds_exist(claim: Claim) -> None:
    assert set(claim.certificates) <= set(CERTIFIERS), claim.certificates


def test_default_instance_builds_inside_the_hypotheses(claim: Claim) -> None:
    problem = claim.default_problem()
    assert isinstance(problem, Problem)
    assert claim.hypotheses(problem) == []


def test_predicted_point_is_stationary_with_the_claimed_value(claim: Claim) -> None:
    assert_predicted_point_is_stationary(claim, claim.default_problem())


def test_prediction_is_typed(claim: Claim) -> None:
    problem = claim.default_problem()
    pred = claim.closed_form(problem)
    # per-class predictions are optional (a claim about the value and a geometry has none),
    # but a claim that makes them makes one for every class
    assert len(pred.classes) in (0, problem.K)
    assert all(isinstance(c.regime, Regime) for c in pred.classes)
    assert isinstance(pred.phase, Phase)
    for b in pred.phase.boundaries:
        assert b.axis in AXES and b.change
        assert set(b.classes) <= set(range(problem.K))
        assert b.critical > 0 or math.isinf(b.critical)
    # the zero flag says what the gains say, where there are gains
    if pred.classes:
        assert pred.zero == all(c.gain_float == 0 for c in pred.classes)


def test_derivation_cites_what_exists(claim: Claim) -> None:
    for step in claim.derivation():
        if step.check == "sympy":
            assert step.verify_identity(), step.text
            continue
        path, _, name = step.reference.partition("::")
        source = ROOT / path
        assert source.exists(), step.reference
        assert re.search(rf"^\s*def {re.escape(name)}\(", source.read_text(), re.M), step.reference


def test_a_sweep_draws_its_phase_diagram(claim: Claim, tmp_path: Path) -> None:
    """A claim with a phase over lambda draws it; the max-margin problem has none (its lambdas
    only scale its value), and a sweep of it is refused in one sentence."""
    plot = tmp_path / "phase.png"
    d = claim.default_problem()
    lam = float(d.lambda_h)
    proc = subprocess.run(
        [
            str(Path(sys.executable).with_name("ncverify")),
            "sweep",
            claim.id,
            "--lambda-w",
            f"{lam / 4:.3g}:{lam * 4:.3g}:2:log",
            "--lambda-h",
            "tied",
            "--no-optimise",
            "--no-certificate",
            "--workers",
            "1",
            "--plot",
            str(plot),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if kind_of(claim.loss).no_lambda_phase:
        assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
        assert not plot.exists()
        return
    assert proc.returncode == 0, proc.stderr
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
