"""The claim `supcon-sphere` (Graf et al. 2021): the lower bound of its proof holds at every point,
the runs never end below the claimed value and reach it, the page's command is consistent with
its evidence named, and plausible wrong claims (no collapse; an orthogonal frame) are refuted
with exact certificates."""

from __future__ import annotations

import json
import math
import re
import shlex
import subprocess
import sys
from pathlib import Path

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from usercli import check_claim

import theorems
from ncverify import Problem, verify
from ncverify.claim import Prediction
from ncverify.model import supcon
from ncverify.model.objective import Params
from ncverify.verify import Settings

ROOT = Path(__file__).resolve().parents[1]
NCVERIFY = str(Path(sys.executable).with_name("ncverify"))
CLAIM = theorems.get("supcon-sphere")


def instance(k: int, n: int, d: int, tau: str) -> Problem:
    return Problem.build(classes=k, samples=n, depth=1, width=d, loss="supcon", temperature=tau)


def formula(k: int, n: int, tau: float) -> float:
    """`log(n - 1 + n (K-1) exp(-K/((K-1) tau)))`, the value at the collapsed simplex, written
    here from the claim's statement."""
    return math.log(n - 1 + n * (k - 1) * math.exp(-k / ((k - 1) * tau)))


@settings(max_examples=25, deadline=None)
@given(
    st.integers(2, 5),
    st.integers(2, 4),
    st.integers(1, 6),
    st.floats(0.1, 2.0),
    st.integers(0, 2**31 - 1),
)
def test_the_jensen_bound_holds_at_random_points(
    k: int, n: int, d: int, tau: float, seed: int
) -> None:
    """Any point, any width (below K - 1 too): the value is at least
    `log(n - 1 + n(K-1) e^t)` with `t` the mean gap of the point's similarities (step 2), and
    that is at least the formula (step 3): both computed here, not by the claim."""
    p = instance(k, n, d, f"{tau:.3g}")
    h = np.random.default_rng(seed).standard_normal((d, p.N))
    u = h / np.linalg.norm(h, axis=0)
    s = u.T @ u / float(p.temperature)
    y = np.repeat(np.arange(k), n)
    same = (y[:, None] == y[None, :]) & ~np.eye(p.N, dtype=bool)
    other = y[:, None] != y[None, :]
    gap = np.mean((s * other).sum(1) / (n * (k - 1)) - (s * same).sum(1) / (n - 1))
    value = float(supcon.enclose(p, Params((), h)).b)
    jensen = math.log(n - 1 + n * (k - 1) * math.exp(gap))
    assert value >= jensen * (1 - 1e-12)
    assert gap >= -k / ((k - 1) * float(p.temperature)) * (1 + 1e-12)
    assert jensen >= formula(k, n, float(p.temperature)) * (1 - 1e-12)


def check(*args: str) -> tuple[int, dict]:
    return check_claim("supcon-sphere", *args)


@pytest.mark.parametrize(
    ("k", "n", "d", "tau"), [(2, 3, 2, "0.5"), (3, 2, 2, "0.2"), (5, 2, 4, "1"), (6, 3, 7, "0.1")]
)
def test_no_run_ends_below_the_claimed_value(k: int, n: int, d: int, tau: str) -> None:
    """As a user runs it: the claim holds (no certificate: consistent), no run is better, and the
    value reported is the formula's."""
    code, report = check(
        "--classes", str(k), "--samples", str(n), "--width", str(d), "--temperature", tau,
        "--restarts", "6",
    )  # fmt: skip
    assert code == 0 and report["verdict"] == "consistent", report.get("notes")
    counts = report["numerical"]["counts"]
    assert counts["better"] == 0 and counts["at"] >= 1
    assert report["prediction"]["objective"] == pytest.approx(formula(k, n, float(tau)), rel=1e-14)


def test_outside_its_hypotheses_it_is_not_applicable() -> None:
    assert check("--counts", "3,5,4", "--width", "3")[0] == 4
    assert check("--classes", "5", "--samples", "2", "--width", "3")[0] == 4
    assert check("--classes", "3", "--samples", "2", "--loss", "ce")[0] == 4


