r"""Four balanced classes of the max-margin problem at depth: branch and bound over the
eigenvalues and the eigenvector frame of the Gram matrix (docs/theory/depth-certificates.md#frame).

`gram-branch-and-bound` splits the six entries of the Gram matrix $G$, and its concave bound
loses $\kappa\,w^p$ on any box of width $w$ that reaches the edge of the semidefinite cone:
four classes stall there, because codes of rank two (six per cent above the labels) live on
that edge.  This kind splits the eigenvalues instead.  By Schur–Horn, the diagonal
$x_i = q_i^T G q_i$ of $G$ in any frame $Q$ is majorised by its eigenvalues, so
$\sum_i x_i^p \ge \operatorname{tr} G^p$ with equality in $G$'s own frame:

$$\min_{Y \in C} \operatorname{tr} G^p \;=\; \min_{Q}\; \min_{Y\in C}\; \textstyle\sum_i (q_i^T G q_i)^p .$$

A leaf is a box of $x$ (sorted, $x_1 \ge x_2 \ge x_3$) times a cell of frames (a cube of
Rodrigues vectors in the cubic fundamental zone, which class relabelling allows: lemma S of the
page); its bound is exact at the box's lower corner, where the Gram branch and bound loses
$w^p$, and the cell's width costs only where the weights are anisotropic (lemma F).  Floating
point and a conic solver propose the weights; every leaf's bound is proven in interval
arithmetic (`frame_bounds.proven_leaf`).

>>> from ncverify.model.problem import Problem
>>> cert = frame_branch_and_bound(Problem.build(classes=4, samples=1, depth=2, width=4,
...     lambda_w="1e-3", lambda_h="1e-3", loss="max-margin"), boxes=60)
>>> cert.kind, cert.status, cert.boxes, 0 < cert.bound < cert.primal
('frame-branch-and-bound', 'budget', 60, True)
"""

from __future__ import annotations

import functools
import heapq
import itertools
import math
import time
import warnings
from dataclasses import dataclass
from typing import Any

import mpmath
import numpy as np

from ncverify.evidence.batched_search import Progress
from ncverify.evidence.certificates import frame_proofs
from ncverify.evidence.certificates.certificate import Certificate
from ncverify.evidence.certificates.frame_bounds import (
    ZONE,
    LeafProposal,
    chords,
    evaluate,
    margin_rows,
    rodrigues,
)
from ncverify.evidence.certificates.frame_proofs import Prover
from ncverify.evidence.certificates.gram import BITS, PROGRESS_EVERY, TARGET_GAP, _proven_value
from ncverify.evidence.certificates.gram_bounds import GramProblem, power
from ncverify.evidence.certificates.two_classes import penalty_constant
from ncverify.limits import StepSkipped
from ncverify.model.intervals import ends, interval_precision, round_down
from ncverify.model.problem import Loss, Problem

#: The candidate weights of a leaf: the solver's, floored at these fractions of their largest.
FLOORS = (0.0, 0.01, 0.03, 0.1, 0.3, 1.0)


def frame_branch_and_bound(
    problem: Problem, boxes: int = 0, progress: Progress | None = None
) -> Certificate | None:
    """The `frame-branch-and-bound` certificate kind: the max-margin problem with four balanced
    classes, depth at least 2, no bias, widths at least 3.  None elsewhere; `StepSkipped` when
    `boxes` is 0 (the check did not ask for it)."""
    if not _applies(problem):
        return None
    if boxes <= 0:
        raise StepSkipped(
            "it applies to this instance but runs only when asked, with its budget "
            "(--certificate-boxes N: tens of thousands of boxes bring four classes within 1e-2)"
        )
    # the search runs on sum_i x_i^p, at most 3 (the labels'), whatever kappa is, and only its
    # result is scaled by kappa n^p, in intervals: no box grows as kappa shrinks (the Gram
    # kind's do), and Problem keeps lambda's product, so kappa, within floating point
    p = 1 / (problem.depth + 1)
    kappa = (problem.depth + 1) / 2 * float(problem.lambda_product) ** p
    t0 = time.perf_counter()
    gp = GramProblem(4, p, kappa, tuple(problem.counts), "max-margin")
    with frame_proofs.prover(problem.depth, BITS) as leaves:
        search = _search(p, 3.0, boxes, leaves, progress)  # 3: the labels' value, G = I
        least = leaves.finish()  # at most the target: finite
    with interval_precision(BITS) as iv:
        kap, exponent = penalty_constant(problem, iv), iv.mpf(1) / (problem.depth + 1)
        bound = ends(iv.mpf(least) * kap * power(iv.mpf(problem.counts[0]), exponent, iv))[0]
        primal = _proven_value(gp, kap, exponent, gp.basis.copy(), iv)  # the labels
    return _certificate(search, bound, primal, time.perf_counter() - t0)


