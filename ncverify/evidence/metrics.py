"""Neural-collapse metrics per layer, against a claim's predicted geometry (docs/theory/model.md#nc-metrics).

Conventions (published code disagrees on each; these are ours, stated once):
- layer m has features `H_m` (the input of `W_m`; `H_1 = H`) and classifier `W_M ... W_m`;
- class means `hbar_k` are plain averages; the global mean `h_G` is sample-weighted;
- `NC1 = tr(Sigma_W Sigma_B^+) / K` with `Sigma_W = (1/N) sum_i (h_i - hbar_{y_i})(...)^T` and
  `Sigma_B = (1/K) sum_k (hbar_k - h_G)(...)^T` (not centred further); `None` when
  `Sigma_B = 0` (the zero solution), where it is undefined;
- NC2/NC3 are distances between Frobenius-normalised matrices, `||A/||A|| - T/||T|| ||_F`, for
  `W W^T`, `Hbar^T Hbar`, `W Hbar` and `W` against `Lambda Hbar^T` (the `K x K` map `Lambda`
  read off the prediction: diagonal for the frames of the bias-free claims, `∝ I` or `∝ C` for
  balanced ones, a combination of `C` and `1 1^T` where two modes have different gains), with
  the target `T` computed from the claim's predicted point; the relative errors `||A - T|| / ||T||` are reported too, since every
  claim here fixes the scale.  Both are `None` where `T = 0`; then `norm` (`||A||`) is given;
- `nc_within = |sqrt(NC1) - sqrt(NC1 of the prediction)|`: the within-class spread against the
  claim's, a relative distance like the others (zero wherever the run holds class means only).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from array_api_compat import array_namespace

from ncverify.model.objective import Objective, Params

Array = Any


@dataclass(frozen=True)
class LayerGeometry:
    """Per-layer matrices that the metrics compare."""

    WWt: Array
    HtH: Array
    WH: Array
    W: Array  # classifier seen from the layer, K x d_{m-1}
    Hbar: Array  # d_{m-1} x K
    nc1: float | None


def class_means(objective: Objective, h: Array) -> Array:
    """The class means of layer features `h` (in the class-means parameterisation the features
    are the class means already: one column per class)."""
    xp = array_namespace(h)
    sizes = xp.asarray(
        [float(c) for c in objective.class_sizes],
        dtype=h.dtype,
        device=getattr(h, "device", None),
    )
    return (h @ objective.Y.T) / sizes[None, :]


def nc1(objective: Objective, h: Array, means: Array) -> float | None:
    xp = array_namespace(h)
    pr = objective.problem
    within = h - means @ objective.Y  # zero in the class-means parameterisation: NC1 = 0
    sigma_w = within @ within.T / pr.N
    counts = xp.asarray(
        [float(c) for c in pr.counts], dtype=h.dtype, device=getattr(h, "device", None)
    )
    h_g = means @ counts / pr.N  # sample-weighted: sum_k n_k hbar_k / N
    centred = means - h_g[:, None]
    sigma_b = centred @ centred.T / pr.K
    scale = float(xp.max(xp.abs(sigma_b))) if sigma_b.shape[0] else 0.0
    # Sigma_B = 0 (the zero solution) leaves NC1 undefined.  An optimiser run that converged to
    # zero stops at features of rounding size (~1e-16), whose ratio is noise of order one; at a
    # critical point the layers are balanced, so class means below sqrt(eps) in norm occur only
    # there: treat Sigma_B below eps as zero.
    if scale <= float(xp.finfo(h.dtype).eps):
        return None
    return float(xp.linalg.trace(sigma_w @ xp.linalg.pinv(sigma_b, rtol=1e-10))) / pr.K


def layer_geometry(objective: Objective, p: Params) -> list[LayerGeometry]:
    """Matrices of every layer m = 1..M (classifier `W_M...W_m`, class means of `H_m`)."""
    feats = objective.features(p)
    out = []
    classifier = None
    classifiers = []
    for w in reversed(p.Ws):
        classifier = w if classifier is None else classifier @ w
        classifiers.append(classifier)
    classifiers.reverse()  # classifiers[m] = W_M ... W_{m+1} (0-based m)
    for m, h in enumerate(feats):
        means = class_means(objective, h)
        c = classifiers[m]
        out.append(
            LayerGeometry(c @ c.T, means.T @ means, c @ means, c, means, nc1(objective, h, means))
        )
    return out


def _fro(xp, a: Array) -> float:  # noqa: ANN001
    return float(xp.sqrt(xp.sum(a * a)))


def distance(a: Array, t: Array) -> tuple[float | None, float | None, float]:
    """(normalised distance, relative error, ||a||); the first two None when `t = 0`."""
    xp = array_namespace(a)
    na, nt = _fro(xp, a), _fro(xp, t)
    if nt == 0.0:
        return None, None, na
    rel = _fro(xp, a - t) / nt
    if na == 0.0:
        return 2.0**0.5, rel, na
    return _fro(xp, a / na - t / nt), rel, na


def classifier_map(geom: LayerGeometry) -> Array:
    """`Lambda = W Hbar (Hbar^T Hbar)^+`: the least-squares `K x K` map with `W = Lambda Hbar^T`.

    Diagonal, `Lambda_kk = <w_k, hbar_k> / ||hbar_k||^2` (0 for a zero class mean), wherever the
    class means are orthogonal; a full map is needed where they are not and the modes have
    different gains (from layer 1 of a deep network `W` is then no multiple of `Hbar^T`, though
    it is a fixed linear function of it).
    """
    xp = array_namespace(geom.W)
    return geom.WH @ xp.linalg.pinv(geom.HtH, rtol=1e-10)


def nc_metrics(
    objective: Objective, run: Params, predicted: Params, pred_objective: Objective | None = None
) -> list[dict[str, float | None]]:
    """NC metrics of `run` per layer, each against the same layer of `predicted`.

    `pred_objective` evaluates the predicted point when it lives on another backend.
    """
    observed = layer_geometry(objective, run)
    target = layer_geometry(pred_objective or objective, predicted)
    rows = []
    for m, (o, t) in enumerate(zip(observed, target, strict=True), start=1):
        xp = array_namespace(o.W)
        row: dict[str, float | None] = {"layer": m, "nc1": o.nc1}
        for key, a, b in (("WWt", o.WWt, t.WWt), ("HtH", o.HtH, t.HtH), ("WH", o.WH, t.WH)):
            d, rel, na = distance(a, _same(xp, b, a))
            row[f"nc_{key}"] = d
            row[f"rel_{key}"] = rel
            row[f"norm_{key}"] = na
        # NC1 of the run against the prediction's, as a relative spread (NC1 is quadratic in
        # the within-class spread): zero in the class-means parameterisation, where every
        # class is collapsed; in the full one it tests the samples' collapse
        if o.nc1 is not None and t.nc1 is not None:
            row["nc_within"] = abs(math.sqrt(max(o.nc1, 0.0)) - math.sqrt(max(t.nc1, 0.0)))
        lam = _same(xp, classifier_map(t), o.W)
        d, _, _ = distance(o.W, lam @ o.Hbar.T)
        row["nc_W_Hbar"] = d if float(xp.max(xp.abs(lam))) > 0 else None
        rows.append(row)
    return rows


def _same(xp, t: Array, like: Array) -> Array:  # noqa: ANN001
    """`t` moved to the namespace/device/dtype of `like` (targets may be computed on the host)."""
    if array_namespace(t) is xp or type(t) is type(like):
        return t
    import numpy as np

    return xp.asarray(np.asarray(t), dtype=like.dtype, device=getattr(like, "device", None))


def worst(rows: list[dict[str, float | None]], prefix: str = "nc_") -> float | None:
    vals = [v for r in rows for k, v in r.items() if k.startswith(prefix) and v is not None]
    return max(vals) if vals else None
