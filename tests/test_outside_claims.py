"""Claims from outside ncverify (issue 25): a claim file, `module:attribute`, and an installed
package's entry point, by every command that takes a CLAIM; where a saved counterexample says
its claim came from, and `recheck`, which never imports code that a file names.

`tests/data/my_claim.py` is a researcher's module: its `claim` delegates the mathematics of the
built-in `mse-balanced-biasfree` under another id (so the verdicts must agree), and its `wrong`
claims the zero solution at every lambda (refuted wherever the weight decay is small).  An
installed package is a `.dist-info` folder with an `entry_points.txt` on `PYTHONPATH`, which is
what `pip install` leaves behind (`importlib.metadata` finds distributions on `sys.path`): no
install into the shared environment.  Commands run as the installed script in a subprocess
where the environment matters, in-process (`ncverify.app.cli:main`) elsewhere.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import theorems
from ncverify.app import cli as cli_module
from ncverify.backend import Backend
from ncverify.io import CounterexampleFileError, load_counterexample
from ncverify.model.problem import Problem
from tests.test_cli import cli as in_process  # noqa: F401 - a fixture: `run` below

NCVERIFY = str(Path(sys.executable).with_name("ncverify"))
DATA = Path(__file__).resolve().parent / "data"
MY_CLAIM = DATA / "my_claim.py"
BUILTIN = "mse-balanced-biasfree"  # the claim that `my_claim.claim` mirrors
INSTANCE = ["--classes", "4", "--samples", "5", "--depth", "2", "--width", "4", "--restarts", "2"]
REFUTED, BAD_INPUT = 1, 2  # README: exit codes


# ---- helpers ------------------------------------------------------------------------------------
def ncverify(*args: str, pythonpath: Path | None = None) -> subprocess.CompletedProcess[str]:
    """The installed command, with `pythonpath` (only) on its `PYTHONPATH`."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return subprocess.run(
        [NCVERIFY, *args], capture_output=True, text=True, timeout=600, check=False, env=env
    )


@pytest.fixture
def run(in_process):  # noqa: ANN001, ANN201, F811 - `ncverify ARGS` in this process
    return in_process