def _applies(problem: Problem) -> bool:
    return (
        problem.loss == Loss.MAX_MARGIN
        and problem.K == 4
        and problem.depth >= 2
        and problem.bias == "none"
        and problem.bottleneck >= 3
        and len(set(problem.counts)) == 1
    )


@dataclass
class _Search:
    """What the float branch and bound did: the boxes split, whether every leaf was closed
    before the budget ran out, and the prover that holds the least proven bound."""

    boxes: int
    closed: bool
    prover: Prover


@functools.cache
def _solver() -> Any:
    """The conic program that proposes a leaf's weights, built once (cvxpy parameters): minimise
    the chords' sum over the box subject to `q_i^T G q_i <= x_i + t` at the cell's centre, with
    `t` priced so that an empty leaf still has a solution; the duals of those constraints are
    the weights."""
    import cvxpy as cp

    frame, lo, hi = cp.Parameter((3, 3)), cp.Parameter(3), cp.Parameter(3)
    slope = cp.Parameter(3, nonneg=True)
    y, x, t = cp.Variable((4, 3)), cp.Variable(3), cp.Variable(nonneg=True)
    yq = y @ frame
    diag = [cp.sum_squares(yq[:, i]) <= x[i] + t for i in range(3)]
    rows = margin_rows()
    cons = [rows[k] @ y[k] >= 1 for k in range(4)] + diag + [x >= lo, x <= hi]
    return cp.Problem(cp.Minimize(slope @ x + 1e3 * t), cons), (frame, lo, hi, slope), diag


def _propose(
    p: float, l: np.ndarray, u: np.ndarray, r: np.ndarray, h: float, parent: np.ndarray | None
) -> LeafProposal:
    centre = rodrigues(r)
    slopes = chords(p, l, u)
    problem, params, diag = _solver()
    for param, value in zip(params, (centre, l, u, slopes), strict=True):
        param.value = value
    try:
        with warnings.catch_warnings():  # an inaccurate solution only weakens the bound
            warnings.simplefilter("ignore")
            problem.solve(solver="CLARABEL")
        w0 = np.maximum(np.array([c.dual_value for c in diag], float).ravel(), 0.0)
    except Exception:  # noqa: BLE001 - a failed proposal only weakens the bound
        w0 = slopes
    if not np.all(np.isfinite(w0)) or w0.max() <= 0:
        w0 = slopes
    cands = [np.maximum(w0, f * w0.max()) for f in FLOORS] + [slopes]
    if parent is not None:
        cands.append(parent)
    return evaluate(p, np.array(cands), centre, min(2 * math.sqrt(3) * h, 2.0), l, u)


