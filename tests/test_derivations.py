"""Every claim's worked derivation is checkable: each `sympy` step's identity simplifies to zero,
and each `test`/`lemma` step names a test (and each `sympy` step a function) that exists, so the
derivation shown by `ncverify derive` and the docs cannot cite something that is not there."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import sympy as sp

import theorems
from ncverify.app import render
from ncverify.claim import Step

ROOT = Path(__file__).resolve().parent.parent
CLAIMS = theorems.registry()
CHECKS = ("sympy", "test", "lemma")


def module_level_functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {
        node.name for node in tree.body if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }


def steps(claim_id: str) -> list[Step]:
    out = CLAIMS[claim_id].derivation()
    assert out, f"{claim_id} has an empty derivation"
    return out


@pytest.mark.parametrize("claim_id", sorted(CLAIMS))
def test_every_sympy_step_verifies(claim_id: str) -> None:
    symbolic = [s for s in steps(claim_id) if s.check == "sympy"]
    for step in symbolic:
        assert step.identity is not None, step.text
        assert step.verify_identity(), f"{claim_id}: {step.reference} does not simplify to 0"


@pytest.mark.parametrize("claim_id", sorted(CLAIMS))
def test_every_step_names_something_that_exists(claim_id: str) -> None:
    for step in steps(claim_id):
        assert step.check in CHECKS, step.check
        assert step.text.strip() and step.formula.strip()
        path, _, name = step.reference.partition("::")
        assert path and name, f"reference {step.reference!r} is not 'path::name'"
        file = ROOT / path
        assert file.is_file(), f"{claim_id} cites {path}, which does not exist"
        if step.check in ("test", "lemma"):
            assert path.startswith("tests/") and name.startswith("test_"), step.reference
        assert name in module_level_functions(file), (
            f"{claim_id} cites {step.reference}, which does not exist"
        )


@pytest.mark.parametrize("claim_id", ["mse-balanced-biasfree", "mse-balanced-bias"])
def test_balanced_claims_cite_the_three_lemmas(claim_id: str) -> None:
    refs = {s.reference for s in steps(claim_id)}
    for lemma in ("test_lemma1_nc1", "test_lemma2_factorisation_bound", "test_lemma3_separation"):
        assert f"tests/test_lemmas.py::{lemma}" in refs
    assert "tests/test_claims.py::test_predicted_point_is_stationary_with_claimed_value" in refs


def test_verify_identity_can_fail() -> None:
    """A wrong identity is reported as failing, and a `sympy` step without one is not verified:
    the checks above are not vacuous."""
    x = sp.Symbol("x", positive=True)
    wrong = Step("wrong", "x^2 = x", "sympy", "nowhere::nothing", lambda: x**2 - x)
    right = Step(
        "right",
        "(x+1)^2 = x^2+2x+1",
        "sympy",
        "nowhere::nothing",
        lambda: (x + 1) ** 2 - (x**2 + 2 * x + 1),
    )
    missing = Step("missing", "x = x", "sympy", "nowhere::nothing")
    assert not wrong.verify_identity()
    assert right.verify_identity()
    assert not missing.verify_identity()


@pytest.mark.parametrize("fmt", ["text", "markdown", "latex"])
def test_rendered_derivation_shows_every_step(fmt: str) -> None:
    claim = CLAIMS["mse-balanced-bias"]
    text = render.derivation(claim, fmt)
    for step in claim.derivation():
        # LaTeX escapes the underscores of the reference
        reference = step.reference.replace("_", "\\_") if fmt == "latex" else step.reference
        assert reference in text
