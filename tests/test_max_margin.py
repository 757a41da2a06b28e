"""The max-margin witnesses against the ETF (theorems/_max_margin.py, docs/theory/ce.md#max-margin).

The module decides by integer comparisons; here the codes are built, their margins checked, and
their values computed directly from the singular values of their logits, in floats, as the
reference."""

from __future__ import annotations

import numpy as np
import pytest

import theorems
from ncverify.model.problem import Problem
from theorems import _ce_search as ce_search
from theorems._max_margin import orthoplex, witness

CE = theorems.get("ce-balanced")


def schatten(z: np.ndarray, q: float) -> float:
    """`sum_i sigma_i(Z)^q` over the non-zero singular values."""
    s = np.linalg.svd(z, compute_uv=False)
    return float(np.sum(s[s > 1e-12] ** q))


def min_margin(z: np.ndarray) -> float:
    """`min_{k, j != k} z_kk - z_jk` over the columns (class k's logits)."""
    k = z.shape[0]
    return min(z[c, c] - z[j, c] for c in range(k) for j in range(k) if j != c)


@pytest.mark.parametrize("k", range(3, 13))
@pytest.mark.parametrize("depth", range(1, 6))
def test_a_witness_exists_exactly_when_the_code_beats_the_etf(k: int, depth: int) -> None:
    q = 2 / (depth + 1)
    etf = np.eye(k) - np.ones((k, k)) / k
    assert min_margin(etf) == pytest.approx(1.0) and schatten(etf, q) == pytest.approx(k - 1)
    code = orthoplex(k) @ orthoplex(k).T
    if k % 2:  # odd K: the lone class (the last, +e_r) has its logit column centred
        code[:, -1] -= code[:, -1].mean()
    assert min_margin(code) >= 1.0 - 1e-15 * k  # feasible: every margin at least 1
    value = schatten(code, q)
    found = witness(k, depth)
    assert (found is not None) == (value < k - 1), (k, depth, value)
    if found is not None:
        assert np.allclose(found.logits(), code, rtol=0, atol=1e-15)
        r = (k + 1) // 2
        expected = r * 2**q if k % 2 == 0 else (r - 1) * 2**q + ((k - 1) / k) ** (q / 2)
        assert value == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("k", range(3, 23, 2))
@pytest.mark.parametrize("depth", range(1, 6))
def test_centring_the_lone_class_keeps_its_margins_and_never_does_worse(k: int, depth: int) -> None:
    q = 2 / (depth + 1)
    plain = orthoplex(k) @ orthoplex(k).T
    centred = plain.copy()
    centred[:, -1] -= centred[:, -1].mean()
    assert min_margin(centred) == pytest.approx(min_margin(plain)) == pytest.approx(1.0)
    assert schatten(centred, q) < schatten(plain, q)


def test_the_pattern_of_the_issue_holds_never_at_one_layer() -> None:
    assert not any(witness(k, 1) for k in range(3, 60))
    assert [k for k in range(3, 40) if witness(k, 2)] == list(range(6, 40))
    for depth in range(3, 8):
        assert [k for k in range(3, 40) if witness(k, depth)] == list(range(4, 40))


@pytest.mark.parametrize(("k", "depth"), [(6, 2), (7, 2), (4, 3), (5, 3), (4, 2), (3, 3), (8, 1)])
def test_ce_balanced_names_the_witness_and_calls_it_asymptotic(k: int, depth: int) -> None:
    problem = Problem.build(classes=k, samples=10, depth=depth, width=8, loss="ce")
    notes = [n for n in CE.closed_form(problem).notes if "max-margin" in n]
    code = witness(k, depth)
    assert len(notes) == (code is not None)
    if code is not None:
        assert code.name in notes[0] and code.inequality in notes[0]
        assert notes[0].startswith("asymptotic, not a verdict at this lambda")


def test_the_search_starts_from_the_orthoplex_codes() -> None:
    rng = np.random.default_rng(0)
    names = {name for family, name, _ in ce_search.patterns(6, 5, rng) if family == "orthoplex"}
    assert names == {"orthoplex"}
    names = {name for family, name, _ in ce_search.patterns(7, 6, rng) if family == "orthoplex"}
    assert names == {"orthoplex less one vertex"}
    # no room for the code below its dimension r
    assert not [f for f, _, _ in ce_search.patterns(6, 2, rng) if f == "orthoplex"]
