"""The class-mean reduction: the same problem over one feature column per class.

For fixed weights and bias the objective is a sum over samples of a strictly convex function of
each feature column (for a loss convex in the logits: not focal loss) `h_i` (`lambda_H > 0`) that depends on the sample only through its label.
Replacing the columns of a class by their mean keeps the logits' mean and, by Jensen's
inequality, can only lower the loss and the regulariser:

$$F(W, H, b) \\ge F(W, \\bar H Y, b), \\qquad \\bar H = H Y^T \\operatorname{diag}(n)^{-1},$$

with equality exactly at collapsed features.  So the problem over `(W_1, ..., W_M, Hbar, b)` with
the lifted features `H = Hbar Y` has the same minima, and its stationary points and local minima
lift to those of the full problem (at a lift, the full Hessian is the reduced one plus a
within-class block `>= lambda_H I`; docs/theory/model.md#the-class-mean-reduction).  The reduced
problem is written in the coordinates `G = Hbar D`, `D = diag(sqrt(n_k))`, in which the lift
`G -> G D^{-1} Y` is an isometry: the regulariser is the unweighted `||G||_F^2` and gradient
norms and curvatures are those of the full problem.

Example:

>>> import numpy as np
>>> g = np.array([[3.0, 0.0], [0.0, 1.0]])
>>> lift_features((1, 4), g, np)  # class 0 has one sample, class 1 four
array([[3. , 0. , 0. , 0. , 0. ],
       [0. , 0.5, 0.5, 0.5, 0.5]])
>>> class_mean_coordinates((1, 4), lift_features((1, 4), g, np), np)
array([[3., 0.],
       [0., 1.]])
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

Parameterisation = Literal["full", "class-means", "weights"]

#: every parameterisation: every sample's features; the class means; the weights alone, with the
#: class means and the bias at their closed-form minimiser (squared loss only,
#: `ncverify.model.elimination`), whose points are class-mean points
PARAMETERISATIONS: tuple[str, ...] = ("full", "class-means", "weights")

Array = Any
_P = TypeVar("_P")


def default_parameterisation(problem: Any) -> Parameterisation:
    """The parameterisation a check of `problem` optimises in: the weights alone for the squared
    loss, the class means for cross-entropy; both exact for linear layers (any counts and bias
    mode).  With a ReLU between the layers every sample's features: there the class-mean problem
    keeps the global value, but the correspondence of stationary points uses linearity.  Focal
    loss is not convex in the logits, so Jensen's inequality fails and every sample's features
    are optimised too."""
    if problem.activation != "linear" or problem.loss == "focal":
        return "full"
    return "weights" if problem.loss == "mse" else "class-means"


def unavailable(problem: Any, parameterisation: str) -> str | None:
    """Why `parameterisation` cannot be used for `problem` (one sentence), or None if it can."""
    if parameterisation == "full":
        return None
    if problem.activation != "linear" and problem.depth > 1:
        return (
            f"the {parameterisation} parameterisation is exact for linear layers only; "
            "use --parameterisation full with an activation"
        )
    if problem.loss == "focal":
        return (
            f"the {parameterisation} parameterisation rests on a loss convex in the logits, and "
            "focal loss is not; use --parameterisation full"
        )
    if parameterisation == "weights" and problem.loss != "mse":
        return "the weights parameterisation eliminates the features in closed form for MSE only"
    return None


def _sizes(counts: tuple[int, ...], like: Array, xp: Any) -> Array:
    return xp.asarray([float(c) for c in counts], dtype=like.dtype, device=_device(like))


def _device(a: Array) -> Any:
    return getattr(a, "device", None)


def _labels(counts: tuple[int, ...], xp: Any, like: Array) -> Array:
    return xp.asarray([k for k, n in enumerate(counts) for _ in range(n)], device=_device(like))


def lift_features(counts: tuple[int, ...], g: Array, xp: Any) -> Array:
    """`H = G D^{-1} Y`: every sample of class `k` gets the class mean `g_k / sqrt(n_k)`."""
    means = g / xp.sqrt(_sizes(counts, g, xp))[None, :]
    return xp.take(means, _labels(counts, xp, g), axis=1)


def class_mean_coordinates(counts: tuple[int, ...], h: Array, xp: Any) -> Array:
    """`G = Hbar D = H Y^T D^{-1}`: column `k` is the sum of class `k`'s columns over
    `sqrt(n_k)`, the orthogonal projection of `H` onto the collapsed features, in coordinates."""
    sizes = _sizes(counts, h, xp)
    sums = []
    start = 0
    for n in counts:
        sums.append(xp.sum(h[:, start : start + n], axis=1))
        start += n
    return xp.stack(sums, axis=1) / xp.sqrt(sizes)[None, :]


def is_lift(counts: tuple[int, ...], h: Array, xp: Any) -> bool:
    """Whether every class's feature columns are equal (bit for bit): `H` is a lift `Hbar Y`."""
    start = 0
    for n in counts:
        block = h[:, start : start + n]
        if not bool(xp.all(block == block[:, :1])):
            return False
        start += n
    return True


def lift(counts: tuple[int, ...], p: _P, xp: Any) -> _P:
    """A class-means point `(W, G, b)` as the full point `(W, G D^{-1} Y, b)`."""
    return type(p)(p.Ws, lift_features(counts, p.H, xp), p.b)  # type: ignore[attr-defined,call-arg]


def to_class_means(counts: tuple[int, ...], p: _P, xp: Any) -> _P:
    """A full point `(W, H, b)` as the class-means point `(W, Hbar(H) D, b)`: the same point
    where `H` is collapsed, else the point that Jensen's inequality says is no worse."""
    h = class_mean_coordinates(counts, p.H, xp)  # type: ignore[attr-defined]
    return type(p)(p.Ws, h, p.b)  # type: ignore[attr-defined,call-arg]
