"""The precision of mpmath's interval arithmetic, set for a block and restored after it.

mpmath keeps one global precision for its interval context (`mpmath.iv.prec`); every rigorous
enclosure in ncverify sets it for the length of a computation.  This is the one place that does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import mpmath
import numpy as np


@contextlib.contextmanager
def interval_precision(bits: int) -> Iterator[Any]:
    """`mpmath.iv` at `bits` bits of precision inside the block, the previous precision after
    it (also when the block raises); yields the interval context."""
    iv = mpmath.iv
    saved = iv.prec
    iv.prec = bits
    try:
        yield iv
    finally:
        iv.prec = saved


def ends(x: Any) -> tuple[mpmath.mpf, mpmath.mpf]:
    """The two ends of an `mpmath.iv` interval as mpf numbers, exactly (from their raw mantissa
    and exponent): `mpmath.mpf(x.a)` at the working precision of `mpmath.mp` (53 bits unless
    set) rounds each end to the nearest double, and an enclosure narrower than an ulp would
    collapse onto a float that need not lie inside it."""
    lo, hi = x._mpi_
    return mpmath.mp.make_mpf(lo), mpmath.mp.make_mpf(hi)


def round_down(x: mpmath.mpf) -> float:
    """The largest float not above `x`: a lower bound stays a lower bound as a float."""
    f = float(x)
    if mpmath.mpf(f) > x:
        f = float(np.nextafter(f, -np.inf))
    return f
