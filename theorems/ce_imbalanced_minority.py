r"""Two groups of classes, cross-entropy, one layer: minority collapse in three phases (claimed).

$K_A$ majority classes of $n_A$ samples and $K_B \ge 2$ minority classes of $n_B < n_A$ samples,
one layer, cross-entropy, any bias mode. With $s = \sqrt{\lambda_W\lambda_H}$, $w_k = n_k/N$
and $D = \operatorname{diag}(\sqrt{n_k})$, the problem's optimum is that of the convex program

$$P(s) = \min_{A,\,b}\ \sum_k w_k\,\mathrm{CE}\big(a_k/\sqrt{n_k} + b,\ k\big) + s\lVert A\rVert_*
\ \big(+\tfrac{\lambda_b}{2}\lVert b\rVert^2\big)$$

over the class-level products $A = W\bar H D$ ([one layer](../theory/one-layer.md)). Its
minority logit columns $\bar z_k = a_k/\sqrt{n_k}$ pass through three phases as $s$ grows:
**distinct**; **equal and non-zero**, the minority classifiers and features coinciding
(minority collapse); **zero**. The phase of an instance, and the two thresholds
$s_1 < s_2$ between them, come from the claim's own convex programs: $P(s)$ with the minority
columns tied, or zero, against the untied one (a constraint that costs nothing is met by the
minimiser, which is unique in its centred logits). The predicted point is the optimum of the
program of its phase, polished in the factorised variables with that structure kept, and the
claimed optimum is its value (evaluated exactly). Checked at one layer, where the `convex-dual`
certificate proves the optimum: the tied program attaining the untied bound certifies the phase.

Source: C. Fang, H. He, Q. Long, W. J. Su, "Exploring deep neural networks via layer-peeled
model: Minority collapse in imbalanced training", PNAS 2021, arXiv 2101.12699 (the phenomenon);
W. Hong, S. Ling, "Neural Collapse for Unconstrained Feature Model under Cross-entropy Loss
with Imbalanced Data", arXiv 2309.09725 (the convex program, a sharp threshold for two
clusters); docs/theory/minority.md (this project's statement of the phases).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache
from typing import Any

import mpmath
import numpy as np
import sympy as sp

from ncverify.backend import Backend
from ncverify.claim import (
    Boundary,
    Claim,
    ClassPrediction,
    NoPrediction,
    Phase,
    Prediction,
    Quantity,
    Regime,
    Step,
    TruthRegion,
    to_backend,
)
from ncverify.model.exact import enclose_objective
from ncverify.model.factorisations import balanced_layers
from ncverify.model.intervals import ends
from ncverify.model.objective import Objective, Params
from ncverify.model.problem import Problem
from ncverify.model.reduction import lift
from theorems._hypotheses import model_hypotheses

#: the phases, in the order they come as s grows
PHASES = ("distinct", "tied", "zero")
#: a structure costs nothing when its program's value is within this (relative) of the free one
#: (the conic solver's accuracy is about 1e-8; the cost grows quadratically past a threshold)
FREE_OF_COST = 1e-7
#: a structure the conic solver finds within this (relative) of the free program is polished and
#: judged by its gradient (`predicted_class_point`)
NEARLY_FREE = 1e-6
#: a structured point is as low as the free minimiser when within this many of their rounding
#: error bounds of it
ROUNDINGS = 4
#: bisection steps in log s for each threshold (a factor 2 bracket to 2^-10, about 7e-4)
BISECTIONS = 10
#: Newton steps of the polish (each ends the polish unless it lowers the gradient)
NEWTON_STEPS = 60
#: singular values of the conic solution below this fraction of the largest are zeros
RANK_GAP = 1e-6
#: a product `W G` below this (relative to the bias) is the zero solution
NEGLIGIBLE = 1e-12
#: halvings of a Newton step that does not lower the gradient, before the polish stops
HALVINGS = 8
#: where the bracket search for a threshold starts
BRACKET_START = 1e-2


# ---- the groups ----------------------------------------------------------------------------------
def minority_classes(problem: Problem) -> tuple[int, ...] | None:
    """The classes of the smaller count, where the counts take exactly two values and the
    minority has at least two classes; else None."""
    sizes = sorted(set(problem.counts))
    if len(sizes) != 2:
        return None
    small = tuple(k for k, n in enumerate(problem.counts) if n == sizes[0])
    return small if len(small) >= 2 else None


# ---- the convex programs -------------------------------------------------------------------------
def class_program(
    problem: Problem, s: float, structure: str
) -> tuple[float, np.ndarray, np.ndarray]:
    """`P(s)` with the minority columns of `A` free, tied (all equal) or zero: its value, `A`
    and `b` (cvxpy, Clarabel; accuracy about 1e-8)."""
    import cvxpy as cp  # noqa: PLC0415 - the conic solver loads only where this claim predicts

    k = problem.K
    n = np.asarray(problem.counts, dtype=float)
    weights, root = n / n.sum(), np.sqrt(n)
    a = cp.Variable((k, k))
    b = cp.Variable(k) if problem.bias != "none" else None
    logits = a @ np.diag(1 / root)
    if b is not None:
        logits = logits + cp.reshape(b, (k, 1), order="F") @ np.ones((1, k))
    loss = sum(weights[c] * (cp.log_sum_exp(logits[:, c]) - logits[c, c]) for c in range(k))
    objective = loss + s * cp.normNuc(a)
    if problem.bias == "regularised":
        objective = objective + float(problem.lambda_b) / 2 * cp.sum_squares(b)
    minority = minority_classes(problem) or ()
    constraints = []
    if structure == "tied":
        constraints = [a[:, j] == a[:, minority[0]] for j in minority[1:]]
    elif structure == "zero":
        constraints = [a[:, j] == 0 for j in minority]
    program = cp.Problem(cp.Minimize(objective), constraints)
    _solve(program, cp)
    bias = np.zeros(k) if b is None else np.asarray(b.value, dtype=float)
    return float(program.value), np.asarray(a.value, dtype=float), bias


def _solve(program: Any, cp: Any) -> None:
    """Clarabel at its default tolerances; where it reports an inaccurate solution (about 1e-9
    off here) or fails, Clarabel at 1e-7, then SCS at 1e-9: each within the `FREE_OF_COST` a
    phase is decided by.  Any other outcome is an error, never a silent value."""
    attempts = (
        (cp.CLARABEL, {}),
        (cp.CLARABEL, {"tol_gap_abs": 1e-7, "tol_gap_rel": 1e-7, "tol_feas": 1e-7}),
        (cp.SCS, {"eps": 1e-9, "max_iters": 200_000}),
    )
    for solver, options in attempts:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "may be inaccurate": judged below
            try:
                program.solve(solver=solver, **options)
            except cp.error.SolverError:
                continue
        if program.status == cp.OPTIMAL or (
            solver == cp.SCS and program.status == cp.OPTIMAL_INACCURATE
        ):
            return
    raise ArithmeticError(f"the claim's convex program ended {program.status}")


def phase_at(problem: Problem, s: float) -> str:
    """The phase at `s`: the most constrained structure whose program costs nothing."""
    free = class_program(problem, s, "distinct")[0]
    scale = max(1.0, abs(free))
    for structure in ("zero", "tied"):
        if class_program(problem, s, structure)[0] - free <= FREE_OF_COST * scale:
            return structure
    return "distinct"


def _s(problem: Problem) -> float:
    """`s = sqrt(lambda_W lambda_H)`, the weight of the nuclear norm in `P(s)`."""
    return math.sqrt(float(problem.lambda_w[0]) * float(problem.lambda_h))


def _key(problem: Problem) -> tuple:
    return (problem.counts, str(problem.bias), problem.lambda_b)


@lru_cache(maxsize=64)
def _thresholds(key: tuple) -> tuple[float | None, float | None]:
    """`(s_1, s_2)`: where the minority columns start to coincide, and to vanish (None where no
    bracket is found); the bracket search starts at `s = 10^-2` whatever the instance's `s`,
    so that every instance of the same counts and bias shares them."""
    counts, bias, lambda_b = key
    problem = Problem(
        counts=counts, depth=1, widths=(len(counts),), lambda_w=(Fraction(1),), lambda_h=Fraction(1),
        loss="ce", bias=bias, lambda_b=lambda_b,
    )  # fmt: skip
    return (
        _threshold(problem, BRACKET_START, lambda p: p != "distinct"),
        _threshold(problem, BRACKET_START, lambda p: p == "zero"),
    )


def _threshold(problem: Problem, s: float, beyond) -> float | None:  # noqa: ANN001
    """The `s` where `beyond(phase)` turns true, by bracketing in factors of 2 from `s` and
    bisecting in `log s`; None if no bracket within 2^-20 to 2^20 of `s`."""
    lo, hi = s, s
    if beyond(phase_at(problem, s)):
        for _ in range(20):
            lo /= 2
            if not beyond(phase_at(problem, lo)):
                break
        else:
            return None
        hi = 2 * lo
    else:
        for _ in range(20):
            hi *= 2
            if beyond(phase_at(problem, hi)):
                break
        else:
            return None
        lo = hi / 2
    for _ in range(BISECTIONS):
        mid = math.sqrt(lo * hi)
        lo, hi = (lo, mid) if beyond(phase_at(problem, mid)) else (mid, hi)
    return math.sqrt(lo * hi)


# ---- the predicted point -------------------------------------------------------------------------
@dataclass(frozen=True)
class _Structured:
    """The class-mean point `(W, G, b)` with the minority columns of `G = Hbar D` tied or zero,
    as a flat vector and back (the polish moves only the free coordinates)."""

    problem: Problem
    structure: str

    def free_columns(self) -> list[int]:
        minority = minority_classes(self.problem) or ()
        if self.structure == "distinct":
            return list(range(self.problem.K))
        keep = [k for k in range(self.problem.K) if k not in minority]
        return keep + ([minority[0]] if self.structure == "tied" else [])

    def pack(self, p: Params) -> np.ndarray:
        parts = [p.Ws[0].ravel(), p.H[:, self.free_columns()].ravel()]
        return np.concatenate(parts + ([p.b] if p.b is not None else []))

    def unpack(self, x: np.ndarray) -> Params:
        k, d = self.problem.K, self.problem.widths[0]
        cols = self.free_columns()
        w = x[: k * d].reshape(k, d)
        g = np.zeros((d, k))
        g[:, cols] = x[k * d : k * d + d * len(cols)].reshape(d, len(cols))
        if self.structure == "tied":
            for j in minority_classes(self.problem) or ():
                g[:, j] = g[:, cols[-1]]
        b = x[k * d + d * len(cols) :] if self.problem.bias != "none" else None
        return Params((w,), g, b)

    def gradient(self, grad: Params) -> np.ndarray:
        """The gradient in the free coordinates: a tied column collects its copies'."""
        g = grad.H.copy()
        cols = self.free_columns()
        if self.structure == "tied":
            minority = minority_classes(self.problem) or ()
            g[:, cols[-1]] = sum(grad.H[:, j] for j in minority)
        parts = [grad.Ws[0].ravel(), g[:, cols].ravel()]
        return np.concatenate(parts + ([grad.b] if grad.b is not None else []))


