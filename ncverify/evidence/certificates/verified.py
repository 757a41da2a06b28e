r"""Verified floating point: proofs of positive definiteness from floating-point arithmetic alone.

`gram_gap_positive(sigma, x)` proves `sigma I - X X^T` positive definite (equivalently
`||X||_2^2 < sigma`) for a float64 matrix `X` and a float64 `sigma`, in `O(K^2 m + K^3)` float
operations, where an exact rational `LDL^T` elimination costs `O(K^3)` operations on numbers
whose size grows with `K`.  It never says True for a matrix that is not positive definite; it
may say False for one that is, when its smallest eigenvalue is below the rounding noise of the
check (about `K^2 u sigma` for dense eigenvectors).  `exact_positive_definite` is the exact
rational test, kept as the oracle for small matrices.

## The floating-point model

Numbers are IEEE 754 binary floats with rounding to nearest (numpy's default): float64
(`u = 2^-53`), or, with `extended=True`, the platform's `long double` where it is more precise
(x87 extended precision on x86-64 Linux, `u = 2^-64`); `eta` is the smallest subnormal and
`gamma_n = n u / (1 - n u)`.

- (M1) For floats `a, b` and `op` in `+ - * /`: the exact result `z` and its computed value
  `fl(z)` differ by at most half the spacing of the floats at `fl(z)`, so
  `z <= next_up(fl(z))` (`np.nextafter(., inf)`), also in the subnormal range; `sqrt` is
  correctly rounded too.  So `|z - fl(z)| <= 2u |fl(z)| + eta`, and for `+ -` (which cannot
  underflow) `<= 2u |fl(z)|`.
- (M2) A sum of `n` non-negative floats, computed in any order, is at least
  `(1 - gamma_{n-1})` times the exact sum (additions never underflow: a subnormal sum is exact).
- (M3) A matrix product `fl(A B)` with inner dimension `n`, computed by any ordering of the
  products and sums (fused multiply-adds allowed; no Strassen-like algorithm, which neither the
  BLAS used by numpy for float64 nor numpy's own loops for `long double` apply), satisfies
  `|fl(AB) - AB| <= gamma_n |A||B| + n eta` elementwise (Higham, *Accuracy and Stability of
  Numerical Algorithms*, 2nd ed., §3.5, with the underflow of each product added).

From (M3) applied to `|A||B|` itself, `|A||B| <= (fl(|A||B|) + n eta) / (1 - gamma_n)`, hence
`|fl(AB) - AB| <= g_n fl(|A||B|) + 2 n eta` with `g_n = gamma_n / (1 - gamma_n) = n u / (1 - 2 n u)`
(for `g_n <= 1`), and for non-negative `A, B`: `AB <= fl(AB) + g_n fl(AB) + 2 n eta`.  The code
uses the float `next_up(n u (1 + 4 n u)) >= g_n` and, for `2 n eta`, the larger normal number
`2^-500` (subnormal operands slow products down by orders of magnitude).  Every such bound is
evaluated with upward rounding by (M1) (`next_up` after each elementwise operation), and row
sums of non-negative terms are inflated by `(1 + g_n)` per (M2), so each computed bound is itself
an upper bound of the exact quantity it stands for.

## The check (Sylvester's law of inertia and Gershgorin)

First `X` and `sigma` are scaled by `2^k` and `4^k` (exactly: the scaling is undone and compared)
so that `sigma` lies in `[1, 4)`; positive definiteness is unchanged, and the absolute terms
`2^-500` are then negligible.  Let `M = sigma I - X X^T` (exact) and `Q` any float `K x K` matrix
(in practice the left singular vectors of `X`, so that `Q^T M Q` is nearly diagonal; entries below
`2^-600` are set to zero).  With `Y = Q^T X`,

$$C = Q^T M Q = \sigma\, Q^T Q - Y Y^T .$$

The code computes `P = fl(Q^T Q)`, `R = fl(Q^T X)`, `S = fl(R R^T)` and the midpoint
`Ct = fl(fl(sigma P) - S)`, and bounds `|C - Ct| <= Rad` elementwise, where `Rad` is the
upward-rounded sum of

- `sigma |Q^T Q - P|`, from (M3);
- `|sigma P - fl(sigma P)| <= 2u |fl(sigma P)| + eta` (one rounding, M1);
- `|Y Y^T - R R^T| <= |R| E^T + E |R|^T + E E^T`, with `|Y - R| <= E` from (M3), and
  `|R R^T - S|` from (M3);
- `|fl(a - b) - (a - b)| <= 2u |Ct|` for the final subtraction (M1).

If for every row `i`

$$Ct_{ii} > \mathrm{Rad}_{ii} + \sum_{j \ne i} \big(|Ct_{ij}| + \mathrm{Rad}_{ij}\big)$$

(the right side an upward-rounded float, the comparison exact), then
`C_ii - sum_{j != i} |C_ij| > 0` for every row: every Gershgorin disc of the symmetric matrix
`C` lies in the open right half-line, so `C` is positive definite.  Then `Q` is nonsingular
(`Q v = 0` would give `v^T C v = 0`), and `M = Q^{-T} C Q^{-1}` is positive definite: congruence
preserves inertia (Sylvester's law).  Non-finite intermediate values make the check fail.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np

#: Unit roundoff of float64 (round to nearest).
U = 2.0**-53
#: Smallest positive subnormal float64.
ETA = 2.0**-1074


#: The float types the check can run in: float64, and the platform's `long double` where it
#: is more precise (x87 extended precision, `u = 2^-64`, on x86-64 Linux; quadruple elsewhere).
EXTENDED = np.longdouble
HAS_EXTENDED = bool(np.finfo(np.longdouble).eps < np.finfo(np.float64).eps)


def next_up(x: np.ndarray | float) -> np.ndarray | float:
    """The next float above `x` (elementwise): an upper bound of any exact result rounded to `x`."""
    return np.nextafter(x, np.inf)


def float_up(x: Fraction) -> float:
    """The smallest float not below the rational `x`."""
    f = float(x)  # correctly rounded
    if Fraction(f) < x:
        f = float(np.nextafter(f, np.inf))
    return f


def float_down(x: Fraction) -> float:
    """The largest float not above the rational `x`."""
    f = float(x)
    if Fraction(f) > x:
        f = float(np.nextafter(f, -np.inf))
    return f


class _Arithmetic:
    """The constants of the model (M1)-(M3) for one float type."""

    def __init__(self, dtype: type = np.float64) -> None:
        info = np.finfo(dtype)
        self.dtype = dtype
        self.bits = int(info.nmant) + 1  # u = 2^-bits
        self.u = np.ldexp(dtype(1), -self.bits)  # exact
        self.eta = info.smallest_subnormal
        self.two_u = info.eps  # 2u, exact

    def g(self, n: int) -> np.floating:
        """A float at least `g_n = n u / (1 - 2 n u)`: `next_up(n u (1 + 4 n u))`, as
        `1 / (1 - 2 n u) <= 1 + 4 n u` for `4 n u <= 1` (`n u`, `1 + 4 n u` are exact floats)."""
        if not 4 * n < 2**self.bits // 2:
            raise ValueError(f"dimension {n} too large for the a-priori rounding bounds.")
        nu = self.dtype(n) * self.u
        return next_up(nu * (self.dtype(1) + 4 * nu))

    def abs_term(self, n: int) -> np.floating:
        """A normal float at least `2 n eta`: `2^-500` (subnormal operands would slow the
        products down by orders of magnitude; the inputs are scaled to norm about 1 first)."""
        assert 2 * n * Fraction(2) ** -1074 <= Fraction(2) ** -500
        return np.ldexp(self.dtype(1), -500)

    def matmul_error(self, a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """`(fl(A B), E)` with `|fl(A B) - A B| <= E` elementwise, by (M3)."""
        n = a.shape[1]
        product = a @ b
        magnitude = np.abs(a) @ np.abs(b)
        return product, _add_up(_mul_up(self.g(n), magnitude), self.abs_term(n))

    def matmul_upper(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """An elementwise upper bound of the exact `A B` for non-negative `A, B`."""
        n = a.shape[1]
        product = a @ b
        return _add_up(_add_up(product, _mul_up(self.g(n), product)), self.abs_term(n))

    def row_sums_up(self, a: np.ndarray) -> np.ndarray:
        """Upper bounds of the exact row sums of a non-negative matrix, by (M2)."""
        total = np.sum(a, axis=1)
        return _add_up(total, _mul_up(self.g(a.shape[1]), total))


def g_factor(n: int) -> float:
    """A float64 at least `g_n = n u / (1 - 2 n u)`, `u = 2^-53`; requires `4 n u < 1`."""
    return float(_Arithmetic(np.float64).g(n))


def _mul_up(a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray:
    return next_up(np.multiply(a, b))


def _add_up(a: np.ndarray | float, b: np.ndarray | float) -> np.ndarray:
    return next_up(np.add(a, b))


def sum_squares_up(x: np.ndarray) -> float:
    """An upper bound (float64) of the exact `sum x_ij^2` of a float64 array (squares may
    underflow: `eta/2` each)."""
    x = np.asarray(x, dtype=np.float64)
    n = max(x.size, 1)
    total = float(np.sum(x * x))
    total = float(_add_up(total, n * ETA))
    return float(_add_up(total, _mul_up(g_factor(n + 1), total)))


def gram_gap_positive(
    sigma: float, x: np.ndarray, q: np.ndarray | None = None, extended: bool = False
) -> bool:
    """True only if `sigma I - X X^T` is positive definite (exactly, for the float inputs).

    Args:
        sigma: a float64.
        x: a float64 `K x m` matrix.
        q: a float64 `K x K` matrix making `Q^T (sigma I - X X^T) Q` nearly diagonal (the left
            singular vectors of `X`, computed here when omitted).  Any `Q` keeps the answer
            sound; a poor one only makes a True less likely.
        extended: run the enclosure in `long double` (`HAS_EXTENDED`; the inputs convert
            exactly): rounding noise about `2^11` times smaller on x86-64, at the price of
            non-BLAS products (about 0.1 s at `K = 300`, several seconds at `K = 1000`).

    Returns False when the proof does not go through (including non-finite intermediates).
    """
    x = np.asarray(x, dtype=np.float64)
    k = x.shape[0]
    if not (np.isfinite(sigma) and np.all(np.isfinite(x))) or sigma <= 0:
        return False
    if q is None:
        q = np.linalg.svd(x, full_matrices=True)[0] if x.size else np.eye(k)
    q = np.asarray(q, dtype=np.float64)
    if q.shape != (k, k) or not np.all(np.isfinite(q)):
        return False
    # scale exactly by a power of two so that sigma lies in [1, 4): the absolute (underflow)
    # terms then sit far below everything that matters, and nothing is subnormal
    shift = -int(np.floor(np.log2(sigma) / 2))
    sigma = float(np.ldexp(sigma, 2 * shift))
    scaled = np.ldexp(x, shift)
    if not (np.all(np.isfinite(scaled)) and np.array_equal(np.ldexp(scaled, -shift), x)):
        return False  # the scaling was not exact
    x = scaled
    q = np.where(np.abs(q) < 2.0**-600, 0.0, q)  # any Q is sound; this one has no tiny entries
    dtype = EXTENDED if extended and HAS_EXTENDED else np.float64
    ar = _Arithmetic(dtype)
    sigma_d = dtype(sigma)
    x = x.astype(dtype)
    q = q.astype(dtype)
    with np.errstate(over="ignore", invalid="ignore"):
        p, e_p = ar.matmul_error(q.T, q)
        r, e_r = ar.matmul_error(q.T, x)
        s, e_s = ar.matmul_error(r, r.T)
        sp = sigma_d * p
        mid = sp - s
        cross = ar.matmul_upper(np.abs(r), e_r.T)
        rad = _mul_up(sigma_d, e_p)
        rad = _add_up(rad, _add_up(_mul_up(ar.two_u, np.abs(sp)), ar.abs_term(1)))
        rad = _add_up(rad, _add_up(cross, cross.T))
        rad = _add_up(rad, ar.matmul_upper(e_r, e_r.T))
        rad = _add_up(rad, e_s)
        rad = _add_up(rad, _mul_up(ar.two_u, np.abs(mid)))
        off = np.abs(mid)
        np.fill_diagonal(off, 0)
        off = _add_up(off, rad)  # row i: |Ct_ij| + Rad_ij off the diagonal, Rad_ii on it
        need = ar.row_sums_up(off)
        diag = np.diag(mid)
        if not (np.all(np.isfinite(need)) and np.all(np.isfinite(diag))):
            return False
        return bool(np.all(diag > need))


def exact_positive_definite(m: list[list[Fraction]]) -> bool:
    """Exact test (the oracle for small matrices): every pivot of the `LDL^T` elimination of the
    symmetric rational matrix `m` is positive."""
    a = [row[:] for row in m]
    n = len(a)
    for i in range(n):
        pivot = a[i][i]
        if pivot <= 0:
            return False
        for j in range(i + 1, n):
            factor = a[j][i] / pivot
            if factor:
                for c in range(i + 1, n):
                    a[j][c] -= factor * a[i][c]
    return True


def exact_gram_gap(sigma: float | Fraction, x: np.ndarray) -> list[list[Fraction]]:
    """`sigma I - X X^T` in exact rationals (for the oracle)."""
    xf = [[Fraction(float(v)) for v in row] for row in np.atleast_2d(x)]
    k = len(xf)
    s = Fraction(sigma)
    return [
        [
            (s if i == j else 0) - sum(a * b for a, b in zip(xf[i], xf[j], strict=True))
            for j in range(k)
        ]
        for i in range(k)
    ]
