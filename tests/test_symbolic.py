"""`ncverify.model.scalar`: exact global minimisation of the per-mode problem

`psi_rho(gamma) = (gamma - 1)^2 / 2 + ((M+1)/2) rho^{1/(M+1)} gamma^q`, `q = 2/(M+1)`, over
`gamma >= 0`, checked against a brute-force search, the tie at the threshold, and `M = 1`.
"""

from __future__ import annotations

from fractions import Fraction

import mpmath
import pytest
import sympy as sp
from hypothesis import given
from hypothesis import strategies as st

from ncverify.model.scalar import (
    _integer_coefficients,
    _sign_at,
    collapse_threshold,
    minimise_mode,
    stationarity_polynomial,
    stationary_candidates,
)

depths = st.integers(1, 5)
# rho as a rational multiple of the collapse threshold, from far below to far above it
factors = st.fractions(min_value=Fraction(1, 50), max_value=Fraction(50), max_denominator=1000)


def psi(depth: int, rho: Fraction, gamma: mpmath.mpf) -> mpmath.mpf:
    m = depth
    r = mpmath.mpf(rho.numerator) / rho.denominator
    return (gamma - 1) ** 2 / 2 + mpmath.mpf(m + 1) / 2 * mpmath.root(r, m + 1) * gamma ** (
        mpmath.mpf(2) / (m + 1)
    )


def brute_force_minimum(depth: int, rho: Fraction) -> tuple[mpmath.mpf, mpmath.mpf]:
    """Minimum of psi over [0, 1] by a dense grid, refined three times around its best point.

    `[0, 1]` suffices: for gamma > 1 both terms of psi increase.  Each refinement searches
    +- two grid steps around the best point with a grid 25 times finer (steps 1e-2, 4e-4,
    1.6e-5, 6.4e-7), so a minimiser inside (0, 1), where psi' = 0, has its value found to
    ~1e-12 (psi'' is of order one there).  Evaluated with 30 digits.
    """
    with mpmath.workdps(30):
        lo, hi = mpmath.mpf(0), mpmath.mpf(1)
        best_g, best_v = mpmath.mpf(0), psi(depth, rho, mpmath.mpf(0))
        for _ in range(4):
            h = (hi - lo) / 100
            for i in range(101):
                g = lo + i * h
                v = psi(depth, rho, g)
                if v < best_v:
                    best_g, best_v = g, v
            lo, hi = max(mpmath.mpf(0), best_g - 2 * h), min(mpmath.mpf(1), best_g + 2 * h)
        return best_g, best_v


@given(depths, factors)
def test_minimise_mode_matches_brute_force(depth: int, factor: Fraction) -> None:
    rho = collapse_threshold(depth) * factor
    mode = minimise_mode(depth, rho)
    g_grid, v_grid = brute_force_minimum(depth, rho)
    with mpmath.workdps(40):
        # the exact minimum is never above a grid value, and the refined grid comes close to it
        assert mode.value <= v_grid + mpmath.mpf(10) ** -25
        assert v_grid - mode.value <= 1e-10
    # the minimiser itself agrees unless zero and the positive root nearly tie
    gaps = [abs(c.value - mode.value) for c in mode.candidates]
    if sorted(gaps)[1:2] == [] or sorted(gaps)[1] > 1e-6:
        assert abs(g_grid - mpmath.mpf(mode.gamma_float)) <= 1e-6
    assert mode.regime == ("alive" if mode.gamma_float > 0 else "collapsed")


@given(depths, factors)
def test_every_stationary_point_is_found(depth: int, factor: Fraction) -> None:
    """The candidates are zero and *every* root of the stationarity polynomial in (0, 1):
    none for M >= 2 above `max g^{M-1}(1-g)^{M+1}` (at g = (M-1)/(2M)), two below it; M = 1
    has the single root `1 - sqrt(rho)` while rho < 1."""
    rho = collapse_threshold(depth) * factor
    cands = stationary_candidates(depth, rho)
    assert cands[0].gamma == 0
    roots = [c.gamma for c in cands[1:]]
    if depth == 1:
        expected = 1 if rho < 1 else 0
    else:
        g_peak = Fraction(depth - 1, 2 * depth)
        peak = g_peak ** (depth - 1) * (1 - g_peak) ** (depth + 1)
        expected = 2 if rho < peak else (1 if rho == peak else 0)
    assert len(roots) == expected
    slack = Fraction(1, 10**35)
    for c in cands[1:]:
        # a root of p_rho, inside its isolating interval, and a stationary point of psi
        assert c.interval[0] - slack <= Fraction(str(sp.N(c.gamma, 45))) <= c.interval[1] + slack
        with mpmath.workdps(50):
            g = mpmath.mpf(str(sp.N(c.gamma, 50)))
            r = mpmath.mpf(rho.numerator) / rho.denominator
            assert abs(g ** (depth - 1) * (1 - g) ** (depth + 1) - r) < mpmath.mpf(10) ** -40
            slope = mpmath.diff(lambda t: psi(depth, rho, t), g)
            assert abs(slope) < mpmath.mpf(10) ** -30


