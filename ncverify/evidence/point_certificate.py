"""The certificate that a point beats a claim: its value enclosed exactly or with a proven error
bound, against the claim's enclosure of its optimum.

Where the point's features are class-constant, its objective is enclosed in exact rational and
interval arithmetic (`ncverify.model.exact.enclose_objective`); otherwise its float value and
its proven forward error bound are used.  A counterexample is certified only when the two
enclosures are disjoint, i.e. the gap exceeds the sum of their radii.  Used by the verifier for
every counterexample and by `ncverify recheck` for saved ones.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import mpmath
import numpy as np

from ncverify.claim import Prediction
from ncverify.model.exact import PREC, enclose_objective, first_columns
from ncverify.model.intervals import ends, interval_precision
from ncverify.model.objective import Params
from ncverify.model.problem import Problem
from ncverify.serial import clean

#: The exact evaluation of a kind: an interval containing a point's value, or None.
Enclosure = Callable[[Problem, Params], Any]


@dataclass(frozen=True)
class PointStructure:
    """Rank and singular values of the class-level logits `W_M ... W_1 Hbar` (through the ReLUs
    of a ReLU head), the class-mean Gram matrix `Hbar^T Hbar` (layer 1) and the classifier Gram
    `W W^T` (`W = W_M ... W_1`; `W_M` alone for a ReLU head), and the bias (floats).  A point
    with no layers (the contrastive problem) has no classifier: its "logits" are the class means'
    Gram matrix and its classifier Gram is empty."""

    logit_rank: int
    logit_singular_values: tuple[float, ...]
    logits: np.ndarray
    class_mean_gram: np.ndarray
    classifier_gram: np.ndarray
    bias: tuple[float, ...] | None

    def to_json(self) -> dict[str, Any]:
        return clean(
            {
                "logit_rank": self.logit_rank,
                "logit_singular_values": self.logit_singular_values,
                "logits": self.logits,
                "class_mean_gram": self.class_mean_gram,
                "classifier_gram": self.classifier_gram,
                "bias": self.bias,
            }
        )


@dataclass(frozen=True)
class PointCertificate:
    """Does a point beat the claimed optimum beyond every evaluation error?  `certified` is
    `gap > bound`: the claimed optimum minus the point's value, against the proven bound on the
    error of that gap (the radii of the two enclosures)."""

    certified: bool
    exact: bool  # evaluated exactly / in intervals, not with a float error bound
    method: str
    rigorous: bool  # the claim's enclosure is rigorous
    gap: float
    bound: float
    objective_enclosure: tuple[float, float]
    objective_digits: str
    claimed_enclosure: tuple[float, float]
    claimed_digits: str
    structure: PointStructure

    def to_json(self) -> dict[str, Any]:
        return clean(
            {
                "certified": self.certified,
                "exact": self.exact,
                "method": self.method,
                "rigorous": self.rigorous,
                "gap": self.gap,
                "bound": self.bound,
                "objective_enclosure": self.objective_enclosure,
                "objective_digits": self.objective_digits,
                "claimed_enclosure": self.claimed_enclosure,
                "claimed_digits": self.claimed_digits,
                "claimed_rigorous": self.rigorous,
                "structure": self.structure.to_json(),
            }
        )


def claimed_enclosure(prediction: Prediction) -> tuple[Any, bool]:
    """The claimed optimum as an interval, and whether that interval is rigorous.

    A claim that proves an enclosure (`objective_enclosure`) gives a rigorous one; otherwise
    its high-precision value is widened by `1e-30 (1 + |F*|)` and marked not rigorous.
    """
    with interval_precision(PREC) as iv:
        if prediction.objective_enclosure is not None:
            lo, hi = prediction.objective_enclosure
            return iv.mpf([lo, hi]), True
        obj = prediction.objective
        with mpmath.workprec(PREC):
            pad = mpmath.mpf("1e-30") * (1 + abs(obj))
            return iv.mpf([obj - pad, obj + pad]), False


def point_structure(problem: Problem, point: Params) -> PointStructure:
    """The structure of a point's class-level logits (host arrays)."""
    h = np.asarray(point.H, dtype=np.float64)
    starts = zip(first_columns(problem), problem.counts, strict=True)
    hbar = np.stack([h[:, s : s + n].mean(axis=1) for s, n in starts], axis=1)
    ws = [np.asarray(wm, dtype=np.float64) for wm in point.Ws]
    if not ws:  # no classifier (the contrastive problem): the class means' own similarities
        w, logits = np.zeros((0, 0)), hbar.T @ hbar
    elif problem.activation == "relu":  # the network's own logits; the classifier is W_M's rows
        z = hbar
        for wm in ws[:-1]:
            z = np.maximum(wm @ z, 0.0)
        w, logits = ws[-1], ws[-1] @ z
    else:
        w = ws[-1]
        for wm in reversed(ws[:-1]):
            w = w @ wm
        logits = w @ hbar
    sv = np.linalg.svd(logits, compute_uv=False)
    top = float(sv[0]) if sv.size else 0.0
    rank = int(np.sum(sv > 1e-9 * top)) if top > 0 else 0
    bias = None if point.b is None else tuple(float(x) for x in np.asarray(point.b))
    return PointStructure(rank, tuple(float(x) for x in sv), logits, hbar.T @ hbar, w @ w.T, bias)


