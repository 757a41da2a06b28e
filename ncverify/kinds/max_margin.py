"""The max-margin problem (`loss="max-margin"`): the limit of cross-entropy as every lambda
vanishes, a constrained problem with no objective `F` to descend (docs/theory/ce.md#max-margin):
minimise the weighted norms subject to every margin `(w_{y_i} - w_j)^T h_i >= 1`.

- A point's value is its value at margin 1: the regulariser of the point with its features
  divided by their exact smallest margin (`ncverify.model.max_margin.value_at_margin_one`),
  exact where the features are class-constant; a counterexample is certified by that exact value.
- E1: the claim's point at margin 1 has the claimed value (exact enclosure), and its logits are a
  KKT point of the smooth piece (`ncverify.evidence.margin_kkt`).
- E2: claim-agnostic runs on the `K x K` logits (`ncverify.evidence.margin_search`), each judged
  by the exact value of its end point at margin 1, lifted to balanced factors.
- E4 compares nothing: the geometry is the logits, which E1 checks.
"""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction

import numpy as np

from ncverify.backend import to_host
from ncverify.evidence.batched_search import BatchedSearch, SearchEnd
from ncverify.evidence.optimize import Run
from ncverify.evidence.point_certificate import PointCertificate, certify_point
from ncverify.evidence.results import Check, Evidence, GeometryResult, PointValue, PredictedPoint
from ncverify.evidence.structure import Structure, logit_structure
from ncverify.kinds.base import KindSession, ProblemKind, Progress, RunCost
from ncverify.limits import FLOAT_BYTES
from ncverify.model.max_margin import (
    class_logits,
    lift_logits,
    min_margin,
    value_at_margin_one,
)
from ncverify.model.objective import Params
from ncverify.model.problem import Loss, Problem

#: KKT residual (relative) below which E1 counts the claim's logits as a KKT point.
KKT_TOL = 1e-8
#: Singular values below this (relative) count as zero when judging a run's end point.
RUN_RANK_TOL = 1e-5
#: The constant `c` of the cross-entropy surrogate that the batched search descends.
SURROGATE_C = 1e-3
#: Evaluations of one SLSQP run on the `K x K` logits, at most (for the cost model).
SLSQP_EVALUATIONS = 2000


class MaxMarginSession(KindSession):
    def value(self, p: Params) -> PointValue:
        """Exact where it matters: a counterexample is certified by `certify`."""
        return PointValue(value_at_margin_one(self.problem, p.map(to_host)))

    def structure(self, p: Params) -> Structure:
        return logit_structure(class_logits(p.map(to_host), self.problem.counts))

    def certify(self, full: Params, value: PointValue) -> PointCertificate:
        return certify_point(self.problem, self.prediction, full.map(to_host), value.value, 0.0)

    # ---- evidence -------------------------------------------------------------------------------
    def predicted_point(self, full: Params | None) -> PredictedPoint:
        if full is None:
            return PredictedPoint(None)
        point = full.map(to_host)
        checks = (self._value_check(point), self._kkt_check(point))
        return PredictedPoint(point, checks, all(c.passed for c in checks))

    def _value_check(self, point: Params) -> Check:
        pred = self.prediction
        cert = certify_point(self.problem, pred, point, value_at_margin_one(self.problem, point), 0)
        lo, hi = cert.objective_enclosure
        c_lo, c_hi = cert.claimed_enclosure
        allowed = self.tol.objective * abs(float(pred.objective))
        diff = abs((lo + hi) / 2 - (c_lo + c_hi) / 2)
        detail = (
            f"the predicted point at margin 1 has the value {cert.objective_digits} "
            f"({cert.method}) vs the claimed {cert.claimed_digits}"
        )
        ok = math.isfinite(lo) and diff <= allowed
        return Check(Evidence.PREDICTED_POINT, "E1 objective", ok, diff, allowed, detail)

    def _kkt_check(self, point: Params) -> Check:
        from ncverify.evidence.margin_kkt import kkt  # scipy: only where a max-margin check runs

        problem = self.problem
        result = kkt(class_logits(point, problem.counts), problem.counts, problem.depth)
        ok = result.residual <= KKT_TOL
        extra = ""
        if result.leftover_norm is not None:
            extra = f"; null-space block {result.leftover_norm:.3g} (<= 1 for the nuclear norm)"
            ok = ok and result.leftover_norm <= 1 + KKT_TOL
        detail = (
            f"relative residual of the KKT system of the smooth piece with {result.active} "
            f"active margins and non-negative multipliers, rank(Z D) = {result.rank}{extra}"
        )
        return Check(Evidence.PREDICTED_POINT, "E1 KKT", ok, result.residual, KKT_TOL, detail)

    def run_cost(self) -> RunCost:
        k = self.problem.K
        point = FLOAT_BYTES * self.problem.point_entries(k)
        return RunCost(point, SLSQP_EVALUATIONS * k**3, 1)

    def runs(self, restarts: int, max_iter: int, progress: Progress | None) -> tuple[Run, ...]:
        from ncverify.evidence.margin_search import multistart  # scipy, as above

        problem = self.problem
        out = []
        for r in multistart(problem.counts, problem.depth, restarts, self.settings.seed):
            out.append(self._judged(r.index, r.scale, r.seconds, _low_rank(r.z, problem.counts)))
            if progress is not None:
                progress("optimiser runs", len(out), restarts)
        self.notes.append(
            "runs: each end point is judged by its exact value at margin 1, lifted to balanced "
            "factors; half start near the labels, half at random low-rank logits"
        )
        return tuple(out)

    def _judged(self, index: int, scale: float, seconds: float, z: np.ndarray) -> Run:
        point = lift_logits(self.problem, z)
        value = value_at_margin_one(self.problem, point)
        claimed, tol = float(self.claimed), self.tol.at_prediction
        if not math.isfinite(value):
            outcome = "failed"
        elif value < claimed * (1 - tol):
            outcome = "better"
        elif abs(value - claimed) <= tol * abs(claimed):
            outcome = "at-prediction"
        else:
            outcome = "worse"
        return Run(
            index,
            scale,
            value,
            float("nan"),
            0,
            0,
            seconds,
            point,
            outcome=outcome,
            error_bound=1e-12 * abs(value),  # informational: a counterexample is exact
            structure=logit_structure(z),
        )

    def runs_method(self, runs: int) -> str:
        return "SLSQP on the class-mean logits under the margin constraints"

    def batched_search(self, progress: Progress | None) -> BatchedSearch | None:
        """The batched search of cross-entropy at small weight decays (`surrogate`), each end
        judged by the value of its logits at margin 1; the lowest ends are then polished under
        the margin constraints (`ncverify.evidence.margin_search.descend`)."""
        from ncverify.evidence.margin_search import descend  # scipy, as above

        problem = self.problem
        found = self._search_batch(
            surrogate(problem),
            progress,
            lambda p: value_at_margin_one(problem, _balanced(problem, p)),
        )
        ends = []
        for end in found.ends:
            z = descend(problem.counts, problem.depth, class_logits(end.point, problem.counts))
            point = lift_logits(problem, _low_rank(z, problem.counts))
            value = value_at_margin_one(problem, point)
            origin = f"{end.origin}, polished under the margin constraints"
            ends.append(SearchEnd(point, value, origin))
        return dataclasses.replace(found, ends=tuple(ends))

    def geometry(self, e1: PredictedPoint, runs: tuple[Run, ...]) -> GeometryResult:
        return GeometryResult(notes=("E4 skipped: the geometry is the logits, which E1 checks",))


