"""The typed results of the evidence steps, frozen: each step returns one, and the pipeline
assembles the report from them at the end (docs/verdicts.md for what E1..E4 are).

JSON payloads are made from these only at the boundary (`to_json`, `ncverify.io`, the
application); inside the engine they are values, never dicts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from ncverify.model.objective import Params
from ncverify.serial import clean


class Evidence(StrEnum):
    """The kind of evidence a check belongs to (docs/verdicts.md)."""

    PREDICTED_POINT = "E1"
    RUNS = "E2"
    CERTIFICATE = "E3"
    GEOMETRY = "E4"


@dataclass(frozen=True)
class Check:
    """One piece of evidence: `passed` is None when the check was skipped (detail says why)."""

    evidence: Evidence
    name: str
    passed: bool | None
    value: float | None
    tolerance: float | None
    detail: str

    def to_json(self) -> dict[str, Any]:
        return clean(
            {
                "name": self.name,
                "passed": self.passed,
                "value": self.value,
                "tolerance": self.tolerance,
                "detail": self.detail,
            }
        )


@dataclass(frozen=True)
class Tolerances:
    """Every tolerance of a verification, derived from the dtype's unit roundoff."""

    objective: float  # relative: predicted point vs claimed optimum (on top of its error bound)
    gradient: float  # relative to ||grad loss|| + ||grad regulariser||
    curvature: float  # relative to the largest curvature
    at_prediction: float  # relative: a run counts as reaching the prediction
    certificate: float  # relative: certificate vs claimed optimum
    geometry: float  # NC distances and relative errors of the closest run at the prediction
    # a run at the claimed optimum whose geometry is off by more than this has another geometry
    # (a refutation); between `geometry` and this, the runs are not accurate enough to tell
    geometry_refutes: float

    @classmethod
    def for_eps(cls, eps: float) -> Tolerances:
        if eps < 1e-10:  # float64
            return cls(1e-10, 1e-8, 1e-6, 1e-8, 1e-10, 1e-5, 1e-3)
        return cls(1e-4, 1e-3, 1e-3, 1e-4, 1e-4, 1e-2, 1e-1)


@dataclass(frozen=True)
class PointValue:
    """A point's objective in floating point and a proven bound on its rounding error (0 where
    the value is exact)."""

    value: float
    error: float = 0.0


@dataclass(frozen=True)
class PredictedPoint:
    """E1: the claim's predicted point (in the check's parameterisation; None where it could
    not be built or was too large), the checks made at it, and whether they all hold.

    `descent` is a direction of negative curvature or of descent that E1 found, kept for the
    descent from the predicted point that looks for a counterexample; `grams` are the layer-1
    Gram matrices for the report (host arrays, where `K` is small enough)."""

    point: Params | None
    checks: tuple[Check, ...] = ()
    ok: bool = False
    descent: Params | None = field(default=None, repr=False)
    grams: dict[str, Any] | None = field(default=None, repr=False)


@dataclass(frozen=True)
class GeometryResult:
    """E4: the checks of the claimed geometry, and the NC metrics of the run they judge."""

    checks: tuple[Check, ...] = ()
    metrics: tuple[dict[str, Any], ...] | None = None
    notes: tuple[str, ...] = ()


@dataclass(frozen=True)
class CandidatePoint:
    """A point below the claimed optimum in floating point, before its exact certificate: the
    full point, its value in the check's parameterisation, and where it came from."""

    value: PointValue
    point: Params = field(repr=False)
    origin: str
