"""Counterexample search for balanced cross-entropy claims in the exact K x K reduction.

For balanced counts `n_k = n` and any loss, lemmas 1-2 (docs/theory/lemmas.md) reduce the full deep
linear problem exactly to a problem on the class-level logits `Z = W_M ... W_1 Hbar` (column `k`
holds the logits of class `k`):

$$\\min_{Z \\in \\mathbb R^{K\\times K},\\ \\operatorname{rank} Z \\le R}\\;
  \\tfrac1K \\sum_k \\mathrm{CE}(z_k + b, k) + \\tfrac{M+1}{2}\\, c \\sum_i \\sigma_i(Z)^q
  \\;(+\\, \\tfrac{\\lambda_b}{2}\\|b\\|^2),\\qquad c = (nP)^{1/(M+1)},\\ q = \\tfrac{2}{M+1}.$$

The Schatten-q term is not smooth, so it is minimised through `M + 1` balanced factors
`Z = F_M \\cdots F_0` with the penalty `(c/2) \\sum_j \\|F_j\\|_F^2`: by lemma 2 (all weights equal
to `c`) that penalty is at least the Schatten-q term, with equality exactly at balance, so both
problems have the same minimum and L-BFGS on the factors is a smooth local method for it.

`search` starts from structured low-rank logit patterns `C Q Q^T` — block patterns for every
integer partition of `K` (a seeded sample of `MAX_PARTITIONS` when there are more; classes of a
block form a simplex in their own subspace, or are merged into one vertex of a simplex of blocks),
regular and star polygons (rank 2), well-separated spherical codes in every rank, rank-r
truncations of the simplex ETF — each at its best scale; the `MAX_POLISHED` best of them (the ETF
itself always among them) and seeded random points at several scales are polished, centred
(`C Z` is never worse: CE is invariant to adding a constant to a column and
`sigma_i(C Z) <= sigma_i(Z)`), and truncated to the cheapest rank (with `q < 1` a rounding-level
singular value would cost `~ eps^q`).  Everything is seeded; nothing depends on a particular `K`.  `lift` turns the best point into full parameters with balanced
layers (any width at least its rank); its full objective equals the reduced value.

The reduced problem is tiny (K x K); it runs on the host in numpy and scipy, like the symbolic
side, and only the lifted point goes to a backend.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np
from threadpoolctl import threadpool_limits

from ncverify.limits import HOW_TO_FORCE, StepSkipped, forced
from ncverify.model.factorisations import balanced_layers, simplex_directions
from ncverify.model.losses import softmax_and_lse
from ncverify.model.objective import Params
from ncverify.model.problem import Problem
from theorems._max_margin import orthoplex

#: start scales of the random points, relative to the ETF-sized logits `log K`.
RANDOM_SCALES: tuple[float, ...] = (0.3, 1.0, 3.0)
#: at most this many integer partitions of K are used (a seeded sample beyond it).
MAX_PARTITIONS = 48
#: structured patterns are screened by their value at the best scale; this many are polished.
MAX_POLISHED = 24
#: Largest K the structured search runs on unless forced (`ncverify.limits`).
MAX_SEARCH_CLASSES = 32


@dataclass(frozen=True)
class Reduced:
    """The exact K x K reduction of a balanced instance.

    Attributes:
        K: number of classes.
        depth: `M`.
        c: `(n P)^{1/(M+1)}` (float).
        rank: the largest admissible rank, `min(R, K - 1)`.
        bias: the problem's bias mode.
        lambda_b: the bias weight decay (0 for a free bias).
    """

    K: int
    depth: int
    c: float
    rank: int
    bias: str = "none"
    lambda_b: float = 0.0

    @classmethod
    def of(cls, problem: Problem) -> Reduced:
        if not problem.balanced:
            raise ValueError("the K x K reduction needs balanced counts.")
        m = problem.depth
        c = float(problem.counts[0] * problem.lambda_product) ** (1.0 / (m + 1))
        lam_b = 0.0 if problem.lambda_b is None else float(problem.lambda_b)
        return cls(problem.K, m, c, min(problem.bottleneck, problem.K - 1), problem.bias, lam_b)

    @property
    def q(self) -> float:
        return 2.0 / (self.depth + 1)

    @property
    def has_bias(self) -> bool:
        return self.bias != "none"

    def loss(self, Z: np.ndarray, b: np.ndarray | None = None) -> float:  # noqa: N803
        """`(1/K) sum_k CE(z_k + b, k)`."""
        zb = Z if b is None else Z + b[:, None]
        lse = softmax_and_lse(np, zb)[1][0]
        return float(np.mean(lse - np.diag(zb)))

    def value(self, s: np.ndarray, Z: np.ndarray, b: np.ndarray | None = None) -> float:  # noqa: N803
        """The reduced objective at `Z` with singular values `s`."""
        pen = (self.depth + 1) / 2 * self.c * float(np.sum(np.asarray(s) ** self.q))
        reg_b = 0.0 if b is None else self.lambda_b / 2 * float(b @ b)
        return self.loss(Z, b) + pen + reg_b

    def value_of(self, Z: np.ndarray, b: np.ndarray | None = None) -> float:  # noqa: N803
        return self.value(np.linalg.svd(Z, compute_uv=False), Z, b)


@dataclass
class ReducedPoint:
    """A point of the reduction in SVD form `Z = U diag(s) V^T` (and bias `b`)."""

    U: np.ndarray
    s: np.ndarray
    V: np.ndarray
    b: np.ndarray | None
    value: float
    origin: str

    @property
    def Z(self) -> np.ndarray:  # noqa: N802
        return (self.U * self.s[None, :]) @ self.V.T

    @property
    def rank(self) -> int:
        return int(self.s.size)


@dataclass
class SearchResult:
    """What the search tried and the best point it found."""

    best: ReducedPoint
    structures: int  # structured patterns polished
    screened: int  # structured patterns screened (value at their best scale)
    random_starts: int
    families: dict[str, int]
    seed: int
    values: list[tuple[str, float]] = field(default_factory=list)

    def summary(self) -> str:
        fams = ", ".join(f"{k} {v}" for k, v in self.families.items())
        return (
            f"K x K reduction search (seed {self.seed}): {self.screened} structured patterns "
            f"screened at their best scale, {self.structures} of them polished ({fams}), and "
            f"{self.random_starts} random starts (scales {list(RANDOM_SCALES)} x log K); every "
            f"start polished by L-BFGS on balanced factors; best: {self.best.origin}, rank "
            f"{self.best.rank}, reduced objective {self.best.value:.15g}"
        )


# ---- structured patterns ------------------------------------------------------------------------
@functools.cache
def partition_count(k: int, largest: int) -> int:
    """The number of partitions of `k` into parts of at most `largest`."""
    if k == 0:
        return 1
    return sum(partition_count(k - first, first) for first in range(min(k, largest), 0, -1))


def random_partition(k: int, rng: np.random.Generator) -> tuple[int, ...]:
    """A partition of `k` drawn uniformly at random, without listing them all (there are about
    `1.9e8` of 100): each part is chosen with the probability of the partitions it starts."""
    parts: list[int] = []
    largest = k
    while k > 0:
        weights = np.array(
            [partition_count(k - first, first) for first in range(min(k, largest), 0, -1)],
            dtype=float,
        )
        first = min(k, largest) - int(rng.choice(len(weights), p=weights / weights.sum()))
        parts.append(first)
        k, largest = k - first, first
    return tuple(parts)


def partitions(k: int, largest: int | None = None) -> Iterator[tuple[int, ...]]:
    """Integer partitions of `k`, parts in decreasing order."""
    largest = k if largest is None else largest
    if k == 0:
        yield ()
        return
    for first in range(min(k, largest), 0, -1):
        for rest in partitions(k - first, first):
            yield (first, *rest)


def _simplex(g: int) -> np.ndarray:
    """`g` unit vectors forming a simplex ETF in `R^{g-1}` (one unit vector when `g = 1`)."""
    if g == 1:
        return np.ones((1, 1))
    u = simplex_directions(g) * math.sqrt(g / (g - 1))
    return u  # rows: vertices, unit norm, centred


def block_pattern(parts: tuple[int, ...]) -> np.ndarray:
    """Each block a simplex in its own orthogonal subspace (a singleton: its own direction)."""
    dims = [max(g - 1, 1) for g in parts]
    q = np.zeros((sum(parts), sum(dims)))
    row, col = 0, 0
    for g, d in zip(parts, dims, strict=True):
        q[row : row + g, col : col + d] = _simplex(g)
        row, col = row + g, col + d
    return q


def merged_pattern(parts: tuple[int, ...]) -> np.ndarray:
    """Classes of a block merged into one vertex of a simplex ETF of the blocks."""
    vertices = _simplex(len(parts))
    return np.repeat(vertices, parts, axis=0)


def polygon_pattern(k: int, step: int) -> np.ndarray:
    """Class `j` at angle `2 pi step j / K` on a circle (a regular or star polygon)."""
    theta = 2 * np.pi * step * np.arange(k) / k
    return np.stack([np.cos(theta), np.sin(theta)], axis=1)


def spherical_code(k: int, r: int, rng: np.random.Generator, steps: int = 300) -> np.ndarray:
    """`K` well-separated unit vectors in `R^r` (seeded Riesz-energy repulsion)."""
    x = rng.normal(size=(k, r))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    for _ in range(steps):
        diff = x[:, None, :] - x[None, :, :]
        dist = np.linalg.norm(diff, axis=2) + np.eye(k)
        force = (diff / dist[:, :, None] ** 3).sum(axis=1)
        x = x + 0.05 * force / max(1.0, float(np.abs(force).max()))
        x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def truncated_etf(k: int, r: int, rng: np.random.Generator) -> np.ndarray:
    """A seeded rank-`r` slice of the simplex ETF: `r` random directions inside `1^perp`."""
    o, _ = np.linalg.qr(rng.normal(size=(k - 1, k - 1)))
    return simplex_directions(k) @ o[:, :r]


def patterns(k: int, rank: int, rng: np.random.Generator) -> list[tuple[str, str, np.ndarray]]:
    """Structured class embeddings `Q` (K x r), as `(family, name, Q)`; logits `C Q Q^T`."""
    out: list[tuple[str, str, np.ndarray]] = []
    if partition_count(k, k) <= MAX_PARTITIONS:
        parts = list(partitions(k))
    else:  # a uniform sample, drawn without listing the partitions (p(100) is about 1.9e8)
        drawn = {random_partition(k, rng) for _ in range(4 * MAX_PARTITIONS)}
        parts = sorted(drawn, reverse=True)[:MAX_PARTITIONS] if drawn else []
        parts = [(k,)] + [p for p in parts if p != (k,)][: MAX_PARTITIONS - 1]  # the ETF too
    for p in parts:
        out.append(("blocks", f"blocks {'+'.join(map(str, p))}", block_pattern(p)))
        if 2 <= len(p) < k:
            out.append(("merged", f"merged blocks {'+'.join(map(str, p))}", merged_pattern(p)))
    if rank >= 2:
        for step in range(1, k // 2 + 1):
            out.append(("polygon", f"polygon {k}/{step}", polygon_pattern(k, step)))
    r = (k + 1) // 2
    if 2 <= r <= rank:  # the max-margin witnesses of depth (theorems/_max_margin.py)
        name = "orthoplex" if k % 2 == 0 else "orthoplex less one vertex"
        out.append(("orthoplex", name, orthoplex(k)))
    for r in range(2, rank + 1):
        out.append(("spherical code", f"spherical code in R^{r}", spherical_code(k, r, rng)))
    for r in range(1, min(rank, k - 2) + 1):
        out.append(("truncated ETF", f"rank-{r} truncated ETF", truncated_etf(k, r, rng)))
    return out


# ---- polishing ------------------------------------------------------------------------------------
def balanced_factors(Z: np.ndarray, r: int, depth: int) -> list[np.ndarray]:  # noqa: N803
    """Balanced factors `F_0 (r x K), F_1.. (r x r), F_M (K x r)` of the rank-r part of `Z`."""
    u, s, vt = np.linalg.svd(Z)
    root = s[:r] ** (1.0 / (depth + 1))
    fs = [root[:, None] * vt[:r]]
    fs += [np.diag(root) for _ in range(depth - 1)]
    fs.append(u[:, :r] * root[None, :])
    return fs


def _product(fs: list[np.ndarray]) -> np.ndarray:
    z = fs[0]
    for f in fs[1:]:
        z = f @ z
    return z


def polish(
    red: Reduced,
    Z0: np.ndarray,  # noqa: N803
    r: int,
    rng: np.random.Generator,
    b0: np.ndarray | None = None,
    max_iter: int = 1500,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Local minimisation over balanced rank-`r` factors of `Z0` (slightly perturbed), and `b`."""
    k, m = red.K, red.depth
    fs = balanced_factors(Z0, r, m)
    size = max(float(np.mean([np.abs(f).max() for f in fs])), 1e-3)
    fs = [f + 1e-3 * size * rng.normal(size=f.shape) for f in fs]
    shapes = [f.shape for f in fs]
    offsets = np.cumsum([0] + [f.size for f in fs])
    has_b = red.has_bias
    eye = np.eye(k)

    def unpack(x: np.ndarray) -> tuple[list[np.ndarray], np.ndarray | None]:
        parts = [
            x[a:c].reshape(s) for a, c, s in zip(offsets[:-1], offsets[1:], shapes, strict=True)
        ]
        return parts, (x[offsets[-1] :] if has_b else None)

    def fun_grad(x: np.ndarray) -> tuple[float, np.ndarray]:
        fl, b = unpack(x)
        pre = [fl[0]]
        for f in fl[1:]:
            pre.append(f @ pre[-1])
        z = pre[-1] if b is None else pre[-1] + b[:, None]
        prob, lse = softmax_and_lse(np, z)
        val = float(np.mean(lse[0] - np.diag(z)))
        val += red.c / 2 * sum(float(np.sum(f * f)) for f in fl)
        g = (prob - eye) / k
        grads: list[np.ndarray] = [np.empty(0)] * len(fl)
        back = g
        for j in range(len(fl) - 1, -1, -1):
            grads[j] = (back @ pre[j - 1].T if j > 0 else back) + red.c * fl[j]
            back = fl[j].T @ back
        flat = [gr.ravel() for gr in grads]
        if b is not None:
            val += red.lambda_b / 2 * float(b @ b)
            flat.append(g.sum(axis=1) + red.lambda_b * b)
        return val, np.concatenate(flat)

    x0 = [f.ravel() for f in fs]
    if has_b:
        x0.append(np.zeros(k) if b0 is None else np.asarray(b0, dtype=np.float64))
    import scipy.optimize as so  # here, not at the top: it costs the CLI ~0.5 s to import

    res = so.minimize(
        fun_grad,
        np.concatenate(x0),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": max_iter, "maxcor": 20, "ftol": 1e-15, "gtol": 1e-11},
    )
    fl, b = unpack(res.x)
    return _product(fl), (None if b is None else b.copy())


