r"""Three or four classes at depth: branch and bound over the Gram matrix of the centred
logits (docs/theory/depth-certificates.md#gram).

At depth $M \ge 2$ the class-mean problem carries $\kappa S_q(Z)$, $q = 2/(M+1)$, which is not
convex.  Write the centred logits of class $k$ in an orthonormal basis of the centred vectors,
$y_k = U^T z_k$, and $G = \sum_k w_k y_k y_k^T$ (`gram_bounds`).  Cross-entropy depends on the
centred logits only and centring does not increase any singular value, so with
$p = q/2$ every point of the deep linear problem has
$F \ge \sum_k \ell_k(y_k) + \kappa \operatorname{tr} G^p$ (lemmas 1 and 2 of
docs/theory/lemmas.md).  $\operatorname{tr} G^p$ is concave in $G$; the loss is convex in the
$y_k$.  A box of Gram matrices is bounded from below by splitting the objective at a multiplier
$W \succ 0$ into a convex part, minimised class by class, and a concave part, least at a
corner of the box (`gram_bounds.proven_bound`); with $W = \kappa \nabla \operatorname{tr}
G^p$ at the box's centre the two first-order terms cancel, so the bound is within the square of
the box's size of the optimum there.  The boxes cover every Gram matrix with
$\kappa (\operatorname{tr} G)^p \le F$ at a point found; one is discarded when its bound exceeds
that value, and split (its widest side) otherwise, best bound first.  Floating point proposes
every multiplier and point; the bound of every discarded or remaining box is then proven in
interval arithmetic, and their least is the certificate's bound.

The kind runs only when a check asks for it (`--certificate-boxes N`, at most `N` boxes): a
certificate at the 1e-10 tolerance of a check takes a few thousand boxes for three classes
(seconds to a minute; docs/benchmarks-gram.md).  With the boxes spent, the least bound
of the open ones is what is proven, and the report gives it with its gap.

>>> from ncverify.model.problem import Problem
>>> cert = gram_branch_and_bound(Problem.build(classes=3, samples=1, depth=2, width=3,
...     lambda_w="1e-3", lambda_h="1e-3", loss="max-margin"), boxes=100)
>>> cert.kind, cert.status, cert.boxes, 0 < cert.bound < cert.primal
('gram-branch-and-bound', 'budget', 100, True)
"""

from __future__ import annotations

import heapq
import itertools
import math
import time
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import mpmath
import numpy as np

from ncverify.evidence.batched_search import Progress
from ncverify.evidence.certificates.certificate import Certificate
from ncverify.evidence.certificates.gram_bounds import (
    GramProblem,
    Proposal,
    eigenvalue_bounds,
    helmert_iv,
    power,
    propose,
    proven_bound,
)
from ncverify.evidence.certificates.two_classes import penalty_constant
from ncverify.limits import StepSkipped
from ncverify.model.intervals import ends, interval_precision, round_down
from ncverify.model.problem import Loss, Problem

#: Bits of the interval arithmetic of the proofs.
BITS = 96
#: A box is discarded once its bound is within this (relative) of the best value found: well
#: inside the 1e-10 tolerance at which a check compares a certificate with a claimed value.
TARGET_GAP = 1e-11
#: Classes the kind covers: the boxes have K(K-1)/2 sides and 2^(K(K-1)/2) corners.
MAX_CLASSES = 4


#: How often (boxes split, boxes proven) the search and the proofs report their progress.
PROGRESS_EVERY = 50


def gram_branch_and_bound(
    problem: Problem, boxes: int = 0, progress: Progress | None = None
) -> Certificate | None:
    """The `gram-branch-and-bound` certificate kind: three or four classes, depth at least 2,
    no bias, widths at least K - 1; balanced cross-entropy (label smoothing too) or the
    max-margin problem.  None
    elsewhere; `StepSkipped` when `boxes` is 0 (the check did not ask for it).  `progress`
    (a stage's name, done, total) hears of the boxes split and of the boxes proven."""
    gp = _reduced(problem)
    if gp is None:
        return None
    if boxes <= 0:
        raise StepSkipped(
            "it applies to this instance but runs only when asked, with its budget "
            "(--certificate-boxes N: a few thousand boxes certify three classes)"
        )
    if not (math.isfinite(gp.kappa) and gp.kappa > 0 and math.log(gp.kappa) > -230 * gp.p):
        raise StepSkipped(
            "its search box (the traces with kappa (tr G)^p below a value found) is beyond the "
            f"range of floating point at kappa = {gp.kappa:.3g}"
        )
    t0 = time.perf_counter()
    with interval_precision(BITS) as iv:
        kappa = penalty_constant(problem, iv)
        p = iv.mpf(1) / (problem.depth + 1)
        search = _search(gp, boxes, progress)
        bound = _proven(gp, kappa, p, search, iv, progress)
        primal = _proven_value(gp, kappa, p, search.best, iv)
    return _certificate(gp, search, bound, primal, time.perf_counter() - t0)


