"""The objective `F`, its analytic gradient and Hessian-vector products, on any array namespace.

Forward pass: `H_1 = H`, `H_{m+1} = W_m H_m` (`relu(W_m H_m)` for `m < M` with a ReLU
activation), logits `Z = H_{M+1} + b 1^T`.
Backward pass: with `G = dL/dZ`, `B_{M+1} = G`, `dF/dW_m = B_{m+1} H_m^T + lambda_{W_m} W_m`,
`B_m = W_m^T B_{m+1}`, `dF/dH = B_1 + lambda_H H`, `dF/db = G 1 + lambda_b b`.
The Hessian-vector product differentiates both passes once more along a direction (forward over
reverse, written out by hand so that it runs on every namespace without autodiff).

Two parameterisations of the same function (`ncverify.model.reduction`): `"full"`, with one
feature column per sample (`H` is `d x N`), and `"class-means"`, with one column per class,
`G = Hbar D` (`d x K`, `D = diag(sqrt(n_k))`), whose features enter the layers as
`H_1 = G D^{-1} = Hbar` and whose loss terms carry the weights `n_k / N`.  At a lift
`H = Hbar Y` the two agree in value, and the class-means gradient and Hessian are those of the
full problem restricted to the collapsed subspace, in coordinates in which the lift is an
isometry (`||G||_F = ||Hbar Y||_F`).

Everything here takes the namespace from its inputs (`xp = array_namespace(...)`) and never
moves data to the host.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from array_api_compat import array_namespace

from ncverify.model.losses import FocalTerms, focal, softmax_and_lse, targets
from ncverify.model.problem import Problem
from ncverify.model.reduction import PARAMETERISATIONS, Parameterisation

Array = Any


@dataclass(frozen=True)
class Params:
    """A point of the full model: layers `W_1..W_M`, features `H` (d x N), bias `b` (or None)."""

    Ws: tuple[Array, ...]
    H: Array
    b: Array | None = None

    def arrays(self) -> Iterator[Array]:
        yield from self.Ws
        yield self.H
        if self.b is not None:
            yield self.b

    def map(self, fn) -> Params:  # noqa: ANN001 - a unary array function
        return Params(
            tuple(fn(w) for w in self.Ws), fn(self.H), None if self.b is None else fn(self.b)
        )

    def zip_map(self, other: Params, fn) -> Params:  # noqa: ANN001
        return Params(
            tuple(fn(a, c) for a, c in zip(self.Ws, other.Ws, strict=True)),
            fn(self.H, other.H),
            None if self.b is None else fn(self.b, other.b),
        )

    @property
    def namespace(self):  # noqa: ANN201
        return array_namespace(self.H)


def inner(a: Params, c: Params) -> Array:
    """Euclidean inner product of two points (a 0-d array)."""
    xp = a.namespace
    return sum(xp.sum(x * y) for x, y in zip(a.arrays(), c.arrays(), strict=True))


def norm(a: Params) -> float:
    xp = a.namespace
    return float(xp.sqrt(inner(a, a)))


def one_hot(problem: Problem, xp, *, dtype=None, device=None) -> Array:  # noqa: ANN001
    """Labels `Y` (K x N), samples ordered class by class."""
    labels = xp.asarray(problem.labels(), device=device)
    classes = xp.reshape(xp.arange(problem.K, device=device), (problem.K, 1))
    return xp.astype(classes == xp.reshape(labels, (1, problem.N)), dtype or xp.float64)


def _suffix_products(ws: tuple[Array, ...]) -> tuple[list[Array | None], Array]:
    """`[A_1, ..., A_M]` with `A_m = W_M ... W_{m+1}` (None for the identity `A_M`), and
    `P = W_M ... W_1`; every product has `K` rows, so each costs `K d_m d_{m-1}`."""
    depth = len(ws)
    suffix: list[Array | None] = [None] * depth
    acc = None
    for m in range(depth - 1, 0, -1):
        acc = ws[m] if acc is None else acc @ ws[m]
        suffix[m - 1] = acc
    prod = ws[0] if acc is None else acc @ ws[0]
    return suffix, prod


class Objective:
    """`F` for one problem on one namespace/device/dtype, in one parameterisation.

    Args:
        problem: the instance.
        xp: an array namespace (from `ncverify.backend`).
        dtype: floating dtype of that namespace (float64 by default).
        device: device of that namespace (None = its default).
        parameterisation: `"full"` (`H` is `d x N`) or `"class-means"` (`H` holds `G = Hbar D`,
            `d x K`); see the module docstring.
    """

    def __init__(
        self,
        problem: Problem,
        xp,  # noqa: ANN001
        *,
        dtype=None,  # noqa: ANN001
        device=None,  # noqa: ANN001
        parameterisation: Parameterisation = "full",
    ) -> None:
        if parameterisation not in PARAMETERISATIONS:
            raise ValueError(f"unknown parameterisation {parameterisation!r}.")
        if not problem.loss.penalised:  # constrained: ncverify.model.max_margin has its value
            raise ValueError("the max-margin problem is constrained and has no objective F.")
        self.problem = problem
        self.xp = xp
        self.dtype = dtype if dtype is not None else xp.float64
        self.device = device
        self.parameterisation = parameterisation
        #: loss weight of each feature column (`n_k / N`; None: every column `1 / N`) and the
        #: factor `1 / sqrt(n_k)` that maps a column of `G` to a class mean (None: 1)
        self.weights: Array | None = None
        self.scale: Array | None = None
        if parameterisation == "full":
            self.Y = targets(problem, one_hot(problem, xp, dtype=self.dtype, device=device))
            self.columns = problem.N
            #: samples per feature column of each class: the divisor of a class mean
            self.class_sizes = problem.counts
        else:
            n = xp.asarray([float(c) for c in problem.counts], dtype=self.dtype, device=device)
            self.Y = targets(problem, xp.eye(problem.K, dtype=self.dtype, device=device))
            self.columns = problem.K
            self.class_sizes = (1,) * problem.K
            self.weights = xp.reshape(n / problem.N, (1, problem.K))
            self.scale = xp.reshape(1.0 / xp.sqrt(n), (1, problem.K))
        self.lambda_w = [float(lam) for lam in problem.lambda_w]
        self.lambda_h = float(problem.lambda_h)
        self.lambda_b = 0.0 if problem.lambda_b is None else float(problem.lambda_b)

    # ---- pieces ---------------------------------------------------------------------------
    def first_features(self, h: Array) -> Array:
        """`H_1`, the features that enter `W_1`: `H` itself, or the class means `G D^{-1}`."""
        return h if self.scale is None else h * self.scale

    def _to_parameter(self, grad_h1: Array) -> Array:
        """A gradient with respect to `H_1` as one with respect to the parameter `H` (or `G`)."""
        return grad_h1 if self.scale is None else grad_h1 * self.scale

    @property
    def relu(self) -> bool:
        return self.problem.activation == "relu"

    def _active(self, features: Array) -> Array:
        """`relu'` of the pre-activations whose ReLU gave `features` (1 where positive, else 0:
        the derivative of the smooth piece; at an exact zero the function has a kink, and a
        claim about such a point must be checked one-sidedly, not with this)."""
        return self.xp.astype(features > 0, features.dtype)

    def _forward(self, p: Params) -> tuple[list[Array], Array]:
        feats = [self.first_features(p.H)]
        last = len(p.Ws) - 1
        for m, w in enumerate(p.Ws):
            pre = w @ feats[-1]
            feats.append(pre * self._active(pre) if self.relu and m < last else pre)
        z = feats[-1]
        if p.b is not None:
            z = z + p.b[:, None]
        return feats, z

    def _loss(self, z: Array) -> tuple[Array, Array, Callable[[Array], Array]]:
        """Loss value, `G = dL/dZ`, and the map `dZ -> dG` (the loss's Hessian in the logits)."""
        xp, n, w = self.xp, self.problem.N, self.weights

        def weighted(a: Array) -> Array:
            return a / n if w is None else a * w

        if self.problem.loss == "mse":
            r = z - self.Y
            value = xp.sum(r * r) / (2 * n) if w is None else xp.sum(r * r * w) / 2
            return value, weighted(r), weighted
        if self.problem.loss == "focal":
            terms = self._focal(z)
            value = xp.sum(weighted(terms.value))
            return (
                value,
                weighted(terms.gradient(self.Y)),
                lambda dz: weighted(terms.tangent(xp, self.Y, dz)),
            )
        prob, lse = softmax_and_lse(xp, z)
        if w is None:
            value = (xp.sum(lse) - xp.sum(z * self.Y)) / n
        else:
            value = xp.sum((lse - xp.sum(z * self.Y, axis=0)) * w[0, :])

        def tangent(dz: Array) -> Array:
            return weighted(prob * dz - prob * xp.sum(prob * dz, axis=0, keepdims=True))

        return value, weighted(prob - self.Y), tangent

    def regulariser(self, p: Params) -> Array:
        xp = self.xp
        total = self.lambda_h / 2 * xp.sum(p.H * p.H)
        for lam, w in zip(self.lambda_w, p.Ws, strict=True):
            total = total + lam / 2 * xp.sum(w * w)
        if p.b is not None and self.lambda_b:
            total = total + self.lambda_b / 2 * xp.sum(p.b * p.b)
        return total

    # ---- public API -------------------------------------------------------------------------
    def value(self, p: Params) -> float:
        _, z = self._forward(p)
        loss, _, _ = self._loss(z)
        return float(loss + self.regulariser(p))

    def parts(self, p: Params) -> tuple[float, float]:
        """(loss, regulariser) at `p`."""
        _, z = self._forward(p)
        loss, _, _ = self._loss(z)
        return float(loss), float(self.regulariser(p))

    def value_and_grad(self, p: Params) -> tuple[Array, Params]:
        """`F(p)` as a 0-d array on the namespace, and its gradient as a `Params`."""
        value, grad_loss, grad_reg = self._value_and_grad_parts(p)
        return value, grad_loss.zip_map(grad_reg, lambda a, c: a + c)

    def grad_parts(self, p: Params) -> tuple[Params, Params]:
        """Gradient of the loss and of the regulariser separately.

        At a stationary point the two cancel; their sizes set the scale against which the
        rounding error of the sum is judged.
        """
        _, gl, gr = self._value_and_grad_parts(p)
        return gl, gr

    def _value_and_grad_parts(self, p: Params) -> tuple[Array, Params, Params]:
        loss, grad_loss = self.loss_and_grad(p)
        grad_reg = Params(
            tuple(lam * w for lam, w in zip(self.lambda_w, p.Ws, strict=True)),
            self.lambda_h * p.H,
            None if p.b is None else self.lambda_b * p.b,
        )
        return loss + self.regulariser(p), grad_loss, grad_reg

    def loss_and_grad(self, p: Params) -> tuple[Array, Params]:
        """The loss `L` alone (a 0-d array) and its gradient, without the regulariser.

        The optimiser adds the regulariser on the flat parameter vector in two vector
        operations instead of one small operation per layer (`ncverify.evidence.optimize.FlatObjective`).
        """
        if self.product_first:
            return self._loss_and_grad_product_first(p)
        feats, z = self._forward(p)
        loss, g, _ = self._loss(z)
        back = g
        gws = [None] * len(p.Ws)
        for m in range(len(p.Ws) - 1, -1, -1):
            gws[m] = back @ feats[m].T
            back = p.Ws[m].T @ back
            if self.relu and m > 0:  # through the ReLU that produced the input of W_m
                back = back * self._active(feats[m])
        xp = self.xp
        gb = None if p.b is None else xp.sum(g, axis=1)
        return loss, Params(tuple(gws), self._to_parameter(back), gb)

    @property
    def product_first(self) -> bool:
        """Whether the gradient is cheaper with the end-to-end product `W_M ... W_1` formed first.

        Layer by layer, a gradient costs about `3 N sum_m d_m d_{m-1}` multiply-adds; forming
        `P = W_M ... W_1` (K rows) first and touching the `d x N` features only through
        `P H`, `G H^T` and `P^T G` costs about `3 K (d N + sum_m d_m d_{m-1})`, which for the
        usual `K << d` is several times less.  Same function, reassociated products.
        """
        pr = self.problem
        if self.relu:  # no end-to-end product through a nonlinearity
            return False
        dims = [*pr.widths, pr.K]
        chain = sum(dims[m] * dims[m + 1] for m in range(pr.depth))
        cols = self.columns
        return pr.depth > 1 and pr.K * (pr.widths[0] * cols + chain) < cols * chain

    @property
    def evaluation_cost(self) -> int:
        """Multiply-adds of one evaluation of `F` and its gradient, the cheaper association."""
        pr = self.problem
        dims = [*pr.widths, pr.K]
        chain = sum(dims[m] * dims[m + 1] for m in range(pr.depth))
        cols = self.columns
        cost = 3 * cols * chain  # layer by layer
        if self.product_first:
            cost = min(cost, 3 * pr.K * (pr.widths[0] * cols + chain))
        if self.parameterisation == "weights":  # the ridge system of the eliminated features
            small = min(pr.K, pr.widths[0])
            cost += pr.K * pr.widths[0] * small + small**3 // 3
        return cost

    def _loss_and_grad_product_first(self, p: Params) -> tuple[Array, Params]:
        """As `loss_and_grad`, with the products reassociated around `P = W_M ... W_1`.

        With `A_m = W_M ... W_{m+1}` (identity for the last layer) and `H_m` the input of `W_m`,
        `dL/dW_m = A_m^T G H_m^T` and `G H_m^T = (G H^T)(W_{m-1} ... W_1)^T`, a `K x d_{m-1}`
        matrix built by one small product per layer; `dL/dH = P^T G`.
        """
        ws = p.Ws
        depth = len(ws)
        suffix, prod = _suffix_products(ws)
        h1 = self.first_features(p.H)
        z = prod @ h1
        if p.b is not None:
            z = z + p.b[:, None]
        loss, g, _ = self._loss(z)
        e = g @ h1.T  # G H_m^T for m = 1, advanced through the layers below
        gws = []
        for m in range(depth):
            gws.append(e if suffix[m] is None else suffix[m].T @ e)
            if m < depth - 1:
                e = e @ ws[m].T
        gh = self._to_parameter(prod.T @ g)
        xp = self.xp
        gb = None if p.b is None else xp.sum(g, axis=1)
        return loss, Params(tuple(gws), gh, gb)

    def hvp(self, p: Params, v: Params) -> Params:
        """Hessian of `F` at `p` applied to the direction `v`."""
        if self.product_first:
            return self._hvp_product_first(p, v)
        xp = self.xp
        feats, z = self._forward(p)
        _, g, loss_tangent = self._loss(z)
        # forward tangents dH_{m+1} = V_m H_m + W_m dH_m
        dfeats = [self.first_features(v.H)]
        last = len(p.Ws) - 1
        for m, w in enumerate(p.Ws):
            tangent = v.Ws[m] @ feats[m] + w @ dfeats[-1]
            if self.relu and m < last:  # relu'' = 0 on each smooth piece
                tangent = tangent * self._active(feats[m + 1])
            dfeats.append(tangent)
        dz = dfeats[-1]
        if p.b is not None:
            dz = dz + v.b[:, None]
        dg = loss_tangent(dz)
        back, dback = g, dg
        hws = [None] * len(p.Ws)
        for m in range(len(p.Ws) - 1, -1, -1):
            hws[m] = dback @ feats[m].T + back @ dfeats[m].T + self.lambda_w[m] * v.Ws[m]
            back, dback = p.Ws[m].T @ back, v.Ws[m].T @ back + p.Ws[m].T @ dback
            if self.relu and m > 0:
                active = self._active(feats[m])
                back, dback = back * active, dback * active
        hh = self._to_parameter(dback) + self.lambda_h * v.H
        hb = None if p.b is None else xp.sum(dg, axis=1) + self.lambda_b * v.b
        return Params(tuple(hws), hh, hb)

    def _hvp_product_first(self, p: Params, v: Params) -> Params:
        """As the layer-by-layer `hvp`, with the products reassociated around `P = W_M ... W_1`.

        The tangents of the suffix products `A_m` and of `E_m = G H_m^T` follow from
        `A_{m-1} = A_m W_m` and `E_{m+1} = E_m W_m^T`; the `d x N` features enter only through
        six `K x d x N` products (`dP H`, `P V_H`, `dP^T G`, `P^T dG`, `dG H^T`, `G V_H^T`).
        """
        xp = self.xp
        ws, vs = p.Ws, v.Ws
        depth = len(ws)
        suffix, prod = _suffix_products(ws)
        # tangents of the suffix products, dA_{m-1} = dA_m W_m + A_m V_m (dA of the last is 0)
        dsuffix: list[Array | None] = [None] * depth
        for m in range(depth - 1, 0, -1):
            term = vs[m] if suffix[m] is None else suffix[m] @ vs[m]
            dsuffix[m - 1] = term if dsuffix[m] is None else dsuffix[m] @ ws[m] + term
        dprod = vs[0] if suffix[0] is None else suffix[0] @ vs[0]
        if dsuffix[0] is not None:
            dprod = dsuffix[0] @ ws[0] + dprod
        h1, v1 = self.first_features(p.H), self.first_features(v.H)
        z = prod @ h1
        dz = dprod @ h1 + prod @ v1
        if p.b is not None:
            z = z + p.b[:, None]
            dz = dz + v.b[:, None]
        _, g, loss_tangent = self._loss(z)
        dg = loss_tangent(dz)
        e = g @ h1.T
        de = dg @ h1.T + g @ v1.T
        hws = []
        for m in range(depth):
            if suffix[m] is None:
                h = de
            else:
                h = suffix[m].T @ de
                if dsuffix[m] is not None:
                    h = h + dsuffix[m].T @ e
            hws.append(h + self.lambda_w[m] * vs[m])
            if m < depth - 1:
                e, de = e @ ws[m].T, de @ ws[m].T + e @ vs[m].T
        hh = self._to_parameter(dprod.T @ g + prod.T @ dg) + self.lambda_h * v.H
        hb = None if p.b is None else xp.sum(dg, axis=1) + self.lambda_b * v.b
        return Params(tuple(hws), hh, hb)

    def error_bound(self, p: Params) -> float:
        """A bound on `|fl(F(p)) - F(p)|`, the rounding error of evaluating `F` at `p`.

        Standard forward error analysis (Higham, ch. 3): a product with inner dimension `k`
        computed in floating point is off by at most `gamma_k |A||B|` elementwise,
        `gamma_k = k u / (1 - k u)`; errors already in `B` propagate through `|A|`.  The bound
        is accumulated through the layers, the loss and the regulariser, then doubled as a
        safety factor for the rounding of the bound's own arithmetic.
        """
        xp = self.xp
        u = float(xp.finfo(self.dtype).eps) / 2

        def gamma(k: int) -> float:
            return k * u / (1 - k * u)

        feats, z = self._forward(p)
        # class means G D^{-1}: `1 / sqrt(n_k)` is itself rounded twice, the product once
        err = xp.zeros_like(feats[0]) if self.scale is None else gamma(3) * xp.abs(feats[0])
        for m, w in enumerate(p.Ws):
            aw = xp.abs(w)
            err = gamma(w.shape[1]) * (aw @ xp.abs(feats[m])) + aw @ err
        if p.b is not None:
            err = err + u * xp.abs(z)
        # the weights `n_k / N` are rounded once and multiplied in once more than the full
        # problem's `1 / N`: two more roundings per term than there
        extra = 0 if self.weights is None else 2
        if self.problem.loss == "mse":
            r = xp.abs(z - self.Y)
            loss_err = self._loss_deviation(z, err + u * r)  # the subtraction rounds once more
            loss_err += gamma(z.shape[0] * z.shape[1] + 2 + extra) * self._weighted(r * r) / 2
        elif self.problem.loss == "focal":
            terms = self._focal(z)
            loss_err = self._loss_deviation(z, err) + self._focal_rounding(z, terms, gamma, u)
            loss_err += gamma(z.shape[1] + 2 + extra) * self._weighted(xp.abs(terms.value))
        else:
            zmax = xp.max(z, axis=0)
            lse_abs = xp.abs(xp.log(xp.sum(xp.exp(z - zmax[None, :]), axis=0)) + zmax)
            zy = xp.abs(xp.sum(z * self.Y, axis=0))
            loss_err = self._loss_deviation(z, err)
            loss_err += gamma(z.shape[0] + 4) * self._weighted(lse_abs + xp.abs(zmax) + zy)
            if self.problem.loss == "ls":  # each smoothed target is itself rounded once
                loss_err += u * self._weighted(xp.max(xp.abs(z), axis=0))
            loss_err += gamma(z.shape[1] + 2 + extra) * self._weighted(lse_abs + zy)
        reg_err = 0.0
        for lam, w in zip(self.lambda_w, p.Ws, strict=True):
            reg_err += gamma(w.shape[0] * w.shape[1] + 2) * lam / 2 * float(xp.sum(w * w))
        reg_err += (
            gamma(p.H.shape[0] * p.H.shape[1] + 2) * self.lambda_h / 2 * float(xp.sum(p.H * p.H))
        )
        total = loss_err + reg_err
        total += gamma(len(p.Ws) + 4) * abs(self.value(p))
        return 2.0 * total

    def _focal(self, z: Array) -> FocalTerms:
        return focal(self.xp, z, self.Y, float(self.problem.focusing))

    def _focal_rounding(
        self, z: Array, terms: FocalTerms, gamma: Callable[[int], float], u: float
    ) -> float:
        """The rounding of focal loss's own evaluation at the float logits `z`, column by column.

        Each `e_j = exp(z_j - max z)` is off by `2 u a_j` relative, `a_j = |z_j - max z|` (its
        argument rounds), and its share of `q` (of the sum `s`) is `s_j / q` (`s_j`); the sums
        and the division add `(2K + 6) u`: so `q` is off by
        `rho = gamma_{2K+6} (1 + 2 sum_{j != y} s_j a_j / q + 2 sum_j s_j a_j)` relative.
        `log p = log1p(-q)` moves by `2 q rho` (`q < 1/2`), `z_y - lse` by cross-entropy's bound;
        `q^gamma` by `gamma rho + 3u` relative; the product by `u`.
        """
        xp, k = self.xp, z.shape[0]
        zmax = xp.max(z, axis=0)
        _, lse = softmax_and_lse(xp, z)
        zy = xp.abs(xp.sum(z * self.Y, axis=0))
        shares = terms.prob * xp.abs(z - zmax[None, :])
        others = xp.sum(shares * (1 - self.Y), axis=0)
        q = terms.q[0]
        others = xp.where(q > 0, others / xp.where(q > 0, q, 1.0), 0.0)
        rho = gamma(2 * k + 6) * (1 + 2 * others + 2 * xp.sum(shares, axis=0))
        log_err = 2 * q * rho + u * xp.abs(terms.log_p[0])
        log_err = log_err + gamma(k + 4) * (xp.abs(lse[0]) + xp.abs(zmax) + zy)
        focusing = float(self.problem.focusing)
        per_column = xp.abs(terms.value[0]) * (focusing * rho + 4 * u)
        per_column = per_column + q**focusing * log_err
        return self._weighted(per_column)

    def perturbation_bound(self, p: Params, relative: float) -> float:
        """A bound on `|F(q) - F(p)|` over every point `q` whose entries are each within
        `relative` of `p`'s (`|q_i - p_i| <= relative |p_i|`): how much rounding a point's
        entries to float64 can move its value.

        Why: a claim's minimiser is exact, its float64 image is not.  Where the optimum is far
        below the size of the loss's own terms (a nearly interpolating MSE fit at a tiny lambda),
        that rounding moves `F` by more than the optimum itself, and no comparison of the two in
        float64 can tell a right claimed value from a wrong one.

        The logits move by at most `dz` entrywise, propagated as in `error_bound` (a ReLU is
        1-Lipschitz); the loss by `_loss_deviation(z, dz)`; the regulariser, a weighted sum of
        squares, by `(2 relative + relative^2)` of itself.  First order in `relative` through the
        products, then doubled.
        """
        xp = self.xp
        feats, z = self._forward(p)
        dz = relative * xp.abs(feats[0])
        for m, w in enumerate(p.Ws):
            aw = xp.abs(w)
            dz = relative * (aw @ xp.abs(feats[m])) + aw @ dz
        if p.b is not None:
            dz = dz + relative * xp.abs(p.b)[:, None]
        regulariser = (2 * relative + relative**2) * float(self.regulariser(p))
        return 2.0 * (self._loss_deviation(z, dz) + regulariser)

    def _loss_deviation(self, z: Array, dz: Array) -> float:
        """A bound on how far the loss moves when each logit moves by at most `dz` (entrywise).

        MSE: `|r'^2 - r^2| <= 2 |r| d + d^2` for a residual `r` that moves by `d`.  CE: the
        log-sum-exp is 1-Lipschitz in the max-norm and the label's logit moves by at most as
        much, so a column's loss moves by at most `2 max_k dz_k`.  Focal loss: its gradient is
        `w (s - y)` with `0 <= w = q^gamma - gamma q^(gamma-1) p log p <= 1 + gamma/e`
        (`p |log p| <= 1/e`), so by the mean value theorem a column moves by at most
        `2 (1 + gamma/e) max_k dz_k`.
        """
        xp = self.xp
        if self.problem.loss == "mse":
            r = xp.abs(z - self.Y)
            return self._weighted(2 * r * dz + dz * dz) / 2
        if self.problem.loss == "focal":  # |grad| in the 1-norm: w ||s - y||_1 <= 2 (1 + gamma/e)
            lipschitz = 2 * (1 + float(self.problem.focusing) / math.e)
            return self._weighted(lipschitz * xp.max(dz, axis=0))
        return self._weighted(2 * xp.max(dz, axis=0))

    def _weighted(self, terms: Array) -> float:
        """`sum_i w_i sum_k terms_ki` with the loss's sample weights (`1/N`, or `n_k / N` on the
        class means); `terms` is K x columns, or one value per column."""
        xp = self.xp
        per_column = xp.sum(terms, axis=0) if terms.ndim == 2 else terms
        if self.weights is None:
            return float(xp.sum(per_column)) / self.problem.N
        return float(xp.sum(per_column * self.weights[0, :]))

    def logits(self, p: Params) -> Array:
        """`Z` without the bias: `W_M H_M`, the map that the weights and features realise."""
        feats, _ = self._forward(Params(p.Ws, p.H, None))
        return feats[-1]

    def kinks(self, p: Params) -> int:
        """How many pre-activations of a ReLU are exactly zero at `p`: where the objective is
        not differentiable (0 for linear layers)."""
        if not self.relu:
            return 0
        xp, count, h = self.xp, 0, self.first_features(p.H)
        for w in p.Ws[:-1]:
            pre = w @ h
            count += int(xp.sum(xp.astype(pre == 0, xp.int64)))
            h = pre * self._active(pre)
        return count

    def one_sided_derivative(self, p: Params, v: Params) -> float:
        """`F'(p; v) = lim_{t -> 0+} (F(p + t v) - F(p)) / t`, also at a kink.

        Forward mode along `v`: a ReLU whose pre-activation `u` moves by `du` moves by `du` where
        `u > 0`, by 0 where `u < 0` and by `max(du, 0)` where `u = 0` (its one-sided derivative);
        the loss is smooth in the logits, so its part is `<dL/dZ, dZ>`.  At a point where `F` is
        differentiable this is `<grad F, v>`.
        """
        xp = self.xp
        h, dh = self.first_features(p.H), self.first_features(v.H)
        last = len(p.Ws) - 1
        for m, (w, dw) in enumerate(zip(p.Ws, v.Ws, strict=True)):
            pre, dpre = w @ h, dw @ h + w @ dh
            if self.relu and m < last:
                at_kink = xp.astype(pre == 0, pre.dtype)
                h = pre * self._active(pre)
                dh = dpre * self._active(pre) + dpre * self._active(dpre) * at_kink
            else:
                h, dh = pre, dpre
        if p.b is not None:
            h, dh = h + p.b[:, None], dh + v.b[:, None]
        _, g, _ = self._loss(h)
        total = xp.sum(g * dh) + self.lambda_h * xp.sum(p.H * v.H)
        for lam, w, dw in zip(self.lambda_w, p.Ws, v.Ws, strict=True):
            total = total + lam * xp.sum(w * dw)
        if p.b is not None and self.lambda_b:
            total = total + self.lambda_b * xp.sum(p.b * v.b)
        return float(total)

    def features(self, p: Params) -> list[Array]:
        """Layer features `H_1, ..., H_M` (the inputs of `W_1, ..., W_M`; `H_1` is `H`, or the
        class means in the class-means parameterisation)."""
        feats, _ = self._forward(p)
        return feats[:-1]

    # ---- shapes ---------------------------------------------------------------------------
    def zeros(self) -> Params:
        xp, pr = self.xp, self.problem
        ws = tuple(
            xp.zeros(shape, dtype=self.dtype, device=self.device) for shape in pr.layer_shapes
        )
        h = xp.zeros((pr.widths[0], self.columns), dtype=self.dtype, device=self.device)
        b = None if pr.bias == "none" else xp.zeros((pr.K,), dtype=self.dtype, device=self.device)
        return Params(ws, h, b)
