"""The max-margin claim `maxmargin-sel` and its problem kind (`--loss max-margin`), as a user
checks them: the factorisation value of the lifted logits, one-layer values certified on the
issue's counts, the exact witnesses at depth refuting it (recheck agreeing in a fresh process),
what is said where nothing refutes it, and the refusals of what the problem has no meaning for."""

from __future__ import annotations

import json
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import theorems
from ncverify.model.exact import enclose_objective
from ncverify.model.max_margin import class_logits, lift_logits, min_margin
from ncverify.model.objective import Params
from ncverify.model.problem import Problem
from theorems._max_margin import witness

NCVERIFY = str(Path(sys.executable).with_name("ncverify"))
CLAIM = theorems.get("maxmargin-sel")


def ncverify(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([NCVERIFY, *args], capture_output=True, text=True, timeout=600)


def check(*args: str) -> tuple[int, dict]:
    proc = ncverify("check", "maxmargin-sel", *args, "--quiet", "--json", "-")
    assert proc.stdout, proc.stderr
    return proc.returncode, json.loads(proc.stdout)


@given(
    st.lists(st.integers(1, 30), min_size=2, max_size=5).map(tuple),
    st.integers(1, 3),
    st.sampled_from(["1", "1/2", "3"]),
    st.integers(0, 2**31 - 1),
)
@settings(max_examples=25, deadline=None)
def test_the_balanced_lift_has_the_factorisation_value(
    counts: tuple[int, ...], depth: int, lam: str, seed: int
) -> None:
    """For random logits at margin 1, the balanced lift reproduces them, and its weighted norms
    (written out here) are `((M+1)/2) P^{1/(M+1)} sum_i sigma_i(Z D)^q`."""
    k = len(counts)
    problem = Problem.build(
        counts=counts, depth=depth, width=k, lambda_w=lam, lambda_h="1", loss="max-margin"
    )
    rng = np.random.default_rng(seed)
    z = np.eye(k) + 0.3 * rng.standard_normal((k, k))
    if min_margin(z) <= 0:
        return
    z = z / min_margin(z)
    point = lift_logits(problem, z)
    assert np.allclose(class_logits(point, counts), z, atol=1e-10)
    norms = sum(float(Fraction(lam)) / 2 * float(np.sum(w**2)) for w in point.Ws)
    norms += float(np.sum(point.H**2)) / 2
    q = 2 / (depth + 1)
    s = np.linalg.svd(z * np.sqrt(counts)[None, :], compute_uv=False)
    expected = (depth + 1) / 2 * float(problem.lambda_product) ** (1 / (depth + 1)) * np.sum(s**q)
    assert norms == pytest.approx(expected, rel=1e-9)


def test_the_exact_value_rescales_to_margin_one() -> None:
    """The enclosure of a max-margin point is the regulariser of the point with its features
    divided by the exact smallest margin: doubling the features leaves it unchanged up to the
    rounding of the lift."""
    problem = CLAIM.default_problem()
    point = lift_logits(problem, np.eye(4) - 1 / 4)
    a = enclose_objective(problem, point)
    doubled = enclose_objective(problem, Params(point.Ws, 2 * point.H))
    assert abs(float(a.a) - float(doubled.a)) < 1e-12 * float(a.a)
    value = float(CLAIM.closed_form(problem).objective)
    assert float(a.a) <= value * (1 + 1e-12) and value * (1 - 1e-12) <= float(a.b)


@pytest.mark.parametrize(
    "counts", ["10,10,10,10", "50,10,10,10", "100,100,1,1", "300,100,20,5", "9,1,1,1,1"]
)
def test_one_layer_values_are_certified(counts: str) -> None:
    code, report = check("--counts", counts, "--depth", "1", "--width", "5", "--restarts", "4")
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["E1 objective"]["passed"] and checks["E1 KKT"]["passed"]
    assert checks["E3 certificate"]["passed"] and report["certificate"]["rigorous"]
    assert report["verdict"] == "certified" and code == 0
    assert report["geometry_evidence"] == "not-unique"  # the value, not the minimiser set


@pytest.mark.parametrize(("k", "depth"), [(6, 2), (7, 2), (4, 3), (5, 3)])
def test_the_witness_codes_refute_the_labels_and_recheck_agrees(
    k: int, depth: int, tmp_path: Path
) -> None:
    """Without the runs (`--no-optimise`) the claim's own exact codes decide: refuted, the
    certificate of the point exact, and `recheck` agrees in a fresh process."""
    assert witness(k, depth) is not None
    code, report = check(
        "--classes", str(k), "--samples", "10", "--depth", str(depth), "--width", str(k),
        "--no-optimise", "--save-counterexample", str(tmp_path),
    )  # fmt: skip
    cx = report["counterexample"]
    assert code == 1 and cx is not None and "orthoplex" in cx["origin"]
    assert cx["certificate"]["certified"] and cx["certificate"]["exact"]
    (saved,) = tmp_path.glob("*.npz")
    proc = ncverify("recheck", str(saved))
    assert proc.returncode == 1 and "REFUTED" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.parametrize("k", [4, 5])
def test_where_no_code_wins_the_report_says_what_it_has(k: int) -> None:
    """At M = 2 with K = 4, 5 no orthoplex code beats the labels (integer comparison): the labels
    are a KKT point, no run goes below them, and the report says that no certificate covers
    this depth."""
    assert witness(k, 2) is None
    code, report = check(
        "--classes", str(k), "--samples", "10", "--depth", "2", "--width", str(k),
        "--restarts", "8",
    )  # fmt: skip
    checks = {c["name"]: c for c in report["checks"]}
    assert checks["E1 KKT"]["passed"] and report["counterexample"] is None
    assert report["certificate"] is None
    assert any("no certificate applies" in n for n in report["notes"])
    assert all(
        r["objective"] >= report["prediction"]["objective"] * (1 - 1e-9)
        for r in report["numerical"]["runs"]
    )
    assert report["verdict"] != "certified" and code == 0


def test_a_sweep_over_the_depth_runs_every_check(tmp_path: Path) -> None:
    # a grid over anything but lambda means something for the max-margin problem
    out = tmp_path / "points.jsonl"
    sweep = ncverify(
        "sweep", "maxmargin-sel", "--classes", "3", "--samples", "1", "--depth", "1:2:2",
        "--width", "3", "--restarts", "2", "--search-starts", "16", "--workers", "1",
        "--out", str(out), "--quiet",
    )  # fmt: skip
    assert sweep.returncode == 0, sweep.stderr
    records = [json.loads(line) for line in out.read_text().splitlines()]
    assert sorted(r["problem"]["depth"] for r in records) == [1, 2]
    # each point is the check its command names (exit 0: none was inconclusive or failed)
    assert all(f"--depth {r['problem']['depth']} " in r["sweep"]["command"] for r in records)


def test_what_the_max_margin_problem_has_no_meaning_for_is_refused() -> None:
    sweep = ncverify("sweep", "maxmargin-sel", "--lambda-w", "1e-3:1e-1:3:log")
    assert sweep.returncode == 2 and "no phase over lambda" in sweep.stderr
    assert len(sweep.stderr.strip().splitlines()) == 1
    bias = ncverify("check", "maxmargin-sel", "--bias", "free")
    assert bias.returncode == 2 and "no bias" in bias.stderr
    probe = ncverify(
        "check", "mse-balanced-biasfree", "--loss", "max-margin", "--probe", "--json", "-"
    )
    assert probe.returncode == 4 and json.loads(probe.stdout)["verdict"] == "not-applicable"


def test_without_the_claims_candidates_only_claim_agnostic_evidence_remains() -> None:
    """`--no-claim-candidates`: the orthoplex code that refutes the labels at (6, 2) is not
    tried, so whatever the verdict, no counterexample comes from a claim's code; the report
    says the candidates were off."""
    assert witness(6, 2) is not None
    code, report = check(
        "--classes", "6", "--samples", "1", "--depth", "2", "--width", "6",
        "--restarts", "4", "--no-claim-candidates",
    )  # fmt: skip
    found = report["counterexample"]
    assert found is None or "code" not in found["origin"]
    assert any("--no-claim-candidates" in note for note in report["notes"])
    assert code == {"refuted": 1, "consistent": 0, "inconclusive": 3}[report["verdict"]]