def test_the_page_command_is_consistent_with_its_evidence_named(tmp_path: Path) -> None:
    """The command of docs/theory/supcon.md#checking, verbatim, with its JSON written aside."""
    page = (ROOT / "docs" / "theory" / "supcon.md").read_text()
    (block,) = re.findall(r"```bash\n(.*?)```", page, flags=re.S)
    argv = shlex.split(block.strip())
    assert argv[:3] == ["ncverify", "check", "supcon-sphere"]
    out = tmp_path / "report.json"
    proc = subprocess.run(
        [NCVERIFY, *argv[1:], "--json", str(out)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    report = json.loads(out.read_text())
    assert proc.returncode == 0 and report["verdict"] == "consistent", proc.stdout + proc.stderr
    assert report["certificate"] is None
    assert "no certificate; backed by" in " ".join(proc.stdout.split())
    assert report["numerical"]["parameterisation"] == "full"
    assert report["numerical"]["counts"]["better"] == 0
    e4 = next(c for c in report["checks"] if c["name"] == "E4 geometry")
    assert e4["passed"] and "Gram" in e4["detail"]


class Uncollapsed(type(CLAIM)):
    """A plausible wrong claim: every sample on its own vertex of a simplex of N points (no
    collapse), value `log(N - 1) + 1/((N-1) tau)` less the positives' similarity `-1/((N-1) tau)`
    (every pair at `-1/(N-1)`): `log(N - 1)`.  It lies above the truth: the runs beat it."""

    id = "supcon-uncollapsed"

    def closed_form(self, problem: Problem) -> Prediction:
        return Prediction(
            objective=mpmath.log(problem.N - 1), unique=True, geometry="N-simplex", zero=False
        )

    def minimiser(self, problem: Problem, backend):  # noqa: ANN001, ANN201
        return None


class Orthogonal(type(CLAIM)):
    """A plausible wrong claim: collapsed classes on an orthogonal frame (similarity 0 across
    classes), value `log(n - 1 + n(K-1) e^(-1/tau))`: above the truth, since the simplex's
    similarity across classes, `-1/(K-1)`, is below 0.  The runs beat it."""

    id = "supcon-orthogonal"

    def closed_form(self, problem: Problem) -> Prediction:
        k, n, tau = problem.K, problem.counts[0], float(problem.temperature)
        value = mpmath.log(n - 1 + n * (k - 1) * mpmath.exp(-1 / tau))
        return Prediction(objective=value, unique=True, geometry="orthogonal frame", zero=False)

    def minimiser(self, problem: Problem, backend):  # noqa: ANN001, ANN201
        k, d = problem.K, problem.widths[0]
        return Params((), np.repeat(np.eye(d, k), problem.counts, axis=1))


@pytest.mark.parametrize("wrong", [Uncollapsed(), Orthogonal()], ids=lambda c: c.id)
def test_a_wrong_value_is_refuted_with_an_exact_certificate(wrong) -> None:  # noqa: ANN001
    problem = instance(3, 3, 3, "0.5")
    report = verify(wrong, problem, settings=Settings(restarts=4))
    assert report.verdict == "refuted"
    found = report.counterexample
    assert found is not None and found.certificate.certified and found.certificate.exact
    assert found.objective < float(wrong.closed_form(problem).objective)


def test_a_value_below_the_truth_fails_at_the_predicted_point() -> None:
    """The true point with a value 1e-3 below the truth claimed for it: E1 fails."""

    class Low(type(CLAIM)):
        id = "supcon-low"

        def closed_form(self, problem: Problem) -> Prediction:
            true = CLAIM.closed_form(problem)
            return Prediction(
                objective=true.objective * (1 - mpmath.mpf("1e-3")),
                unique=True,
                geometry=true.geometry,
                zero=False,
            )

    report = verify(Low(), instance(3, 3, 3, "0.5"), settings=Settings(restarts=2))
    assert report.verdict == "refuted"
    e1 = next(c for c in report.checks if c.name == "E1 objective")
    assert e1.passed is False


def test_too_many_samples_for_an_exact_value_is_never_a_refutation() -> None:
    """500 samples: the collapsed prediction is enclosed class by class, but the runs' points,
    not exactly collapsed, need 4e6 exact products, more than an enclosure may take; they
    decide nothing (failed), and nothing refutes the proven claim.  100 000 samples: the
    stationarity check and the runs are skipped by their cost, never attempted."""
    report = verify(CLAIM, instance(10, 50, 16, "0.5"), settings=Settings(restarts=2, escalate=0))
    assert report.verdict == "inconclusive"
    e1 = next(c for c in report.checks if c.name == "E1 objective")
    assert e1.passed is True
    huge = verify(CLAIM, instance(100, 1000, 100, "0.5"), settings=Settings(restarts=2))
    assert huge.verdict == "inconclusive"
    tangent = next(c for c in huge.checks if c.name == "E1 stationarity")
    assert tangent.passed is None and "skipped" in tangent.detail


@pytest.mark.parametrize(("k", "n", "d", "tau"), [(3, 2, 2, "0.01"), (4, 3, 5, "0.02")])
def test_a_small_temperature_flattens_the_geometry_and_refutes_nothing(
    k: int, n: int, d: int, tau: str
) -> None:
    """At tau = 1/100 the optimum is e^-150 above log(n - 1): runs end at 1e-19, within float
    resolution of similarities of size 1/tau, and their geometry is not determined (the other
    classes' share of the value, e^(-K/((K-1) tau)), is all that sees it).  Both once refuted
    this proven claim, by value and by geometry; now neither decides anything."""
    report = verify(CLAIM, instance(k, n, d, tau), settings=Settings(restarts=8))
    assert report.verdict == "consistent"
    e4 = next(c for c in report.checks if c.name == "E4 geometry")
    assert e4.passed is None
