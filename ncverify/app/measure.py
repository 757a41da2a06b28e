"""`ncverify measure`: a trained network's head beside the claim's predicted global optimum.

A trained network is read from a NumPy `.npz` file (docs/measure.md) holding

- `features`: `N x d`, the last-layer features of the training samples, one row per sample
  (the input of the head's first layer);
- `labels`: `N` integers in `0 .. K-1`, every class present;
- `W1`, ..., `WM`: the head's layers, `W1` first, each `d_m x d_{m-1}` (the layout of PyTorch's
  `nn.Linear.weight`), the last with `K` rows;
- `b` (optional): the last layer's bias, `K` numbers;

or from a PyTorch (`.pt`, `.pth`: a dict of tensors) or safetensors file with the same arrays
under the names that `TensorNames` gives.

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
from pathlib import Path
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


@dataclass(frozen=True)
class TensorNames:
    """Where each array is in the file; the defaults are the names of the `.npz` format.  For a
    PyTorch or safetensors state dict give its keys, e.g. `layers=("head.0.weight",
    "head.1.weight")`."""

    features: str = "features"
    labels: str = "labels"
    layers: tuple[str, ...] | None = None  # None: W1, W2, ... for as long as they exist
    bias: str = "b"


def _read(path: str) -> dict[str, Any]:
    """The named arrays of `path`: `.npz` (NumPy), `.pt`/`.pth` (a PyTorch dict of tensors, read
    with `weights_only`) or `.safetensors`."""
    suffix = Path(path).suffix.lower()
    if not Path(path).is_file():
        raise MeasureError(f"no such file: {path}.")
    if suffix in (".pt", ".pth"):
        try:
            import torch
        except ImportError:
            raise MeasureError(f"reading {path} needs torch (pip install -e '.[torch]').") from None
        try:
            data = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # noqa: BLE001 - any unreadable file is bad input
            raise MeasureError(f"{path} is not a PyTorch file: {type(exc).__name__}.") from None
        if not isinstance(data, dict):
            raise MeasureError(f"{path} holds a {type(data).__name__}, not a dict of tensors.")
        return {str(k): v.detach().cpu().numpy() for k, v in data.items() if hasattr(v, "numpy")}
    if suffix == ".safetensors":
        try:
            from safetensors.numpy import load_file
        except ImportError:
            raise MeasureError(
                f"reading {path} needs safetensors (pip install safetensors)."
            ) from None
        try:
            return dict(load_file(path))
        except Exception as exc:  # noqa: BLE001
            raise MeasureError(f"{path} is not a safetensors file: {type(exc).__name__}.") from None
    try:
        data = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise MeasureError(f"{path} is not a NumPy .npz file: {type(exc).__name__}.") from None
    if not hasattr(data, "files"):
        raise MeasureError(f"{path} is a single array, not an .npz archive of named arrays.")
    try:
        return {name: data[name] for name in data.files}
    except ValueError:  # numpy refuses a pickled (object) array without allow_pickle
        raise MeasureError(
            f"{path} holds a pickled object array, which ncverify never loads (only numbers)."
        ) from None
    except (OSError, EOFError, zipfile.BadZipFile) as exc:
        raise MeasureError(f"{path} is not a NumPy .npz file: {type(exc).__name__}.") from None


def _array(
    data: dict[str, Any], name: str, path: str, ndim: int, numbers: bool = True
) -> np.ndarray:
    if name not in data:
        raise MeasureError(f"{path} has no array {name!r} (it has {', '.join(sorted(data))}).")
    a = np.asarray(data[name])
    if a.ndim != ndim or a.size == 0:
        raise MeasureError(f"{name!r} in {path} must be a non-empty {ndim}-d array, not {a.shape}.")
    if numbers and (not np.issubdtype(a.dtype, np.number) or not np.all(np.isfinite(a))):
        raise MeasureError(f"{name!r} in {path} must hold finite numbers.")
    return a


def _layer_names(data: dict[str, Any], names: TensorNames) -> tuple[str, ...]:
    if names.layers is not None:
        return names.layers
    depth = 0
    while f"W{depth + 1}" in data:
        depth += 1
    return tuple(f"W{m}" for m in range(1, depth + 1))


def load(path: str, names: TensorNames | None = None) -> Trained:
    """Read and validate a trained head (the format of the module docstring; `names` says where
    each array is when the file uses other names)."""
    names = names or TensorNames()
    data = _read(path)
    features = _array(data, names.features, path, 2).astype(np.float64)
    labels = _array(data, names.labels, path, 1, numbers=False)
    if not np.issubdtype(labels.dtype, np.integer):
        raise MeasureError(f"{names.labels!r} in {path} must be integers, not {labels.dtype}.")
    if labels.shape[0] != features.shape[0]:
        raise MeasureError(
            f"{path} has {features.shape[0]} feature rows but {labels.shape[0]} labels."
        )
    layer_names = _layer_names(data, names)
    if not layer_names:
        raise MeasureError(f"{path} has no head layers (arrays 'W1', 'W2', ...).")
    layers = tuple(_array(data, name, path, 2).astype(np.float64) for name in layer_names)
    k = layers[-1].shape[0]
    if labels.min() < 0 or labels.max() >= k:
        raise MeasureError(f"labels must lie in 0..{k - 1} ({layer_names[-1]} has {k} rows).")
    counts = np.bincount(labels, minlength=k)
    if np.any(counts == 0):
        missing = int(np.flatnonzero(counts == 0)[0])
        raise MeasureError(f"class {missing} has no sample in {path}.")
    width = features.shape[1]
    for name, w in zip(layer_names, layers, strict=True):
        if w.shape[1] != width:
            raise MeasureError(
                f"{name} has {w.shape[1]} columns but its input has dimension {width}."
            )
        width = w.shape[0]
    bias = None
    if names.bias in data:
        bias = _array(data, names.bias, path, 1).astype(np.float64)
        if bias.shape[0] != k:
            raise MeasureError(f"the bias {names.bias} has {bias.shape[0]} entries, not K = {k}.")
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
        classes=_classes(objective, point, predicted, prediction),
    )


def _angles(objective: Objective, point: Params) -> list[float | None]:
    """Per class, the angle in degrees between `w_k` (row `k` of `W_M ... W_1`) and the class
    mean `hbar_k` at layer 1: 0 where the classifier points at its class (NC3); None where one of
    them is zero."""
    geom = layer_geometry(objective, point)[0]
    w, h = np.asarray(geom.W), np.asarray(geom.Hbar)
    out: list[float | None] = []
    for k in range(w.shape[0]):
        size = float(np.linalg.norm(w[k]) * np.linalg.norm(h[:, k]))
        cos = float(w[k] @ h[:, k]) / size if size > 0 else None
        out.append(None if cos is None else math.degrees(math.acos(max(-1.0, min(1.0, cos)))))
    return out


def _classes(
    objective: Objective, point: Params, predicted: Params, prediction: Prediction
) -> list[dict[str, Any]]:
    """Per class: predicted and trained gain `(W Hbar)_kk`, `||w_k||`, `||hbar_k||` and the
    angle between `w_k` and `hbar_k` (layer 1)."""
    geom = layer_geometry(objective, point)[0]
    gains = np.diag(np.asarray(geom.WH))
    w_norms = np.linalg.norm(np.asarray(geom.W), axis=1)
    h_norms = np.linalg.norm(np.asarray(geom.Hbar), axis=0)
    angles, predicted_angles = _angles(objective, point), _angles(objective, predicted)
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
            "predicted_angle": predicted_angles[k],
            "trained_angle": angles[k],
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


def _layer_table(m: Measurement) -> Table:
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
    return layers


def _class_table(m: Measurement) -> Table:
    classes = Table(title="per class (layer 1)")
    heads = ("class", "count", "regime", "gain", "trained", "||w_k||", "trained", "||hbar_k||")
    for col in (*heads, "trained", "angle", "trained"):
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
            _f(c["predicted_angle"], 3),
            _f(c["trained_angle"], 3),
        )
    return classes


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
    parts += [_layer_table(m), _class_table(m)]
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


def plot(m: Measurement, path: str) -> None:
    """Predicted and trained gains side by side, one pair of bars per class (any format that
    matplotlib writes: .png, .svg, .pdf)."""
    if m.classes is None:
        raise MeasureError(f"no plot: {m.reason or 'no prediction'}.")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = np.arange(len(m.classes))
    fig, ax = plt.subplots(figsize=(6.4, 3.6))
    ax.bar(x - 0.2, [c["predicted_gain"] for c in m.classes], 0.4, label="predicted")
    ax.bar(x + 0.2, [c["trained_gain"] for c in m.classes], 0.4, label="trained")
    ax.set_xticks(x, [f"{c['class']}\n{c['count']}" for c in m.classes], fontsize=8)
    ax.set_xlabel("class (samples)")
    ax.set_ylabel("gain (W Hbar)_kk")
    ax.set_ylim(0, 1.3)  # room for the legend above the bars
    lam = float(m.problem.lambda_h) if m.problem is not None else math.nan
    ax.set_title(f"{m.claim.id}: gains at lambda_H = {lam:.3g} ({m.lambda_h_source})")
    ax.legend(loc="upper right", ncol=2)
    fig.tight_layout()
    from ncverify.paths import open_for_write

    fmt = Path(path).suffix.lower().lstrip(".") or None  # None: matplotlib's default (png)
    try:
        with open_for_write(path, binary=True, what="plot file") as fh:
            fig.savefig(fh, dpi=110, format=fmt)
    finally:
        plt.close(fig)