def one_sentence(code: int, err: str, out: str, *words: str) -> None:
    """Bad input: exit code 2, exactly one line on stderr naming `words`, no traceback."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == BAD_INPUT, (code, out, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err + out
    for word in words:
        assert word.lower() in lines[0].lower(), (word, lines[0])


def verdict_of(proc: subprocess.CompletedProcess[str]) -> dict:
    assert proc.returncode in (0, 1, 3, 4), (proc.returncode, proc.stderr)
    return json.loads(proc.stdout)


def same_evidence(outside: dict, builtin: dict) -> None:
    """Two reports of the same mathematics on the same instance and seed: the same verdict,
    prediction and outcome of every check."""
    assert outside["verdict"] == builtin["verdict"]
    assert outside["prediction"] == builtin["prediction"]
    assert [(c["name"], c["passed"]) for c in outside["checks"]] == [
        (c["name"], c["passed"]) for c in builtin["checks"]
    ]


def package(folder: Path, entry_points: dict[str, str], name: str = "my-claims") -> Path:
    """An installed package in `folder`: `my_claim.py` and a `.dist-info` registering
    `entry_points` (name -> value) in the group `ncverify.claims`."""
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(MY_CLAIM, folder / "my_claim.py")
    dist = folder / f"{name.replace('-', '_')}-0.1.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    lines = [f"{k} = {v}" for k, v in entry_points.items()]
    (dist / "entry_points.txt").write_text("[ncverify.claims]\n" + "\n".join(lines) + "\n")
    return folder


def saved(directory: Path) -> Path:
    (path,) = directory.glob("*.npz")
    return path


def meta_of(path: Path) -> dict:
    with np.load(path, allow_pickle=False) as data:
        return json.loads(str(data["meta"]))


# ---- a claim file, module:attribute -------------------------------------------------------------
@pytest.fixture(scope="module")
def builtin_report() -> dict:
    return verdict_of(ncverify("check", BUILTIN, *INSTANCE, "--json", "-"))


def test_a_claim_file_gets_the_verdict_of_the_built_in_claim_it_mirrors(
    builtin_report: dict,
) -> None:
    proc = ncverify("check", str(MY_CLAIM), *INSTANCE, "--json", "-")
    report = verdict_of(proc)
    assert report["claim"] == "my-balanced-biasfree"
    same_evidence(report, builtin_report)
    assert builtin_report["verdict"] == "certified"  # an instance the theorem covers


def test_module_attribute_names_a_claim_on_pythonpath(builtin_report: dict) -> None:
    proc = ncverify("check", "my_claim:claim", *INSTANCE, "--json", "-", pythonpath=DATA)
    report = verdict_of(proc)
    assert report["claim"] == "my-balanced-biasfree"
    same_evidence(report, builtin_report)


def test_every_command_that_takes_a_claim_takes_a_claim_file(run, tmp_path: Path) -> None:  # noqa: ANN001
    shown = run("show", str(MY_CLAIM))
    assert shown.code == 0 and "my-balanced-biasfree" in shown.out, shown.err
    assert run("derive", str(MY_CLAIM)).code == 0
    small = ["--classes", "3", "--samples", "2", "--json", "-"]
    mine, theirs = run("predict", str(MY_CLAIM), *small), run("predict", BUILTIN, *small)
    assert mine.code == theirs.code == 0, mine.err
    assert json.loads(mine.out)["prediction"] == json.loads(theirs.out)["prediction"]
    # measure --claim: the built-in claim's own minimiser as a trained head
    problem = Problem.build(
        classes=3, samples=4, depth=2, width=4, lambda_w="1e-2", lambda_h="2e-2"
    )
    point = theorems.get(BUILTIN).minimiser(problem, Backend.create("numpy"))
    arrays = {"features": np.asarray(point.H).T, "labels": np.asarray(problem.labels())}
    arrays |= {f"W{m}": np.asarray(w) for m, w in enumerate(point.Ws, 1)}
    np.savez(tmp_path / "head.npz", **arrays)
    measured = [
        run(
            "measure",
            str(tmp_path / "head.npz"),
            "--claim",
            claim,
            "--lambda-w",
            "1e-2",
            "--json",
            "-",
        )
        for claim in (str(MY_CLAIM), BUILTIN)
    ]
    assert [m.code for m in measured] == [0, 0], measured[0].err
    mine_m, theirs_m = (json.loads(m.out) for m in measured)
    assert mine_m["claim"] == "my-balanced-biasfree"
    assert {**mine_m, "claim": None} == {**theirs_m, "claim": None}


BROKEN_FILES = {
    "an exception": ('raise RuntimeError("no GPU\\nhere")\n', ["RuntimeError", "broken.py"]),
    "a syntax error": ("def f(:\n", ["SyntaxError", "broken.py"]),
    "no claim": ("x = 1\n", ["no module-level claim", "broken.py"]),
    "not a claim": ("claim = 3\n", ["int", "ncverify.claim.Claim"]),
    "a class": (
        "from ncverify.claim import Claim\nclass C(Claim):\n    id = 'c'\nclaim = C\n",
        ["the class C"],
    ),
    "a path as id": (
        "from ncverify.claim import Claim\nclass C(Claim):\n    id = '../c'\n"
        "    hypotheses = closed_form = minimiser = derivation = None\nclaim = C()\n",
        ["../c", "not a claim id"],
    ),
    "sys.exit": ("import sys\nsys.exit(5)\n", ["SystemExit", "broken.py"]),
}


@pytest.mark.parametrize("case", list(BROKEN_FILES))
def test_a_broken_claim_file_is_one_sentence(run, tmp_path: Path, case: str) -> None:  # noqa: ANN001
    source, words = BROKEN_FILES[case]
    path = tmp_path / "broken.py"
    path.write_text(source)
    r = run("check", str(path), *INSTANCE)
    one_sentence(r.code, r.err, r.out, *words)


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["check", "missing/my_claim.py"], ["no such claim file", "missing/my_claim.py"]),
        (["show", "no_such_module_xyz:claim"], ["cannot import", "ModuleNotFoundError"]),
        (["derive", "json:no_such_name"], ["has no attribute", "no_such_name"]),
        (["predict", "json:"], ["names no claim"]),
        (["sweep", "missing.py", "--lambda-w", "1e-3:1e-2:2"], ["no such claim file"]),
        (
            ["measure", "head.npz", "--claim", "missing.py", "--lambda-w", "1e-3"],
            ["no such claim file"],
        ),
        (["recheck", "file.npz", "--claim", "missing.py"], ["no such claim file"]),
        (["check", "no-such-claim"], ["unknown claim", BUILTIN]),
    ],
    ids=["file", "module", "attribute", "no-attribute", "sweep", "measure", "recheck", "id"],
)
def test_a_bad_claim_reference_is_one_sentence(run, args: list[str], words: list[str]) -> None:  # noqa: ANN001
    r = run(*args)
    one_sentence(r.code, r.err, r.out, *words)


def test_a_failed_import_leaves_no_half_module_behind(run, tmp_path: Path) -> None:  # noqa: ANN001
    path = tmp_path / "broken.py"
    path.write_text("import sys\nx = 1\nraise ValueError('half')\n")
    before = set(sys.modules)
    assert run("show", str(path)).code == BAD_INPUT
    assert not {m for m in set(sys.modules) - before if m.startswith("ncverify_claim_file_")}


def test_a_claim_records_how_it_was_named() -> None:
    from ncverify.app import claims
    from ncverify.io import claim_origin
    from ncverify.report import version

    builtin = claims.resolve(BUILTIN)
    assert claim_origin(builtin) == {"kind": "built-in", "ncverify": version()}
    assert claims.resolve(f"theorems.{BUILTIN.replace('-', '_')}:claim") is builtin
    assert claim_origin(builtin)["kind"] == "built-in"  # a built-in claim, however it is named
    mine = claims.resolve(str(MY_CLAIM))
    assert claim_origin(mine)["kind"] == "file" and claims.reference(mine) == str(MY_CLAIM)
    assert claims.resolve(str(MY_CLAIM)) is mine  # the same file, unchanged, runs once


# ---- installed packages: the entry-point group ncverify.claims ---------------------------------------
def test_an_installed_claim_is_listed_after_the_built_in_ones_and_checked_by_id(
    tmp_path: Path, builtin_report: dict
) -> None:
    site = package(
        tmp_path / "site",
        {"my-balanced-biasfree": "my_claim:claim", "my-always-zero": "my_claim:wrong"},
    )
    listed = ncverify("list", "--json", pythonpath=site)
    assert listed.returncode == 0, listed.stderr
    ids = [c["id"] for c in json.loads(listed.stdout)]
    assert ids == [*theorems.registry(), "my-always-zero", "my-balanced-biasfree"]
    assert "my-balanced-biasfree" in ncverify("list", pythonpath=site).stdout
    report = verdict_of(
        ncverify("check", "my-balanced-biasfree", *INSTANCE, "--json", "-", pythonpath=site)
    )
    same_evidence(report, builtin_report)
    # a counterexample of an installed claim records its distribution and is rechecked by id
    out = tmp_path / "saved"
    proc = ncverify(
        "check", "my-always-zero", *INSTANCE, "--save-counterexample", str(out), pythonpath=site
    )
    assert proc.returncode == REFUTED, proc.stdout + proc.stderr
    origin = meta_of(saved(out))["claim_origin"]
    assert origin == {
        "kind": "entry-point",
        "name": "my-always-zero",
        "value": "my_claim:wrong",
        "distribution": "my-claims",
        "version": "0.1",
    }
    refused = ncverify("recheck", str(saved(out)), pythonpath=site)
    one_sentence(refused.returncode, refused.stderr, refused.stdout, "--claim my-always-zero")
    again = ncverify("recheck", str(saved(out)), "--claim", "my-always-zero", pythonpath=site)
    assert again.returncode == REFUTED and "REFUTED" in again.stdout, again.stderr


@pytest.mark.parametrize(
    ("entry_points", "words"),
    [
        ({BUILTIN: "my_claim:claim"}, ["registers the claim id", "built-in", "my-claims 0.1"]),
        ({"other-name": "my_claim:claim"}, ["must be its claim's id", "my-balanced-biasfree"]),
        ({"my-balanced-biasfree": "my_claim:nothing"}, ["cannot load", "AttributeError"]),
        ({"my-balanced-biasfree": "my_claim"}, []),  # a module: its `claim`
    ],
)
def test_an_installed_claim_that_breaks_the_rules_is_one_sentence(
    tmp_path: Path, entry_points: dict[str, str], words: list[str]
) -> None:
    site = package(tmp_path / "site", entry_points)
    listed = ncverify("list", pythonpath=site)
    if not words:
        assert listed.returncode == 0 and "my-balanced-biasfree" in listed.stdout, listed.stderr
        return
    one_sentence(listed.returncode, listed.stderr, listed.stdout, *words)
    # the built-in claims are found without reading any entry point: nothing can break them
    shown = ncverify("show", BUILTIN, pythonpath=site)
    assert shown.returncode == 0, shown.stderr


def test_two_packages_that_register_one_id_are_one_sentence(tmp_path: Path) -> None:
    site = package(tmp_path / "site", {"my-balanced-biasfree": "my_claim:claim"})
    second = package(tmp_path / "other", {"my-balanced-biasfree": "my_claim:claim"}, "two")
    shutil.move(str(next(second.glob("*.dist-info"))), site)
    proc = ncverify("check", "my-balanced-biasfree", pythonpath=site)
    one_sentence(proc.returncode, proc.stderr, proc.stdout, "both register", "uninstall")


# ---- recheck: a counterexample of an outside claim ------------------------------------------------------
@pytest.fixture(scope="module")
def module_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A refutation saved from `my_claim:wrong` (`module:attribute`)."""
    out = tmp_path_factory.mktemp("module")
    args = ["check", "my_claim:wrong", *INSTANCE, "--save-counterexample", str(out)]
    proc = ncverify(*args, pythonpath=DATA)
    assert proc.returncode == REFUTED, proc.stdout + proc.stderr
    return saved(out)


