"""What every certificate kind returns: a certified optimal value (or lower bound) with its
provenance, whether it determines the optimum, and whether it fixes the minimiser set."""

from __future__ import annotations

from dataclasses import dataclass, field

import mpmath

from ncverify.model.objective import Params


@dataclass
class Certificate:
    """A certified optimal value (or lower bound) with its provenance."""

    kind: str
    bound: float  # certified lower bound on the optimum (rounded down to float)
    primal: float | None  # objective of the feasible point, if one was built
    gap: float | None  # relative gap between primal and bound
    solver: str
    status: str
    rigorous: bool
    detail: str = ""
    bound_exact: mpmath.mpf | None = None
    # True when the certificate determines the optimum: `bound` is the optimum itself
    # (separable-reduction), or the program is no relaxation, so that `[bound, primal]`
    # brackets the optimum (convex-dual with d >= K)
    exact: bool = False
    # True when the certificate also fixes the minimiser set (up to the orthogonal symmetries of
    # hidden bases): the separable reduction with no tie or bottleneck note, the MSE convex
    # program by strong convexity in A = W H
    unique: bool = False
    point: Params | None = field(default=None, repr=False)
    primal_error: float = 0.0  # proven bound on the rounding error of `primal`
    notes: list[str] = field(default_factory=list)
    # boxes a branch and bound split (None for the kinds that split none)
    boxes: int | None = None

    def to_json(self) -> dict[str, object]:
        return {
            "kind": self.kind,
            "bound": self.bound,
            "primal": self.primal,
            "gap": self.gap,
            "solver": self.solver,
            "status": self.status,
            "rigorous": self.rigorous,
            "exact": self.exact,
            "unique": self.unique,
            "detail": self.detail,
            "boxes": self.boxes,
        }
