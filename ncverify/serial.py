"""JSON-safe values: the one conversion every JSON payload of ncverify goes through."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def clean(x: Any) -> Any:
    """JSON-safe copy: non-finite floats become None, numpy scalars and arrays become Python
    numbers and lists, tuples become lists."""
    if isinstance(x, dict):
        return {str(k): clean(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [clean(v) for v in x]
    if isinstance(x, np.ndarray):
        return clean(x.tolist())
    if isinstance(x, bool | np.bool_):
        return bool(x)
    if isinstance(x, int | np.integer):
        return int(x)
    if isinstance(x, float | np.floating):
        return float(x) if math.isfinite(float(x)) else None
    return x