def test_a_module_claim_is_recorded_and_rechecked_only_when_named_again(module_file: Path) -> None:
    meta = meta_of(module_file)
    assert meta["schema"] == "ncverify.counterexample/2" and meta["claim"] == "my-always-zero"
    origin = meta["claim_origin"]
    assert origin["kind"] == "module" and (origin["module"], origin["attribute"]) == (
        "my_claim",
        "wrong",
    )
    assert origin["path"] == str(MY_CLAIM) and len(origin["sha256"]) == 64
    refused = ncverify("recheck", str(module_file), pythonpath=DATA)
    one_sentence(refused.returncode, refused.stderr, refused.stdout, "name the claim again")
    named = ncverify(
        "recheck", str(module_file), "--claim", "my_claim:wrong", "--json", pythonpath=DATA
    )
    assert named.returncode == REFUTED, named.stderr
    result = json.loads(named.stdout)
    assert result["verdict"] == "refuted" and result["claim_origin"] == origin
    other = ncverify("recheck", str(module_file), "--claim", "my_claim:claim", pythonpath=DATA)
    one_sentence(other.returncode, other.stderr, other.stdout, "my-balanced-biasfree")
    builtin = ncverify("recheck", str(module_file), "--claim", BUILTIN)
    one_sentence(builtin.returncode, builtin.stderr, builtin.stdout, BUILTIN)