def surrogate(problem: Problem) -> Problem:
    """Cross-entropy with every weight decay scaled so that `c = (n P)^{1/(M+1)}` (the one
    constant of the balanced reduction, docs/theory/ce.md) is `SURROGATE_C`: its minimisers'
    logits, rescaled to margin 1, approach max-margin points as `c -> 0`."""
    n, m = max(problem.counts), problem.depth
    c = float(n * problem.lambda_product) ** (1 / (m + 1))
    t = Fraction(SURROGATE_C / c).limit_denominator(10**12)
    return problem.with_(
        loss=Loss.CE,
        lambda_w=tuple(lam * t for lam in problem.lambda_w),
        lambda_h=problem.lambda_h * t,
    )


def _balanced(problem: Problem, point: Params) -> Params:
    """The balanced point whose class-mean logits are `point`'s at margin 1 (no worse, lemma 2);
    `point` itself where no margin is positive (its value is then `inf`)."""
    z = class_logits(point, problem.counts)
    m = min_margin(z)
    return lift_logits(problem, z / m) if m > 0 else point


def _low_rank(z: np.ndarray, counts: tuple[int, ...]) -> np.ndarray:
    """`Z` with the singular values of `Z D` below `RUN_RANK_TOL` (relative) set to zero: the
    runs end a smoothing width away from the low-rank points they approach."""
    d = np.sqrt(np.asarray(counts, dtype=np.float64))
    u, s, vt = np.linalg.svd(z * d[None, :])
    s = np.where(s > RUN_RANK_TOL * s[0], s, 0.0)
    return (u * s) @ vt / d[None, :]


class MaxMargin(ProblemKind):
    """Minimise the weighted norms subject to every margin at least 1."""

    losses = (Loss.MAX_MARGIN,)
    description = "the max-margin problem"
    exact_values = True  # the value at margin 1 is enclosed exactly; it has no float error bound
    no_lambda_phase = "the weights of its regulariser only scale its value, by (M+1)/2 P^(1/(M+1))"
    no_layer_trace = (
        "its runs move the class-mean logits under the margin constraints, not the layers"
    )

    def value_of(self, problem: Problem, full: Params) -> PointValue:
        return PointValue(value_at_margin_one(problem, full))

    def open(self, problem, backend, prediction, predicted, tol, settings) -> KindSession:  # noqa: ANN001, PLR0913
        return MaxMarginSession(problem, backend, prediction, tol, settings)


#: the kind this module defines (found by `ncverify.kinds`)
kind = MaxMargin()
