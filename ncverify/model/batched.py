r"""The class-mean objective for a whole batch of points in one array computation.

A point of the class-mean problem (`ncverify.model.reduction`) is `(W_1, ..., W_M, G, b)` with
`G = Hbar D` (`d x K`, `D = diag(sqrt(n_k))`); a *batch* stacks `B` such points along a leading
axis and flattens each into one row of a `(B, n)` array, so that a descent advances all of them
with the same few batched matrix products (`(B, d_m, d_{m-1}) @ (B, d_{m-1}, K)`), on whichever
namespace and device holds the batch.  The value of each row is the objective of
`ncverify.model.objective.Objective` in the class-means parameterisation,

$$F = \sum_k \tfrac{n_k}{N}\,\ell(z_k, k) + \sum_m \tfrac{t\lambda_{W_m}}{2}\|W_m\|_F^2
      + \tfrac{t\lambda_H}{2}\|G\|_F^2 + \tfrac{t\lambda_b}{2}\|b\|^2,$$

with one extra factor per row, `t` (1 by default), that scales every weight decay: a batch can
hold the same instance at several regularisation strengths, which is what a lambda-continuation
descends through.

Widths.  With linear layers the global minimum does not change when each width is cut to
`min(d_m, K)`: a minimiser's product has rank at most the bottleneck, and its balanced
factorisation (lemma 2, docs/theory/lemmas.md) fits in that many dimensions at no greater cost;
a point of the narrow problem is a point of the wide one with zero rows and columns added
(`pad`), of the same value.  With a ReLU between the layers the widths are kept.

>>> import numpy as np
>>> from ncverify.model.problem import Problem
>>> p = Problem.build(classes=2, samples=1, depth=1, width=1, lambda_w=1, lambda_h=1, loss="mse")
>>> f = BatchedObjective(p, np)
>>> x = np.array([[1.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, 0.0]])  # rows: W (2 x 1), G (1 x 2)
>>> f.value_and_grad(x)[0]  # 1/4 ((1-1)^2 + ... ) + 1/2 + 1/2, and 1/2 at the origin
array([1.25, 0.5 ])
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from array_api_compat import device as array_device

from ncverify.model.losses import focal, softmax_and_lse, targets
from ncverify.model.problem import Problem

Array = Any


def search_widths(problem: Problem) -> tuple[int, ...]:
    """The widths a batched search works in: each cut to `K` with linear layers (see above)."""
    if problem.activation == "linear":
        return tuple(min(w, problem.K) for w in problem.widths)
    return problem.widths


@dataclass(frozen=True)
class Layout:
    """Where each parameter sits in a row of the batch: `W_1, ..., W_M`, then `G`, then `b`."""

    shapes: tuple[tuple[int, int], ...]  # the layers', then the features' (d x K)
    bias: int  # K with a bias, else 0

    @classmethod
    def of(cls, problem: Problem) -> Layout:
        dims = [*search_widths(problem), problem.K]
        layers = tuple((dims[m + 1], dims[m]) for m in range(problem.depth))
        return cls((*layers, (dims[0], problem.K)), problem.K if problem.bias != "none" else 0)

    @property
    def size(self) -> int:
        return sum(a * b for a, b in self.shapes) + self.bias

    def unpack(self, x: Array, xp: Any) -> tuple[list[Array], Array | None]:
        """`[W_1, ..., W_M, G]` as `(B, rows, cols)` views of `x`, and `b` (`(B, K)`) or None."""
        out, at, batch = [], 0, x.shape[0]
        for rows, cols in self.shapes:
            out.append(xp.reshape(x[:, at : at + rows * cols], (batch, rows, cols)))
            at += rows * cols
        return out, (x[:, at:] if self.bias else None)

    def pack(self, parts: list[Array], b: Array | None, xp: Any) -> Array:
        flat = [xp.reshape(a, (a.shape[0], -1)) for a in parts]
        return xp.concat(flat + ([b] if b is not None else []), axis=1)


class BatchedObjective:
    """`F` and its gradient for a batch of class-mean points (rows of `x`), on `xp`."""

    def __init__(self, problem: Problem, xp: Any, *, dtype: Any = None, device: Any = None) -> None:
        if not problem.loss.penalised:
            raise ValueError(f"no batched objective for the {problem.loss} problem.")
        self.problem, self.xp = problem, xp
        self.dtype = dtype if dtype is not None else xp.float64
        self.layout = Layout.of(problem)
        n = [float(c) for c in problem.counts]
        self.weights = xp.asarray([[c / problem.N for c in n]], dtype=self.dtype, device=device)
        self.scale = xp.asarray([[1 / math.sqrt(c) for c in n]], dtype=self.dtype, device=device)
        self.Y = targets(problem, xp.eye(problem.K, dtype=self.dtype, device=device))
        self.lambda_w = [float(lam) for lam in problem.lambda_w]
        self.lambda_h = float(problem.lambda_h)
        self.lambda_b = 0.0 if problem.lambda_b is None else float(problem.lambda_b)
        self.relu = problem.activation == "relu"

    def value_and_grad(self, x: Array, t: Array | None = None) -> tuple[Array, Array]:
        """Each row's value (`(B,)`) and gradient (`(B, n)`); `t` (`(B,)`) scales its decays."""
        xp = self.xp
        parts, b = self.layout.unpack(x, xp)
        ws, g = parts[:-1], parts[-1]
        if t is None:
            t3 = xp.ones((x.shape[0], 1, 1), dtype=x.dtype, device=array_device(x))
        else:
            t3 = t[:, None, None]
        feats = [g * self.scale]  # the class means Hbar = G D^{-1}
        for m, w in enumerate(ws):
            pre = w @ feats[-1]
            feats.append(xp.where(pre > 0, pre, 0.0) if self.relu and m < len(ws) - 1 else pre)
        z = feats[-1] if b is None else feats[-1] + b[:, :, None]
        value, dz = self._loss(z)
        back, grads = dz, [None] * len(ws)
        for m in range(len(ws) - 1, -1, -1):
            grads[m] = back @ xp.matrix_transpose(feats[m]) + t3 * self.lambda_w[m] * ws[m]
            back = xp.matrix_transpose(ws[m]) @ back
            if self.relu and m > 0:
                back = xp.where(feats[m] > 0, back, 0.0)
        grad_g = back * self.scale + t3 * self.lambda_h * g
        value = value + _half_squares(xp, ws, self.lambda_w, g, self.lambda_h, t3)
        grad_b = None
        if b is not None:
            tb = t3[:, :, 0]
            value = value + self.lambda_b / 2 * xp.sum(tb * b * b, axis=1)
            grad_b = xp.sum(dz, axis=2) + tb * self.lambda_b * b
        return value, self.layout.pack([*grads, grad_g], grad_b, xp)

    def _loss(self, z: Array) -> tuple[Array, Array]:
        """The weighted loss of each row and its gradient in the logits."""
        xp, w = self.xp, self.weights
        if self.problem.loss == "mse":
            r = z - self.Y
            return xp.sum(r * r * w, axis=(1, 2)) / 2, r * w
        if self.problem.loss == "focal":
            terms = focal(xp, z, self.Y, float(self.problem.focusing))
            return xp.sum(terms.value[:, 0, :] * w, axis=1), terms.gradient(self.Y) * w
        prob, lse = softmax_and_lse(xp, z)
        true = xp.sum(z * self.Y, axis=1)  # (B, K): each class's logits against its targets
        return xp.sum((lse[:, 0, :] - true) * w, axis=1), (prob - self.Y) * w


def _half_squares(
    xp: Any, ws: list[Array], lambda_w: list[float], g: Array, lambda_h: float, t3: Array
) -> Array:
    """`t/2 (sum_m lambda_m ||W_m||^2 + lambda_H ||G||^2)` for each row."""
    total = lambda_h / 2 * xp.sum(g * g, axis=(1, 2))
    for lam, w in zip(lambda_w, ws, strict=True):
        total = total + lam / 2 * xp.sum(w * w, axis=(1, 2))
    return t3[:, 0, 0] * total


def pad(problem: Problem, ws: list[Any], g: Any, xp: Any) -> tuple[list[Any], Any]:
    """One point of the narrow search problem (`(rows, cols)` host arrays) as a point of the
    instance's widths: zero rows and columns added, the value unchanged."""
    dims = [*problem.widths, problem.K]
    out = []
    for m, w in enumerate(ws):
        full = xp.zeros((dims[m + 1], dims[m]), dtype=w.dtype)
        out.append(_place(xp, full, w))
    return out, _place(xp, xp.zeros((dims[0], problem.K), dtype=g.dtype), g)


def _place(xp: Any, full: Any, part: Any) -> Any:
    rows, cols = part.shape
    full[:rows, :cols] = part
    return full
