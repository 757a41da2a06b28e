"""What the kinds whose every value is an exact enclosure share (`normalised` and `supcon`,
whose points stand for their projections onto spheres, and `nonnegative`): a run is classified,
E1's value is judged and E4 compares Gram matrices the same way for all.  A subclass names its
problem's exact enclosure (`enclose`) and its Gram matrices (`grams`)."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np

from ncverify.backend import to_host
from ncverify.evidence.geometry import graded
from ncverify.evidence.optimize import Run
from ncverify.evidence.point_certificate import PointCertificate, certify_point
from ncverify.evidence.results import Check, Evidence, GeometryResult, PointValue, PredictedPoint
from ncverify.kinds.base import KindSession
from ncverify.limits import StepSkipped
from ncverify.model.exact import class_constant, first_columns
from ncverify.model.objective import Params
from ncverify.model.problem import Problem

Enclosure = Callable[[Problem, Params], Any]
#: unit roundoffs of a run's largest terms within which its value counts as the claimed one
ROUNDING = 64


def enclosed_value(problem: Problem, p: Params, enclose: Enclosure) -> PointValue:
    """The exact enclosure as a value and a proven error bound (inf where there is none)."""
    box = enclose(problem, p.map(to_host))
    if box is None:
        return PointValue(math.nan, math.inf)
    lo, hi = float(box.a), float(box.b)
    return PointValue((lo + hi) / 2, (hi - lo) / 2 + abs(lo + hi) * 2**-52)


def relative(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-300))


class ProjectedSession(KindSession):
    """A session whose values are exact enclosures of projected points."""

    #: the problem's exact enclosure of a point's value (`ncverify.model.normalised.enclose`)
    enclose: Enclosure
    #: the predicted point as E1 evaluates it, in words
    point_words: str = "the predicted point projected onto the spheres"

    # ---- points: one feature per class where the runs work in the class means -----------------
    def reduced(self, full: Params) -> Params:
        """One feature per class where the runs use them and the features are class-constant
        (exact), else the point as is (host arrays)."""
        h = np.asarray(to_host(full.H))
        if (
            self.parameterisation == "class-means"
            and h.shape[1] == self.problem.N
            and class_constant(self.problem, h)
        ):
            return Params(tuple(to_host(w) for w in full.Ws), h[:, first_columns(self.problem)])
        return full.map(to_host)

    def lifted(self, p: Params) -> Params:
        h = np.asarray(to_host(p.H))
        if h.shape[1] == self.problem.K and self.problem.N != self.problem.K:
            h = np.repeat(h, self.problem.counts, axis=1)
        return Params(tuple(to_host(w) for w in p.Ws), h)

    def grams(self, p: Params) -> tuple[np.ndarray, ...]:
        """The Gram matrices that fix a point of the problem up to a rotation (E4)."""
        raise NotImplementedError

    def value(self, p: Params) -> PointValue:
        return enclosed_value(self.problem, p, self.enclose)

    def certify(self, full: Params, value: PointValue) -> PointCertificate:
        host = full.map(to_host)
        return certify_point(
            self.problem, self.prediction, host, value.value, value.error, self.enclose
        )

    # ---- E1 -------------------------------------------------------------------------------------
    def predicted_point(self, full: Params | None) -> PredictedPoint:
        if full is None:
            return PredictedPoint(None)
        point = self.reduced(full)
        checks = (self._value_check(point), self._stationarity_check(point))
        return PredictedPoint(point, checks, all(c.passed for c in checks))

    def stationarity(self, point: Params) -> tuple[float, float, str]:
        """What the kind's conditions of a stationary point leave of the gradient at `point`,
        the scale it is measured against, and both in words; `StepSkipped` where too large."""
        raise NotImplementedError

    def _stationarity_check(self, point: Params) -> Check:
        try:
            size, scale, detail = self.stationarity(point)
        except StepSkipped as exc:
            detail = f"skipped: {exc}"
            return Check(Evidence.PREDICTED_POINT, "E1 stationarity", None, None, None, detail)
        allowed = self.tol.gradient * scale + 100 * float(np.finfo(np.float64).eps)
        return Check(
            Evidence.PREDICTED_POINT, "E1 stationarity", size <= allowed, size, allowed, detail
        )

    def _value_check(self, point: Params) -> Check:
        value = self.value(point)
        claimed = float(self.claimed)
        if not math.isfinite(value.value):  # no enclosure: decides nothing, refutes nothing
            detail = (
                f"skipped: {self.point_words} has no exact enclosure here (a non-finite entry, "
                "or more exact products than an enclosure may take)"
            )
            return Check(Evidence.PREDICTED_POINT, "E1 objective", None, None, None, detail)
        allowed = value.error + self.tol.objective * abs(claimed)
        diff = abs(value.value - claimed)
        detail = (
            f"{self.point_words} has the value {value.value:.16g} "
            f"(exact enclosure, radius {value.error:.1e}) vs the claimed optimum {claimed:.16g}"
        )
        return Check(
            Evidence.PREDICTED_POINT, "E1 objective", diff <= allowed, diff, allowed, detail
        )

    def _run(  # noqa: PLR0913 - a run's record
        self,
        index: int,
        point: Params,
        iterations: int,
        evaluations: int,
        seconds: float,
        message: str,
    ) -> Run:
        """A run that ended at `point`, judged by the point's exact value."""
        value = self.value(point)
        return Run(
            index,
            1.0,
            value.value,
            float("nan"),
            iterations,
            evaluations,
            seconds,
            point,
            message=message,
            outcome=self._outcome(value),
            error_bound=value.error,
            structure=self.structure(point),
        )

    def _outcome(self, value: PointValue) -> str:
        claimed = float(self.claimed)
        if not math.isfinite(value.value):
            return "failed"
        if value.value < claimed - value.error:
            return "better"
        # a run's float descent resolves the value only to rounding of its largest terms:
        # an optimum far below them (e^-150 at temperature 1/100) is reached at that resolution
        resolution = ROUNDING * float(np.finfo(np.float64).eps) * self.term_scale()
        band = self.tol.at_prediction * abs(claimed) + value.error + resolution
        if abs(value.value - claimed) <= band:
            return "at-prediction"
        return "worse"

    def term_scale(self) -> float:
        """The size of the largest terms of the value that a run computes in float64 (0: none
        beyond the value itself)."""
        return 0.0

    def geometry(self, e1: PredictedPoint, runs: tuple[Run, ...]) -> GeometryResult:
        """The Gram matrices of the best run at the prediction against the predicted point's."""
        at = [r for r in runs if r.outcome == "at-prediction"]
        if e1.point is None or not at:
            return GeometryResult()
        if not self.prediction.unique:
            detail = "skipped: the claim says the minimiser is not unique"
            return GeometryResult(
                (Check(Evidence.GEOMETRY, "E4 geometry", None, None, self.tol.geometry, detail),)
            )
        if self.prediction.zero:
            return self._zero_geometry(at)
        claimed = float(self.claimed)
        resolved = [
            r
            for r in at
            if abs(r.objective - claimed) <= self.tol.at_prediction * abs(claimed) + r.error_bound
        ]
        if not resolved:  # at the claimed value only within the float resolution of its terms
            detail = (
                "skipped: the runs reach the claimed value only within float64's resolution of "
                "the loss's largest terms, where configurations of different geometry have "
                "values too close for a descent to tell apart"
            )
            return GeometryResult(
                (Check(Evidence.GEOMETRY, "E4 geometry", None, None, self.tol.geometry, detail),)
            )
        at = resolved
        want = self.grams(e1.point)
        best, run = min(
            (
                (max(relative(g, w) for g, w in zip(self.grams(r.point), want, strict=True)), r)
                for r in at
            ),
            key=lambda pair: pair[0],
        )
        detail = (
            f"{self._grams_in_words()} against the predicted point's ({self.prediction.geometry})"
        )
        # within the tolerance a match; beyond `geometry_refutes` and beyond what the run's
        # excess value explains, another geometry; in between the runs cannot tell
        # (docs/verdicts.md, E4)
        explained = self.explained(run, e1.point)
        return GeometryResult((graded(best, detail, self.tol, explained),))

    def explained(self, run: Run, predicted: Params) -> float:
        """The geometry error that the run's value above the claimed one can explain, given
        the predicted point (0: none beyond the tolerances)."""
        return 0.0

    def _excess(self, run: Run) -> float:
        """The run's value above the claimed one, with its evaluation error."""
        return max(run.objective - float(self.claimed), 0.0) + run.error_bound

    def _grams_in_words(self) -> str:
        """What `grams` compares, in words, for E4's detail."""
        raise NotImplementedError

    def logits(self, p: Params) -> np.ndarray:
        """The class-level logits of a point (for a claim of the zero solution)."""
        raise NotImplementedError

    def _zero_geometry(self, at: list[Run]) -> GeometryResult:
        """The claim is the zero solution: the best run at it should have logits near zero.
        Relative errors against zero mean nothing, and near a collapse threshold the value is
        flat in the logits (a run within the value's tolerance may keep small ones), so logits
        above the tolerance decide nothing: only the values can refute here."""
        size = min(float(np.linalg.norm(self.logits(r.point))) for r in at)
        small = size <= self.tol.geometry
        detail = "the best run should be the zero solution: its class-level logits' norm" + (
            ""
            if small
            else " is above the tolerance, which decides nothing near a collapse threshold"
        )
        check = Check(
            Evidence.GEOMETRY,
            "E4 geometry",
            True if small else None,
            size,
            self.tol.geometry,
            detail,
        )
        return GeometryResult((check,))
