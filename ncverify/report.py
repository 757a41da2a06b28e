"""Reports: the evidence of one verification, as a readable rich report and as stable JSON.

JSON schema `ncverify.report/6` (documented in docs/json.md).  Numbers are JSON numbers, never
NaN or infinity (those become `null`); apart from `timing`, the same command gives
the same report.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

import mpmath

from ncverify.evidence.results import Check, Evidence, Tolerances
from ncverify.serial import clean

if TYPE_CHECKING:  # pragma: no cover
    from ncverify.backend import Backend
    from ncverify.claim import Claim, Phase, Prediction
    from ncverify.evidence.batched_search import BatchedSearch
    from ncverify.evidence.certificates import Certificate
    from ncverify.evidence.coverage import Coverage
    from ncverify.evidence.optimize import Run
    from ncverify.evidence.point_certificate import PointCertificate
    from ncverify.evidence.structure import Structure
    from ncverify.model.objective import Params
    from ncverify.model.problem import Problem

__all__ = [
    "COUNTEREXAMPLE_SCHEMA",
    "DIGITS",
    "PREDICTION_SCHEMA",
    "SCHEMA",
    "Check",
    "Counterexample",
    "Evidence",
    "GeometryEvidence",
    "Report",
    "Verdict",
    "clean",
    "phase_json",
    "prediction_json",
    "version",
]

SCHEMA = "ncverify.report/6"
COUNTEREXAMPLE_SCHEMA = "ncverify.counterexample/2"
PREDICTION_SCHEMA = "ncverify.prediction/2"
#: Significant digits of the exact values that reports print and write (`objective_digits`): the
#: closed forms compute them to 160 bits or more (48 digits), so every digit shown is correct.
DIGITS = 30


def version() -> str:
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as _v

    try:
        return _v("ncverify")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "0+unknown"


class Verdict(StrEnum):
    """What the evidence supports (docs/verdicts.md)."""

    CERTIFIED = "certified"
    CONSISTENT = "consistent"
    REFUTED = "refuted"
    INCONCLUSIVE = "inconclusive"
    NOT_APPLICABLE = "not-applicable"

    @property
    def holds(self) -> bool:
        """The claim holds on the instance as far as the evidence goes."""
        return self in (Verdict.CERTIFIED, Verdict.CONSISTENT)

    @property
    def exit_code(self) -> int:
        """The exit code of `check` and `recheck` for this verdict (2 is bad input, 70 an
        internal error: neither is a verdict)."""
        return _EXIT_CODES[self]


_EXIT_CODES = {
    Verdict.CERTIFIED: 0,
    Verdict.CONSISTENT: 0,
    Verdict.REFUTED: 1,
    Verdict.INCONCLUSIVE: 3,
    Verdict.NOT_APPLICABLE: 4,
}


class GeometryEvidence(StrEnum):
    """How the claimed geometry is established, where the claim holds (JSON
    `geometry_evidence`)."""

    RUN = "run"  # a random-start run reached the prediction and E4 compared its geometry
    CERTIFIED_UNIQUE = "certified-unique"  # the certificate fixes the minimiser set
    ATTAINED = "attained"  # the predicted point attains the proven optimum; uniqueness unshown
    NOT_UNIQUE = "not-unique"  # the claim itself says the minimiser is not unique


@dataclass(frozen=True)
class Counterexample:
    objective: float
    claimed: float
    gap: float
    error_bound: float
    origin: str
    structure: Structure
    point: Params | None = field(default=None, repr=False)
    path: str | None = None
    # the high-precision certificate (`ncverify.evidence.point_certificate`): gap, proven bound,
    # enclosures, method, and the structure of the point (logit rank and singular values, Grams)
    certificate: PointCertificate | None = None

    def to_json(self) -> dict[str, Any]:
        return clean(
            {
                "objective": self.objective,
                "claimed": self.claimed,
                "gap": self.gap,
                "error_bound": self.error_bound,
                "origin": self.origin,
                "structure": self.structure.to_json(),
                "path": self.path,
                "certificate": None if self.certificate is None else self.certificate.to_json(),
            }
        )


def prediction_json(pred: Prediction, grams: dict[str, Any] | None = None) -> dict[str, Any]:
    """A claim's prediction as JSON (the report's `prediction`, and `ncverify predict`)."""
    return clean(
        {
            "objective": pred.objective_float,
            "objective_digits": (
                mpmath.nstr(pred.objective, DIGITS) if pred.objective is not None else None
            ),
            "objective_form": pred.objective_form,
            "geometry": pred.geometry,
            "unique": pred.unique,
            "gains": [c.gain_float for c in pred.classes],
            "gains_exact": [str(c.gain) for c in pred.classes],
            "alive": [c.gain_float > 0 for c in pred.classes],
            "regimes": [c.regime for c in pred.classes],
            "lengths_w": [c.length_w for c in pred.classes],
            "lengths_h": [c.length_h for c in pred.classes],
            "critical_lambdas": [c.critical_lambda for c in pred.classes],
            "bias": list(pred.bias) if pred.bias is not None else None,
            "gram": grams,
            "phase": phase_json(pred.phase),
            "notes": list(pred.notes),
        }
    )


def phase_json(phase: Phase) -> dict[str, Any]:
    """The typed phase of a prediction as JSON: boundaries, distance, named quantities."""
    return {
        "boundaries": [
            {"axis": b.axis, "critical": b.critical, "classes": list(b.classes), "change": b.change}
            for b in phase.boundaries
        ],
        "distance": phase.distance,
        "quantities": [
            {"name": q.name, "value": q.value, "exact": q.exact, "meaning": q.meaning}
            for q in phase.quantities
        ],
    }


@dataclass(frozen=True)
class Report:
    """The evidence of one verification and its verdict, assembled once by the pipeline from
    the frozen results of its steps (`ncverify.pipeline`)."""

    claim: Claim
    problem: Problem
    backend: Backend
    probe: bool
    tolerances: Tolerances
    verdict: Verdict
    hypotheses: tuple[str, ...] = ()
    prediction: Prediction | None = None
    # what the runs, E1 and E4 optimised and evaluated: "full" or "class-means"
    # (`ncverify.model.reduction`); the run points are in it, the counterexample is lifted
    parameterisation: str = "full"
    # layer-1 Gram matrices of the predicted point (`WWt`, `HtH`, `WH`, host arrays), computed
    # where K is small enough for the JSON (`ncverify.limits.MAX_CLASSES_FOR_GRAMS`)
    grams: dict[str, Any] | None = field(default=None, repr=False)
    checks: tuple[Check, ...] = ()
    runs: tuple[Run, ...] = ()
    start_scales: tuple[float, ...] = ()
    runs_method: str = ""  # what the runs optimised and from where, in words
    # how much search backs the verdict: the runs grouped by end value (None without runs)
    coverage: Coverage | None = None
    # the batched claim-agnostic search: its starts, basins and lowest ends (None: not run)
    search: BatchedSearch | None = None
    certificate: Certificate | None = None
    metrics: tuple[dict[str, Any], ...] | None = None
    counterexample: Counterexample | None = None
    claimed_minus_bound: float | None = None
    # how the claimed geometry is established, or None where the verdict rests on no such evidence
    geometry_evidence: GeometryEvidence | None = None
    # a verifier-internal contradiction (a run below a rigorous bound), or None
    contradiction: str | None = None
    timing: dict[str, float] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    # ---- summaries ----------------------------------------------------------------------------
    def outcome_counts(self) -> dict[str, int]:
        counts = {"at-prediction": 0, "worse": 0, "better": 0, "failed": 0}
        for r in self.runs:
            counts[r.outcome] = counts.get(r.outcome, 0) + 1
        return counts

    def full_point(self, run: Run) -> Params:
        """`run`'s end point as a point of the full problem (`d x N` features): the run point
        itself, or its lift where the runs optimised a reduction (`parameterisation`)."""
        if self.parameterisation == "full":
            return run.point
        from ncverify.model.reduction import lift

        return lift(self.problem.counts, run.point, self.backend.xp)

    @property
    def best_objective(self) -> float | None:
        vals = [r.objective for r in self.runs if math.isfinite(r.objective)]
        return min(vals) if vals else None

    def prediction_json(self) -> dict[str, Any] | None:
        if self.prediction is None:
            return None
        return prediction_json(self.prediction, self.grams)

    def _certificate_json(self) -> dict[str, Any] | None:
        """The certificate, with how far its proven bound lies below the claimed optimum
        (relative): what a bound that does not settle the claim still proves."""
        if self.certificate is None:
            return None
        out = self.certificate.to_json()
        claimed = None if self.prediction is None else self.prediction.objective
        if claimed is not None and claimed != 0:
            bound = self.certificate.bound_exact
            bound = mpmath.mpf(self.certificate.bound) if bound is None else bound
            out["gap_to_claim"] = float((claimed - bound) / abs(claimed))
        return out

    def to_json(self) -> dict[str, Any]:
        numerical = self._numerical() if self.runs else None
        return clean(
            {
                "schema": SCHEMA,
                "ncverify": version(),
                "claim": self.claim.id,
                "verdict": self.verdict,
                "geometry_evidence": self.geometry_evidence,
                "contradiction": self.contradiction,
                "probe": self.probe,
                "problem": self.problem.describe(),
                "hypotheses": list(self.hypotheses),
                "prediction": self.prediction_json(),
                "checks": [c.to_json() for c in self.checks],
                "numerical": numerical,
                "search": None if self.search is None else self.search.to_json(),
                "certificate": self._certificate_json(),
                "counterexample": None
                if self.counterexample is None
                else self.counterexample.to_json(),
                "backend": self.backend.describe(),
                "tolerances": vars(self.tolerances) if self.tolerances is not None else None,
                "notes": list(self.notes),
                # run times vary from run to run: they live with the other timings
                "timing": {
                    **self.timing,
                    **({"runs": [r.time for r in self.runs]} if self.runs else {}),
                },
            }
        )

    def _numerical(self) -> dict[str, Any]:
        """The JSON `numerical` member: the runs, their counts, metrics and coverage."""
        counts = self.outcome_counts()
        runs = [
            {
                "index": r.index,
                "scale": r.scale,
                "objective": r.objective,
                "gradient_norm": r.grad_norm,
                "iterations": r.iterations,
                "evaluations": r.evaluations,
                "continuation": list(r.continuation),
                "outcome": r.outcome,
                "error_bound": r.error_bound,
                "structure": None if r.structure is None else r.structure.to_json(),
                "message": r.message,
            }
            for r in self.runs
        ]
        return {
            "parameterisation": self.parameterisation,
            "best_objective": self.best_objective,
            "start_scales": list(self.start_scales),
            "runs": runs,
            "counts": {
                "at": counts["at-prediction"],
                "worse": counts["worse"],
                "better": counts["better"],
                "failed": counts["failed"],
            },
            "metrics": None if self.metrics is None else list(self.metrics),
            "coverage": None if self.coverage is None else self.coverage.to_json(),
        }

    def dumps(self) -> str:
        return json.dumps(self.to_json(), indent=2, allow_nan=False)