def _polished(problem: Problem, structure: str, start: Params) -> Params:
    """The structured program's minimiser, from `start`: Newton steps on exact Hessian-vector
    products of the factorised objective (conjugate gradients to 1e-8), then L-BFGS, within the
    structure, keeping the point of least gradient.  Why both: where singular values repeat (a
    group's classes alike) the factorised landscape has directions nearly as flat as the
    rotation gauge, on which Newton stalls and L-BFGS does not."""
    from scipy.optimize import minimize  # noqa: PLC0415 - loaded where used
    from scipy.sparse.linalg import LinearOperator, cg  # noqa: PLC0415

    objective = Objective(problem, np, parameterisation="class-means")
    shape = _Structured(problem, structure)

    def value_and_gradient(x: np.ndarray) -> tuple[float, np.ndarray]:
        value, grad = objective.value_and_grad(shape.unpack(x))
        return float(value), shape.gradient(grad)

    def hessian(x: np.ndarray) -> Any:
        size = x.size
        return LinearOperator(
            (size, size),
            matvec=lambda v: shape.gradient(objective.hvp(shape.unpack(x), shape.unpack(v))),
        )

    x = shape.pack(start)
    g = value_and_gradient(x)[1]
    for _ in range(NEWTON_STEPS):
        if not np.any(g):  # already stationary (the zero solution): nothing to solve
            break
        with np.errstate(all="ignore"):  # a breakdown gives a non-finite step, judged below
            step, _ = cg(hessian(x), -g, rtol=1e-8, maxiter=10 * x.size)
        if not np.all(np.isfinite(step)):
            break
        for _ in range(HALVINGS):  # near a threshold the landscape is flat: shorter steps
            g_trial = value_and_gradient(x + step)[1]
            if np.linalg.norm(g_trial) < np.linalg.norm(g):
                break
            step = step / 2
        else:
            break
        x, g = x + step, g_trial
    result = minimize(
        value_and_gradient, x, jac=True, method="L-BFGS-B",
        options={"gtol": 0.0, "ftol": 0.0, "maxiter": 3000, "maxcor": 30},
    )  # fmt: skip
    if np.linalg.norm(value_and_gradient(result.x)[1]) < np.linalg.norm(g):
        x = result.x
    return shape.unpack(x)