def _reduced(problem: Problem) -> GramProblem | None:
    k = problem.K
    if not 3 <= k <= MAX_CLASSES or problem.depth < 2 or problem.bias != "none":
        return None
    if problem.bottleneck < k - 1:
        return None  # the bound would be over logits of a rank no point here can have
    depth = problem.depth
    if problem.loss in (Loss.CE, Loss.LS) and problem.balanced:
        n_p = problem.counts[0] * problem.lambda_product
        kappa = (depth + 1) / 2 * float(n_p) ** (1 / (depth + 1))
        target = 1 - (problem.smoothing or Fraction(0))
        return GramProblem(k, 1 / (depth + 1), kappa, (1,) * k, "ce", target)
    if problem.loss == Loss.MAX_MARGIN:
        kappa = (depth + 1) / 2 * float(problem.lambda_product) ** (1 / (depth + 1))
        return GramProblem(k, 1 / (depth + 1), kappa, tuple(problem.counts), "max-margin")
    return None


@dataclass
class _Search:
    """What the float branch and bound leaves: every box with its proposed bound (discarded
    ones and those still open when the boxes ran out), the best point and its value."""

    leaves: list[tuple[np.ndarray, np.ndarray, Proposal]]
    best: np.ndarray
    upper: float
    boxes: int
    closed: bool


def _search(gp: GramProblem, budget: int, progress: Progress | None = None) -> _Search:
    best, upper = _start(gp)
    side = (upper * (1 + 1e-9) / gp.kappa) ** (1 / gp.p)  # kappa (tr G)^p <= F at the optimum
    lo, hi = np.where(gp.diagonal, 0.0, -side / 2), np.where(gp.diagonal, side, side / 2)
    first = propose(gp, lo, hi, best)
    heap = [(first.value, 0, lo, hi, first)]
    leaves: list[tuple[np.ndarray, np.ndarray, Proposal]] = []
    count, order = 0, itertools.count(1)
    while heap and count < budget:
        value, _, lo, hi, prop = heapq.heappop(heap)
        if value >= upper * (1 - TARGET_GAP):
            leaves.append((lo, hi, prop))
            break
        count += 1
        if progress is not None and count % PROGRESS_EVERY == 0:
            progress("certificate (gram-branch-and-bound): boxes split", count, budget)
        candidate = _value(gp, prop.Y)
        if candidate < upper:
            best, upper = prop.Y, candidate
        for clo, chi in _halves(lo, hi):
            if not _may_hold_psd(gp, clo, chi):
                continue
            child = propose(gp, clo, chi, prop.Y)
            if child.value >= upper * (1 - TARGET_GAP):
                leaves.append((clo, chi, child))
            else:
                heapq.heappush(heap, (child.value, next(order), clo, chi, child))
    leaves += [(lo, hi, prop) for _, _, lo, hi, prop in heap]
    return _Search(leaves, best, upper, count, not heap)


