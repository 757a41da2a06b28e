r"""Supervised contrastive features on the sphere: the problem of `Loss.SUPCON`.

Every sample has a feature $h_i$ on the unit sphere of $\mathbb{R}^d$, there is no classifier, and
the loss of an anchor $i$ compares its similarities $s_{ia} = h_i^\top h_a / \tau$ (temperature
$\tau$) with those of its positives $P(i)$, the other samples of its class:

$$L(H) = \frac1N \sum_i \frac{1}{|P(i)|} \sum_{p \in P(i)}
  \Bigl(-s_{ip} + \log \sum_{a \ne i} e^{s_{ia}}\Bigr)
  = \frac1N \sum_i \Bigl(\log \sum_{a \ne i} e^{s_{ia}} - \frac{1}{|P(i)|}\sum_{p\in P(i)} s_{ip}\Bigr),$$

the mean over anchors of the supervised contrastive loss of the whole batch (every class needs
two samples, so that each anchor has a positive).  A point is any $H$ with non-zero columns: its
value is that of its projection onto the sphere (each column divided by its norm), which makes
the problem unconstrained and smooth away from zero (`value_grad_scale`), and is how a float
point is evaluated exactly (`enclose`).  No reduction to one feature per class is exact here:
whether a class collapses is what the claim is about, so every sample keeps its own feature.

Params of this problem have no layers (`Ws == ()`): the features are all there is.
"""

from __future__ import annotations

from fractions import Fraction
from typing import Any

import numpy as np
from array_api_compat import array_namespace, device

from ncverify.model.exact import class_constant, first_columns
from ncverify.model.intervals import interval_precision
from ncverify.model.objective import Params
from ncverify.model.problem import Problem

Array = Any

#: bits of the interval arithmetic of `enclose`
PREC = 200
#: a column below this norm has no direction: the point is not a point of the problem
TINY = 1e-150
#: largest number of exact products (pairs of samples x entries) that `enclose` computes
MAX_EXACT_TERMS = 2_000_000


def labels(problem: Problem) -> np.ndarray:
    """The class of every sample, classes in order."""
    return np.repeat(np.arange(problem.K), problem.counts)


def positives(problem: Problem) -> np.ndarray:
    """`N x N`: `1/|P(i)|` where `a` is a positive of anchor `i` (same class, `a != i`), else 0."""
    y = labels(problem)
    same = (y[:, None] == y[None, :]).astype(np.float64)
    np.fill_diagonal(same, 0.0)
    return same / same.sum(axis=1, keepdims=True)


def value_grad_scale(problem: Problem, h: Array) -> tuple[float, Array, float]:
    """The value at the projection of `H` (`d x N`) onto the sphere, its gradient in `H` (the
    projection's chain rule: the Euclidean gradient in the unit features, made tangent and
    divided by the norm), and the norm of that gradient before it is made tangent (the scale a
    stationarity test compares with: at a stationary point only its normal part remains).

    Any array namespace (`H`'s own): numpy for the runs, and the backends' for the tests."""
    xp = array_namespace(h)
    tau = float(problem.temperature)  # type: ignore[arg-type]
    n = h.shape[1]
    norms = xp.linalg.vector_norm(h, axis=0, keepdims=True)
    u = h / xp.maximum(norms, TINY)
    own = xp.astype(xp.eye(n, dtype=h.dtype, device=device(h)), xp.bool)
    s = xp.matmul(xp.permute_dims(u, (1, 0)), u) / tau
    contrast = xp.where(own, -xp.inf, s)  # an anchor is not its own contrast
    top = xp.max(contrast, axis=1, keepdims=True)
    e = xp.exp(contrast - top)
    total = xp.sum(e, axis=1, keepdims=True)
    lse = xp.log(total) + top
    pos = xp.asarray(positives(problem), dtype=h.dtype, device=device(h))
    value = float(xp.mean(lse[:, 0] - xp.sum(pos * xp.where(own, 0.0, s), axis=1)))
    # d value / d s_ia = (softmax_i(a) - pos_ia) / N, and s = U^T U / tau is symmetric in U
    g = (e / total - pos) / n
    gu = xp.matmul(u, g + xp.permute_dims(g, (1, 0))) / tau
    gh = (gu - xp.sum(gu * u, axis=0, keepdims=True) * u) / xp.maximum(norms, TINY)
    return value, gh, float(xp.linalg.vector_norm(gu))


def enclose(problem: Problem, point: Params) -> Any | None:
    """A rigorous interval containing the value at the projection of the point onto the sphere
    (every entry read exactly; the norms, `exp` and `log` in `PREC`-bit interval arithmetic), or
    None where an entry is not finite, a column is zero or the instance is too large.

    Features that are constant on each class (verified exactly) are evaluated once per class,
    each standing for its class's samples: a collapsed point of any size costs `K^2 d`."""
    h = np.asarray(point.H, dtype=np.float64)
    if not np.all(np.isfinite(h)):
        return None
    y = labels(problem)
    if class_constant(problem, h):  # one column per class, weighted by its count
        h, y, weight = h[:, first_columns(problem)], np.arange(problem.K), list(problem.counts)
    else:
        weight = [1] * h.shape[1]
    n = h.shape[1]
    if n * n * h.shape[0] > MAX_EXACT_TERMS:
        return None
    cols = [[Fraction(float(x)) for x in h[:, i]] for i in range(n)]
    gram = [
        [sum((a * b for a, b in zip(ci, cj, strict=True)), Fraction(0)) for cj in cols]
        for ci in cols
    ]
    if any(gram[i][i] == 0 for i in range(n)):
        return None
    with interval_precision(PREC) as iv:
        tau = _iv(Fraction(problem.temperature))  # type: ignore[arg-type]
        norm = [iv.sqrt(_iv(gram[i][i])) for i in range(n)]
        total = iv.mpf(0)
        for i in range(n):
            s = [_iv(gram[i][a]) / (norm[i] * norm[a] * tau) for a in range(n)]
            # the other samples: column a stands for weight[a] of them, less the anchor itself
            others = [weight[a] - (a == i) for a in range(n)]
            lse = iv.log(sum((others[a] * iv.exp(s[a]) for a in range(n)), iv.mpf(0)))
            mine = [a for a in range(n) if y[a] == y[i]]
            positive = sum((others[a] * s[a] for a in mine), iv.mpf(0))
            total += weight[i] * (lse - positive / sum(others[a] for a in mine))
        return total / problem.N


def _iv(x: Fraction) -> Any:
    import mpmath

    return mpmath.iv.mpf(x.numerator) / mpmath.iv.mpf(x.denominator)