def _factorised(problem: Problem, a: np.ndarray, b: np.ndarray, structure: str) -> Params:
    """The balanced class-mean point of `A` (its SVD), with the structure imposed exactly."""
    minority = minority_classes(problem) or ()
    a = a.copy()
    if structure == "tied":
        a[:, list(minority)] = a[:, list(minority)].mean(axis=1, keepdims=True)
    elif structure == "zero":
        a[:, list(minority)] = 0.0
    u, sv, vt = np.linalg.svd(a)
    # the conic solver leaves the singular values the optimum does not use at about 1e-8, not
    # 0: dropped, so that the polish starts on the optimum's rank
    r = max(1, int(np.sum(sv > RANK_GAP * sv[0])))
    bias = b if problem.bias != "none" else None
    full = balanced_layers(problem, u[:, :r], sv[:r], vt[:r].T, bias)
    return Params(full.Ws, full.H[:, _first_columns(problem)] * np.sqrt(problem.counts), full.b)


def _first_columns(problem: Problem) -> list[int]:
    return [sum(problem.counts[:k]) for k in range(problem.K)]


@lru_cache(maxsize=64)
def predicted_class_point(problem: Problem) -> tuple[str, Params]:
    """The phase of `problem` and its predicted class-mean point `(W, G, b)`.

    Why not `phase_at` alone: near a threshold a structure costs less than the conic solver
    can see, and its point may even be stationary (a saddle: the symmetric points of the
    factorised problem are critical points of it) without being a minimiser.  So the free
    program is polished too, and a structure the solver calls nearly free (`NEARLY_FREE`) is
    kept only where its polished point is no higher than the free one within their rounding
    errors; else the prediction is the free program's minimiser, with no structure imposed."""
    s = _s(problem)
    objective = Objective(problem, np, parameterisation="class-means")
    free_value, a, b = class_program(problem, s, "distinct")
    free = _polished(problem, "distinct", _factorised(problem, a, b, "distinct"))
    ceiling = objective.value(free) + ROUNDINGS * objective.error_bound(free)
    for structure in ("zero", "tied"):
        cost, a, b = class_program(problem, s, structure)
        if cost - free_value > NEARLY_FREE * max(1.0, abs(free_value)):
            continue
        point = _polished(problem, structure, _factorised(problem, a, b, structure))
        if objective.value(point) <= ceiling + ROUNDINGS * objective.error_bound(point):
            return structure, _exact_zero(point)
    return "distinct", free


