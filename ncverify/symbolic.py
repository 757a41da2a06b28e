"""Exact global minimisation of the one-variable problems the MSE claims reduce to.

After lemmas 1-3 (THEOREMS.md §2) every MSE claim splits into one scalar problem per mode.
With the mode's gain `gamma >= 0` (the diagonal entry of `W Hbar`), normalised by its loss
weight, the scalar problem is

$$\\psi_\\rho(\\gamma) = \\tfrac12(\\gamma - 1)^2 + \\tfrac{M+1}{2}\\,\\rho^{1/(M+1)}\\,\\gamma^{q},
  \\qquad q = \\tfrac{2}{M+1},$$

where `rho = N^{M+1} P / n^M` is rational whenever the inputs are.  For `gamma > 0` its
stationary points are exactly the roots in `(0, 1)` of the polynomial

$$p_\\rho(\\gamma) = \\gamma^{M-1}(1-\\gamma)^{M+1} - \\rho$$

(raise `(1-gamma) gamma^{1-q} = rho^{1/(M+1)}` to the power `M+1`: both sides are positive on
`(0, 1)`, and `psi' > 0` for `gamma >= 1`).  `minimise_mode` isolates *every* real root of `p`
in `(0, 1)` exactly (sympy, rational arithmetic), encloses `psi` at each one with mpmath interval
arithmetic, and compares every candidate — zero included — by value.  When the enclosures cannot
separate two candidates, the exact identity

$$\\psi_\\rho(\\gamma) - \\psi_\\rho(0) = \\tfrac{\\gamma}{2}\\,\\big(M - 1 - M\\gamma\\big)
  \\quad\\text{at every stationary } \\gamma > 0$$

decides it by comparing an algebraic number with a rational, exactly; equality is a *tie* and is
reported as such.  No "largest root" shortcut is taken anywhere.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

import mpmath
import sympy as sp

GAMMA = sp.Symbol("gamma", positive=True)
DIGITS = 40


def to_rational(x: Fraction | int) -> sp.Rational:
    x = Fraction(x)
    return sp.Rational(x.numerator, x.denominator)


def stationarity_polynomial(depth: int, rho: Fraction) -> sp.Poly:
    """`p(gamma) = gamma^{M-1} (1-gamma)^{M+1} - rho`, over the rationals."""
    m = depth
    return sp.Poly(GAMMA ** (m - 1) * (1 - GAMMA) ** (m + 1) - to_rational(rho), GAMMA, domain="QQ")


def collapse_threshold(depth: int) -> Fraction:
    """`thr_M = (M-1)^{M-1} / M^{2M}`: the value of `p + rho` at `gamma = (M-1)/M`."""
    m = depth
    return Fraction((m - 1) ** (m - 1), m ** (2 * m)) if m > 1 else Fraction(1)


def psi_interval(depth: int, rho: Fraction, lo: Fraction, hi: Fraction):  # noqa: ANN201
    """An mpmath interval enclosing `psi_rho` on `[lo, hi]` (`0 < lo <= hi`)."""
    iv = mpmath.iv
    m = depth
    saved, iv.prec = iv.prec, 200
    try:
        # interval division of exact integers encloses each rational endpoint
        g_lo = iv.mpf(lo.numerator) / iv.mpf(lo.denominator)
        g_hi = iv.mpf(hi.numerator) / iv.mpf(hi.denominator)
        g = iv.mpf([g_lo.a, g_hi.b])
        r = iv.mpf(rho.numerator) / iv.mpf(rho.denominator)
        q = iv.mpf(2) / iv.mpf(m + 1)
        power = iv.exp(q * iv.log(g))
        rho_root = iv.exp(iv.log(r) / iv.mpf(m + 1))
        return (g - 1) ** 2 / 2 + iv.mpf(m + 1) / 2 * rho_root * power
    finally:
        iv.prec = saved


@dataclass(frozen=True)
class Candidate:
    """A stationary point of `psi` in `(0, 1)` (or the boundary point 0)."""

    gamma: sp.Expr  # exact: 0, a Rational, or a CRootOf
    interval: tuple[Fraction, Fraction]
    value: mpmath.mpf  # psi at gamma, DIGITS significant digits


@dataclass(frozen=True)
class ModeMinimum:
    """Exact global minimum of `psi_rho` over `gamma >= 0`."""

    depth: int
    rho: Fraction
    candidates: tuple[Candidate, ...]
    best: tuple[int, ...]  # indices of the minimising candidates (more than one = tie)

    @property
    def tie(self) -> bool:
        return len(self.best) > 1

    @property
    def gamma(self) -> sp.Expr:
        """The minimising gain (the largest one in a tie)."""
        return max((self.candidates[i] for i in self.best), key=lambda c: c.interval[0]).gamma

    @property
    def gamma_float(self) -> float:
        return float(sp.N(self.gamma, DIGITS))

    @property
    def value(self) -> mpmath.mpf:
        return self.candidates[self.best[0]].value

    @property
    def regime(self) -> str:
        if self.tie:
            return "tie"
        return "alive" if self.gamma != 0 else "collapsed"


def stationary_candidates(depth: int, rho: Fraction) -> list[Candidate]:
    """Zero, and every root of `p_rho` in the open interval (0, 1), each with `psi` there."""
    out = [Candidate(sp.Integer(0), (Fraction(0), Fraction(0)), mpmath.mpf(1) / 2)]
    poly = stationarity_polynomial(depth, rho)
    # real_roots and intervals both list the distinct real roots in increasing order
    roots = list(dict.fromkeys(sp.real_roots(poly)))
    boxes = poly.intervals(eps=sp.Rational(1, 10**30))
    for root, ((lo, hi), _mult) in zip(roots, boxes, strict=True):
        lo_f, hi_f = Fraction(int(lo.p), int(lo.q)), Fraction(int(hi.p), int(hi.q))
        if not (0 < root < 1):
            continue
        m = depth
        with mpmath.workdps(DIGITS + 10):
            g = mpmath.mpf(sp.N(root, DIGITS + 10))
            rho_root = mpmath.root(mpmath.mpf(rho.numerator) / rho.denominator, m + 1)
            value = (g - 1) ** 2 / 2 + mpmath.mpf(m + 1) / 2 * rho_root * g ** (
                mpmath.mpf(2) / (m + 1)
            )
        out.append(Candidate(root, (lo_f, hi_f), value))
    return out


@lru_cache(maxsize=4096)
def minimise_mode(depth: int, rho: Fraction) -> ModeMinimum:
    """Global minimiser of `psi_rho` over `gamma >= 0`, decided exactly.

    >>> minimise_mode(1, Fraction(1, 4)).gamma   # M = 1: 1 - sqrt(rho)
    1/2
    >>> minimise_mode(3, Fraction(1, 10**6)).regime
    'alive'
    """
    if rho <= 0:
        raise ValueError("rho must be positive.")
    cands = stationary_candidates(depth, rho)
    best = [0]
    for i in range(1, len(cands)):
        c = _compare(depth, rho, cands[i], cands[best[0]])
        if c < 0:
            best = [i]
        elif c == 0:
            best.append(i)
    return ModeMinimum(depth, rho, tuple(cands), tuple(best))


def _compare(depth: int, rho: Fraction, a: Candidate, b: Candidate) -> int:
    """Sign of `psi(a) - psi(b)`: rigorous intervals first, the exact identity when they overlap."""
    ia = _enclosure(depth, rho, a)
    ib = _enclosure(depth, rho, b)
    if ia.b < ib.a:
        return -1
    if ib.b < ia.a:
        return 1
    # psi(g) - psi(0) = g (M - 1 - M g) / 2 at stationary g > 0: compare g with (M-1)/M exactly
    diff = _exact_excess(depth, a.gamma) - _exact_excess(depth, b.gamma)
    if a.gamma.is_Rational and b.gamma.is_Rational:
        return int(sp.sign(diff))
    # distinct algebraic numbers of this degree and height differ far above 10^-100
    value = sp.N(diff, 120)
    if abs(value) < sp.Float("1e-110"):
        return 0
    return -1 if value < 0 else 1


def _enclosure(depth: int, rho: Fraction, c: Candidate):  # noqa: ANN202
    if c.gamma == 0:
        return mpmath.iv.mpf([0.5, 0.5])
    return psi_interval(depth, rho, *c.interval)


def _exact_excess(depth: int, gamma: sp.Expr) -> sp.Expr:
    """`psi(gamma) - psi(0)` at a stationary point, by the identity (exact for algebraic gamma)."""
    m = depth
    return gamma * (m - 1 - m * gamma) / 2


def largest_root_in(depth: int, rho: Fraction, lo: Fraction, hi: Fraction) -> sp.Expr | None:
    """The largest root of `p_rho` in the open interval `(lo, hi)`, or None if there is none."""
    poly = stationarity_polynomial(depth, rho)
    roots = [r for r in sp.real_roots(poly) if to_rational(lo) < r < to_rational(hi)]
    return max(roots, key=lambda r: sp.N(r, DIGITS)) if roots else None


def mp(x: sp.Expr | Fraction | float, digits: int = DIGITS) -> mpmath.mpf:
    """High-precision value of an exact number."""
    if isinstance(x, Fraction):
        return mpmath.mpf(x.numerator) / x.denominator
    with mpmath.workdps(digits):
        return mpmath.mpf(sp.N(x, digits))
