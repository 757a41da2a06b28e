"""Non-negative features (`loss="nonnegative-ce"`): cross-entropy with weight decay, the features
constrained to `H >= 0`, one layer, no bias (`ncverify.model.nonnegative`;
docs/theory/relu-features.md).

- A point's value is `F`, enclosed exactly (`ncverify.model.exact.enclose_objective`): every value
  this kind reports, and the certificate of a counterexample, is that enclosure; a point with a
  negative entry has none (it is not a point of the problem).
- E1: the predicted point has the claimed value, and the conditions of a minimum on the orthant
  hold: the gradient in `W` vanishes, and in the class means it vanishes on positive entries and
  is non-negative on zero ones (`kkt_residual`), relative to the gradients that cancel there.
- E2: claim-agnostic runs of scipy's L-BFGS-B on `(W, Hbar)` with the bounds `Hbar >= 0`, from
  Gaussian starts (the class means' absolute values); one feature per class, an exact reduction
  (each feature's problem is strictly convex for a fixed `W`); judged by the exact value of the
  end point.
- E4: the Gram matrices `W W^T`, `Hbar^T Hbar` and `W Hbar` of the best run at the prediction
  against the predicted point's (they fix a point up to an isometry of the feature space).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from ncverify.backend import to_host
from ncverify.evidence.optimize import Run
from ncverify.evidence.results import PointValue
from ncverify.evidence.structure import Structure, logit_structure
from ncverify.kinds._projected import ProjectedSession, enclosed_value
from ncverify.kinds.base import KindSession, ProblemKind, Progress, RunCost
from ncverify.limits import FLOAT_BYTES
from ncverify.model import nonnegative
from ncverify.model.exact import first_columns
from ncverify.model.objective import Params
from ncverify.model.problem import Loss, Problem


class NonnegativeSession(ProjectedSession):
    parameterisation = "class-means"  # the runs: one feature per class
    enclose = staticmethod(nonnegative.enclose)
    point_words = "F at the predicted point"

    def structure(self, p: Params) -> Structure:
        return logit_structure(self.logits(p))

    def grams(self, p: Params) -> tuple[np.ndarray, ...]:
        q = self.reduced(p)
        w, hbar = np.asarray(q.Ws[0]), _class_means(self.problem, q)
        return w @ w.T, hbar.T @ hbar, w @ hbar

    def explained(self, run: Run, predicted: Params) -> float:
        """As for the penalised problem (`ncverify.evidence.geometry`): along the directions
        only the weight decay sees (rebalancing `W` against `Hbar`), the curvature is as small
        as the smaller lambda, so a run `delta` above the optimum may sit a relative distance
        `sqrt(2 delta / (lambda_min |x|^2))` from the predicted point `x`."""
        q = self.reduced(predicted)
        size = float(np.sum(np.asarray(q.Ws[0]) ** 2) + np.sum(_class_means(self.problem, q) ** 2))
        smallest = min(float(self.problem.lambda_w[0]), float(self.problem.lambda_h))
        return math.sqrt(2 * self._excess(run) / (smallest * size)) if size > 0 else math.inf

    def logits(self, p: Params) -> np.ndarray:
        q = self.reduced(p)
        return np.asarray(q.Ws[0]) @ _class_means(self.problem, q)

    def _grams_in_words(self) -> str:
        return "largest relative error of W W^T, Hbar^T Hbar and W Hbar"

    # ---- evidence -------------------------------------------------------------------------------
    def stationarity(self, point: Params) -> tuple[float, float, str]:
        w, hbar = np.asarray(point.Ws[0]), _class_means(self.problem, point)
        size, scale = nonnegative.kkt_residual(self.problem, w, hbar)
        detail = (
            "the gradient at the predicted point less what the constraint H >= 0 excuses (a "
            f"non-negative slope on a zero entry); the loss and regulariser gradients have norms "
            f"summing to {scale:.3e} and must cancel"
        )
        return size, scale, detail

    def run_cost(self) -> RunCost:
        k, d = self.problem.K, self.problem.widths[0]
        return RunCost(FLOAT_BYTES * 4 * k * d, 4 * k * k * d, 1)

    def runs(self, restarts: int, max_iter: int, progress: Progress | None) -> tuple[Run, ...]:
        out = []
        for r in orthant_descents(self.problem, restarts, self.settings.seed, max_iter):
            out.append(
                self._run(r.index, r.point, r.iterations, r.evaluations, r.seconds, r.message)
            )
            if progress is not None:
                progress("optimiser runs", len(out), restarts)
        return tuple(out)

    def runs_method(self, runs: int) -> str:
        return (
            "L-BFGS-B on (W, Hbar) with the bounds Hbar >= 0, one feature per class, starts with "
            "Gaussian W and the absolute values of Gaussian class means"
        )


@dataclass(frozen=True)
class OrthantRun:
    """One run of `orthant_descents`: where it ended (class means) and how."""

    index: int
    point: Params
    iterations: int
    evaluations: int
    message: str
    seconds: float


def orthant_descents(
    problem: Problem, restarts: int, seed: int = 0, max_iter: int = 5000
) -> list[OrthantRun]:
    """`restarts` runs of scipy's L-BFGS-B on the reduced objective with the bounds `Hbar >= 0`
    (run `i` from `default_rng([seed, i])`).  A bound-constrained method, not a parameterisation
    of the orthant such as `Hbar = G * G`: that one has a stationary point wherever a class's
    features reach zero, even where growing them would descend, and runs stall there."""
    from scipy.optimize import minimize

    k, d = problem.K, problem.widths[0]
    bounds = [(None, None)] * (k * d) + [(0.0, None)] * (d * k)

    def fun_grad(x: np.ndarray) -> tuple[float, np.ndarray]:
        value, gw, gh, _ = nonnegative.value_grad(
            problem, x[: k * d].reshape(k, d), x[k * d :].reshape(d, k)
        )
        return value, np.concatenate([gw.ravel(), gh.ravel()])

    runs = []
    for i in range(restarts):
        rng = np.random.default_rng([seed, i])
        x0 = np.concatenate([rng.standard_normal(k * d), np.abs(rng.standard_normal(d * k))])
        t0 = time.perf_counter()
        res = minimize(
            fun_grad, x0, jac=True, method="L-BFGS-B", bounds=bounds,
            options={"maxiter": max_iter, "ftol": 1e-15, "gtol": 1e-12, "maxcor": 20},
        )  # fmt: skip
        point = Params((res.x[: k * d].reshape(k, d),), res.x[k * d :].reshape(d, k))
        runs.append(
            OrthantRun(
                i, point, int(res.nit), int(res.nfev), str(res.message), time.perf_counter() - t0
            )
        )
    return runs


def _class_means(problem: Problem, p: Params) -> np.ndarray:
    h = np.asarray(to_host(p.H), dtype=np.float64)
    return h if h.shape[1] == problem.K else h[:, first_columns(problem)]


class Nonnegative(ProblemKind):
    """Cross-entropy with weight decay on non-negative features."""

    losses = (Loss.NONNEGATIVE_CE,)
    description = "the problem with non-negative features (H >= 0)"
    exact_values = True  # every value is an exact enclosure
    no_layer_trace = "it has one layer, whose features the runs keep on the orthant"

    def value_of(self, problem: Problem, full: Params) -> PointValue:
        return enclosed_value(problem, full, nonnegative.enclose)

    def open(self, problem, backend, prediction, predicted, tol, settings) -> KindSession:  # noqa: ANN001, PLR0913
        return NonnegativeSession(problem, backend, prediction, tol, settings)


#: the kind this module defines (found by `ncverify.kinds`)
kind = Nonnegative()