def _exact_zero(point: Params) -> Params:
    """The point with `W` and `G` set to exact zeros where their product is negligible (every
    logit column zero: the zero solution, whose bias alone is left; a polish only approaches
    it, and E4 judges a claimed zero solution by its product, not by relative errors)."""
    product = point.Ws[0] @ point.H
    scale = 1.0 + (0.0 if point.b is None else float(np.abs(point.b).max()))
    if float(np.abs(product).max()) > NEGLIGIBLE * scale:
        return point
    return Params((np.zeros_like(point.Ws[0]),), np.zeros_like(point.H), point.b)


# ---- the claim -----------------------------------------------------------------------------------
class CEImbalancedMinority(Claim):
    id = "ce-imbalanced-minority"
    title = "Two groups, cross-entropy, one layer: minority collapse in three phases (claimed)"
    source = (
        'Fang, He, Long, Su, "Exploring deep neural networks via layer-peeled model: Minority '
        'collapse in imbalanced training", PNAS 2021, arXiv 2101.12699; Hong, Ling, "Neural '
        "Collapse for Unconstrained Feature Model under Cross-entropy Loss with Imbalanced "
        'Data", arXiv 2309.09725'
    )
    status = "one layer: a check certifies its phase through convex-dual (docs/theory/minority.md)"
    loss = "ce"
    bias = "regularised"
    certificates = ("convex-dual",)
    truth_region = TruthRegion(
        basis="certified",
        certificate="convex-dual",
        reference="the convex-dual certificate meets the predicted value (docs/theory/minority.md)",
        loss="ce",
        biases=("none", "free", "regularised"),
        lambda_b=("1e-3", "0.1"),
        classes=(3, 6),
        samples=(2, 20),
        balanced=False,
        two_groups=True,
        depth=(1, 1),
        widths=(3, 8),
        wide=True,
        lambda_w=("1e-3", "0.1"),
        lambda_h=("1e-3", "0.1"),
    )

    def hypotheses(self, problem: Problem) -> list[str]:
        unmet = model_hypotheses(problem, loss="ce")
        if problem.depth != 1:
            unmet.append("the network must have one layer (M = 1)")
        if minority_classes(problem) is None:
            unmet.append(
                "the counts must take exactly two values, the smaller one for at least two classes"
            )
        if problem.widths[0] < problem.K:
            unmet.append(f"the feature dimension d = {problem.widths[0]} must be at least K")
        return unmet

    def default_problem(self) -> Problem:
        return Problem.build(
            counts="100,100,10,10", depth=1, width=4, lambda_w="0.016", lambda_h="0.016",
            lambda_b="0.02", loss="ce",
        )  # fmt: skip

    def closed_form(self, problem: Problem) -> Prediction:
        if problem.depth != 1 or minority_classes(problem) is None or problem.loss != "ce":
            raise NoPrediction(
                "the claim's convex program is that of one layer of cross-entropy with two "
                "groups of classes: it predicts nothing for this problem"
            )
        structure, point = predicted_class_point(problem)
        full = lift(problem.counts, point, np)
        with mpmath.workprec(200):
            lo, hi = ends(enclose_objective(problem, full))
            value = (lo + hi) / 2
        z = point.Ws[0] @ (point.H / np.sqrt(problem.counts))
        zero = not np.any(z)  # every logit column zero, not only the minority's
        minority = minority_classes(problem) or ()
        vanish = _thresholds(_key(problem))[1]
        classes = tuple(
            ClassPrediction(
                n,
                Regime.COLLAPSED
                if zero or (structure == "zero" and k in minority)
                else Regime.ALIVE,
                sp.Float(float(z[k, k]), 17),
                float(np.linalg.norm(point.Ws[0][k])),
                float(np.linalg.norm(point.H[:, k]) / math.sqrt(n)),
                vanish if k in minority else None,
            )
            for k, n in enumerate(problem.counts)
        )
        return Prediction(
            objective=value,
            classes=classes,
            bias=None if point.b is None else tuple(float(v) for v in point.b),
            unique=True,
            geometry="zero (every logit column)" if zero else f"minority columns {structure}",
            zero=zero,
            notes=(
                "the claimed optimum is the exact value of the predicted point: the optimum of "
                f"the convex program with the minority columns {structure}, polished",
            ),
            phase=self._phase(problem, structure, z),
            objective_form=f"P(s) with the minority logit columns {structure}",
        )

    def _phase(self, problem: Problem, structure: str, z: np.ndarray) -> Phase:
        s = _s(problem)
        s1, s2 = _thresholds(_key(problem))
        minority = minority_classes(problem) or ()
        boundaries: list[Boundary] = []
        for crit, change in ((s1, "the minority columns coincide beyond it"),
                             (s2, "the minority columns vanish beyond it")):  # fmt: skip
            if crit is not None:
                boundaries += _axes(problem, crit, minority, change)
        known = [c for c in (s1, s2) if c is not None]
        spread = float(np.linalg.norm(z[:, minority[0]] - z[:, minority[-1]]))
        return Phase(
            boundaries=tuple(boundaries),
            distance=min(abs(math.log(s / c)) for c in known) if known else None,
            quantities=(
                Quantity("phase", PHASES.index(structure), structure, "0 distinct, 1 tied, 2 zero"),
                Quantity("s", s, None, "s = sqrt(lambda_W lambda_H)"),
                Quantity("s_tied", s1, None, "the s beyond which the minority columns coincide"),
                Quantity("s_zero", s2, None, "the s beyond which the minority columns vanish"),
                Quantity(
                    "minority_spread", spread, None, "||zbar_j - zbar_j'||, two minority classes"
                ),
            ),
        )

    def minimiser(self, problem: Problem, backend: Backend) -> Params:
        _, point = predicted_class_point(problem)
        return to_backend(lift(problem.counts, point, np), backend)

    def derivation(self) -> list[Step]:
        test = "tests/test_minority.py::"
        return [
            Step(
                "At one layer the problem is the convex program P(s) over A = W Hbar D, "
                "s = sqrt(lambda_W lambda_H), whose loss is strictly convex in the centred logits.",
                r"\min F = P(s)",
                "lemma",
                "tests/test_convex.py::test_bound_never_exceeds_any_feasible_objective",
            ),
            Step(
                "Swapping two minority classes maps the program to itself, so the minimiser's "
                "centred logits are fixed by every such swap; a constraint (minority columns "
                "tied, or zero) that costs nothing is met by the unique minimiser.",
                r"P_{\mathrm{tied}}(s) = P(s) \Rightarrow \bar z_j = \bar z_{j'}",
                "test",
                test + "test_the_tied_program_meets_the_free_one_exactly_in_its_phase",
            ),
            Step(
                "The phases come in the order distinct, tied, zero as s grows; the thresholds "
                "are located by bisection between programs that decide them.",
                r"s < s_1:\ \text{distinct},\quad s_1 < s < s_2:\ \text{tied},\quad s > s_2:\ 0",
                "test",
                test + "test_the_phases_come_in_order_with_the_located_thresholds",
            ),
        ]


claim = CEImbalancedMinority()


def _axes(problem: Problem, s: float, classes: tuple[int, ...], change: str) -> list[Boundary]:
    """The boundary at `sqrt(lambda_W lambda_H) = s` along each lambda axis."""
    lam_w, lam_h = float(problem.lambda_w[0]), float(problem.lambda_h)
    return [
        Boundary("lambda", s, classes, change),
        Boundary("lambda_h", s * s / lam_w, classes, change),
        Boundary("lambda_w", s * s / lam_h, classes, change),
    ]
