"""The `ncverify` command line: exit codes of docs/verdicts.md, `list --json`, JSON reports, and bad
input as exactly one line on stderr with exit code 2 and no traceback.

Most cases call the console script's entry point (`ncverify.app.cli:main`) in-process, with
`sys.argv` set and the streams captured — the same code path as the installed script, without
paying the interpreter start-up per case; two cases run the installed script itself.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import pytest

import theorems
from ncverify.app.cli import main
from ncverify.model.problem import LOSSES

SCRIPT = Path(sys.executable).with_name("ncverify")
SMALL = [
    "--counts",
    "5,5,5",
    "--depth",
    "2",
    "--width",
    "4",
    "--lambda-w",
    "1e-2",
    "--lambda-h",
    "1e-2",
    "--restarts",
    "3",
]


@dataclass
class Result:
    code: int
    out: str
    err: str


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]):  # noqa: ANN201
    def run(*args: str) -> Result:
        monkeypatch.setattr(sys, "argv", ["ncverify", *args])
        with pytest.raises(SystemExit) as info:
            main()
        captured = capsys.readouterr()
        code = info.value.code
        return Result(0 if code is None else int(code), captured.out, captured.err)

    return run


# ---- exit codes --------------------------------------------------------------------------------
def test_certified_exits_0(cli) -> None:  # noqa: ANN001
    r = cli("check", "mse-balanced-biasfree", *SMALL)
    assert r.code == 0, r.err
    assert "CERTIFIED" in r.out.upper()


def test_refuted_exits_1(cli) -> None:  # noqa: ANN001
    # probing the balanced formula on unequal counts: the exact certificate disagrees
    r = cli(
        "check",
        "mse-balanced-biasfree",
        "--counts",
        "6,3,3",
        "--depth",
        "2",
        "--width",
        "4",
        "--lambda-w",
        "1e-2",
        "--lambda-h",
        "1e-2",
        "--restarts",
        "2",
        "--probe",
        "--json",
        "-",
    )
    assert r.code == 1, r.err
    data = json.loads(r.out)
    assert data["verdict"] == "refuted" and data["probe"] is True


def test_inconclusive_exits_3(cli) -> None:  # noqa: ANN001
    # K = 3, n = 5, M = 3 with lambda_W = 1/10, lambda_H = 1/405 (rho = 1/1000, alive): from
    # these two seeded starts every run stops in a spurious local minimum (zero, or fewer alive
    # modes) and none reaches the prediction; without a certificate the evidence is inconclusive
    r = cli(
        *INCONCLUSIVE_RUNS,
        "--no-certificate",
        "--json",
        "-",
    )
    data = json.loads(r.out)
    assert data["numerical"]["counts"]["at"] == 0 and data["numerical"]["counts"]["better"] == 0
    assert data["verdict"] == "inconclusive" and r.code == 3
    assert any("--scales" in note for note in data["notes"])  # says what to try next


def test_a_certificate_decides_when_no_run_reaches_the_prediction(cli) -> None:  # noqa: ANN001
    # the same runs, with the separable certificate: it proves the optimal value, and with no tie
    # or bottleneck it fixes the minimiser set, so E1 (the predicted point attains the proven
    # value) establishes the claim without any run at the prediction
    data = json.loads(cli(*INCONCLUSIVE_RUNS, "--json", "-").out)
    assert data["numerical"]["counts"]["at"] == 0 and data["numerical"]["counts"]["better"] == 0
    assert data["certificate"]["kind"] == "separable-reduction" and data["certificate"]["unique"]
    assert (data["verdict"], data["geometry_evidence"]) == ("certified", "certified-unique")
    # the claimed value minus the certified one is within the certificate's tolerance
    check = next(c for c in data["checks"] if c["name"] == "E3 certificate")
    assert check["passed"] and abs(check["value"]) <= check["tolerance"]


INCONCLUSIVE_RUNS = (
    "check",
    "mse-balanced-biasfree",
    "--classes",
    "3",
    "--samples",
    "5",
    "--depth",
    "3",
    "--width",
    "6",
    "--lambda-w",
    "1/10",
    "--lambda-h",
    "1/405",
    "--restarts",
    "2",
    "--escalate",
    "0",
    # without continuation in lambda, on every sample's features (with continuation, or over the
    # weights alone, every run reaches the optimum here)
    "--no-continuation",
    "--parameterisation",
    "full",
    # and no batched search, whose starts reach the prediction here (a start of it at the
    # prediction backs `consistent` just as a run does)
    "--search-starts",
    "0",
)


def test_scales_option_sets_the_start_scales(cli) -> None:  # noqa: ANN001
    r = cli(
        "check", "mse-balanced-biasfree", *SMALL, "--restarts", "3", "--scales", "0.7,3",
        "--escalate", "0", "--json", "-",
    )  # fmt: skip
    scales = json.loads(r.out)["numerical"]["start_scales"]
    # three runs over two given scales: geometric spacing between them
    assert scales == pytest.approx([0.7, math.sqrt(0.7 * 3), 3.0], rel=1e-12)


def test_not_applicable_exits_4_and_probe_runs(cli) -> None:  # noqa: ANN001
    args = [
        "check",
        "mse-balanced-bias",
        "--counts",
        "6,3,3",
        "--depth",
        "2",
        "--width",
        "4",
        "--restarts",
        "2",
        "--bias",
        "free",
    ]
    r = cli(*args, "--json", "-")
    assert r.code == 4
    data = json.loads(r.out)
    assert data["verdict"] == "not-applicable" and data["hypotheses"]
    probe = cli(*args, "--probe", "--json", "-")
    data = json.loads(probe.out)
    assert data["probe"] is True and data["verdict"] != "not-applicable" and data["checks"]
    exit_codes = {"certified": 0, "consistent": 0, "refuted": 1, "inconclusive": 3}
    assert probe.code == exit_codes[data["verdict"]]  # docs/verdicts.md exit codes


# ---- list, show, derive, JSON ------------------------------------------------------------------
def test_list_json(cli) -> None:  # noqa: ANN001
    r = cli("list", "--json")
    assert r.code == 0
    items = json.loads(r.out)
    assert isinstance(items, list) and items
    for item in items:
        assert {"id", "title", "source", "loss", "bias"} <= set(item)
        assert item["loss"] in LOSSES and item["bias"] in ("none", "free", "regularised")
    ids = {item["id"] for item in items}
    assert {"mse-balanced-biasfree", "mse-balanced-bias"} <= ids


def test_show_and_derive(cli) -> None:  # noqa: ANN001
    r = cli("show", "mse-balanced-bias")
    assert r.code == 0 and "simplex ETF" in r.out
    d = cli("derive", "mse-balanced-bias")
    assert d.code == 0
    # every step says how it is checked; the lemmas cite the tests that check them
    assert "tests/test_lemmas.py::test_lemma3_separation" in d.out
    assert "tests/test_claims.py::test_bias_is_mean_residual" in d.out


def test_check_json_to_stdout_and_file(cli, tmp_path: Path) -> None:  # noqa: ANN001
    r = cli("check", "mse-balanced-bias", *SMALL, "--bias", "free", "--json", "-")
    assert r.code == 0, r.err
    data = json.loads(r.out)  # stdout is exactly one JSON document
    for key in (
        "schema",
        "ncverify",
        "claim",
        "verdict",
        "probe",
        "problem",
        "hypotheses",
        "prediction",
        "checks",
        "numerical",
        "certificate",
        "counterexample",
        "backend",
        "timing",
    ):
        assert key in data
    assert data["verdict"] == "certified"
    assert data["problem"]["lambda_w_exact"] == ["1/100", "1/100"]
    assert data["prediction"]["bias"] == pytest.approx([1 / 3] * 3)
    assert data["certificate"]["kind"] == "separable-reduction"
    path = tmp_path / "report.json"
    r2 = cli("check", "mse-balanced-bias", *SMALL, "--bias", "free", "--json", str(path))
    assert r2.code == 0
    saved = json.loads(path.read_text())
    assert saved["verdict"] == "certified"
    assert "CERTIFIED" in r2.out.upper()  # the readable report still goes to the terminal


def test_no_certificate_flag(cli) -> None:  # noqa: ANN001
    r = cli("check", "mse-balanced-biasfree", *SMALL, "--no-certificate", "--json", "-")
    data = json.loads(r.out)
    assert data["certificate"] is None and data["verdict"] == "consistent" and r.code == 0


# ---- bad input -------------------------------------------------------------------------------------
BAD: dict[str, tuple[list[str], str]] = {
    "K < 2": (["--counts", "10"], "K"),
    "classes 1": (["--classes", "1", "--samples", "10"], "K"),
    "zero count": (["--counts", "10,0,10"], "count"),
    "negative count": (["--counts", "10,-3,10"], "count"),
    "negative first count": (["--counts=-3,10"], "count"),
    "negative lambda": (["--counts", "5,5", "--lambda-w", "-1e-3"], "lambda"),
    "negative lambda with =": (["--counts", "5,5", "--lambda-w=-1e-3"], "lambda"),
    "zero lambda": (["--counts", "5,5", "--lambda-h", "0"], "lambda"),
    "NaN lambda": (["--counts", "5,5", "--lambda-w", "nan"], "lambda"),
    "infinite lambda": (["--counts", "5,5", "--lambda-h", "inf"], "lambda"),
    "zero lambda_b": (["--counts", "5,5", "--lambda-b", "0"], "lambda"),
    "depth 0": (["--counts", "5,5", "--depth", "0"], "depth"),
    "width 0": (["--counts", "5,5", "--width", "0"], "width"),
    "one width 0": (["--counts", "5,5", "--depth", "2", "--widths", "4,0"], "width"),
    "empty list entry": (["--counts", "10,,10"], "counts"),
    "letters in list": (["--counts", "a,b"], "counts"),
    "bad lambda list": (["--counts", "5,5", "--depth", "2", "--lambda-w", "1e-3,x"], "lambda"),
    "wrong number of layer lambdas": (
        ["--counts", "5,5", "--depth", "2", "--lambda-w", "1e-3,1e-3,1e-3"],
        "lambda",
    ),
    "fractional depth": (["--counts", "5,5", "--depth", "1.5"], "depth"),
    "restarts not a number": (["--counts", "5,5", "--restarts", "many"], "restarts"),
    "scales not numbers": (["--counts", "5,5", "--scales", "0.5,big"], "scales"),
    "zero scale": (["--counts", "5,5", "--scales", "0,1"], "scales"),
    "infinite scale": (["--counts", "5,5", "--scales", "1,inf"], "scales"),
    "unknown backend": (["--counts", "5,5", "--backend", "abacus"], "backend"),
    "unknown dtype": (["--counts", "5,5", "--dtype", "float16"], "dtype"),
    "unknown option": (["--counts", "5,5", "--colour"], "colour"),
    "option without value": (["--counts"], "counts"),
}


def assert_one_line_error(r: Result, word: str) -> None:
    assert r.code == 2, (r.code, r.err)
    lines = [line for line in r.err.splitlines() if line.strip()]
    assert len(lines) == 1, r.err
    assert "Traceback" not in r.err and "Traceback" not in r.out
    assert word.lower() in lines[0].lower(), lines[0]


@pytest.mark.parametrize("name", sorted(BAD))
def test_bad_input_exits_2_with_one_line(cli, name: str) -> None:  # noqa: ANN001
    args, word = BAD[name]
    assert_one_line_error(cli("check", "mse-balanced-biasfree", *args), word)


def test_unknown_claim_exits_2(cli) -> None:  # noqa: ANN001
    for command in (
        ["check", "no-such-claim", "--counts", "5,5"],
        ["show", "no-such-claim"],
        ["derive", "no-such-claim"],
    ):
        r = cli(*command)
        assert_one_line_error(r, "no-such-claim")


def test_missing_claim_exits_2(cli) -> None:  # noqa: ANN001
    assert_one_line_error(cli("check"), "claim")


# ---- the installed console script itself ------------------------------------------------------------
def script(*args: str) -> Result:
    proc = subprocess.run(
        [str(SCRIPT), *args], capture_output=True, text=True, timeout=120, check=False
    )
    return Result(proc.returncode, proc.stdout, proc.stderr)


def test_console_script_bad_input() -> None:
    assert_one_line_error(script("check", "mse-balanced-biasfree", "--counts", "10,0,10"), "count")


def test_sweep_rejects_bad_scales(cli) -> None:  # noqa: ANN001
    r = cli("sweep", "mse-balanced-biasfree", *SMALL, "--scales", "1,-2")
    assert_one_line_error(r, "scales")


def test_unset_options_come_from_the_claims_default_including_lambda_b(cli) -> None:  # noqa: ANN001
    # only the depth given: the weight-decayed-bias claim keeps its default lambda_b
    r = cli("check", "mse-balanced-regbias", "--depth", "1", "--restarts", "2", "--json", "-")
    assert r.code == 0, r.err
    problem = json.loads(r.out)["problem"]
    default = theorems.get("mse-balanced-regbias").default_problem()
    assert problem["depth"] == 1 and problem["bias"] == "regularised"
    assert Fraction(problem["lambda_b_exact"]) == default.lambda_b


def test_version_help_and_bare_command() -> None:
    from importlib.metadata import version

    r = script("--version")
    assert r.code == 0 and r.out.strip() == f"ncverify {version('ncverify')}"
    for args in (("-h",), ("check", "-h"), ()):  # bare `ncverify` shows the help too
        r = script(*args)
        assert r.code == 0, (args, r.err)
        assert r.out.startswith("Usage: ncverify") and r.err == ""


def test_classes_without_samples_is_bad_input(cli) -> None:  # noqa: ANN001
    # it used to take n = 100 from the default instance without a word
    assert_one_line_error(cli("check", "mse-balanced-biasfree", "--classes", "3"), "--samples")


def test_unset_widths_keep_the_defaults_widths_at_its_depth() -> None:
    from dataclasses import replace

    from ncverify.app.cli import build_problem

    class Narrowing(type(theorems.get("mse-balanced-biasfree"))):
        def default_problem(self):  # noqa: ANN202
            return replace(super().default_problem(), widths=(16, 12, 8))

    claim = Narrowing()
    # only lambda_h given: every width is the default's, not its first one repeated
    assert build_problem(claim, lambda_h="1e-3").widths == (16, 12, 8)
    # another depth: the default's feature dimension for every width
    assert build_problem(claim, depth="2").widths == (16, 16)


def test_the_base_default_instance_of_a_weight_decayed_bias_claim_builds() -> None:
    from ncverify.claim import Claim

    class WithRegularisedBias(Claim):  # the four methods a claim must have, none used here
        bias = "regularised"
        hypotheses = closed_form = minimiser = derivation = None

    problem = WithRegularisedBias().default_problem()
    assert problem.bias == "regularised" and problem.lambda_b > 0


def test_predict_gives_the_closed_form_without_optimising() -> None:
    # the instance of the researcher's issue: counts 300,100,20,5, depth 3, lambda 8e-3; the
    # optimum 0.14434992... (quoted there) is checked against the separable certificate, which
    # shares no code with the claim's closed form
    from ncverify.evidence.certificates import separable_reduction
    from ncverify.model.problem import Problem

    args = ["--counts", "300,100,20,5", "--depth", "3", "--lambda-w", "8e-3", "--lambda-h", "8e-3"]
    r = script("predict", "mse-imbalanced-biasfree", *args, "--json", "-")
    assert r.code == 0, r.err
    data = json.loads(r.out)
    assert data["schema"] == "ncverify.prediction/2" and data["hypotheses"] == []
    pred = data["prediction"]
    assert [k for k, a in enumerate(pred["alive"]) if not a] == [2, 3]  # the 20 and the 5
    problem = Problem.build(
        counts="300,100,20,5", depth=3, width=64, lambda_w="8e-3", lambda_h="8e-3"
    )
    certified = separable_reduction(problem).bound
    assert abs(pred["objective"] - certified) <= 1e-12 * certified
    assert pred["objective_digits"].startswith("0.14434992")
    # the readable form names the collapsed classes and the optimum to 30 digits, which agree
    # with the certificate's high-precision optimum to 25
    import re

    import mpmath

    r = script("predict", "mse-imbalanced-biasfree", *args)
    assert r.code == 0 and r.out.count("collapsed") >= 2
    digits = re.search(r"optimum F\* = ([0-9.]+)", r.out).group(1)
    assert len(digits.split(".")[1]) >= 30
    with mpmath.workdps(40):
        exact = separable_reduction(problem).bound_exact
        assert abs(mpmath.mpf(digits) - exact) < mpmath.mpf(10) ** -25
        # the JSON carries the digits the text shows (30 significant), not a float's 15
        assert abs(mpmath.mpf(pred["objective_digits"]) - exact) < mpmath.mpf(10) ** -25


def test_predict_outside_the_hypotheses_is_not_applicable() -> None:
    r = script("predict", "mse-balanced-bias", "--counts", "3,4")
    assert r.code == 4 and "not applicable" in r.out


@pytest.mark.parametrize("claim_id", sorted(theorems.registry()))
def test_show_states_the_hypotheses_and_typesets_the_statement(cli, claim_id: str) -> None:  # noqa: ANN001
    claim = theorems.get(claim_id)
    r = cli("show", claim_id)
    assert r.code == 0, r.err
    flat = " ".join(r.out.replace("│", " ").split())  # the panel wraps its lines
    hypotheses = claim.stated_hypotheses()
    assert hypotheses  # every claim has some: a claim about every instance claims nothing
    for h in hypotheses:
        assert " ".join(h.split()) in flat
    assert "$" not in r.out  # LaTeX is converted for the terminal


def test_a_one_layer_mse_check_imports_neither_cvxpy_nor_scipy() -> None:
    """Start-up: the one-layer MSE certificate has a closed form, so a check needs neither the
    conic solver nor scipy (`-X importtime` lists every module a process imports)."""
    result = subprocess.run(
        [sys.executable, "-X", "importtime", "-m", "ncverify.app.cli", "check"]
        + ["mse-imbalanced-biasfree", "--counts", "5,3,2", "--depth", "1", "--width", "4"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in result.stderr.splitlines()}
    assert "ncverify.verify" in imported  # the listing is there ...
    assert "cvxpy" not in imported and "scipy" not in imported  # ... and these are not in it
