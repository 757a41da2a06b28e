"""The max-margin problem's engine parts: the one-layer certificate
(ncverify/evidence/certificates/max_margin.py: the exact eigenvalue count, the enclosure of the
simplex-encoded labels' value, weak duality on random multipliers against random feasible
logits, the bound meeting an independent primal solve), the claim-agnostic runs
(evidence/margin_search.py) and the KKT check (evidence/margin_kkt.py)."""

from __future__ import annotations

from fractions import Fraction

import mpmath
import numpy as np
import pytest
import sympy as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from ncverify.evidence.certificates.max_margin import a_of, dual_bound, negative_eigenvalues
from ncverify.evidence.margin_kkt import kkt
from ncverify.evidence.margin_search import multistart
from ncverify.model.max_margin import (
    at_margin_one,
    labels,
    min_margin,
    scale_free,
    schatten,
    schatten_enclosure,
    sel_value,
)
from theorems._max_margin import orthoplex, witness

#: The counts on which the one-layer value is to be certified.
COUNTS = [(10, 10, 10, 10), (50, 10, 10, 10), (100, 100, 1, 1), (300, 100, 20, 5), (9, 1, 1, 1, 1)]

counts_st = st.lists(st.integers(1, 60), min_size=2, max_size=6).map(tuple)


def nuclear(z: np.ndarray, counts: tuple[int, ...]) -> float:
    return float(np.linalg.norm(z @ np.diag(np.sqrt(counts)), "nuc"))


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
    """The singular values of `(I - J/K) sqrt(n)` are `sqrt(n)`, K - 1 times, and 0: the
    enclosure contains `(K - 1) sqrt(n)` exactly, even where it is narrower than a double's ulp
    (compared as rationals: its ends were once rounded to the nearest doubles)."""
    lo, hi = sel_value((n,) * k)
    exact = (k - 1) * sp.sqrt(n)
    assert _rational(lo) <= exact <= _rational(hi)


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


# ---- the claim-agnostic runs and the KKT check (margin_search.py, margin_kkt.py) ------------------
def sel(k: int) -> np.ndarray:
    return np.eye(k) - np.ones((k, k)) / k


@pytest.mark.parametrize("counts", COUNTS, ids=lambda c: ",".join(map(str, c)))
def test_one_layer_runs_never_go_below_the_rigorous_bound(counts: tuple[int, ...]) -> None:
    """Weak duality ties the runs to the certificate: no run's exact value (at margin 1) lies
    below the rigorous lower bound, and the best one reaches it (the problem is convex)."""
    bound = float(dual_bound(counts).value)
    runs = multistart(counts, depth=1, restarts=4, seed=0)
    assert all(r.value >= bound * (1 - 1e-12) for r in runs)
    assert all(min_margin(r.z) == pytest.approx(1.0) for r in runs)
    assert min(r.value for r in runs) == pytest.approx(bound, rel=1e-6)