def best_truncation(
    red: Reduced,
    Z: np.ndarray,  # noqa: N803
    b: np.ndarray | None,
    origin: str,
) -> ReducedPoint:
    """Centre the columns of `Z` and keep the number of singular values that is cheapest."""
    zc = Z - Z.mean(axis=0, keepdims=True)
    u, s, vt = np.linalg.svd(zc)
    best: ReducedPoint | None = None
    for r in range(0, min(red.rank, int(np.sum(s > 0))) + 1):
        uu, ss, vv = u[:, :r], s[:r].copy(), vt[:r].T
        zr = (uu * ss[None, :]) @ vv.T
        value = red.value(ss, zr, b)
        if best is None or value < best.value:
            best = ReducedPoint(uu, ss, vv, None if b is None else b.copy(), value, origin)
    assert best is not None
    return best


def _fit_scale(red: Reduced, Z0: np.ndarray) -> float:  # noqa: N803
    """The best multiple `t Z0` (bounded search over `log t`)."""
    s0 = np.linalg.svd(Z0, compute_uv=False)
    pen0 = (red.depth + 1) / 2 * red.c * float(np.sum(s0**red.q))

    def h(u: float) -> float:
        t = math.exp(u)
        return red.loss(t * Z0) + pen0 * t**red.q

    import scipy.optimize as so

    res = so.minimize_scalar(h, bounds=(math.log(1e-2), math.log(1e3)), method="bounded")
    return math.exp(float(res.x))


