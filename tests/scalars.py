"""An independent float estimate of a scalar problem's minimum over `m >= 0`, for the tests of
the ETF claims' rigorous enclosures."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from scipy.optimize import minimize_scalar


def grid_minimum(f: Callable[[float], float], top: float) -> float:
    """`min f` over `[0, top]`: a dense geometric grid refined by a bounded scalar search around
    its best point, and `f(0)`."""
    grid = np.concatenate([[0.0], np.geomspace(1e-8, top, 3000)])
    values = [f(m) for m in grid]
    i = int(np.argmin(values))
    lo, hi = grid[max(i - 1, 0)], grid[min(i + 1, len(grid) - 1)]
    found = minimize_scalar(f, bounds=(lo, hi), method="bounded", options={"xatol": 1e-12})
    return min(values[i], float(found.fun), f(0.0))