def test_a_claim_file_is_recorded_with_its_sha256_and_a_changed_one_is_refused(
    tmp_path: Path,
) -> None:
    path = tmp_path / "wrong_claim.py"
    path.write_text(MY_CLAIM.read_text() + "\nclaim = wrong  # this file's claim: the wrong one\n")
    out = tmp_path / "saved"
    proc = ncverify("check", str(path), *INSTANCE, "--save-counterexample", str(out))
    assert proc.returncode == REFUTED, proc.stdout + proc.stderr
    origin = meta_of(saved(out))["claim_origin"]
    sha = hashlib.sha256(path.read_bytes()).hexdigest()
    assert origin == {"kind": "file", "path": str(path), "sha256": sha}
    refused = ncverify("recheck", str(saved(out)))
    one_sentence(refused.returncode, refused.stderr, refused.stdout, f"--claim {path}")
    named = ncverify("recheck", str(saved(out)), "--claim", str(path))
    assert named.returncode == REFUTED and "REFUTED" in named.stdout, named.stderr
    path.write_text(path.read_text() + "# edited since\n")
    changed = ncverify("recheck", str(saved(out)), "--claim", str(path))
    one_sentence(changed.returncode, changed.stderr, changed.stdout, "sha256", "changed")


def _forge(source: Path, target: Path, edit) -> Path:  # noqa: ANN001
    with np.load(source, allow_pickle=False) as data:
        arrays = {name: data[name] for name in data.files}
    meta = json.loads(str(arrays.pop("meta")))
    edit(meta)
    np.savez_compressed(target, meta=np.array(json.dumps(meta)), **arrays)
    return target


