"""Verified floating point (`ncverify.evidence.certificates.verified`): soundness against exact rational arithmetic.

The oracle is exact: `sigma I - X X^T` formed in rationals from the float inputs and decided by
the signs of its `LDL^T` pivots.  The verified check may say False for a positive definite
matrix (rounding noise), never True for one that is not; and it must say True when the smallest
eigenvalue is comfortably above its noise level.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from ncverify.evidence.certificates.verified import (
    ETA,
    HAS_EXTENDED,
    U,
    _Arithmetic,
    exact_gram_gap,
    exact_positive_definite,
    float_down,
    float_up,
    g_factor,
    gram_gap_positive,
    sum_squares_up,
)

PRECISIONS = [False, True] if HAS_EXTENDED else [False]


def _exact_norm_sq_estimate(x: np.ndarray) -> float:
    return float(np.linalg.norm(x, 2)) ** 2


def _frac(v: object) -> Fraction:
    """A float64 or long double, exactly."""
    return Fraction(*np.longdouble(v).as_integer_ratio())


def _oracle(sigma: float, x: np.ndarray) -> bool:
    return exact_positive_definite(exact_gram_gap(sigma, x))


def _hadamard(k: int) -> np.ndarray:
    h = np.array([[1.0]])
    while h.shape[0] < k:
        h = np.block([[h, h], [h, -h]])
    return h


# ---- the exact oracle itself -----------------------------------------------------------------
def test_exact_positive_definite_is_exact() -> None:
    rng = np.random.default_rng(7)
    for _ in range(40):
        k = int(rng.integers(1, 6))
        b = rng.integers(-2, 3, size=(k, k))
        m = [[Fraction(int(v)) for v in row] for row in b @ b.T]
        det = round(np.linalg.det(b.astype(float)))  # integer matrix: the rounded det is exact
        assert exact_positive_definite(m) == (det != 0)
    eps = Fraction(1, 2**200)
    assert not exact_positive_definite([[Fraction(1), Fraction(1)], [Fraction(1), 1 - eps]])
    assert exact_positive_definite([[Fraction(1), Fraction(1)], [Fraction(1), 1 + eps]])


# ---- the building blocks ---------------------------------------------------------------------
def test_directed_rounding_helpers() -> None:
    for x in (Fraction(1, 3), Fraction(-2, 7), Fraction(10**30 + 1, 10**12), Fraction(1, 2**1080)):
        assert Fraction(float_down(x)) <= x <= Fraction(float_up(x))
    for n in (1, 7, 100, 10**6):
        exact = n * Fraction(U) / (1 - 2 * n * Fraction(U))
        assert Fraction(g_factor(n)) >= exact
        assert Fraction(g_factor(n)) <= exact * (1 + Fraction(1, 10**6))  # and not absurdly large
    with pytest.raises(ValueError):
        g_factor(2**60)


@pytest.mark.parametrize("extended", PRECISIONS)
def test_matmul_error_bounds_hold_exactly(extended: bool) -> None:
    ar = _Arithmetic(np.longdouble if extended else np.float64)
    rng = np.random.default_rng(3)
    for scale in (1.0, 1e-150, 1e150):
        a = (rng.normal(size=(5, 7)) * scale).astype(ar.dtype)
        b = rng.normal(size=(7, 4)).astype(ar.dtype)
        product, err = ar.matmul_error(a, b)
        upper = ar.matmul_upper(np.abs(a), np.abs(b))
        fa = [[_frac(v) for v in row] for row in a]
        fb = [[_frac(v) for v in row] for row in b]
        for i in range(5):
            for j in range(4):
                exact = sum(fa[i][m] * fb[m][j] for m in range(7))
                magnitude = sum(abs(fa[i][m] * fb[m][j]) for m in range(7))
                assert abs(_frac(product[i, j]) - exact) <= _frac(err[i, j])
                assert magnitude <= _frac(upper[i, j])
        sums = ar.row_sums_up(np.abs(a))
        for i in range(5):
            assert sum(abs(v) for v in fa[i]) <= _frac(sums[i])


def test_sum_squares_up_bounds_the_exact_sum() -> None:
    rng = np.random.default_rng(4)
    for scale in (1.0, 1e-170, 1e-300, 1e150):  # squares that underflow are covered too
        x = rng.normal(size=(6, 6)) * scale
        exact = sum(Fraction(float(v)) ** 2 for v in x.ravel())
        assert exact <= Fraction(sum_squares_up(x))
    assert sum_squares_up(np.array([[5e-324]])) >= ETA  # a subnormal square underflows to 0


# ---- soundness and power of the positive-definiteness check ---------------------------------
@pytest.mark.parametrize("extended", PRECISIONS)
def test_positive_definite_passes(extended: bool) -> None:
    rng = np.random.default_rng(11)
    for k in (1, 3, 8, 30, 80):
        x = rng.normal(size=(k, k + 2))
        sigma = _exact_norm_sq_estimate(x) * (1 + 1e-9)
        assert gram_gap_positive(sigma, x, extended=extended)
        assert gram_gap_positive(10 * sigma, x, extended=extended)


@pytest.mark.parametrize("extended", PRECISIONS)
def test_tiny_negative_eigenvalue_fails(extended: bool) -> None:
    """`sigma` a relative `1e-12` below `||X||^2`: the oracle says not PD, and so must the check."""
    rng = np.random.default_rng(12)
    for k in (2, 4, 6):
        x = rng.normal(size=(k, k))
        sigma = _exact_norm_sq_estimate(x) * (1 - 1e-12)
        assert not _oracle(sigma, x)
        assert not gram_gap_positive(sigma, x, extended=extended)
        # ... and a relative 1e-12 above it passes (dense Q, K small: noise about K^2 u)
        sigma = _exact_norm_sq_estimate(x) * (1 + 1e-12)
        assert _oracle(sigma, x)
        assert gram_gap_positive(sigma, x, extended=extended)


@pytest.mark.parametrize("extended", PRECISIONS)
def test_exactly_singular_matrices_fail(extended: bool) -> None:
    """Matrices exactly on the boundary (`sigma = ||X||^2` exactly) are not PD: never True."""
    cases = [
        (1.0, np.diag([1.0, 0.5])),
        (1.0, np.full((2, 2), 0.5)),  # X X^T = [[1/2, 1/2], [1/2, 1/2]], eigenvalues 1 and 0
        (1.0, _hadamard(4) / 2),  # X X^T = I exactly: M = 0, with dense eigenvectors
        (2.0, _hadamard(8) / 2),  # X X^T = 2 I exactly
        (2.0**-60, np.diag([2.0**-30, 2.0**-31])),
        (2.0**200, np.diag([2.0**100, 1.0])),
    ]
    for sigma, x in cases:
        assert not gram_gap_positive(sigma, x, extended=extended)
        assert not gram_gap_positive(sigma, x, q=np.eye(x.shape[0]), extended=extended)
    # just inside the boundary: passes when the gap is well above the noise, and is then sound
    h = _hadamard(8) / 2  # X X^T = 2 I exactly
    assert gram_gap_positive(2.0 * (1 + 2.0**-40), h, extended=extended)
    tight = float(np.nextafter(2.0, np.inf))  # M = 2^-51 I: PD, below the noise of a dense Q
    if gram_gap_positive(tight, h, extended=extended):
        assert _oracle(tight, h)
    assert not gram_gap_positive(2.0, h, extended=extended)


def test_bad_inputs_fail() -> None:
    x = np.eye(2)
    assert not gram_gap_positive(0.0, x)
    assert not gram_gap_positive(-1.0, x)
    assert not gram_gap_positive(float("nan"), x)
    assert not gram_gap_positive(2.0, np.array([[np.inf, 0.0], [0.0, 1.0]]))
    assert not gram_gap_positive(2.0, x, q=np.full((2, 2), np.nan))
    assert not gram_gap_positive(2.0, x, q=np.zeros((2, 2)))  # a singular Q proves nothing
    assert gram_gap_positive(2.0, x, q=np.array([[1.0, 1.0], [1.0, -1.0]]))  # any nonsingular Q


@pytest.mark.parametrize("extended", PRECISIONS)
def test_agrees_with_the_exact_check_on_random_instances(extended: bool) -> None:
    """Sound always; equal to the oracle once the relative gap is above `1e-9`."""
    rng = np.random.default_rng(5)
    for trial in range(60):
        k = int(rng.integers(1, 6))
        m = int(rng.integers(1, 6))
        x = rng.normal(size=(k, m)) * 10.0 ** rng.integers(-8, 8)
        if trial % 3 == 0:  # low rank, repeated singular values
            x = np.outer(x[:, 0], x[0, :]) if m > 0 else x
        rel = float(rng.choice([-1e-3, -1e-9, -1e-13, 0.0, 1e-13, 1e-9, 1e-3]))
        sigma = _exact_norm_sq_estimate(x) * (1 + rel)
        if sigma <= 0:
            continue
        verified = gram_gap_positive(sigma, x, extended=extended)
        exact = _oracle(sigma, x)
        assert exact or not verified  # never True when not PD
        if abs(rel) >= 1e-9:
            assert verified == exact


@given(
    st.integers(1, 4),
    st.integers(1, 4),
    st.integers(-40, 40),
    st.floats(-1e-6, 1e-6, allow_nan=False),
    st.integers(0, 2**32 - 1),
)
def test_never_true_when_not_positive_definite(
    k: int, m: int, exponent: int, rel: float, seed: int
) -> None:
    rng = np.random.default_rng(seed)
    x = np.ldexp(rng.normal(size=(k, m)), exponent)
    sigma = _exact_norm_sq_estimate(x) * (1 + rel)
    if not sigma > 0:
        return
    for extended in PRECISIONS:
        if gram_gap_positive(sigma, x, extended=extended):
            assert _oracle(sigma, x)
