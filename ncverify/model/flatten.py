"""Views between one flat vector and the parameters `W_1..W_M, H (, b)` of a problem: what an
optimiser and a Lanczos iteration work on."""

from __future__ import annotations

from typing import Any

import numpy as np

from ncverify.model.objective import Params
from ncverify.model.problem import Problem


class Flattener:
    """Views between a flat vector and `Params` of a problem's shapes, on any namespace."""

    def __init__(self, problem: Problem, xp: Any, columns: int | None = None) -> None:
        """`columns`: feature columns of `H` (`N`, the default, or `K` for class means)."""
        self.xp = xp
        cols = problem.N if columns is None else columns
        self.shapes = [*problem.layer_shapes, (problem.widths[0], cols)]
        if problem.bias != "none":
            self.shapes.append((problem.K,))
        sizes = [int(np.prod(s)) for s in self.shapes]
        self.offsets = [int(o) for o in np.cumsum([0, *sizes])]
        self.has_bias = problem.bias != "none"
        self.depth = problem.depth

    @property
    def size(self) -> int:
        return self.offsets[-1]

    def unflatten(self, x: Any) -> Params:
        """`Params` whose arrays are views into the flat vector `x` (no copy)."""
        xp = self.xp
        parts = [
            xp.reshape(x[a:b], s)
            for a, b, s in zip(self.offsets[:-1], self.offsets[1:], self.shapes, strict=True)
        ]
        return Params(
            tuple(parts[: self.depth]),
            parts[self.depth],
            parts[self.depth + 1] if self.has_bias else None,
        )

    def flatten(self, p: Params) -> Any:
        """One flat vector (a copy) of `p`'s arrays, in the order `W_1 .. W_M, H, b`."""
        xp = self.xp
        return xp.concat([xp.reshape(a, (-1,)) for a in p.arrays()])
