"""Max-margin witnesses against the simplex ETF for deep cross-entropy (docs/theory/ce.md#max-margin).

As `lambda -> 0` the directions of the regularised cross-entropy minimisers converge to the
solutions of the max-margin problem

$$\\min \\sum_m \\lVert W_m\\rVert_F^2 + \\lVert H\\rVert_F^2 \\quad\\text{s.t.}\\quad
  (w_{y_i} - w_j)^T h_i \\ge 1 \\;\\; (j \\ne y_i),$$

which, with collapsed balanced features (`n` per class) and balanced factors, is
`(M+1) n^{q/2} min_Z sum_i sigma_i(Z)^q` over `K x K` class-mean logits with every margin
`z_kk - z_jk >= 1`, `q = 2/(M+1)`.  Three codes are compared, each value in units of
`(M+1) n^{q/2}`:

- the simplex ETF, `Z = I - 1 1^T / K`: `K - 1` singular values 1, value `K - 1`;
- the orthoplex (`K = 2r` classes at `+-e_1, ..., +-e_r`, `Z = U U^T`, `U^T U = 2 I_r`): `r`
  singular values 2, value `r 2^q`;
- the orthoplex less one vertex (`K = 2r - 1`), its lone class's logit column centred: `r - 1`
  singular values 2 and one `((K-1)/K)^{1/2}`, value `(r - 1) 2^q + ((K-1)/K)^{q/2}` (the
  uncentred code, with a singular value 1 instead, is never better).

Every margin of these codes is at least 1.  Raising to the power `M + 1` turns the even
comparison into an integer one: the orthoplex beats the ETF iff `4 r^{M+1} < (2r - 1)^{M+1}`;
the odd one, a sum of radicals, is decided in interval arithmetic.  Neither ever wins at `M = 1`
(the ETF is the max-margin solution there, by the SELI theorem); at `M = 2` one wins for every
`K >= 6`, at `M >= 3` for every `K >= 4`.

>>> w = witness(6, 2)
>>> w.name, w.inequality
('orthoplex', '4 * 3^3 = 108 < 125 = 5^3')
>>> witness(5, 2) is None, witness(100, 1) is None
(True, True)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Witness:
    """A code with a strictly smaller max-margin value than the simplex ETF."""

    name: str  # "orthoplex" or "centred orthoplex less one vertex"
    r: int  # the code's dimension
    inequality: str  # the comparison that proves it, written out
    value: str  # its value in units of (M+1) n^{q/2}, as a formula in q
    embedding: np.ndarray  # K x r class embeddings U; the logits are U U^T, margins >= 1
    centred: bool = False  # the lone class's logit column is centred (odd K)

    def logits(self) -> np.ndarray:
        z = self.embedding @ self.embedding.T
        if self.centred:  # the last class is the lone vertex +e_r
            z[:, -1] -= z[:, -1].mean()
        return z


def orthoplex(k: int) -> np.ndarray:
    """Class embeddings `+-e_1, ..., +-e_r` (`K = 2r`), less `-e_r` when `K = 2r - 1`."""
    r = (k + 1) // 2
    eye = np.eye(r)
    rows = [row for i in range(r) for row in (eye[i], -eye[i])]
    return np.asarray(rows[:k])


def witness(k: int, depth: int) -> Witness | None:
    """The best code of this module when it strictly beats the ETF in the max-margin problem at
    depth `depth`, else None: the orthoplex for even `K` (an exact integer comparison), the
    centred orthoplex less one vertex for odd `K` (a comparison of sums of radicals, decided in
    interval arithmetic)."""
    m1 = depth + 1
    if k % 2 == 0:
        r = k // 2
        lhs, rhs = 4 * r**m1, (2 * r - 1) ** m1
        if not lhs < rhs:
            return None
        text = f"4 * {r}^{m1} = {lhs} < {rhs} = {2 * r - 1}^{m1}"
        return Witness("orthoplex", r, text, f"{r} * 2^q", orthoplex(k))
    r = (k + 1) // 2
    if r < 2:
        return None
    beats = centred_beats_etf(k, depth)
    if beats is None:
        return None
    value = f"{r - 1} * 2^q + ({k - 1}/{k})^(q/2)"
    name = "centred orthoplex less one vertex"
    return Witness(name, r, beats, value, orthoplex(k), centred=True)


def centred_beats_etf(k: int, depth: int) -> str | None:
    """The comparison `(r-1) 2^q + ((K-1)/K)^(q/2) < K - 1` (odd `K = 2r - 1`, `q = 2/(M+1)`),
    written out where interval arithmetic proves it, else None (where it proves the reverse, or
    cannot tell at 400 bits).

    Why the value: the orthoplex less `-e_r` has logits `U U^T` with singular values 2 (`r - 1`
    times) and 1, the last from the lone class `+e_r`, whose logit column is the unit vector of
    that class.  Centring that column (subtracting its mean from every entry) keeps every margin
    of the lone class (each is a difference of two entries of the column) and changes no other
    column; the column `e - 1/K` has norm `((K-1)/K)^(1/2)` and is orthogonal to the other
    columns' span, so it contributes `((K-1)/K)^(q/2)` instead of 1."""
    import mpmath

    r = (k + 1) // 2
    for bits in (100, 400):
        iv = mpmath.iv
        saved = iv.prec
        iv.prec = bits
        try:
            q = iv.mpf(2) / (depth + 1)
            value = (r - 1) * iv.exp(q * iv.log(2)) + iv.exp(q / 2 * iv.log(iv.mpf(k - 1) / k))
            if value.b < k - 1:
                return (
                    f"{r - 1} * 2^q + ({k - 1}/{k})^(q/2) = {mpmath.nstr(value.mid, 8)} < {k - 1} "
                    f"(q = 2/{depth + 1}, interval arithmetic)"
                )
            if value.a > k - 1:
                return None
        finally:
            iv.prec = saved
    return None