def _halves(lo: np.ndarray, hi: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    i = int(np.argmax(hi - lo))
    mid = (lo[i] + hi[i]) / 2
    left_hi, right_lo = hi.copy(), lo.copy()
    left_hi[i], right_lo[i] = mid, mid
    return [(lo, left_hi), (right_lo, hi)]


def _may_hold_psd(gp: GramProblem, lo: np.ndarray, hi: np.ndarray) -> bool:
    """False only when no matrix of the box is positive semidefinite: a diagonal entry below
    zero throughout, or an off-diagonal entry with `g_ij^2 > g_ii g_jj` throughout (exact
    rationals)."""
    where = gp.position
    for (r, c), i in where.items():
        if r == c and hi[i] < 0:
            return False
        if r != c:
            least = 0 if lo[i] <= 0 <= hi[i] else min(abs(Fraction(lo[i])), abs(Fraction(hi[i])))
            if least**2 > Fraction(hi[where[r, r]]) * Fraction(hi[where[c, c]]):
                return False
    return True


def _start(gp: GramProblem) -> tuple[np.ndarray, float]:
    """A point to begin with, proposed without the claim: the centred one-hot logits, scaled
    to the best of their scalar family for cross-entropy (scipy proposes the scale)."""
    unit = gp.basis.copy()  # row k: U^T e_k, every margin 1
    if gp.loss == "max-margin":
        return unit, _value(gp, unit)
    from scipy.optimize import minimize_scalar

    res = minimize_scalar(
        lambda s: _value(gp, s * unit),
        bounds=(0.0, 1e3),
        method="bounded",
        options={"xatol": 1e-13},
    )
    return float(res.x) * unit, _value(gp, float(res.x) * unit)


def _value(gp: GramProblem, Y: np.ndarray) -> float:
    """The reduced objective in floats (the search's incumbent; proven by `_proven_value`)."""
    gram = (Y.T * np.asarray(gp.weights, float)) @ Y
    penalty = gp.kappa * float(np.sum(np.maximum(np.linalg.eigvalsh(gram), 0.0) ** gp.p))
    if gp.loss == "max-margin":
        return penalty
    z = Y @ gp.basis.T
    top = z.max(1)
    lse = top + np.log(np.exp(z - top[:, None]).sum(1))
    return float(np.mean(lse - float(gp.target) * np.diag(z))) + penalty


def _proven(
    gp: GramProblem, kappa: Any, p: Any, search: _Search, iv: Any, progress: Progress | None = None
) -> mpmath.mpf:
    """The least proven bound over the leaves.  Any leaf proven above `target` (just under the
    best value) counts as `target`, so most need only the crude trace bound."""
    target = mpmath.mpf(search.upper) * (1 - mpmath.mpf(2 * TARGET_GAP))
    least = target
    for i, (lo, hi, prop) in enumerate(search.leaves):
        least = min(least, proven_bound(gp, kappa, p, lo, hi, prop, iv, target))
        if progress is not None and (i + 1) % PROGRESS_EVERY == 0:
            progress("certificate (gram-branch-and-bound): boxes proven", i + 1, len(search.leaves))
    return least


def _proven_value(gp: GramProblem, kappa: Any, p: Any, Y: np.ndarray, iv: Any) -> mpmath.mpf:
    """An upper bound on the objective at a feasible point made from `Y` (for the max-margin
    problem, `Y` divided by its least margin, proven at least 1)."""
    u = helmert_iv(gp.K, iv)
    rows = [[iv.mpf(float(x)) for x in y] for y in Y]
    logits = [[sum(u[i][j] * y[j] for j in range(gp.n)) for i in range(gp.K)] for y in rows]
    gram = (Y.T * np.asarray(gp.weights, float)) @ Y
    exact = [
        [sum(w * y[i] * y[j] for w, y in zip(gp.weights, rows, strict=True)) for j in range(gp.n)]
        for i in range(gp.n)
    ]
    upper = eigenvalue_bounds(gram, iv, exact)[1]
    penalty = kappa * sum(power(iv.mpf(max(x, 0)), p, iv) for x in upper)
    if gp.loss == "max-margin":
        least = min(
            ends(logits[k][k] - logits[k][j])[0] for k in range(gp.K) for j in range(gp.K) if j != k
        )
        if least <= 0:
            return mpmath.inf
        return ends(penalty * power(1 / iv.mpf(least), 2 * p, iv))[1]
    t = iv.mpf(gp.target.numerator) / gp.target.denominator
    loss = sum(iv.log(sum(iv.exp(x) for x in z)) - t * z[k] for k, z in enumerate(logits)) / gp.K
    return ends(loss + penalty)[1]


def _certificate(
    gp: GramProblem, search: _Search, bound: mpmath.mpf, primal: mpmath.mpf, seconds: float
) -> Certificate:
    gap = float((primal - bound) / abs(primal)) if math.isfinite(primal) else math.inf
    spent = "" if search.closed else f"; the budget of {search.boxes} boxes ran out first"
    return Certificate(
        kind="gram-branch-and-bound",
        bound=round_down(bound),
        primal=float(primal),
        gap=gap,
        solver="branch and bound over the Gram matrix of the centred logits; floats propose, "
        "mpmath.iv proves every box's bound",
        status="optimal" if search.closed else "budget",
        rigorous=True,
        detail=(
            f"F >= d(W) + min over box corners of kappa tr g(G) - <W, G> ({gp.K} classes, "
            f"p = 1/{round(1 / gp.p)}): {search.boxes} boxes split, {len(search.leaves)} proven"
            f"{spent} ({seconds:.1f} s); proven lower bound {mpmath.nstr(bound, 15)}, a point "
            f"at {mpmath.nstr(primal, 15)}, relative gap {gap:.2e}"
        ),
        bound_exact=bound,
        exact=True,  # [bound, primal] brackets the optimum: a proven bound and a point's value
        unique=False,
        boxes=search.boxes,
    )
