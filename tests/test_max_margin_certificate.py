"""The one-layer max-margin certificate (ncverify/evidence/certificates/max_margin.py): the exact
eigenvalue count, the enclosure of the simplex-encoded labels' value, weak duality on random
multipliers against random feasible logits, and the bound meeting an independent primal solve
on the class counts of the max-margin issue."""

from __future__ import annotations

from fractions import Fraction

import mpmath
import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from ncverify.evidence.certificates.max_margin import (
    a_of,
    dual_bound,
    negative_eigenvalues,
    sel_value,
)

#: The counts on which the one-layer value is to be certified.
COUNTS = [(10, 10, 10, 10), (50, 10, 10, 10), (100, 100, 1, 1), (300, 100, 20, 5), (9, 1, 1, 1, 1)]

counts_st = st.lists(st.integers(1, 60), min_size=2, max_size=6).map(tuple)


def nuclear(z: np.ndarray, counts: tuple[int, ...]) -> float:
    return float(np.linalg.norm(z @ np.diag(np.sqrt(counts)), "nuc"))


def min_margin(z: np.ndarray) -> float:
    k = z.shape[0]
    return min(z[c, c] - z[j, c] for c in range(k) for j in range(k) if j != c)


@given(st.integers(2, 6), st.integers(0, 2**31 - 1))
@settings(max_examples=40, deadline=None)
def test_negative_eigenvalues_are_counted_exactly(k: int, seed: int) -> None:
    """Against numpy's eigenvalues, on random integer symmetric matrices `B + B^T` (an
    eigenvalue 0, which such matrices can have, is not negative)."""
    rng = np.random.default_rng(seed)
    b = rng.integers(-4, 5, size=(k, k))
    m = b + b.T
    evals = np.linalg.eigvalsh(m.astype(float))
    assert negative_eigenvalues(sp.Matrix(m.tolist())) == int(np.sum(evals < -1e-9))


@given(counts_st)
@settings(max_examples=30, deadline=None)
def test_the_sel_enclosure_contains_the_nuclear_norm(counts: tuple[int, ...]) -> None:
    k = len(counts)
    lo, hi = sel_value(counts)
    reference = nuclear(np.eye(k) - np.ones((k, k)) / k, counts)
    assert float(lo) - 1e-12 * reference <= reference <= float(hi) + 1e-12 * reference
    assert hi - lo < 1e-40


@pytest.mark.parametrize("k", [2, 3, 5, 8])
@pytest.mark.parametrize("n", [1, 7])
def test_balanced_sel_value_is_k_minus_one_root_n(k: int, n: int) -> None:
    lo, hi = sel_value((n,) * k)
    exact = (k - 1) * np.sqrt(n)
    assert float(lo) <= exact * (1 + 1e-15) and exact * (1 - 1e-15) <= float(hi)


@given(counts_st, st.integers(0, 2**31 - 1))
@settings(max_examples=40, deadline=None)
def test_weak_duality_on_random_multipliers_and_feasible_logits(
    counts: tuple[int, ...], seed: int
) -> None:
    """For random `mu >= 0`: `sum(mu) / ||A(mu) D^{-1}||` is below the value of every feasible
    `Z` (random logits rescaled to margin 1).  A wrong sign or transpose in `A(mu)` breaks it."""
    rng = np.random.default_rng(seed)
    k = len(counts)
    mu = rng.uniform(0, 1, size=(k, k)) * (rng.uniform(size=(k, k)) < 0.7)
    np.fill_diagonal(mu, 0.0)
    a = np.array([[float(x) for x in row] for row in a_of([[Fraction(x) for x in r] for r in mu])])
    op = np.linalg.norm(a / np.sqrt(np.asarray(counts, dtype=float))[None, :], 2)
    if op == 0:
        return
    bound = mu.sum() / op
    z = np.eye(k) + 0.3 * rng.standard_normal((k, k))
    margin = min_margin(z)
    if margin <= 0:
        return
    z = z / margin
    assert bound <= nuclear(z, counts) * (1 + 1e-12)


@pytest.mark.parametrize("counts", COUNTS, ids=lambda c: ",".join(map(str, c)))
def test_the_bound_is_rigorous_and_meets_the_primal_optimum(counts: tuple[int, ...]) -> None:
    """The exact re-check passes; the bound lies below the labels' value (weak duality, the
    labels are feasible) and within 1e-7 of it; an independent primal solve (cvxpy) agrees: the
    simplex-encoded labels are optimal at one layer for these counts."""
    import cvxpy as cp

    bound = dual_bound(counts)
    assert bound.holds(counts)
    lo, hi = sel_value(counts)
    value = mpmath.mpf(bound.value.numerator) / bound.value.denominator
    assert value <= hi
    assert float(lo - value) <= 1e-7 * float(lo)
    k = len(counts)
    z = cp.Variable((k, k))
    margins = [z[c, c] - z[j, c] >= 1 for c in range(k) for j in range(k) if j != c]
    primal = cp.Problem(cp.Minimize(cp.normNuc(z @ np.diag(np.sqrt(counts)))), margins)
    primal.solve(solver="CLARABEL")
    assert primal.value == pytest.approx(float(lo), rel=1e-6)


def test_a_bound_with_a_negative_multiplier_does_not_hold() -> None:
    bound = dual_bound((3, 2, 1))
    mu = [list(r) for r in bound.mu]
    mu[0][1] = Fraction(-1, 10**6)
    broken = type(bound)(bound.value, tuple(map(tuple, mu)), bound.t)
    assert not broken.holds((3, 2, 1))
    smaller_t = type(bound)(bound.value, bound.mu, bound.t / 2)
    assert not smaller_t.holds((3, 2, 1))
