"""The problem-kind interface: what the pipeline asks of a kind of problem.

A *kind* is a family of optimisation problems that share how a point is evaluated and searched:
a penalised loss (`F` = data term + weight decay, any activation), or a constrained problem such
as the max-margin limit.  The pipeline (`ncverify.pipeline`) names no kind: it opens a
`KindSession` for one verification and asks it, in order, for E1 at the predicted point, the
claim-agnostic random-start runs (E2, each run classified), the value of any point, the exact
certificate of a point that beats the claim, what a certificate's own point is worth, and E4.
The verdict rules, the certificates' loop, the counterexample's choice and the report exist
once, in the pipeline.

Adding a kind is one module in `ncverify/kinds/` with a subclass of `ProblemKind`, registered
in `ncverify.kinds.KINDS`.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass

import mpmath

from ncverify.backend import Backend
from ncverify.claim import Prediction
from ncverify.evidence.batched_search import BatchedSearch, batched_search
from ncverify.evidence.certificates import Certificate
from ncverify.evidence.optimize import Run
from ncverify.evidence.point_certificate import PointCertificate
from ncverify.evidence.results import (
    CandidatePoint,
    GeometryResult,
    PointValue,
    PredictedPoint,
    Tolerances,
)
from ncverify.evidence.structure import Structure
from ncverify.model.objective import Params
from ncverify.model.problem import Loss, Problem

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class RunSettings:
    """What the runs of one verification may do (from the pipeline's settings)."""

    seed: int
    scales: tuple[float, ...]
    max_iter: int
    continuation: bool
    curvature_steps: int
    parameterisation: str | None  # None: the kind's default
    search_starts: int = 0  # starts of the batched search (0: none)


@dataclass(frozen=True)
class RunCost:
    """The cost of the random-start runs of a kind on an instance, for the cost model
    (`ncverify.limits`): memory of one point in the runs' parameterisation, multiply-adds of one
    evaluation, and descents of one run at most."""

    point_bytes: int
    evaluation_madds: int
    descents: int


class KindSession(ABC):
    """One verification's view of its kind: opened with the claim's prediction and its predicted
    point (full parameterisation), it holds what the kind needs (an objective, a parameterisation)
    and answers the pipeline's questions.  Points it takes and returns are in the check's
    parameterisation unless a method says "full"."""

    #: what the runs, E1 and E4 work in (`ncverify.model.reduction`), for the report
    parameterisation: str = "full"

    def __init__(
        self,
        problem: Problem,
        backend: Backend,
        prediction: Prediction,
        tol: Tolerances,
        settings: RunSettings,
    ) -> None:
        self.problem = problem
        self.backend = backend
        self.prediction = prediction
        self.claimed: mpmath.mpf = prediction.objective
        self.tol = tol
        self.settings = settings
        self.notes: list[str] = []  # what the kind says about this verification

    # ---- points ---------------------------------------------------------------------------------
    def reduced(self, full: Params) -> Params:
        """A full point in the check's parameterisation (identity by default)."""
        return full

    def lifted(self, p: Params) -> Params:
        """A point of the check's parameterisation as a point of the full problem."""
        return p

    @abstractmethod
    def value(self, p: Params) -> PointValue:
        """The point's value in floating point with a proven bound on its error."""

    @abstractmethod
    def structure(self, p: Params) -> Structure:
        """Alive classes and the rank of the point's class-level logits."""

    @abstractmethod
    def certify(self, full: Params, value: PointValue) -> PointCertificate:
        """The exact certificate that the full point beats the claimed optimum."""

    # ---- evidence -------------------------------------------------------------------------------
    @abstractmethod
    def predicted_point(self, full: Params | None) -> PredictedPoint:
        """E1 at the claim's predicted point (None: not built)."""

    @abstractmethod
    def run_cost(self) -> RunCost:
        """The cost of the runs, for the cost model."""

    @abstractmethod
    def runs(self, restarts: int, max_iter: int, progress: Progress | None) -> tuple[Run, ...]:
        """`restarts` claim-agnostic random-start runs, each classified against the claim
        (`outcome` at-prediction / worse / better / failed, `structure`, `error_bound`)."""

    def start_scales(self, runs: int) -> tuple[float, ...]:
        """The start scales of `runs` runs, for the report (none by default)."""
        return ()

    def batched_search(self, progress: Progress | None) -> BatchedSearch | None:
        """The kind's batched claim-agnostic search over `settings.search_starts` starts (None:
        the kind has none); `StepSkipped` where the instance is too large for it."""
        return None

    def _search_batch(
        self,
        problem: Problem,
        progress: Progress | None,
        valuation: Callable[[Params], float] | None = None,
    ) -> BatchedSearch:
        """`ncverify.evidence.batched_search` on `problem` (the instance, or a surrogate of it)
        with this verification's settings, its ends judged against the claim."""
        return batched_search(
            problem,
            self.backend,
            float(self.claimed),
            self.tol.at_prediction,
            starts=self.settings.search_starts,
            seed=self.settings.seed,
            max_iter=self.settings.max_iter,
            progress=progress,
            valuation=valuation,
        )

    @abstractmethod
    def runs_method(self, runs: int) -> str:
        """What the runs optimise and from where, in words, for the report."""

    def certificate_point(self, cert: Certificate) -> Certificate:
        """The certificate with its own point (if any) in the check's parameterisation and its
        primal value, gap and primal error filled in (unchanged by default)."""
        return cert

    def descent_from_prediction(self, e1: PredictedPoint) -> CandidatePoint | None:
        """Where E1 failed: a point found by descending from the predicted point (along E1's
        direction), if it beats the claim in floating point (none by default)."""
        return None

    @abstractmethod
    def geometry(self, e1: PredictedPoint, runs: tuple[Run, ...]) -> GeometryResult:
        """E4: the claimed geometry against the runs."""


class ProblemKind(ABC):
    """A kind of problem: which losses it covers and how a verification of it is opened."""

    #: the losses whose problems are of this kind (`Problem.loss`)
    losses: tuple[Loss, ...] = ()
    #: what the kind is, in words (for the sentence of a claim probed on another kind)
    description: str = ""
    #: the kind's values of points are exact enclosures, with no float error bound: a
    #: counterexample records its exact certificate's bound as its error
    exact_values: bool = False
    #: why its problems have no phase over lambda (sweeps and phase plots refuse them), or None
    no_lambda_phase: str | None = None
    #: why its runs have no per-layer NC metrics to trace over their iterations, or None
    no_layer_trace: str | None = None

    def covers(self, loss: str) -> bool:
        return loss in self.losses

    @abstractmethod
    def value_of(self, problem: Problem, full: Params) -> PointValue:
        """The value of a full point (host arrays) in floating point, with a proven bound on its
        error (0 where `exact_values`), as the point's certificate takes it."""

    @abstractmethod
    def open(
        self,
        problem: Problem,
        backend: Backend,
        prediction: Prediction,
        predicted: Params | None,
        tol: Tolerances,
        settings: RunSettings,
    ) -> KindSession:
        """A session for one verification (`predicted`: the claim's point, full, or None)."""
