"""`ncverify measure`: a trained network's head beside the claim's predicted global optimum.

A trained network is read from a NumPy `.npz` file (docs/measure.md) holding

- `features`: `N x d`, the last-layer features of the training samples, one row per sample
  (the input of the head's first layer);
- `labels`: `N` integers in `0 .. K-1`, every class present;
- `W1`, ..., `WM`: the head's layers, `W1` first, each `d_m x d_{m-1}` (the layout of PyTorch's
  `nn.Linear.weight`), the last with `K` rows;
- `b` (optional): the last layer's bias, `K` numbers.

From it `measure` builds the matching `Problem` (counts from the labels, depth and widths from the
layers), fits the effective `lambda_H` (`ncverify.evidence.calibration`) unless one is given, and
reports, against the claim's closed form at that instance: per layer the NC metrics of
`ncverify.evidence.metrics`; per class the gain `(W Hbar)_kk`, `||w_k||` and `||hbar_k||`,
predicted and trained, and which classes collapse; and the distance to the nearest phase boundary.
"""

from __future__ import annotations

import math
import zipfile
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import numpy as np
from rich.console import Group
from rich.table import Table
from rich.text import Text

from ncverify.backend import Backend
from ncverify.claim import Claim, Prediction
from ncverify.evidence.calibration import FeatureDecayFit, effective_lambda_h
from ncverify.evidence.metrics import layer_geometry, nc_metrics
from ncverify.model.objective import Objective, Params
from ncverify.model.problem import Problem, ProblemError, exact
from ncverify.report import clean, version

SCHEMA = "ncverify.measure/1"
#: a trained class counts as collapsed when its gain `(W Hbar)_kk` is below this (the targets
#: have size 1: gain 1 fits a class exactly, gain 0 is the collapsed optimum)
COLLAPSED_BELOW = 1e-2


class MeasureError(ValueError):
    """A file or option `measure` cannot use; the message is one sentence."""


@dataclass(frozen=True)
class Trained:
    """A trained head: features `d x N` ordered class by class, the counts, layers and bias."""

    features: np.ndarray
    counts: tuple[int, ...]
    layers: tuple[np.ndarray, ...]
    bias: np.ndarray | None

    def point(self) -> Params:
        return Params(self.layers, self.features, self.bias)


def _array(data: Any, name: str, path: str, ndim: int) -> np.ndarray:
    if name not in data.files:
        raise MeasureError(f"{path} has no array {name!r} (it has {', '.join(data.files)}).")
    a = np.asarray(data[name])
    if a.ndim != ndim or a.size == 0:
        raise MeasureError(f"{name!r} in {path} must be a non-empty {ndim}-d array, not {a.shape}.")
    if ndim > 0 and name != "labels":
        if not np.issubdtype(a.dtype, np.number) or not np.all(np.isfinite(a)):
            raise MeasureError(f"{name!r} in {path} must hold finite numbers.")
    return a


def load(path: str) -> Trained:
    """Read and validate a trained head (`.npz`, the format of the module docstring)."""
    try:
        data = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise MeasureError(f"no such file: {path}.") from None
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise MeasureError(f"{path} is not a NumPy .npz file: {type(exc).__name__}.") from None
    if not hasattr(data, "files"):
        raise MeasureError(f"{path} is a single array, not an .npz archive of named arrays.")
    features = _array(data, "features", path, 2).astype(np.float64)
    labels = _array(data, "labels", path, 1)
    if not np.issubdtype(labels.dtype, np.integer):
        raise MeasureError(f"'labels' in {path} must be integers, not {labels.dtype}.")
    if labels.shape[0] != features.shape[0]:
        raise MeasureError(
            f"{path} has {features.shape[0]} feature rows but {labels.shape[0]} labels."
        )
    depth = 0
    while f"W{depth + 1}" in data.files:
        depth += 1
    if depth == 0:
        raise MeasureError(f"{path} has no head layers (arrays 'W1', 'W2', ...).")
    layers = tuple(_array(data, f"W{m}", path, 2).astype(np.float64) for m in range(1, depth + 1))
    k = layers[-1].shape[0]
    if labels.min() < 0 or labels.max() >= k:
        raise MeasureError(f"labels must lie in 0..{k - 1} (W{depth} has {k} rows).")
    counts = np.bincount(labels, minlength=k)
    if np.any(counts == 0):
        missing = int(np.flatnonzero(counts == 0)[0])
        raise MeasureError(f"class {missing} has no sample in {path}.")
    width = features.shape[1]
    for m, w in enumerate(layers, start=1):
        if w.shape[1] != width:
            raise MeasureError(
                f"W{m} has {w.shape[1]} columns but its input has dimension {width}."
            )
        width = w.shape[0]
    bias = None
    if "b" in data.files:
        bias = _array(data, "b", path, 1).astype(np.float64)
        if bias.shape[0] != k:
            raise MeasureError(f"the bias b has {bias.shape[0]} entries, not K = {k}.")
    order = np.argsort(labels, kind="stable")  # the model orders samples class by class
    return Trained(features[order].T.copy(), tuple(int(c) for c in counts), layers, bias)


