"""The counterexample: of every point that beats the claimed optimum in floating point (a run,
a candidate of the claim's own search, a certificate's own point, a descent from a predicted
point that E1 rejected), the best one that the exact certificate of its kind confirms, preferring
one evaluated in exact or interval arithmetic over one certified with a float error bound."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ncverify.claim import Candidate
from ncverify.evidence.certificates import Certificate
from ncverify.evidence.optimize import Run
from ncverify.evidence.results import CandidatePoint, PointValue, PredictedPoint
from ncverify.kinds import KindSession
from ncverify.report import Counterexample


@dataclass(frozen=True)
class Found:
    """The counterexample (None where nothing was confirmed) and what was said on the way."""

    counterexample: Counterexample | None
    notes: tuple[str, ...] = ()


def beaten_by_search(session: KindSession, candidates: Sequence[Candidate]) -> bool:
    """Does a structured candidate beat the claimed optimum beyond its float error bound?"""
    return bool(_searched(session, candidates))


def find(
    session: KindSession,
    runs: Sequence[Run],
    candidates: Sequence[Candidate],
    cert: Certificate | None,
    e1: PredictedPoint,
    exact_values: bool = False,
) -> Found:
    """The best confirmed counterexample among every point below the claimed optimum (its error
    bound: that of its float value, or its certificate's where the kind's values are exact)."""
    points = _below(session, runs, candidates, cert)
    if not e1.ok and not points:
        descended = session.descent_from_prediction(e1)
        points += [descended] if descended is not None else []
    confirmed, notes = [], []
    for cand in sorted(points, key=lambda c: c.value.value):
        full = session.lifted(cand.point)
        try:
            certificate = session.certify(full, cand.value)
        except Exception as exc:  # noqa: BLE001 - reported; the float comparison still stands
            notes.append(f"the high-precision certificate could not be computed: {exc}")
            certificate = None
        if certificate is not None and not certificate.certified:
            notes.append(
                f"a point from {cand.origin} beats the claimed optimum in floating point but not "
                f"beyond the high-precision bound (gap {certificate.gap:.3e}, bound "
                f"{certificate.bound:.3e}): not counted as a counterexample"
            )
            continue
        exact = certificate is not None and certificate.exact
        confirmed.append((not exact, cand.value.value, cand, full, certificate))
    if not confirmed:
        return Found(None, tuple(notes))
    _, _, cand, full, certificate = min(confirmed, key=lambda c: (c[0], c[1]))
    claimed = float(session.claimed)
    found = Counterexample(
        objective=cand.value.value,
        claimed=claimed,
        gap=claimed - cand.value.value,
        error_bound=certificate.bound if exact_values and certificate else cand.value.error,
        origin=cand.origin,
        structure=session.structure(cand.point),
        point=full,
        certificate=certificate,
    )
    return Found(found, tuple(notes))


def _below(
    session: KindSession,
    runs: Sequence[Run],
    candidates: Sequence[Candidate],
    cert: Certificate | None,
) -> list[CandidatePoint]:
    """Every point below the claimed optimum in floating point, beyond its error bound."""
    claimed = float(session.claimed)
    points = [
        CandidatePoint(
            PointValue(r.objective, r.error_bound),
            r.point,
            f"random-start run {r.index} (scale {r.scale})",
        )
        for r in runs
        if r.outcome == "better"
    ]
    points += _searched(session, candidates)
    if cert is not None and cert.point is not None and cert.primal is not None:
        if cert.primal < claimed - cert.primal_error:
            value = PointValue(cert.primal, cert.primal_error)
            points.append(CandidatePoint(value, cert.point, f"{cert.kind} certificate's minimiser"))
    return points


def _searched(session: KindSession, candidates: Sequence[Candidate]) -> list[CandidatePoint]:
    claimed = float(session.claimed)
    points = []
    for cand in candidates:
        p = session.reduced(cand.point)
        value = session.value(p)
        if value.value < claimed - value.error:
            points.append(CandidatePoint(value, p, cand.origin))
    return points
