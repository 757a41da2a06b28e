"""The truth regions of the claims (`Claim.truth_region`), over every registered claim.

A region is where a claim is established true, by a theorem (`proven`) or by one of ncverify's
exact certificates (`certified`); `scripts/soak.py` draws its instances there and counts any
refutation inside a proven region as a false one.  So every drawn instance must lie inside the
region *and* inside the claim's hypotheses, and be small enough for a check of seconds; a
certified region must rest on an exact certificate that the claim lists and that is exact on the
region's instances; an empty region must say why.  The region type itself refuses a declaration
that cannot be right.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np
import pytest

import theorems
from ncverify.claim import BASES, EXACT_CERTIFICATES, Claim, TruthRegion
from ncverify.evidence.certificates import CERTIFIERS

CLAIMS = sorted(theorems.registry())
DRAWS = 30
#: The soak's size budget: K <= 6, n <= 20, widths <= 8, depth <= 4.
LIMITS = {"K": 6, "count": 20, "width": 8, "depth": 4}


@pytest.fixture(params=CLAIMS)
def claim(request: pytest.FixtureRequest) -> Claim:
    return theorems.get(request.param)


def test_every_region_states_its_basis_and_why(claim: Claim) -> None:
    region = claim.truth_region
    assert isinstance(region, TruthRegion) and region.basis in BASES
    if region.is_empty:
        assert region.reason
    else:
        assert region.reference


def test_drawn_instances_lie_in_the_region_and_the_hypotheses(claim: Claim) -> None:
    region = claim.truth_region
    if region.is_empty:
        return
    rng = np.random.default_rng(0)
    for _ in range(DRAWS):
        problem = region.draw(rng)
        assert region.outside(problem) == [], problem.summary()
        assert claim.hypotheses(problem) == [], problem.summary()
        assert problem.K <= LIMITS["K"] and max(problem.counts) <= LIMITS["count"]
        assert max(problem.widths) <= LIMITS["width"] and problem.depth <= LIMITS["depth"]


def test_a_certified_region_rests_on_an_exact_certificate_of_the_claim(claim: Claim) -> None:
    region = claim.truth_region
    if region.basis != "certified":
        return
    assert region.certificate in claim.certificates
    assert region.certificate in EXACT_CERTIFICATES
    cert = CERTIFIERS[region.certificate](region.draw(np.random.default_rng(1)))
    assert cert is not None and cert.rigorous and cert.exact


def test_some_claims_are_soaked_and_the_empty_ones_say_why() -> None:
    regions = {cid: theorems.get(cid).truth_region for cid in CLAIMS}
    assert any(not r.is_empty for r in regions.values())
    assert regions["dnc-multiclass"].is_empty  # refuted at L >= 4: nothing is established


def test_draws_are_reproducible_and_the_lambdas_exact_decimals() -> None:
    region = theorems.get("mse-imbalanced-biasfree").truth_region
    first = region.draw(np.random.default_rng([3, 7]))
    assert first == region.draw(np.random.default_rng([3, 7]))
    lo, hi = (Fraction(x) for x in region.lambda_w)
    for lam in (*first.lambda_w, first.lambda_h):
        assert lo <= lam <= hi
        assert Fraction(f"{float(lam):.3g}") == lam  # three significant digits, exactly


def test_a_claim_that_declares_nothing_has_an_empty_region() -> None:
    class External(Claim):  # the four methods a claim must have, none used here
        id = "external"
        hypotheses = closed_form = minimiser = derivation = None

    region = External().truth_region
    assert region.is_empty and region.reason
    with pytest.raises(ValueError, match="empty"):
        region.draw(np.random.default_rng(0))
    problem = theorems.get("mse-balanced-bias").default_problem()
    assert not region.contains(problem) and region.outside(problem)


def test_membership_names_what_lies_outside() -> None:
    region = theorems.get("mse-balanced-bias").truth_region
    problem = region.draw(np.random.default_rng(2))
    assert region.contains(problem)
    assert any("bias" in why for why in region.outside(problem.with_(bias="none")))
    uneven = problem.with_(counts=(problem.counts[0] % 20 + 1, *problem.counts[1:]))
    assert region.outside(uneven) == ["the classes must be balanced"]
    big = problem.with_(lambda_h=Fraction(10))
    assert any("lambda_H" in why for why in region.outside(big))
    one_layer = theorems.get("ce-balanced").truth_region
    deep = one_layer.draw(np.random.default_rng(4))
    deep = deep.with_(depth=2, widths=deep.widths * 2, lambda_w=deep.lambda_w * 2)
    assert any("depth" in why for why in one_layer.outside(deep))


def test_a_two_group_region_draws_two_groups_and_knows_them() -> None:
    """Every draw has two counts, the smaller for at least two classes; other counts are
    outside, and say why."""
    region = theorems.get("ce-imbalanced-minority").truth_region
    rng = np.random.default_rng(3)
    for _ in range(50):
        problem = region.draw(rng)
        sizes = sorted(set(problem.counts))
        assert len(sizes) == 2 and problem.counts.count(sizes[0]) >= 2
        assert region.contains(problem)
    three = problem.with_(counts=(9, 5, 3, 3))
    assert any("two values" in why for why in region.outside(three))


@pytest.mark.parametrize(
    "fields",
    [
        {"basis": "believed", "reference": "x"},
        {"basis": "none"},  # an empty region without a reason
        {"basis": "proven"},  # no reference
        {"basis": "certified", "reference": "x"},  # no certificate
        {"basis": "certified", "reference": "x", "certificate": "random-starts"},
        {"basis": "certified", "reference": "x", "certificate": "convex-dual", "wide": True},
        {"basis": "certified", "reference": "x", "certificate": "convex-dual", "depth": (1, 1)},
        {"basis": "proven", "reference": "x", "wide": True, "widths": (1, 4)},
        {"basis": "proven", "reference": "x", "biases": ("regularised",)},  # no lambda_b range
        {"basis": "proven", "reference": "x", "classes": (3, 2)},
        {"basis": "proven", "reference": "x", "lambda_h": ("0", "1")},
        {"basis": "proven", "reference": "x", "two_groups": True},  # balanced by default
        {
            "basis": "proven",
            "reference": "x",
            "two_groups": True,
            "balanced": False,
            "classes": (2, 4),
        },  # fmt: skip
    ],
)
def test_a_declaration_that_cannot_be_right_is_refused(fields: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="inconsistent truth region"):
        TruthRegion(**fields)