def problem_for(
    trained: Trained,
    *,
    lambda_w: str,
    lambda_h: Fraction,
    lambda_b: str | None,
    loss: str,
) -> Problem:
    """The model instance of a trained head: counts, depth and widths from the file."""
    if trained.bias is None and lambda_b is not None:
        raise MeasureError("--lambda-b is given but the file has no bias b.")
    bias = "none" if trained.bias is None else ("free" if lambda_b is None else "regularised")
    try:
        return Problem.build(
            counts=trained.counts,
            depth=len(trained.layers),
            widths=[w.shape[1] for w in trained.layers],
            lambda_w=lambda_w,
            lambda_h=lambda_h,
            lambda_b=lambda_b,
            loss=loss,
            bias=bias,
        )
    except ProblemError as exc:
        raise MeasureError(str(exc)) from None


@dataclass
class Measurement:
    """What `measure` found: the instance, the fit, and the comparison (None where no
    prediction could be made, with the reason)."""

    claim: Claim
    counts: tuple[int, ...]  # samples per class in the file
    problem: Problem | None
    fit: FeatureDecayFit
    lambda_h_source: str  # "fitted" or "given"
    prediction: Prediction | None = None
    unmet: tuple[str, ...] = ()
    layers: list[dict[str, float | None]] | None = None
    classes: list[dict[str, Any]] | None = None
    reason: str = ""

    @property
    def collapsed(self) -> tuple[list[int], list[int]] | None:
        """(predicted, trained) collapsed classes."""
        if self.classes is None:
            return None
        pred = [c["class"] for c in self.classes if c["predicted_regime"] == "collapsed"]
        got = [c["class"] for c in self.classes if c["trained_gain"] < COLLAPSED_BELOW]
        return pred, got


def measure(
    claim: Claim,
    trained: Trained,
    *,
    lambda_w: str,
    lambda_h: str | None = None,
    lambda_b: str | None = None,
    loss: str | None = None,
) -> Measurement:
    """Compare `trained` with `claim`'s closed form at the instance it defines."""
    loss = loss or claim.loss
    # the fit needs only the loss and the layers: any positive lambda_H builds the problem
    probe = problem_for(
        trained, lambda_w=lambda_w, lambda_h=Fraction(1), lambda_b=lambda_b, loss=loss
    )
    backend = Backend.create()
    fit = effective_lambda_h(Objective(probe, backend.xp), trained.point())
    if lambda_h is not None:
        try:
            chosen, source = exact(lambda_h, "lambda_H"), "given"
        except ProblemError as exc:
            raise MeasureError(str(exc)) from None
    elif fit.usable:
        chosen, source = exact(float(f"{fit.value:.12g}"), "lambda_H"), "fitted"
    else:
        return Measurement(
            claim,
            trained.counts,
            None,
            fit,
            "fitted",
            reason=(
                f"the fitted lambda_H is {fit.value:.3g}, not positive: the trained point is not "
                "stationary for any feature weight decay (not converged, or its features are "
                "not those of the model); give --lambda-h to compare anyway"
            ),
        )
    problem = problem_for(trained, lambda_w=lambda_w, lambda_h=chosen, lambda_b=lambda_b, loss=loss)
    unmet = tuple(claim.hypotheses(problem))
    if unmet:
        return Measurement(
            claim, trained.counts, problem, fit, source, unmet=unmet, reason="outside the claim"
        )
    prediction = claim.closed_form(problem)
    objective = Objective(problem, backend.xp)
    predicted = claim.minimiser(problem, backend)
    point = trained.point()
    layers = nc_metrics(objective, point, predicted)
    return Measurement(
        claim,
        trained.counts,
        problem,
        fit,
        source,
        prediction,
        layers=layers,
        classes=_classes(objective, point, prediction),
    )


