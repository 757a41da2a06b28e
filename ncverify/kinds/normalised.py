"""Normalised features (`loss="normalised-ce"`): cross-entropy with every classifier row on a
sphere of radius `r_W` and every feature on one of radius `r_H`, one layer, no weight decay
(`ncverify.model.normalised`; docs/theory/normalised.md).

- A point's value is that of its projection onto the spheres, enclosed exactly (its entries read
  as the rationals they are; norms, `exp` and `log` in interval arithmetic): every value this
  kind reports, and the certificate of a counterexample, is that enclosure.
- E1: the predicted point has the claimed value (the enclosures overlap within the tolerance),
  and the gradient of the value at its projection, tangent to the spheres, vanishes relative
  to the gradient before it is made tangent.
- E2: claim-agnostic L-BFGS runs on the projection from Gaussian starts, one feature per class
  (an exact reduction: the features of one class meet the same loss), judged by the exact value.
- E4: the geometry of the best run at the prediction against the predicted point's: the Gram
  matrices of the projected classifier and class features and their products, which determine
  a configuration up to a rotation.
"""

from __future__ import annotations

import math

import numpy as np

from ncverify.evidence.optimize import Run
from ncverify.evidence.results import PointValue
from ncverify.evidence.sphere import sphere_runs
from ncverify.evidence.structure import Structure, logit_structure
from ncverify.kinds._projected import ProjectedSession, enclosed_value
from ncverify.kinds.base import KindSession, ProblemKind, Progress, RunCost
from ncverify.limits import FLOAT_BYTES
from ncverify.model import normalised
from ncverify.model.exact import first_columns
from ncverify.model.objective import Params
from ncverify.model.problem import Loss, Problem


class NormalisedSession(ProjectedSession):
    parameterisation = "class-means"  # the runs: one feature per class
    enclose = staticmethod(normalised.enclose)

    def structure(self, p: Params) -> Structure:
        return logit_structure(_class_logits(self.problem, self.reduced(p)))

    def term_scale(self) -> float:
        """Logits reach `r_W r_H`, and so do the log-sum-exps the loss subtracts them from."""
        r_w, r_h = normalised.radii(self.problem)
        return r_w * r_h

    def explained(self, run: Run, predicted: Params) -> float:
        """How far the directions may be from a minimiser's for a run `delta` above the claimed
        value `F*`: the loss is a sum of `e^(z_j - z_y)` terms of total about `F*`, and turning
        the directions by `t` moves the logits by `c t` (`c = r_W r_H`), so a run may sit
        `log(1 + delta / F*) / c` away (and `sqrt(2 delta / (F* c^2))` along directions of
        second order).  At large radii `F*` is `e^(-cK/(K-1))` small, and a run that reaches
        the value within the tolerance says nothing about the geometry."""
        r_w, r_h = normalised.radii(self.problem)
        claimed, c = float(self.claimed), r_w * r_h
        if claimed <= 0:
            return math.inf
        delta = self._excess(run)
        return max(math.log1p(delta / claimed) / c, math.sqrt(2 * delta / (claimed * c * c)))

    def grams(self, p: Params) -> tuple[np.ndarray, ...]:
        return _grams(self.problem, p)

    def _grams_in_words(self) -> str:
        return (
            "largest relative error of W W^T, Hbar^T Hbar and W Hbar (projected onto the spheres)"
        )

    # ---- evidence -------------------------------------------------------------------------------
    def stationarity(self, point: Params) -> tuple[float, float, str]:
        w, h = np.asarray(point.Ws[0]), np.asarray(point.H)
        weights = _weights(self.problem, h.shape[1])
        _, gw, gh, scale = normalised.value_grad_scale(self.problem, w, h, weights)
        detail = (
            f"the gradient tangent to the spheres at the predicted point; before it is made "
            f"tangent its norm is {scale:.3e}, and at a stationary point only the normal part remains"
        )
        return float(math.hypot(np.linalg.norm(gw), np.linalg.norm(gh))), scale, detail

    def run_cost(self) -> RunCost:
        k, d = self.problem.K, self.problem.widths[0]
        return RunCost(FLOAT_BYTES * 2 * k * d, 3 * k * k * d, 1)

    def runs(self, restarts: int, max_iter: int, progress: Progress | None) -> tuple[Run, ...]:
        out = []
        for r in sphere_runs(self.problem, restarts, self.settings.seed, max_iter):
            point = Params((r.w,), r.g)
            out.append(self._run(r.index, point, r.iterations, r.evaluations, r.seconds, r.message))
            if progress is not None:
                progress("optimiser runs", len(out), restarts)
        return tuple(out)

    def runs_method(self, runs: int) -> str:
        return "L-BFGS on the projection onto the spheres, one feature per class, Gaussian starts"


def _weights(problem: Problem, columns: int) -> np.ndarray:
    if columns == problem.K:
        return normalised.class_weights(problem)
    return np.full(columns, 1.0 / columns)


def _unit(p: Params) -> tuple[np.ndarray, np.ndarray]:
    w, h = np.asarray(p.Ws[0], dtype=np.float64), np.asarray(p.H, dtype=np.float64)
    return w / np.linalg.norm(w, axis=1, keepdims=True), h / np.linalg.norm(
        h, axis=0, keepdims=True
    )


def _class_logits(problem: Problem, p: Params) -> np.ndarray:
    r_w, r_h = normalised.radii(problem)
    uw, uh = _unit(p)
    if uh.shape[1] != problem.K:  # mean logits of each class
        labels = np.repeat(np.arange(problem.K), problem.counts)
        z = uw @ uh
        return r_w * r_h * np.stack([z[:, labels == k].mean(axis=1) for k in range(problem.K)], 1)
    return r_w * r_h * (uw @ uh)


def _grams(problem: Problem, p: Params) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    uw, uh = _unit(p)
    if uh.shape[1] != problem.K:
        uh = uh[:, first_columns(problem)]
    return uw @ uw.T, uh.T @ uh, uw @ uh


class Normalised(ProblemKind):
    """Cross-entropy with the classifier rows and the features on spheres of fixed radii."""

    losses = (Loss.NORMALISED_CE,)
    description = "the normalised problem (features and classifier rows on spheres)"
    exact_values = True  # every value is an exact enclosure of the projected point's
    no_lambda_phase = "its norms are fixed by the radii, and no weight decay enters"
    no_layer_trace = "it has one layer, whose classifier rows and features stay on their spheres"

    def value_of(self, problem: Problem, full: Params) -> PointValue:
        return enclosed_value(problem, full, normalised.enclose)

    def open(self, problem, backend, prediction, predicted, tol, settings) -> KindSession:  # noqa: ANN001, PLR0913
        return NormalisedSession(problem, backend, prediction, tol, settings)


#: the kind this module defines (found by `ncverify.kinds`)
kind = Normalised()
