"""Exact global minimisation of the one-variable problems the MSE claims reduce to.

After lemmas 1-3 (docs/theory/lemmas.md) every MSE claim splits into one scalar problem per mode.
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

import math
from dataclasses import dataclass
from enum import StrEnum
from fractions import Fraction
from functools import lru_cache

import mpmath
import sympy as sp

from ncverify.model.intervals import interval_precision


class Regime(StrEnum):
    """What a claim says of one class (or mode) at an instance."""

    ALIVE = "alive"  # a positive gain
    COLLAPSED = "collapsed"  # gain zero: w_k = 0 and hbar_k = 0
    TIE = "tie"  # exactly at a threshold: zero and a positive gain are both optimal
    BOTTLENECK = "bottleneck"  # would be alive, but the bottleneck R leaves no room for it


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
    m = depth
    with interval_precision(200) as iv:
        # interval division of exact integers encloses each rational endpoint
        g_lo = iv.mpf(lo.numerator) / iv.mpf(lo.denominator)
        g_hi = iv.mpf(hi.numerator) / iv.mpf(hi.denominator)
        g = iv.mpf([g_lo.a, g_hi.b])
        r = iv.mpf(rho.numerator) / iv.mpf(rho.denominator)
        q = iv.mpf(2) / iv.mpf(m + 1)
        power = iv.exp(q * iv.log(g))
        rho_root = iv.exp(iv.log(r) / iv.mpf(m + 1))
        return (g - 1) ** 2 / 2 + iv.mpf(m + 1) / 2 * rho_root * power


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
        return float(self.gamma)

    @property
    def value(self) -> mpmath.mpf:
        return self.candidates[self.best[0]].value

    @property
    def regime(self) -> Regime:
        if self.tie:
            return Regime.TIE
        return Regime.ALIVE if self.gamma != 0 else Regime.COLLAPSED


def _horner(coeffs: list[Fraction], x: Fraction) -> Fraction:
    acc = Fraction(0)
    for c in coeffs:
        acc = acc * x + c
    return acc


def _integer_coefficients(coeffs: list[Fraction]) -> list[int]:
    """The coefficients times the (positive) lcm of their denominators: the same signs."""
    scale = 1
    for c in coeffs:
        scale = scale * c.denominator // math.gcd(scale, c.denominator)
    return [int(c * scale) for c in coeffs]


def _sign_at(ints: list[int], num: int, den: int) -> int:
    """Sign of the polynomial at `num / den` (`den > 0`), in integers only.

    `den^n p(num/den) = sum_i c_i num^(n-i) den^i` by Horner's rule: no gcd per operation,
    which made the bisection on `Fraction`s the slowest step of a deep closed form.
    """
    acc, den_power = ints[0], 1
    for c in ints[1:]:
        den_power *= den
        acc = acc * num + c * den_power
    return (acc > 0) - (acc < 0)


@dataclass(frozen=True)
class Root:
    """A real root isolated in `[lo, hi]` (no other root there); `exact` when it is rational."""

    lo: Fraction
    hi: Fraction
    exact: Fraction | None = None

    @property
    def value(self) -> sp.Expr:
        """The root exactly when rational, else a decimal inside `[lo, hi]` (width < 2^-160)."""
        if self.exact is not None:
            return sp.Rational(self.exact.numerator, self.exact.denominator)
        mid = (self.lo + self.hi) / 2
        with mpmath.workdps(60):
            return sp.Float(mpmath.mpf(mid.numerator) / mid.denominator, 50)


def real_roots_in(
    depth: int, rho: Fraction, lo: Fraction, hi: Fraction, width: Fraction = Fraction(1, 2**160)
) -> list[Root]:
    """Every root of `p_rho` in the open interval `(lo, hi)`, isolated exactly.

    sympy isolates the distinct real roots of the square-free part with rational endpoints;
    each is then refined by bisection on the exact sign of that polynomial (Python integers,
    cheap even for huge rationals), and a rational root is recognised exactly.
    """
    sqf = stationarity_polynomial(depth, rho).sqf_part()
    coeffs = [Fraction(int(c.p), int(c.q)) for c in sqf.all_coeffs()]
    ints = _integer_coefficients(coeffs)
    out = []
    for (a_s, b_s), _mult in sqf.intervals():
        a = Fraction(int(sp.Rational(a_s).p), int(sp.Rational(a_s).q))
        b = Fraction(int(sp.Rational(b_s).p), int(sp.Rational(b_s).q))
        root = _refine(coeffs, ints, a, b, width)
        if root.hi <= lo or root.lo >= hi:
            continue
        if root.exact is not None and not (lo < root.exact < hi):
            continue
        for edge in (lo, hi):  # a root exactly at an edge is outside the open interval
            if root.lo <= edge <= root.hi and _horner(coeffs, edge) == 0:
                break
        else:
            out.append(root)
    return out


def _refine(
    coeffs: list[Fraction], ints: list[int], a: Fraction, b: Fraction, width: Fraction
) -> Root:
    """Bisect the one simple root in the open interval `(a, b)` (`a == b`: the root is `a`).

    An endpoint may itself be a neighbouring root (sympy's intervals are open); the sign just
    right of `a` is then the sign of the derivative there (the polynomial is square-free).
    `ints` are the coefficients scaled to integers (`_integer_coefficients`).  Every bisection
    point is `(lo + j (hi - lo) / 2^k)`: it is kept as an integer numerator over
    the common denominator `den`, which doubles at each step.
    """
    if a == b:
        return Root(a, a, a)
    n = len(ints) - 1
    slope = [c * (n - i) for i, c in enumerate(ints[:-1])]
    den = a.denominator * b.denominator // math.gcd(a.denominator, b.denominator)
    lo, hi = a.numerator * (den // a.denominator), b.numerator * (den // b.denominator)
    sa = _sign_at(ints, lo, den) or _sign_at(slope, lo, den)
    while (hi - lo) * width.denominator > width.numerator * den:
        lo, hi, den = 2 * lo, 2 * hi, 2 * den
        mid = (lo + hi) // 2
        sm = _sign_at(ints, mid, den)
        if sm == 0:
            m = Fraction(mid, den)
            return Root(m, m, m)
        if sm == sa:
            lo = mid
        else:
            hi = mid
    a, b = Fraction(lo, den), Fraction(hi, den)
    guess = ((a + b) / 2).limit_denominator(10**6)  # a rational root has a small denominator
    if a <= guess <= b and _horner(coeffs, guess) == 0:
        return Root(guess, guess, guess)
    return Root(a, b)


def stationary_candidates(depth: int, rho: Fraction) -> list[Candidate]:
    """Zero, and every root of `p_rho` in the open interval (0, 1), each with `psi` there."""
    out = [Candidate(sp.Integer(0), (Fraction(0), Fraction(0)), mpmath.mpf(1) / 2)]
    m = depth
    for root in real_roots_in(depth, rho, Fraction(0), Fraction(1)):
        with mpmath.workdps(DIGITS + 10):
            mid = (root.lo + root.hi) / 2
            g = mpmath.mpf(mid.numerator) / mid.denominator
            rho_root = mpmath.root(mpmath.mpf(rho.numerator) / rho.denominator, m + 1)
            value = (g - 1) ** 2 / 2 + mpmath.mpf(m + 1) / 2 * rho_root * g ** (
                mpmath.mpf(2) / (m + 1)
            )
        out.append(Candidate(root.value, (root.lo, root.hi), value))
    return out


@lru_cache(maxsize=4096)
def minimise_mode(depth: int, rho: Fraction) -> ModeMinimum:
    """Global minimiser of `psi_rho` over `gamma >= 0`, decided exactly.

    >>> minimise_mode(1, Fraction(1, 4)).gamma   # M = 1: 1 - sqrt(rho)
    1/2
    >>> str(minimise_mode(3, Fraction(1, 10**6)).regime)
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
    """Sign of `psi(a) - psi(b)`: rigorous intervals first, the exact identity when they overlap.

    At a stationary `g > 0`, `psi(g) - psi(0) = g (M - 1 - M g) / 2`: against zero, only the
    position of `g` relative to the rational `(M-1)/M` matters, decided on the isolating
    interval (a root equal to `(M-1)/M` is rational and recognised exactly: a tie).
    """
    ia = _enclosure(depth, rho, a)
    ib = _enclosure(depth, rho, b)
    if ia.b < ib.a:
        return -1
    if ib.b < ia.a:
        return 1
    if a.gamma == 0 or b.gamma == 0:
        other, sign = (b, 1) if a.gamma == 0 else (a, -1)
        edge = Fraction(depth - 1, depth)
        lo, hi = other.interval
        if lo == hi == edge:
            return 0
        excess_sign = 1 if hi < edge else -1 if lo > edge else 0  # sign of psi(other) - psi(0)
        return sign * -excess_sign if excess_sign else 0
    return 0  # two positive stationary points with equal values to ~1e-45: call it a tie


def _enclosure(depth: int, rho: Fraction, c: Candidate):  # noqa: ANN202
    if c.gamma == 0:
        return mpmath.iv.mpf([0.5, 0.5])
    return psi_interval(depth, rho, *c.interval)


def largest_root_in(depth: int, rho: Fraction, lo: Fraction, hi: Fraction) -> sp.Expr | None:
    """The largest root of `p_rho` in the open interval `(lo, hi)`, or None if there is none.

    Exact when rational, else a 50-digit decimal inside an isolating interval of width 2^-160.
    """
    roots = real_roots_in(depth, rho, lo, hi)
    return max(roots, key=lambda r: r.lo).value if roots else None


def mp(x: sp.Expr | Fraction | float, digits: int = DIGITS) -> mpmath.mpf:
    """High-precision value of an exact number."""
    if isinstance(x, Fraction):
        return mpmath.mpf(x.numerator) / x.denominator
    with mpmath.workdps(digits):
        return mpmath.mpf(sp.N(x, digits))