def _classes(objective: Objective, point: Params, prediction: Prediction) -> list[dict[str, Any]]:
    """Per class: predicted and trained gain `(W Hbar)_kk`, `||w_k||` and `||hbar_k||` (layer 1)."""
    geom = layer_geometry(objective, point)[0]
    gains = np.diag(np.asarray(geom.WH))
    w_norms = np.linalg.norm(np.asarray(geom.W), axis=1)
    h_norms = np.linalg.norm(np.asarray(geom.Hbar), axis=0)
    return [
        {
            "class": k,
            "count": c.count,
            "predicted_regime": str(c.regime),
            "predicted_gain": c.gain_float,
            "trained_gain": float(gains[k]),
            "predicted_norm_w": c.length_w,
            "trained_norm_w": float(w_norms[k]),
            "predicted_norm_h": c.length_h,
            "trained_norm_h": float(h_norms[k]),
        }
        for k, c in enumerate(prediction.classes)
    ]


def to_json(m: Measurement) -> dict[str, Any]:
    collapsed = m.collapsed
    phase = m.prediction.phase if m.prediction is not None else None
    return clean(
        {
            "schema": SCHEMA,
            "ncverify": version(),
            "claim": m.claim.id,
            "counts": list(m.counts),
            "problem": None if m.problem is None else m.problem.describe(),
            "lambda_h": {
                "value": None if m.problem is None else float(m.problem.lambda_h),
                "source": m.lambda_h_source,
                "fitted": m.fit.value,
                "residual": m.fit.residual,
                "balance_estimate": m.fit.balance,
            },
            "hypotheses": list(m.unmet),
            "reason": m.reason or None,
            "layers": m.layers,
            "classes": m.classes,
            "collapsed": None
            if collapsed is None
            else {"predicted": collapsed[0], "trained": collapsed[1]},
            "distance_to_boundary": None if phase is None else phase.distance,
            "boundaries": None
            if phase is None
            else [
                {"axis": b.axis, "critical": b.critical, "classes": list(b.classes)}
                for b in phase.boundaries
            ],
        }
    )


def _f(x: float | None, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "-"
    return f"{x:.{digits}g}"


def render(m: Measurement) -> Group:
    """The measurement as text: the fit, then per layer and per class against the prediction."""
    parts: list[Any] = [
        Text(f"{m.claim.id}: a trained head against the claim's optimum", style="bold")
    ]
    if m.problem is not None:
        parts.append(Text(m.problem.summary()))
    fit = m.fit
    parts.append(
        Text(
            f"lambda_H {m.lambda_h_source}: "
            + (f"{float(m.problem.lambda_h):.6g}; " if m.problem is not None else "")
            + f"least-squares fit {_f(fit.value, 6)} with relative residual {_f(fit.residual, 3)}"
            f" (0: stationary for one lambda_H); balance estimate lambda_W1 ||W1||^2 / ||H||^2 "
            f"= {_f(fit.balance, 6)}"
        )
    )
    if m.unmet:
        parts.append(Text("outside the claim's hypotheses: " + "; ".join(m.unmet)))
        return Group(*parts)
    if m.reason:
        parts.append(Text(f"no prediction: {m.reason}."))
        return Group(*parts)
    layers = Table(title="per layer (against the predicted point)")
    for col in ("layer", "NC1", "NC2 W W^T", "NC2 Hbar^T Hbar", "NC3 W Hbar", "rel. error W Hbar"):
        layers.add_column(col)
    for row in m.layers or []:
        layers.add_row(
            str(row["layer"]),
            _f(row["nc1"], 3),
            _f(row["nc_WWt"], 3),
            _f(row["nc_HtH"], 3),
            _f(row["nc_WH"], 3),
            _f(row["rel_WH"], 3),
        )
    classes = Table(title="per class (layer 1)")
    heads = ("class", "count", "regime", "gain", "trained", "||w_k||", "trained", "||hbar_k||")
    for col in (*heads, "trained"):
        classes.add_column(col)
    for c in m.classes or []:
        classes.add_row(
            str(c["class"]),
            str(c["count"]),
            c["predicted_regime"],
            _f(c["predicted_gain"], 6),
            _f(c["trained_gain"], 6),
            _f(c["predicted_norm_w"]),
            _f(c["trained_norm_w"]),
            _f(c["predicted_norm_h"]),
            _f(c["trained_norm_h"]),
        )
    parts += [layers, classes]
    pred, got = m.collapsed or ([], [])
    parts.append(
        Text(
            f"collapsed classes: predicted {pred or 'none'}, trained {got or 'none'} "
            f"(gain below {COLLAPSED_BELOW:g})"
        )
    )
    if m.prediction is not None and m.prediction.phase.distance is not None:
        parts.append(
            Text(
                "distance to the nearest phase boundary (log lambda): "
                f"{m.prediction.phase.distance:.3f}"
            )
        )
    return Group(*parts)
