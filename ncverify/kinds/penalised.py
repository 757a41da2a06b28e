"""The penalised losses: `F = L(W_M ... W_1 H + b 1^T, Y) + weight decay`, with `L` the mean
squared error or the cross-entropy, linear layers or ReLUs between them (docs/theory/model.md).

A point is evaluated by `ncverify.model.objective.Objective` (value, gradient, Hessian-vector
products and a proven rounding-error bound), in the check's parameterisation: an exact
reduction where the head allows it (the class means, or the weights alone for MSE), else every
sample's features.  E1 is first and second order at the predicted point
(`ncverify.evidence.stationarity`); E2 are L-BFGS runs from random starts with lambda
continuation (`ncverify.evidence.optimize`); E4 the NC metrics of every layer
(`ncverify.evidence.geometry`).
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from ncverify.backend import Backend, to_host
from ncverify.claim import Prediction
from ncverify.evidence.batched_search import BatchedSearch
from ncverify.evidence.certificates import Certificate
from ncverify.evidence.geometry import geometry_evidence
from ncverify.evidence.metrics import layer_geometry
from ncverify.evidence.optimize import DEFAULT_CONTINUATION, Run, descend, multistart, run_scales
from ncverify.evidence.point_certificate import PointCertificate, certify_point
from ncverify.evidence.results import (
    CandidatePoint,
    GeometryResult,
    PointValue,
    PredictedPoint,
    Tolerances,
)
from ncverify.evidence.stationarity import predicted_point_evidence
from ncverify.evidence.structure import Structure, structure
from ncverify.kinds.base import KindSession, ProblemKind, Progress, RunCost, RunSettings
from ncverify.limits import FLOAT_BYTES, MAX_CLASSES_FOR_GRAMS
from ncverify.model.objective import Objective, Params
from ncverify.model.problem import PENALISED_LOSSES, Problem
from ncverify.model.reduction import (
    Parameterisation,
    default_parameterisation,
    is_lift,
    lift,
    to_class_means,
    unavailable,
)

#: Step along E1's direction of descent before descending from the predicted point.
DESCENT_STEP = 1e-3
_PARAMETERISATIONS = {
    "class-means": "over the class means, an exact reduction",
    "weights": "over the weights, class means and bias eliminated exactly",
    "full": "over every sample's features",
}


class PenalisedSession(KindSession):
    def __init__(
        self,
        problem: Problem,
        backend: Backend,
        prediction: Prediction,
        predicted: Params | None,
        tol: Tolerances,
        settings: RunSettings,
    ) -> None:
        super().__init__(problem, backend, prediction, tol, settings)
        self.parameterisation = self._choose(predicted)
        self.objective = Objective(
            problem,
            backend.xp,
            dtype=backend.dtype,
            device=backend.device,
            parameterisation=self.parameterisation,
        )

    def _choose(self, predicted: Params | None) -> Parameterisation:
        """The one asked for, else the head's default; the full one where the claim predicts
        features that are not collapsed (E1 must judge the claim's own point, and the class-mean
        reduction would replace it by another)."""
        chosen = self.settings.parameterisation or default_parameterisation(self.problem)
        why = unavailable(self.problem, chosen)
        if why is not None:
            raise ValueError(why[0].upper() + why[1:] + ".")
        if chosen != "full" and predicted is not None:
            if not is_lift(self.problem.counts, predicted.H, self.backend.xp):
                self.notes.append(
                    "the claim's predicted features are not collapsed (the samples of a class "
                    "have different features): the check runs on the full parameterisation"
                )
                return "full"
        return chosen

    # ---- points ---------------------------------------------------------------------------------
    def reduced(self, full: Params) -> Params:
        """Its class means where the check is reduced (by Jensen's inequality a point no
        worse)."""
        if self.parameterisation == "full":
            return full
        return to_class_means(self.problem.counts, full, self.backend.xp)

    def lifted(self, p: Params) -> Params:
        if self.parameterisation == "full":
            return p
        return lift(self.problem.counts, p, self.backend.xp)

    def value(self, p: Params) -> PointValue:
        return PointValue(self.objective.value(p), self.objective.error_bound(p))

    def structure(self, p: Params) -> Structure:
        return structure(self.objective, p)

    def certify(self, full: Params, value: PointValue) -> PointCertificate:
        return certify_point(
            self.problem, self.prediction, full.map(to_host), value.value, value.error
        )

    # ---- evidence -------------------------------------------------------------------------------
    def predicted_point(self, full: Params | None) -> PredictedPoint:
        """E1 in the check's parameterisation: at a lift the full gradient is the lifted reduced
        one, of the same norm, and the full Hessian adds only a within-class block
        `>= lambda_H I`, so the smallest curvature is the reduced one's or positive."""
        if full is None:
            return PredictedPoint(None)
        point = self.reduced(full)
        e1 = predicted_point_evidence(
            self.objective, point, self.claimed, self.tol, self.settings.curvature_steps
        )
        linear = self.problem.activation == "linear"
        if linear and self.problem.K <= MAX_CLASSES_FOR_GRAMS:
            g = layer_geometry(self.objective, point)[0]
            to = self.backend.to_numpy
            grams = {"WWt": to(g.WWt), "HtH": to(g.HtH), "WH": to(g.WH)}
            e1 = dataclasses.replace(e1, grams=grams)
        return e1

    def run_cost(self) -> RunCost:
        point = FLOAT_BYTES * self.problem.point_entries(self.objective.columns)
        descents = DEFAULT_CONTINUATION.most_descents if self.settings.continuation else 1
        return RunCost(point, self.objective.evaluation_cost, descents)

    def runs(self, restarts: int, max_iter: int, progress: Progress | None) -> tuple[Run, ...]:
        def on_run(i: int, run: Run) -> None:
            if progress is not None:
                progress("optimiser runs", i + 1, restarts)

        runs = multistart(
            self.problem,
            self.backend,
            restarts=restarts,
            seed=self.settings.seed,
            scales=self.settings.scales,
            max_iter=max_iter,
            progress=on_run,
            continuation=DEFAULT_CONTINUATION if self.settings.continuation else None,
            parameterisation=self.objective.parameterisation,
        )
        return tuple(self._classified(run) for run in runs)

    def _classified(self, run: Run) -> Run:
        f_claim = float(self.claimed)
        if not math.isfinite(run.objective):
            return dataclasses.replace(run, outcome="failed")
        # computed where the run ran (in its worker process), else here
        err = run.error_bound if run.error_bound > 0 else self.objective.error_bound(run.point)
        if run.objective < f_claim - err:
            outcome = "better"
        elif abs(run.objective - f_claim) <= self.tol.at_prediction * abs(f_claim) + err:
            outcome = "at-prediction"
        else:
            outcome = "worse"
        shape = self.structure(run.point)
        return dataclasses.replace(run, outcome=outcome, error_bound=err, structure=shape)

    def batched_search(self, progress: Progress | None) -> BatchedSearch | None:
        """The class-mean problem's batched search (`ncverify.evidence.batched_search`)."""
        return self._search_batch(self.problem, progress)

    def start_scales(self, runs: int) -> tuple[float, ...]:
        return tuple(run_scales(self.settings.scales, runs or len(self.settings.scales)))

    def runs_method(self, runs: int) -> str:
        scales = ", ".join(f"{s:.3g}" for s in self.start_scales(runs))
        return f"{_PARAMETERISATIONS[self.parameterisation]}; scales {scales}"

    def certificate_point(self, cert: Certificate) -> Certificate:
        """On the backend, in the check's parameterisation, with its primal value and gap."""
        if cert.point is None:
            return cert
        host = cert.point.map(lambda a: self.backend.asarray(np.asarray(a)))
        point = self.reduced(host)
        primal = self.value(point)
        gap = abs(primal.value - cert.bound) / max(abs(cert.bound), 1e-300)
        return dataclasses.replace(
            cert, point=point, primal=primal.value, primal_error=primal.error, gap=gap
        )

    def descent_from_prediction(self, e1: PredictedPoint) -> CandidatePoint | None:
        """The prediction is not a minimiser: descend from it (labelled as such, not E2)."""
        if e1.point is None:
            return None
        start = e1.point
        if e1.descent is not None:
            start = start.zip_map(e1.descent, lambda a, d: a + DESCENT_STEP * d)
        end, info = descend(self.objective, start, max_iter=self.settings.max_iter)
        value = PointValue(info["objective"], self.objective.error_bound(end))
        if value.value < float(self.claimed) - value.error:
            return CandidatePoint(value, end, "descent from the predicted point")
        return None

    def geometry(self, e1: PredictedPoint, runs: tuple[Run, ...]) -> GeometryResult:
        if self.problem.activation != "linear":  # the metrics compare products W_M ... W_m
            note = (
                "E4 skipped: the NC metrics across layers are defined here for linear layers only"
            )
            return GeometryResult(notes=(note,))
        return geometry_evidence(self.objective, runs, e1.point, self.prediction, self.tol)


class Penalised(ProblemKind):
    """Mean squared error or cross-entropy plus weight decay, linear or ReLU layers."""

    losses = PENALISED_LOSSES
    description = "a penalised loss"

    def value_of(self, problem: Problem, full: Params) -> PointValue:
        """Over every sample's features, in float64 on the host."""
        objective = Objective(problem, np)
        return PointValue(objective.value(full), objective.error_bound(full))

    def open(
        self,
        problem: Problem,
        backend: Backend,
        prediction: Prediction,
        predicted: Params | None,
        tol: Tolerances,
        settings: RunSettings,
    ) -> KindSession:
        return PenalisedSession(problem, backend, prediction, predicted, tol, settings)


#: the kind this module defines (found by `ncverify.kinds`)
kind = Penalised()