def _sorted_box(l: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
    """The part of the box with x_1 >= x_2 >= x_3, or None when there is none (comparisons only,
    exact)."""
    u = np.array([u[0], min(u[1], u[0]), min(u[2], u[1], u[0])])
    l = np.array([max(l), max(l[1], l[2]), l[2]])
    return (l, u) if np.all(l <= u) else None


def _in_zone(r: np.ndarray, h: float) -> bool:
    """Whether the cell can meet the zone `|r_1| + |r_2| + |r_3| <= 1` (exact dyadic floats)."""
    return float(np.maximum(np.abs(r) - h, 0).sum()) <= 1


def _children(
    l: np.ndarray, u: np.ndarray, r: np.ndarray, h: float, prop: LeafProposal, p: float
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, float]]:
    """Split the cell where its width costs more than the box's widest side, else that side at
    the middle of its values of t^p."""
    spread = u**p - l**p
    if prop.value_at_centre - prop.value > spread.max():
        cells = [r + np.array(s) * h / 2 for s in itertools.product((-1, 1), repeat=3)]
        return [(l, u, c, h / 2) for c in cells if _in_zone(c, h / 2)]
    i = int(np.argmax(spread))
    mid = ((l[i] ** p + u[i] ** p) / 2) ** (1 / p)
    out = []
    for a, b in ((l[i], mid), (mid, u[i])):
        nl, nu = l.copy(), u.copy()
        nl[i], nu[i] = a, b
        out.append((nl, nu, r, h))
    return out


def _search(
    p: float, upper: float, budget: int, prover: Prover, progress: Progress | None
) -> _Search:
    """Best-first over the leaves, from the whole box `[0, upper^(1/p)]^3` and the whole zone:
    split the least leaf, hand every child whose float bound reaches `upper` (less 1e-11) to
    `prover`, and at the end every leaf still open."""
    top = upper ** (1 / p) * (1 + 1e-9)  # x_i^p <= sum_i x_i^p <= upper
    l, u, r, h = np.zeros(3), np.full(3, top), np.zeros(3), ZONE
    target = upper * (1 - TARGET_GAP)
    prover.aim(target)
    first = _propose(p, l, u, r, h, None)
    heap = [(first.value, 0, l, u, r, h, first)]
    count, order = 0, itertools.count(1)
    while heap and count < budget and heap[0][0] < target:
        _, _, l, u, r, h, prop = heapq.heappop(heap)
        count += 1
        if progress is not None and count % PROGRESS_EVERY == 0:
            progress("certificate (frame-branch-and-bound): boxes split", count, budget)
        for cl, cu, cr, ch in _children(l, u, r, h, prop, p):
            box = _sorted_box(cl, cu)
            if box is None:
                continue
            child = _propose(p, box[0], box[1], cr, ch, prop.w)
            if child.value >= target:
                prover(box[0], box[1], cr, ch, child)
            else:
                heapq.heappush(heap, (child.value, next(order), box[0], box[1], cr, ch, child))
    closed = not heap or heap[0][0] >= target
    if heap:
        prover.lower(heap[0][0] * (1 - 1e-12))
    for i, (_, _, l, u, r, h, prop) in enumerate(heap):
        prover(l, u, r, h, prop)
        if progress is not None and (i + 1) % PROGRESS_EVERY == 0:
            progress("certificate (frame-branch-and-bound): open boxes proven", i + 1, len(heap))
    return _Search(count, closed, prover)


def _certificate(
    search: _Search, bound: mpmath.mpf, primal: mpmath.mpf, seconds: float
) -> Certificate:
    gap = float((primal - bound) / abs(primal))
    spent = "" if search.closed else f"; the budget of {search.boxes} boxes ran out first"
    return Certificate(
        kind="frame-branch-and-bound",
        bound=round_down(bound),
        primal=float(primal),
        gap=gap,
        solver="branch and bound over the eigenvalues and the frame of the Gram matrix; a conic "
        "solver (Clarabel) proposes, mpmath.iv proves every leaf's bound",
        status="optimal" if search.closed else "budget",
        rigorous=True,
        detail=(
            f"sum_i x_i^p >= d(W') + sum_i min(l_i^p - w_i l_i, u_i^p - w_i u_i) over leaves of "
            f"diagonal boxes and frame cells: {search.boxes} boxes split, {search.prover.proven} "
            f"leaves proven{spent} ({seconds:.1f} s); proven lower bound {mpmath.nstr(bound, 15)}, the "
            f"labels at {mpmath.nstr(primal, 15)}, relative gap {gap:.2e}"
        ),
        bound_exact=bound,
        exact=True,  # [bound, primal] brackets the optimum: a proven bound and a point's value
        unique=False,
        boxes=search.boxes,
    )


__all__ = ["frame_branch_and_bound"]
