"""Supervised contrastive features on the sphere (`loss="supcon"`): every sample's feature on the
unit sphere, the mean supervised contrastive loss at temperature `tau`, no classifier, no weight
decay (`ncverify.model.supcon`; docs/theory/supcon.md).

- A point's value is that of its projection onto the sphere, enclosed exactly (its entries read
  as the rationals they are; norms, `exp` and `log` in interval arithmetic): every value this
  kind reports, and the certificate of a counterexample, is that enclosure.
- E1: the predicted point has the claimed value (the enclosures overlap within the tolerance),
  and the gradient of the value at its projection, tangent to the sphere, vanishes relative to
  the gradient before it is made tangent.
- E2: claim-agnostic L-BFGS runs on the projection from Gaussian starts, every sample its own
  feature (no reduction to the class means: whether a class collapses is the question), judged
  by the exact value.
- E4: the Gram matrix of the best run at the prediction's unit features against the predicted
  point's: it determines a configuration up to a rotation, and holds both the collapse (equal
  features within a class) and the class means' geometry.
"""

from __future__ import annotations

import math

import numpy as np

from ncverify.backend import to_host
from ncverify.evidence.optimize import Run
from ncverify.evidence.results import PointValue
from ncverify.evidence.sphere import gaussian_descents
from ncverify.evidence.structure import Structure, logit_structure
from ncverify.kinds._projected import ProjectedSession, enclosed_value
from ncverify.kinds.base import KindSession, ProblemKind, Progress, RunCost
from ncverify.limits import FLOAT_BYTES, skip_unless_fits
from ncverify.model import supcon
from ncverify.model.objective import Params
from ncverify.model.problem import Loss, Problem


class ContrastiveSession(ProjectedSession):
    parameterisation = "full"  # every sample keeps its own feature
    enclose = staticmethod(supcon.enclose)
    point_words = "the predicted point projected onto the sphere"

    def structure(self, p: Params) -> Structure:
        """The class means of the unit features, as their `K x K` Gram matrix over `tau` (the
        part of the similarities a class-level description sees): its rank is `K - 1` at a
        simplex."""
        u = _unit(p)
        y = supcon.labels(self.problem)
        means = np.stack([u[:, y == k].mean(axis=1) for k in range(self.problem.K)], axis=1)
        return logit_structure(means.T @ means / float(self.problem.temperature))

    def term_scale(self) -> float:
        """Similarities reach `1/tau`, and so do the log-sum-exps the loss subtracts them from."""
        return 1.0 / float(self.problem.temperature)

    def explained(self, run: Run, predicted: Params) -> float:
        """How far the geometry may be from a minimiser's for a run `delta` above the claimed
        value.  Only the other classes' share of each anchor's partition function,
        `log(1 + others / positives)`, sees the geometry (with equal positives the rest is
        `log(n - 1)`), and a change of the inner products by `t` scales it by up to `e^(t/tau)`:
        at the predicted point's share `c`, a run may sit `tau log(1 + delta / c)` away (and
        `tau sqrt(2 delta / c)` along directions of second order).  At a small temperature `c`
        is `e^(-K/((K-1) tau))` small, and a run that reaches the value within the tolerance
        says nothing about the geometry."""
        share = _contrast_share(self.problem, predicted)
        if share <= 0:
            return math.inf
        delta, tau = self._excess(run), float(self.problem.temperature)
        return tau * max(math.log1p(delta / share), math.sqrt(2 * delta / share))

    def grams(self, p: Params) -> tuple[np.ndarray, ...]:
        u = _unit(p)
        return (u.T @ u,)

    def _grams_in_words(self) -> str:
        return "relative error of the unit features' Gram matrix U^T U (every sample)"

    # ---- evidence -------------------------------------------------------------------------------
    def stationarity(self, point: Params) -> tuple[float, float, str]:
        # the gradient forms the N x N similarities and a few arrays of their size
        skip_unless_fits(FLOAT_BYTES * 6 * self.problem.N**2, "E1's stationarity check")
        _, gh, scale = supcon.value_grad_scale(self.problem, np.asarray(point.H))
        detail = (
            f"the gradient tangent to the sphere at the predicted point; before it is made "
            f"tangent its norm is {scale:.3e}, and at a stationary point only the normal part remains"
        )
        return float(np.linalg.norm(gh)), scale, detail

    def run_cost(self) -> RunCost:
        n, d = self.problem.N, self.problem.widths[0]
        return RunCost(FLOAT_BYTES * (n * d + 3 * n * n), 2 * n * n * d, 1)

    def runs(self, restarts: int, max_iter: int, progress: Progress | None) -> tuple[Run, ...]:
        problem, d, n = self.problem, self.problem.widths[0], self.problem.N

        def fun_grad(x: np.ndarray) -> tuple[float, np.ndarray]:
            value, gh, _ = supcon.value_grad_scale(problem, x.reshape(d, n))
            return value, gh.ravel()

        out = []
        for r in gaussian_descents(fun_grad, d * n, restarts, self.settings.seed, max_iter):
            point = Params((), r.x.reshape(d, n))
            out.append(self._run(r.index, point, r.iterations, r.evaluations, r.seconds, r.message))
            if progress is not None:
                progress("optimiser runs", len(out), restarts)
        return tuple(out)

    def runs_method(self, runs: int) -> str:
        return "L-BFGS on the projection onto the sphere, every sample's feature, Gaussian starts"


def _contrast_share(problem: Problem, p: Params) -> float:
    """The mean over anchors of `log(1 + others / positives)`: the other classes' share of the
    partition function, the only part of the loss that sees the geometry."""
    u = _unit(p)
    y = supcon.labels(problem)
    s = u.T @ u / float(problem.temperature)
    np.fill_diagonal(s, -np.inf)
    s = s - s.max(axis=1, keepdims=True)
    same = y[:, None] == y[None, :]
    positives = np.sum(np.where(same, np.exp(s), 0.0), axis=1)
    others = np.sum(np.where(same, 0.0, np.exp(s)), axis=1)
    return float(np.mean(np.log1p(others / positives)))


def _unit(p: Params) -> np.ndarray:
    h = np.asarray(to_host(p.H), dtype=np.float64)
    return h / np.maximum(np.linalg.norm(h, axis=0, keepdims=True), supcon.TINY)


class Contrastive(ProblemKind):
    """The supervised contrastive loss of features on the unit sphere."""

    losses = (Loss.SUPCON,)
    description = "the contrastive problem (features on the sphere, no classifier)"
    exact_values = True  # every value is an exact enclosure of the projected point's
    no_lambda_phase = "its features are fixed to the sphere, and no weight decay enters"
    no_layer_trace = "it has no layers: its features are all there is"

    def value_of(self, problem: Problem, full: Params) -> PointValue:
        return enclosed_value(problem, full, supcon.enclose)

    def open(self, problem, backend, prediction, predicted, tol, settings) -> KindSession:  # noqa: ANN001, PLR0913
        return ContrastiveSession(problem, backend, prediction, tol, settings)


#: the kind this module defines (found by `ncverify.kinds`)
kind = Contrastive()
