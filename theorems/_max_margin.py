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
- the orthoplex less one vertex (`K = 2r - 1`): `r - 1` singular values 2 and one 1, value
  `(r - 1) 2^q + 1`.

Every margin of both codes is at least 1.  Raising to the power `M + 1` turns the comparisons
into integer ones: the orthoplex beats the ETF iff `4 r^{M+1} < (2r - 1)^{M+1}`, the orthoplex
less a vertex iff `4 (r - 1)^{M+1} < (2r - 3)^{M+1}`.  Neither ever wins at `M = 1` (the ETF is
the max-margin solution there, by the SELI theorem); at `M = 2` one wins for every `K >= 6`, at
`M >= 3` for every `K >= 4`.

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

    name: str  # "orthoplex" or "orthoplex less one vertex"
    r: int  # the code's dimension
    inequality: str  # the integer comparison that proves it, written out
    value: str  # its value in units of (M+1) n^{q/2}, as a formula in q
    embedding: np.ndarray  # K x r class embeddings U; the logits are U U^T, margins >= 1

    def logits(self) -> np.ndarray:
        return self.embedding @ self.embedding.T


def orthoplex(k: int) -> np.ndarray:
    """Class embeddings `+-e_1, ..., +-e_r` (`K = 2r`), less `-e_r` when `K = 2r - 1`."""
    r = (k + 1) // 2
    eye = np.eye(r)
    rows = [row for i in range(r) for row in (eye[i], -eye[i])]
    return np.asarray(rows[:k])


def witness(k: int, depth: int) -> Witness | None:
    """The orthoplex code (less one vertex for odd `K`) when it strictly beats the ETF in the
    max-margin problem at depth `depth`, else None (exact integer comparison)."""
    m1 = depth + 1
    if k % 2 == 0:
        r = k // 2
        lhs, rhs = 4 * r**m1, (2 * r - 1) ** m1
        text = f"4 * {r}^{m1} = {lhs} < {rhs} = {2 * r - 1}^{m1}"
        name, value = "orthoplex", f"{r} * 2^q"
    else:
        r = (k + 1) // 2
        if 2 * r - 3 <= 0:
            return None
        lhs, rhs = 4 * (r - 1) ** m1, (2 * r - 3) ** m1
        text = f"4 * {r - 1}^{m1} = {lhs} < {rhs} = {2 * r - 3}^{m1}"
        name, value = "orthoplex less one vertex", f"{r - 1} * 2^q + 1"
    if not lhs < rhs:
        return None
    return Witness(name, r, text, value, orthoplex(k))