def certify_point(
    problem: Problem,
    prediction: Prediction,
    point: Params,
    float_value: float,
    float_error: float,
    enclose: Enclosure = enclose_objective,
) -> PointCertificate:
    """Does `point` beat the claimed optimum beyond every evaluation error?  (host arrays;
    `float_value` and `float_error` are used only where `enclose`, the exact evaluation of the
    problem's kind, gives no enclosure of the point's value)."""
    claimed, claimed_rigorous = claimed_enclosure(prediction)
    c_lo, c_hi = ends(claimed)
    v_lo, v_hi, exact, method = _value(problem, point, float_value, float_error, enclose)
    with mpmath.workprec(PREC):
        gap = (c_lo + c_hi) / 2 - (v_lo + v_hi) / 2
        bound = (c_hi - c_lo) / 2 + (v_hi - v_lo) / 2
        return PointCertificate(
            certified=bool(v_hi < c_lo),
            exact=exact,
            method=method,
            rigorous=bool(claimed_rigorous),
            gap=float(gap),
            bound=float(bound),
            objective_enclosure=(float(mpmath.nstr(v_lo, 25)), float(mpmath.nstr(v_hi, 25))),
            objective_digits=mpmath.nstr((v_lo + v_hi) / 2, 30),
            claimed_enclosure=(float(mpmath.nstr(c_lo, 25)), float(mpmath.nstr(c_hi, 25))),
            claimed_digits=mpmath.nstr((c_lo + c_hi) / 2, 30),
            structure=point_structure(problem, point),
        )


def _value(
    problem: Problem, point: Params, float_value: float, float_error: float, enclose: Enclosure
) -> tuple[mpmath.mpf, mpmath.mpf, bool, str]:
    """The point's value as an enclosure `(lo, hi)`, whether it is exact, and how it was got."""
    value = enclose(problem, point)
    if value is not None:
        v_lo, v_hi = ends(value)
        method = (
            f"exact rational arithmetic and {PREC}-bit interval arithmetic on the class-level "
            "terms (class-constant features verified)"
        )
        return v_lo, v_hi, True, method
    if not problem.loss.penalised:  # no proven float error bound for these kinds: no value
        method = "none: no exact value of this point (not class-constant, or too large)"
        return mpmath.inf, mpmath.inf, False, method
    with mpmath.workprec(PREC):
        v_lo = mpmath.mpf(float_value) - mpmath.mpf(float_error)
        v_hi = mpmath.mpf(float_value) + mpmath.mpf(float_error)
    method = "float64 value with its proven forward error bound (features not class-constant)"
    return v_lo, v_hi, False, method