@pytest.mark.parametrize(("k", "depth"), [(6, 2), (4, 3)])
def test_at_depth_the_runs_find_a_code_below_the_labels(k: int, depth: int) -> None:
    """Where the orthoplex code beats the simplex-encoded labels (an integer comparison in
    theorems/_max_margin.py), the claim-agnostic runs find a point below the labels, as good as
    the code; the code's value is written out here from its singular values."""
    counts = (10,) * k
    q = 2 / (depth + 1)
    code = orthoplex(k) @ orthoplex(k).T
    code_value = float(np.sum(np.linalg.svd(code * np.sqrt(10), compute_uv=False)[: k // 2] ** q))
    labels = (k - 1) * 10 ** (q / 2)
    assert code_value < labels
    best = min(multistart(counts, depth, restarts=12, seed=0), key=lambda r: r.value)
    assert min_margin(best.z) == pytest.approx(1.0)
    assert schatten(best.z, counts, q) == pytest.approx(best.value)
    # the runs end a smoothing width away from the code (tiny singular values that the exact
    # value still counts): below the labels, and at the code's value to 1e-4
    assert best.value < labels and best.value <= code_value * (1 + 1e-4)


@pytest.mark.parametrize("counts", [*COUNTS, (7, 7, 7, 7, 7, 7)], ids=str)
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_the_labels_are_a_kkt_point(counts: tuple[int, ...], depth: int) -> None:
    result = kkt(sel(len(counts)), counts, depth)
    assert result.residual < 1e-10
    assert (result.multipliers >= 0).all() and result.active == len(counts) * (len(counts) - 1)
    if depth == 1:  # the nuclear norm's subgradient bound on the null-space block
        assert result.leftover_norm <= 1 + 1e-9


@given(st.integers(3, 6), st.integers(1, 3), st.integers(0, 2**31 - 1))
@settings(max_examples=20, deadline=None)
def test_a_random_feasible_point_is_not_a_kkt_point(k: int, depth: int, seed: int) -> None:
    """Random full-rank logits at margin 1 have a few active margins only, too few to balance the
    gradient: the residual is far from zero.  (A residual that is always small would pass any
    point.)"""
    rng = np.random.default_rng(seed)
    z = np.eye(k) + 0.5 * rng.standard_normal((k, k))
    if min_margin(z) <= 0:
        z = z + (1 - min_margin(z)) * np.eye(k)
    assert kkt(z, (5,) * k, depth).residual > 1e-3


# ---- exact values of any rational point ------------------------------------------------------------
@pytest.mark.parametrize(("k", "depth"), [(6, 2), (7, 2), (4, 3), (5, 3), (8, 4)])
def test_the_witness_codes_evaluate_exactly_to_their_closed_forms(k: int, depth: int) -> None:
    """The codes' enclosures contain their closed-form values: `r 2^q n^{q/2}` for the orthoplex
    (singular values 2, from `U^T U = 2 I`), `((r-1) 2^q + ((K-1)/K)^{q/2}) n^{q/2}` for the
    orthoplex less a vertex with its lone class's column centred (exact rationals: that column
    is `e - 1/K`); the ETF's contains `(K - 1) n^{q/2}`; and the enclosures decide the
    comparison as theorems/_max_margin.py does."""
    n, q = 9, Fraction(2, depth + 1)
    code = [[Fraction(int(x)) for x in row] for row in orthoplex(k) @ orthoplex(k).T]
    r = (k + 1) // 2
    if k % 2:  # centre the lone class's column, exactly
        mean = sum(row[-1] for row in code) / k
        for row in code:
            row[-1] -= mean
        closed = ((r - 1) * 2 ** float(q) + ((k - 1) / k) ** float(q / 2)) * n ** (q / 2)
    else:
        closed = r * 2 ** float(q) * n ** (q / 2)
    lo, hi = schatten_enclosure(code, (n,) * k, q)
    assert float(lo) <= closed * (1 + 1e-14) and closed * (1 - 1e-14) <= float(hi)
    etf_lo, etf_hi = schatten_enclosure(labels(k), (n,) * k, q)
    assert float(etf_lo) <= (k - 1) * n ** (q / 2) * (1 + 1e-14) <= float(etf_hi) * (1 + 2e-14)
    assert (hi < etf_lo) == (witness(k, depth) is not None)  # the enclosures decide alike


@given(counts_st, st.integers(1, 3), st.integers(0, 2**31 - 1))
@settings(max_examples=25, deadline=None)
def test_a_float_point_becomes_an_exactly_feasible_point_with_an_enclosed_value(
    counts: tuple[int, ...], depth: int, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    k = len(counts)
    z = np.eye(k) + 0.4 * rng.standard_normal((k, k))
    if min_margin(z) <= 0:
        with pytest.raises(ValueError):
            at_margin_one(z)
        return
    exact = at_margin_one(z)
    assert min(exact[c][c] - exact[j][c] for c in range(k) for j in range(k) if j != c) == 1
    lo, hi = schatten_enclosure(exact, counts, Fraction(2, depth + 1))
    value = scale_free(z, counts, 2 / (depth + 1))
    assert float(lo) <= value * (1 + 1e-12) and value * (1 - 1e-12) <= float(hi)
    assert hi - lo < 1e-40


def _rational(x: mpmath.mpf) -> sp.Rational:
    """An mpf exactly, as `man * 2**exp`."""
    return sp.Integer(int(x.man)) * sp.Integer(2) ** int(x.exp)