@pytest.mark.parametrize("depth", [2, 3, 4, 5, 6])
def test_tie_exactly_at_the_threshold(depth: int) -> None:
    thr = collapse_threshold(depth)
    # the threshold is p + rho at g = (M-1)/M, computed here from its definition
    g_tie = Fraction(depth - 1, depth)
    assert thr == g_tie ** (depth - 1) * (1 - g_tie) ** (depth + 1)
    # psi(g_tie) = psi(0) = 1/2 exactly at rho = thr: the regulariser term
    # ((M+1)/2) (thr g^2)^{1/(M+1)} has thr g^2 = ((M-1)/M^2)^{M+1}, a perfect power, so
    # psi(g_tie) = 1/(2M^2) + (M+1)(M-1)/(2M^2) = 1/2 in exact rational arithmetic
    base = Fraction(depth - 1, depth**2)
    assert thr * g_tie**2 == base ** (depth + 1)
    assert (g_tie - 1) ** 2 / 2 + Fraction(depth + 1, 2) * base == Fraction(1, 2)
    mode = minimise_mode(depth, thr)
    assert mode.tie and mode.regime == "tie"
    assert sorted(mode.candidates[i].gamma for i in mode.best) == [0, sp.Rational(depth - 1, depth)]
    assert mode.gamma == sp.Rational(depth - 1, depth)  # the largest of the tied gains
    # a little either side, the tie breaks the right way
    below = minimise_mode(depth, thr * Fraction(999, 1000))
    above = minimise_mode(depth, thr * Fraction(1001, 1000))
    assert below.regime == "alive" and below.gamma_float > (depth - 1) / depth
    assert above.regime == "collapsed" and above.gamma == 0


@given(st.fractions(min_value=Fraction(1, 10**4), max_value=Fraction(4), max_denominator=10**4))
def test_one_layer_gain_is_soft_threshold(rho: Fraction) -> None:
    mode = minimise_mode(1, rho)
    assert not mode.tie  # M = 1 is convex: never a tie
    with mpmath.workdps(40):
        r = mpmath.mpf(rho.numerator) / rho.denominator
        expected = max(mpmath.mpf(0), 1 - mpmath.sqrt(r))
        assert abs(mpmath.mpf(str(sp.N(mode.gamma, 40))) - expected) < mpmath.mpf(10) ** -35
        # optimal value psi(1 - sqrt rho) = sqrt(rho) - rho/2 while alive, 1/2 otherwise
        value = mpmath.sqrt(r) - r / 2 if rho < 1 else mpmath.mpf(1) / 2
        assert abs(mode.value - value) < mpmath.mpf(10) ** -35


@pytest.mark.parametrize("square", [Fraction(1, 4), Fraction(9, 16), Fraction(1, 100)])
def test_one_layer_perfect_squares_are_rational(square: Fraction) -> None:
    mode = minimise_mode(1, square)
    root = Fraction(int(square.numerator**0.5), int(square.denominator**0.5))
    assert mode.gamma == sp.Rational((1 - root).numerator, (1 - root).denominator)


@pytest.mark.parametrize("depth", [1, 2, 3])
def test_stationarity_polynomial_is_exact(depth: int) -> None:
    rho = Fraction(3, 1000)
    poly = stationarity_polynomial(depth, rho)
    gamma = poly.gens[0]
    expected = sp.expand(gamma ** (depth - 1) * (1 - gamma) ** (depth + 1) - sp.Rational(3, 1000))
    assert sp.expand(poly.as_expr() - expected) == 0
    assert poly.domain == sp.QQ  # rational coefficients: roots isolated exactly


def test_non_positive_rho_is_rejected() -> None:
    with pytest.raises(ValueError):
        minimise_mode(2, Fraction(0))


@given(
    st.lists(st.fractions(max_denominator=50), min_size=1, max_size=12),
    st.fractions(min_value=-3, max_value=3, max_denominator=10**6),
)
def test_integer_sign_matches_rational_evaluation(coeffs: list[Fraction], x: Fraction) -> None:
    """The bisection's integer evaluation `den^n p(num/den)` has the sign of `p(x)` itself."""
    exact = sum(c * x ** (len(coeffs) - 1 - i) for i, c in enumerate(coeffs))
    got = _sign_at(_integer_coefficients(coeffs), x.numerator, x.denominator)
    assert got == (exact > 0) - (exact < 0)
