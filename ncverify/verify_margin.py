"""The evidence for a claim about the max-margin problem (`loss="max-margin"`), a constrained
problem with no objective `F` to descend (docs/theory/ce.md#max-margin).

The same four kinds of evidence as `ncverify.verify`, with the same verdict rules:

- E1: the claim's point, rescaled to margin 1, has the claimed value (exact enclosure), and its
  logits are a KKT point of the smooth piece (`evidence/margin_kkt.py`);
- E2: claim-agnostic runs on the `K x K` logits (`evidence/margin_search.py`), each judged by the
  exact value of its end point at margin 1, lifted to balanced factors;
- E3: the claim's certificate kinds (`max-margin-dual` at one layer);
- counterexamples (a run or a candidate of the claim's search below the claim) are certified by
  the exact value of the point with its features divided by their exact smallest margin
  (`ncverify.model.exact`); E4 compares nothing (the geometry is the logits, checked in E1).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np

from ncverify.backend import to_host
from ncverify.evidence.certificates import CERTIFIERS
from ncverify.evidence.margin_kkt import kkt
from ncverify.evidence.margin_search import multistart
from ncverify.evidence.optimize import Run
from ncverify.limits import StepSkipped
from ncverify.model.exact import certify_point
from ncverify.model.max_margin import class_logits, lift_logits, value_at_margin_one
from ncverify.report import Check, Counterexample, Evidence
from ncverify.verify import (
    _contradiction,
    _logit_structure,
    _stage,
    _timed,
    _verdict,
    compare_certificate,
)

if TYPE_CHECKING:  # pragma: no cover
    from ncverify.report import Report
    from ncverify.verify import Settings

#: KKT residual (relative) below which E1 counts the claim's logits as a KKT point.
KKT_TOL = 1e-8
#: Singular values below this (relative) count as zero when judging a run's end point.
RUN_RANK_TOL = 1e-5


def verify_margin(
    report: Report,
    settings: Settings,
    progress: Callable[[str, int, int], None] | None,
    timing: dict[str, float],
) -> None:
    """Fill `report` (prediction already set) with the evidence and the verdict, and `timing`
    with the seconds of each phase."""
    claim, problem, backend = report.claim, report.problem, report.backend
    pred = report.prediction
    claimed = float(pred.objective)
    _stage(progress, "predicted point (E1)", 0)
    with _timed(timing, "predicted_point"):
        point = claim.minimiser(problem, backend).map(to_host)
        report.predicted_point = point
        e1_ok = _e1(report, point)
    # the claim's structured candidates are exact codes, cheap: tried even without the runs
    with _timed(timing, "search"):
        report.search_candidates = list(claim.search(problem, backend, settings))
    report.notes += [
        str(c.info["summary"]) for c in report.search_candidates if c.info.get("summary")
    ]
    if settings.optimise:
        with _timed(timing, "optimise"):
            report.runs = _runs(report, settings, progress)
        report.notes.append(
            "runs: each end point is judged by its exact value at margin 1, lifted to balanced "
            "factors; half start near the labels, half at random low-rank logits"
        )
    cert = None
    t_cert = time.perf_counter()
    if settings.certificate:
        for kind in claim.certificates:
            _stage(progress, f"certificate ({kind})", 0)
            try:
                cert = CERTIFIERS[kind](problem)
            except StepSkipped as exc:
                report.notes.append(f"certificate {kind} skipped: {exc}")
            if cert is not None:
                break
        if cert is None and claim.certificates:
            report.notes.append(
                f"no certificate applies: {', '.join(claim.certificates)} covers one layer only "
                "(the problem is convex there)"
            )
    if settings.certificate:
        timing["certificate"] = time.perf_counter() - t_cert
    report.certificate = cert
    if cert is not None:
        compare_certificate(report, cert, pred.objective, report.tolerances)
    report.notes.append("E4 skipped: the geometry is the logits, which E1 checks")
    _counterexample(report, claimed)
    report.contradiction = _contradiction(report.runs, cert)
    report.verdict, report.geometry_evidence = _verdict(report, report.runs, cert, e1_ok)


def _e1(report: Report, point) -> bool:  # noqa: ANN001 - host Params
    problem, pred = report.problem, report.prediction
    cert = certify_point(problem, pred, point, value_at_margin_one(problem, point), 0.0)
    lo, hi = cert["objective_enclosure"]
    c_lo, c_hi = cert["claimed_enclosure"]
    allowed = report.tolerances.objective * abs(float(pred.objective))
    diff = abs((lo + hi) / 2 - (c_lo + c_hi) / 2)
    ok_value = math.isfinite(lo) and diff <= allowed
    report.checks.append(
        Check(
            Evidence.PREDICTED_POINT,
            "E1 objective",
            ok_value,
            diff,
            allowed,
            f"the predicted point at margin 1 has the value {cert['objective_digits']} "
            f"({cert['method']}) vs the claimed {cert['claimed_digits']}",
        )
    )
    result = kkt(class_logits(point, problem.counts), problem.counts, problem.depth)
    ok_kkt = result.residual <= KKT_TOL
    extra = (
        f"; null-space block {result.leftover_norm:.3g} (<= 1 for the nuclear norm)"
        if result.leftover_norm is not None
        else ""
    )
    if result.leftover_norm is not None and result.leftover_norm > 1 + KKT_TOL:
        ok_kkt = False
    report.checks.append(
        Check(
            Evidence.PREDICTED_POINT,
            "E1 KKT",
            ok_kkt,
            result.residual,
            KKT_TOL,
            f"relative residual of the KKT system of the smooth piece with {result.active} "
            f"active margins and non-negative multipliers, rank(Z D) = {result.rank}{extra}",
        )
    )
    return ok_value and ok_kkt


def _runs(report: Report, settings: Settings, progress) -> list[Run]:  # noqa: ANN001
    problem, claimed = report.problem, float(report.prediction.objective)
    runs = []
    for r in multistart(problem.counts, problem.depth, settings.restarts, settings.seed):
        point = lift_logits(problem, _low_rank(r.z, problem.counts))
        value = value_at_margin_one(problem, point)
        run = Run(r.index, r.scale, value, float("nan"), 0, 0, r.seconds, point)
        run.error_bound = 1e-12 * abs(value)  # informational: a counterexample is evaluated exactly
        if not math.isfinite(value):
            run.outcome = "failed"
        elif value < claimed * (1 - report.tolerances.at_prediction):
            run.outcome = "better"
        elif abs(value - claimed) <= report.tolerances.at_prediction * abs(claimed):
            run.outcome = "at-prediction"
        else:
            run.outcome = "worse"
        run.structure = _logit_structure(_low_rank(r.z, problem.counts))
        runs.append(run)
        if progress is not None:
            progress("optimiser runs", len(runs), settings.restarts)
    return runs


def _low_rank(z: np.ndarray, counts: tuple[int, ...]) -> np.ndarray:
    """`Z` with the singular values of `Z D` below `RUN_RANK_TOL` (relative) set to zero: the
    runs end a smoothing width away from the low-rank points they approach."""
    d = np.sqrt(np.asarray(counts, dtype=np.float64))
    u, s, vt = np.linalg.svd(z * d[None, :])
    s = np.where(s > RUN_RANK_TOL * s[0], s, 0.0)
    return (u * s) @ vt / d[None, :]


def _counterexample(report: Report, claimed: float) -> None:
    problem, pred = report.problem, report.prediction
    candidates = [
        (r.objective, r.point, f"random-start run {r.index}")
        for r in report.runs
        if r.outcome == "better"
    ]
    for cand in report.search_candidates:
        p = cand.point.map(to_host)
        candidates.append((value_at_margin_one(problem, p), p, cand.origin))
    for value, p, origin in sorted(candidates, key=lambda c: c[0]):
        if not value < claimed:
            continue
        cert = certify_point(problem, pred, p, value, 0.0)
        if not cert["certified"]:
            report.notes.append(
                f"a point from {origin} is below the claimed optimum in floats but not beyond the "
                f"exact enclosures (gap {cert['gap']:.3e}): not counted as a counterexample"
            )
            continue
        report.counterexample = Counterexample(
            objective=value,
            claimed=claimed,
            gap=claimed - value,
            error_bound=cert["bound"],
            origin=origin,
            structure=_logit_structure(class_logits(p, problem.counts)),
            point=p,
            certificate=cert,
        )
        return