def _origin(**change: object):  # noqa: ANN202
    return lambda meta: meta["claim_origin"].update(change)


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (lambda m: m.pop("claim_origin"), ["lacks the field claim_origin"]),
        (lambda m: m.update(claim_origin="my_claim:wrong"), ["claim_origin", "kind"]),
        (_origin(kind="plugin"), ["claim_origin", "kind"]),
        (_origin(sha256="abc"), ["claim_origin.sha256", "sha256"]),
        (_origin(module=7), ["claim_origin.module"]),
        (_origin(extra="x"), ["claim_origin", "'extra'"]),
        (lambda m: m.update(claim_origin={"kind": "built-in"}), ["claim_origin.ncverify"]),
        (
            lambda m: m.update(claim_origin={"kind": "built-in", "ncverify": "1", "id": "x"}),
            ["claim_origin", "'id'"],
        ),
        (lambda m: m.update(schema="ncverify.counterexample/1"), ["claim_origin", "/1"]),
    ],
)
def test_a_malformed_claim_origin_is_refused(
    module_file: Path, tmp_path: Path, edit, words: list[str]
) -> None:  # noqa: ANN001
    path = _forge(module_file, tmp_path / "forged.npz", edit)
    with pytest.raises(CounterexampleFileError) as info:
        load_counterexample(str(path))
    message = str(info.value)
    assert "\n" not in message
    for word in words:
        assert word.lower() in message.lower(), (word, message)


def test_a_file_of_schema_1_is_a_built_in_claims(module_file: Path, tmp_path: Path) -> None:
    def older(meta: dict) -> None:
        meta.pop("claim_origin")
        meta.update(schema="ncverify.counterexample/1", claim=BUILTIN)

    meta, _ = load_counterexample(str(_forge(module_file, tmp_path / "old.npz", older)))
    assert meta["claim_origin"] == {"kind": "built-in", "ncverify": meta["ncverify"]}


# ---- the shared options: sweep takes --activation, and every option of check ------------------------------
def _options(command: str) -> set[str]:
    from typer.main import get_command

    group = get_command(cli_module.app)
    params = group.commands[command].params  # type: ignore[attr-defined]
    return {name for p in params for name in p.opts if name.startswith("--")}


def test_check_and_sweep_share_their_problem_and_run_options() -> None:
    check, sweep, predict = _options("check"), _options("sweep"), _options("predict")
    assert "--activation" in sweep
    assert check - sweep == {"--all", "--escalate", "--json"}
    assert check - predict == {"--all", "--escalate"} | {
        f"--{f.name.replace('_', '-')}" for f in dataclasses.fields(cli_module.RunOptions)
    }


def test_a_sweep_takes_the_activation_to_every_point_and_its_check_command() -> None:
    from ncverify.app import sweep as sw

    claim = theorems.get("dnc-multiclass")
    settings = cli_module.run_settings(1, 0, False, False, False, None)
    spec = ("numpy", None, "float64")
    keys = {}
    for activation in ("relu", "linear"):
        options = cli_module.SweepProblemOptions(
            classes="3", samples="1", depth="2", width="3", lambda_w="1e-3:1e-2:2",
            activation=cli_module.Activation(activation),
        ).given()  # fmt: skip
        axes, points = sw.expand(options, tied=False)
        tasks = cli_module._plan(claim, points, options, settings, spec, False, [])
        assert [t.problem.activation for t in tasks] == [activation, activation]
        assert all(f"--activation {activation}" in t.command for t in tasks)
        keys[activation] = {t.key for t in tasks}
    assert not keys["relu"] & keys["linear"]  # the activation is part of a point's identity
