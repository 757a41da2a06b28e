"""`scripts/soak.py` as a user runs it: a tiny soak writes one JSON line per instance and resumes
without running anything twice; a crash and a false refutation are recorded, and make the exit
code 1, without stopping the soak; a refutation stands only where recheck confirms it.

The failing claims are honest external claims (`--claim-file`): one whose closed form raises,
and the registered `maxmargin-sel` given a region where it is false (two layers, K = 6: the
orthoplex code beats it exactly), so that its refutation is real, rechecked by the real
`ncverify recheck` and still false by definition (a refutation inside a "proven" region).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "soak.py"

CRASHING = """
from theorems.mse_balanced_biasfree import MSEBalancedBiasFree


class Crashing(MSEBalancedBiasFree):
    id = "soak-crash"

    def closed_form(self, problem):
        raise RuntimeError("a deliberate crash")


claim = Crashing()
"""

# the registered claim under its own id, declared true where it is not
WRONG_REGION = """
from dataclasses import replace

from theorems.maxmargin_sel import MaxMarginSEL


class DeepSEL(MaxMarginSEL):
    truth_region = replace(
        MaxMarginSEL.truth_region, classes=(6, 6), samples=(1, 3), balanced=True, depth=(2, 2)
    )


claim = DeepSEL()
"""


def soak(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "NCVERIFY_JOBS": "1"}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=600
    )


def lines(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    items = [json.loads(line) for line in path.read_text().splitlines()]
    return [i["meta"] for i in items if "meta" in i], [i for i in items if "meta" not in i]


def script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("soak_script", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_a_tiny_soak_writes_its_lines_and_resumes(tmp_path: Path) -> None:
    out = tmp_path / "soak.jsonl"
    claims = "mse-imbalanced-bias,mse-balanced-biasfree"
    common = ["--restarts", "2", "--seed", "5", "--claims", claims, "--out", str(out)]
    done = soak("--instances", "3", *common)
    assert done.returncode == 0, done.stderr
    assert "false refutations: 0" in done.stdout and "crashes: 0" in done.stdout
    metas, records = lines(out)
    assert len(metas) == 1 and metas[0]["seed"] == 5 and not metas[0]["resumed"]
    assert [r["index"] for r in sorted(records, key=lambda r: r["index"])] == [0, 1, 2]
    for r in records:  # round-robin over the sorted ids, each a real, reproducible check
        assert r["claim"] == sorted(claims.split(","))[r["index"] % 2]
        assert r["verdict"] in ("certified", "consistent", "inconclusive")
        assert r["basis"] == "proven" and r["time"] >= 0
        assert r["command"].startswith(f"ncverify check {r['claim']} --counts ")
        assert r["command"].endswith(f"--restarts 2 --seed {5 + r['index']}")
    before = out.read_text()

    refused = soak("--instances", "3", *common)  # never appends to a soak silently
    assert refused.returncode != 0 and "--resume" in refused.stderr

    again = soak("--instances", "5", *common, "--resume")
    assert again.returncode == 0, again.stderr
    assert out.read_text().startswith(before)
    metas, records = lines(out)
    assert sorted(r["index"] for r in records) == [0, 1, 2, 3, 4]  # nothing ran twice
    assert [m["resumed"] for m in metas] == [False, True]

    summary = soak("--summary", str(out), "--markdown")
    assert summary.returncode == 0, summary.stderr
    assert "| `mse-balanced-biasfree` | proven |" in summary.stdout
    assert "**5 instances**" in summary.stdout


def test_a_crash_and_a_false_refutation_are_recorded_not_fatal(tmp_path: Path) -> None:
    crashing, wrong = tmp_path / "crashing.py", tmp_path / "wrong_region.py"
    crashing.write_text(CRASHING)
    wrong.write_text(WRONG_REGION)
    out = tmp_path / "bad.jsonl"
    files = ["--claim-file", str(crashing), "--claim-file", str(wrong)]
    claims = ["--claims", "soak-crash,maxmargin-sel"]
    done = soak("--instances", "2", "--restarts", "2", *files, *claims, "--out", str(out))
    assert done.returncode == 1, done.stderr
    assert "false refutations: 1" in done.stdout and "crashes: 1" in done.stdout
    _, records = lines(out)
    by_claim = {r["claim"]: r for r in records}
    crash = by_claim["soak-crash"]
    assert crash["verdict"] == "crash"
    assert crash["crash"]["type"] == "RuntimeError" and "deliberate" in crash["crash"]["message"]
    refuted = by_claim["maxmargin-sel"]
    assert refuted["verdict"] == "refuted"
    refutation = refuted["refutation"]
    assert refutation["false"] and "proven region" in refutation["why"]
    assert refutation["recheck"] == {"verdict": "refuted", "exit": 1}  # the real CLI agrees
    assert Path(refutation["counterexample"]).exists()
    assert soak("--summary", str(out)).returncode == 1


def test_a_refutation_stands_only_where_recheck_confirms_it() -> None:
    false_refutation = script().false_refutation
    confirmed = {"verdict": "refuted", "exit": 1}
    assert false_refutation("certified", "x.npz", confirmed) is None
    assert false_refutation("proven", "x.npz", confirmed)  # a proven region: false by definition
    assert false_refutation("certified", "x.npz", {"verdict": "inconclusive", "exit": 3})
    assert false_refutation("certified", "x.npz", {"verdict": None, "exit": 2, "error": "bad"})
    assert false_refutation("certified", None, None)  # nothing to recheck


def test_a_line_cut_short_is_dropped_before_resuming(tmp_path: Path) -> None:
    soak_module = script()
    path = tmp_path / "cut.jsonl"
    path.write_text('{"meta": {"seed": 0}}\n{"index": 0, "claim": "a", "verdict": "crash"}\n{"ind')
    soak_module.trim_partial_line(path)
    metas, records = soak_module.read_lines(path)
    assert path.read_text().endswith("}\n") and len(metas) == 1 and len(records) == 1
