"""A verdict may rest on the certificate alone (no run at the prediction, the value proven by a
rigorous certificate): then the certificate and the claim must share no root-isolation code, or
one bug could make both agree on a wrong number.  Break each side's root isolation in turn and
show that the other side neither calls it nor changes."""

from __future__ import annotations

from fractions import Fraction

import pytest

import theorems
from ncverify import Problem
from ncverify.evidence.certificates import separable_reduction
from ncverify.model import scalar as symbolic
from theorems import _balanced

CLAIM_IDS = ["mse-balanced-biasfree", "mse-balanced-bias", "mse-imbalanced-biasfree"]
INSTANCES = {
    "mse-balanced-biasfree": Problem.build(
        counts="5,5,5", depth=3, width=4, lambda_w="2e-3", lambda_h="3e-3"
    ),
    "mse-balanced-bias": Problem.build(
        counts="6,6,6", depth=2, width=4, lambda_w="1e-2", lambda_h="1e-3", bias="free"
    ),
    "mse-imbalanced-biasfree": Problem.build(
        counts="40,10,3", depth=3, width=4, lambda_w="1e-2", lambda_h="1e-2"
    ),
}


def _broken(*args: object, **kwargs: object) -> object:
    raise AssertionError("this side must not use the other side's root isolation")


@pytest.mark.parametrize("claim_id", CLAIM_IDS)
def test_the_claims_roots_do_not_use_the_certificates(
    claim_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    problem = INSTANCES[claim_id]
    claim = theorems.get(claim_id)
    expected = claim.closed_form(problem).objective
    # fresh caches: a cached result would hide a call
    symbolic.minimise_mode.cache_clear()
    for name in ("real_roots_in", "largest_root_in", "stationary_candidates", "minimise_mode"):
        monkeypatch.setattr(symbolic, name, _broken)
    _clear_claim_caches()
    assert claim.closed_form(problem).objective == expected


@pytest.mark.parametrize("claim_id", CLAIM_IDS)
def test_the_certificates_roots_do_not_use_the_claims(
    claim_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    problem = INSTANCES[claim_id]
    before = separable_reduction(problem)
    symbolic.minimise_mode.cache_clear()
    monkeypatch.setattr(_balanced, "alive_root", _broken)
    monkeypatch.setattr(_balanced, "threshold_gain", _broken)
    after = separable_reduction(problem)
    assert after.bound_exact == before.bound_exact


def test_both_sides_agree_on_the_roots_they_compute_independently() -> None:
    # the same root, to 45 digits, from two codes: the claim's bisection and the certificate's
    for depth in (2, 3, 5, 8):
        thr = symbolic.collapse_threshold(depth)
        for factor in (Fraction(1, 10**9), Fraction(1, 7), Fraction(99, 100)):
            rho = thr * factor
            claim_root = _balanced.alive_root(depth, rho)
            mode = symbolic.minimise_mode(depth, rho)
            assert mode.regime == "alive"
            assert abs(float(claim_root) - mode.gamma_float) < 1e-15
            assert abs(symbolic.mp(claim_root, 50) - symbolic.mp(mode.gamma, 50)) < 1e-45


def _clear_claim_caches() -> None:
    for module in ("mse_imbalanced_biasfree",):
        mod = __import__(f"theorems.{module}", fromlist=["_threshold_gain"])
        mod._threshold_gain.cache_clear()