def search(problem: Problem, *, seed: int = 0, random_starts: int = 8) -> SearchResult:
    """Structured and random starts in the K x K reduction, each polished; the best point.

    Raises `StepSkipped` above `MAX_SEARCH_CLASSES` classes (unless forced): each polish costs
    O(K^3) per step and the search polishes dozens of starts (K = 100 takes about 9 minutes).
    """
    if problem.K > MAX_SEARCH_CLASSES and not forced():
        raise StepSkipped(
            f"the claim's structured search is skipped: K = {problem.K} classes is above its "
            f"limit of {MAX_SEARCH_CLASSES} (each of its {MAX_POLISHED} polishes costs O(K^3) per "
            f"step); {HOW_TO_FORCE}"
        )
    # tiny matrices: BLAS threads only add overhead (and spin under contention)
    with threadpool_limits(limits=1, user_api="blas"):
        return _search(Reduced.of(problem), seed, random_starts)


def _search(red: Reduced, seed: int, random_starts: int) -> SearchResult:
    k = red.K
    rng = np.random.default_rng([seed, 4])
    c_mat = np.eye(k) - 1.0 / k
    screened: list[tuple[float, int, str, str, np.ndarray, int]] = []
    for i, (family, name, q) in enumerate(patterns(k, red.rank, rng)):
        z0 = c_mat @ q @ q.T
        top = np.linalg.svd(z0, compute_uv=False)
        r = int(np.sum(top > 1e-9 * top[0]))
        if r == 0 or r > red.rank:
            continue
        z0 = _fit_scale(red, z0 / top[0]) * (z0 / top[0])
        # the ETF pattern (one block of K) is always polished: it probes the claim itself
        key = -math.inf if name == f"blocks {k}" else red.value_of(z0)
        screened.append((key, i, family, name, z0, r))
    screened.sort(key=lambda t: (t[0], t[1]))
    tried: list[ReducedPoint] = []
    families: dict[str, int] = {}
    for _, _, family, name, z0, r in screened[:MAX_POLISHED]:
        z, b = polish(red, z0, r, rng)
        tried.append(best_truncation(red, z, b, f"{name} (rank {r})"))
        families[family] = families.get(family, 0) + 1
    n_struct = len(tried)
    for i in range(random_starts):
        scale = RANDOM_SCALES[i % len(RANDOM_SCALES)] * math.log(k)
        r = red.rank - (i // len(RANDOM_SCALES)) % red.rank
        z0 = scale * rng.normal(size=(k, k)) / math.sqrt(k)
        z, b = polish(red, z0, r, rng)
        tried.append(best_truncation(red, z, b, f"random start {i} (scale {scale:.3g}, rank {r})"))
    best = min(tried, key=lambda p: p.value)
    if best.rank > 0:  # a final polish at the chosen rank, kept only if it helps
        z, b = polish(red, best.Z, best.rank, rng, best.b)
        again = best_truncation(red, z, b, best.origin + ", re-polished")
        if again.value < best.value:
            best = again
    return SearchResult(
        best=best,
        structures=n_struct,
        screened=len(screened),
        random_starts=random_starts,
        families=families,
        seed=seed,
        values=[(p.origin, p.value) for p in tried],
    )


# ---- lifting ------------------------------------------------------------------------------------
def lift(problem: Problem, point: ReducedPoint) -> Params:
    """Full parameters with balanced layers whose class-level logits are `point.Z`.

    With `A = W_M ... W_1 Hbar D = sqrt(n) Z` (`D = sqrt(n) I`), `balanced_layers` realises `A`
    with the cheapest factorisation (lemma 2), so the full objective equals the reduced value.
    Needs every width to be at least the rank of `Z`.  Host (numpy) arrays.
    """
    n = problem.counts[0]
    bias = None
    if problem.bias != "none":
        bias = np.zeros(problem.K) if point.b is None else point.b
    return balanced_layers(problem, point.U, math.sqrt(n) * point.s, point.V, bias)
