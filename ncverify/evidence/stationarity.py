"""E1 for a penalised objective: at the claim's predicted point, the value, first order
(the gradient, or one-sided derivatives at a ReLU kink) and second order (the smallest curvature).

Every check compares with a tolerance derived from the dtype (`Tolerances`) and the proven
rounding-error bound of the evaluation; a failed check proves the point is not the claimed
minimiser (a value off, a direction of descent or of negative curvature, kept in the result).
"""

from __future__ import annotations

from dataclasses import dataclass

import mpmath
import numpy as np

from ncverify.evidence.curvature import extreme_curvature
from ncverify.evidence.results import Check, Evidence, PredictedPoint, Tolerances
from ncverify.model.flatten import Flattener
from ncverify.model.objective import Objective, Params, norm

#: random directions (and their negatives) in which E1 takes one-sided derivatives at a kink
KINK_DIRECTIONS = 16
#: How many unit roundoffs a claim's float64 point may sit from the exact minimiser it stands
#: for, entry by entry: the claims build it from exact scalars in a few float64 operations per
#: entry (roots, products, orthonormal frames).  At lambda = 1e-40 the MSE claims' points are off
#: from the optimum by 6 times `perturbation_bound` at one unit roundoff; 64 leaves a margin.
POINT_ROUNDINGS = 64


@dataclass(frozen=True)
class _Order:
    """One order of E1: its check, and the direction it found where it failed."""

    check: Check
    direction: Params | None = None


def predicted_point_evidence(
    objective: Objective,
    point: Params,
    claimed: mpmath.mpf,
    tol: Tolerances,
    curvature_steps: int,
) -> PredictedPoint:
    """The E1 checks at `point` (in `objective`'s parameterisation)."""
    value = _value_check(objective, point, claimed, tol)
    kinks = objective.kinks(point)
    # not differentiable at a kink: a gradient from relu'(0) = 0 would prove nothing
    first = _one_sided(objective, point, kinks, tol) if kinks else _gradient(objective, point, tol)
    orders = [value, first]
    if curvature_steps > 0:
        orders.append(_curvature(objective, point, tol, curvature_steps))
    # the last direction found (curvature over first order, as the descent prefers it)
    descent = next((o.direction for o in reversed(orders) if o.direction is not None), None)
    return PredictedPoint(
        point=point,
        checks=tuple(o.check for o in orders),
        ok=all(o.check.passed for o in orders),
        descent=descent,
    )


def objective_eps(objective: Objective) -> float:
    return float(objective.xp.finfo(objective.dtype).eps)


def _value_check(
    objective: Objective, point: Params, claimed: mpmath.mpf, tol: Tolerances
) -> _Order:
    """`F(point)` against the claimed optimum: within the evaluation error bound and the
    tolerance it holds; beyond them and beyond what rounding the point's entries can move `F`
    by, it fails; in between float64 cannot tell (the check neither passes nor fails)."""
    value = objective.value(point)
    err = objective.error_bound(point)
    allowed = err + tol.objective * abs(float(claimed))
    diff = abs(value - float(claimed))
    detail = (
        f"F(predicted point) = {value:.16g} vs claimed optimum {mpmath.nstr(claimed, 17)} "
        f"(evaluation error bound {err:.2e})"
    )
    if diff <= allowed:
        return _Order(Check(Evidence.PREDICTED_POINT, "E1 objective", True, diff, allowed, detail))
    rounding = objective.perturbation_bound(point, POINT_ROUNDINGS * objective_eps(objective) / 2)
    if diff > allowed + rounding:
        failed = Check(
            Evidence.PREDICTED_POINT, "E1 objective", False, diff, allowed + rounding, detail
        )
        return _Order(failed)
    unresolved = (
        f"{detail}: rounding the point's entries to the dtype can move F by up to "
        f"{rounding:.2e}, so the dtype cannot resolve the claimed optimum here"
    )
    return _Order(Check(Evidence.PREDICTED_POINT, "E1 objective", None, diff, allowed, unresolved))


def _gradient(objective: Objective, point: Params, tol: Tolerances) -> _Order:
    grad_loss, grad_reg = objective.grad_parts(point)
    gnorm = norm(grad_loss.zip_map(grad_reg, lambda a, c: a + c))
    scale = norm(grad_loss) + norm(grad_reg)
    allowed = tol.gradient * scale + 100 * objective_eps(objective)
    detail = (
        f"||grad F|| at the predicted point; the loss and regulariser gradients have norms "
        f"summing to {scale:.3e} and must cancel"
    )
    check = Check(
        Evidence.PREDICTED_POINT, "E1 stationarity", gnorm <= allowed, gnorm, allowed, detail
    )
    return _Order(check)


def _curvature(objective: Objective, point: Params, tol: Tolerances, steps: int) -> _Order:
    curv = extreme_curvature(objective, point, steps=steps)
    allowed = tol.curvature * max(abs(curv.largest), 1e-300)
    ok = curv.smallest >= -allowed
    detail = (
        f"smallest Ritz value of the Hessian after {curv.steps} Lanczos steps (largest "
        f"{curv.largest:.3e}); a negative value proves a descent direction, a non-negative one "
        "only that none was found"
    )
    check = Check(Evidence.PREDICTED_POINT, "E1 curvature", ok, curv.smallest, -allowed, detail)
    # a direction of negative curvature (a descent direction) is kept for the descent
    return _Order(check, None if ok else curv.direction)


def _one_sided(objective: Objective, point: Params, kinks: int, tol: Tolerances) -> _Order:
    """First order at a kink: a local minimiser has `F'(p; v) >= 0` in every direction `v`.

    The one-sided derivatives are taken along the negative gradient of the smooth piece on which
    the kinked ReLUs are off, and along `KINK_DIRECTIONS` seeded random directions and their
    negatives.  A negative one, beyond rounding, proves a direction of descent (kept for the
    descent from the predicted point); none only says that none was found among them.
    """
    xp = objective.xp
    flat = Flattener(objective.problem, xp, objective.columns)
    grad_loss, grad_reg = objective.grad_parts(point)
    scale = norm(grad_loss) + norm(grad_reg)
    piece = flat.flatten(grad_loss.zip_map(grad_reg, lambda a, c: a + c))
    rng = np.random.default_rng(0)
    vectors = [-piece] if float(xp.linalg.vector_norm(piece)) > 0 else []
    for _ in range(KINK_DIRECTIONS):
        r = xp.asarray(rng.normal(size=flat.size), dtype=objective.dtype, device=objective.device)
        vectors += [r, -r]
    slopes = []
    for vec in vectors:
        unit = vec / xp.linalg.vector_norm(vec)
        slopes.append((objective.one_sided_derivative(point, flat.unflatten(unit)), unit))
    worst, direction = min(slopes, key=lambda s: s[0])
    allowed = tol.gradient * scale + 100 * objective_eps(objective)
    ok = worst >= -allowed
    detail = (
        f"{kinks} pre-activations of a ReLU are exactly 0 (the objective has a kink here): "
        f"smallest one-sided directional derivative over {len(vectors)} unit directions (the "
        "negative gradient of the piece with those ReLUs off, and random ones); a negative "
        "value proves a direction of descent, a non-negative one only that none was found"
    )
    check = Check(Evidence.PREDICTED_POINT, "E1 stationarity", ok, worst, -allowed, detail)
    return _Order(check, None if ok else flat.unflatten(direction))
