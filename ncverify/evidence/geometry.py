"""E4: the geometry of the runs against the claimed geometry (NC metrics of every layer).

The run at the prediction that matches the predicted point's geometry best is judged (the best
run where none is at the prediction).  The runs stop at a finite gradient tolerance, so their
geometry is accurate only to what the conditioning allows (flat directions when the lambdas
differ by orders of magnitude): one run at the prediction that matches suffices, and a mismatch
refutes only beyond `Tolerances.geometry_refutes`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from ncverify.claim import Prediction
from ncverify.evidence.metrics import nc_metrics, worst
from ncverify.evidence.optimize import Run
from ncverify.evidence.results import Check, Evidence, GeometryResult, Tolerances
from ncverify.model.objective import Objective, Params

#: Runs at the prediction whose geometry E4 compares (the lowest objectives first).
E4_RUNS = 8


def geometry_evidence(
    objective: Objective,
    runs: Sequence[Run],
    point: Params | None,
    prediction: Prediction,
    tol: Tolerances,
) -> GeometryResult:
    """E4 over the classified `runs` against the predicted `point` (both in `objective`'s
    parameterisation)."""
    finite = [r for r in runs if math.isfinite(r.objective)]
    if not finite or point is None:
        return GeometryResult()
    at = sorted((r for r in finite if r.outcome == "at-prediction"), key=lambda r: r.objective)
    judged = at[:E4_RUNS] or [min(finite, key=lambda r: r.objective)]
    scored, notes = [], []
    for run in judged:
        try:
            rows = nc_metrics(objective, run.point, point)
        except Exception as exc:  # noqa: BLE001 - a metric failure is reported, not raised
            notes.append(f"metrics could not be computed: {exc}")
            continue
        scored.append((_error(rows, prediction), run, rows))
    if not scored:
        return GeometryResult(notes=tuple(notes))
    _, run, rows = min(scored, key=lambda s: math.inf if s[0] is None else s[0])
    checks = _judge(rows, prediction, run, tol, _explained(objective, point, run, prediction))
    return GeometryResult(checks=checks, metrics=tuple(rows), notes=tuple(notes))


def _error(rows: list[dict], pred: Prediction) -> float | None:
    """The largest NC1 spread, NC2/NC3 distance and relative error over all layers (`||W Hbar||` where the
    claim predicts the zero solution)."""
    if pred.zero:
        return max((r.get("norm_WH") or 0.0) for r in rows) if rows else 0.0
    values = [v for v in (worst(rows, "nc_"), worst(rows, "rel_")) if v is not None]
    return max(values) if values else None


def _explained(objective: Objective, point: Params, run: Run, pred: Prediction) -> float:
    """The geometry error that the run's excess value alone can explain.

    Why: along the directions only the weight decay sees (rebalancing the layers, turning a
    hidden basis) the curvature is as small as the smallest lambda.  A run whose value exceeds
    the optimum by `delta` may therefore sit `sqrt(2 delta / lambda_min)` away from a minimiser
    in those directions, a relative distance `sqrt(2 delta / (lambda_min ||x||^2))` with `x` the
    predicted point: a geometry error of that size is the excess, not another minimiser.  At
    lambda = 1e-8 runs 3e-13 above the optimum ended 1.7e-3 off the ETF and refuted a claim."""
    delta = max(run.objective - float(pred.objective), 0.0) + run.error_bound
    smallest = min(min(objective.lambda_w), objective.lambda_h)
    size = sum(float(objective.xp.sum(a * a)) for a in point.arrays())
    if smallest <= 0 or size <= 0:
        return math.inf
    return math.sqrt(2 * delta / (smallest * size))


def _judge(
    rows: list[dict], pred: Prediction, best: Run, tol: Tolerances, explained: float
) -> tuple[Check, ...]:
    skipped = (
        "the claim says the minimiser is not unique"
        if not pred.unique
        else "the best run did not reach the prediction"
        if best.outcome != "at-prediction"
        else _unresolved(best, pred, tol)
    )
    if skipped is not None:
        detail = f"skipped: {skipped}"
        return (Check(Evidence.GEOMETRY, "E4 geometry", None, None, tol.geometry, detail),)
    if pred.zero:
        size = max((r.get("norm_WH") or 0.0) for r in rows) if rows else 0.0
        detail = "the best run should be the zero solution: largest ||W Hbar||"
        return (graded(size, detail, tol, explained),)
    d, r = worst(rows, "nc_"), worst(rows, "rel_")
    value = max(v for v in (d, r) if v is not None) if (d is not None or r is not None) else None
    if value is None:
        return (Check(Evidence.GEOMETRY, "E4 geometry", False, None, tol.geometry, "no metric"),)
    detail = (
        f"largest NC1 spread and NC2/NC3 distance ({d:.2e}) and relative error ({r:.2e}) over "
        f"all layers against the claimed {pred.geometry}"
    )
    return (graded(value, detail, tol, explained),)


#: How far beyond what the run's excess value explains a geometry error must lie to refute.
EXPLAINED_MARGIN = 10.0


def _unresolved(run: Run, pred: Prediction, tol: Tolerances) -> str | None:
    """Why the run's geometry says nothing, where its value is not resolved: its evaluation
    error exceeds the precision (`tol.at_prediction`, relative) to which a run must reach the
    claimed optimum for its geometry to be that of a minimiser.  At a tiny lambda the optimum
    is far below the size of the loss's own terms, and runs whose values all agree within
    rounding end at geometries that differ by up to 1 (a false refutation, before)."""
    claimed = abs(float(pred.objective))
    if run.error_bound <= tol.at_prediction * claimed:
        return None
    return (
        f"the runs' values are not resolved: the evaluation error bound "
        f"{run.error_bound:.2e} is {run.error_bound / claimed:.1e} of the claimed optimum, above "
        f"the {tol.at_prediction:.0e} to which a run must reach it for its geometry to count"
    )


def graded(value: float, detail: str, tol: Tolerances, explained: float = 0.0) -> Check:
    """Within `tol.geometry` the geometry matches; beyond `tol.geometry_refutes`, and beyond
    `EXPLAINED_MARGIN` times what the run's excess value explains (`_explained`), the run has
    another one (a refutation); in between the runs are not accurate enough to tell, and the
    check neither passes nor fails."""
    if value <= tol.geometry:
        return Check(Evidence.GEOMETRY, "E4 geometry", True, value, tol.geometry, detail)
    line = max(tol.geometry_refutes, EXPLAINED_MARGIN * explained)
    if value > line:
        return Check(Evidence.GEOMETRY, "E4 geometry", False, value, line, detail)
    if value > tol.geometry_refutes:
        flat = (
            f"{detail}: the run's value above the optimum explains a geometry error up to "
            f"{explained:.1e} along the directions only the weight decay sees, and this one is "
            f"within {EXPLAINED_MARGIN:.0f} times that"
        )
        return Check(Evidence.GEOMETRY, "E4 geometry", None, value, line, flat)
    undecided = (
        f"{detail}: above {tol.geometry:.0e} but within {tol.geometry_refutes:.0e}, the runs "
        "are not accurate enough to tell"
    )
    return Check(Evidence.GEOMETRY, "E4 geometry", None, value, tol.geometry, undecided)
