"""The verdict rules, once (docs/verdicts.md): what the evidence of a verification supports.

`certified` needs E1, a rigorous certificate that determines the optimum and matches it, a run
at the prediction (or a certificate that fixes the minimiser set) and none better; without a
certificate the same is `consistent`; any point below the claimed optimum by more than its
proven evaluation error, a failed E1, a certificate contradicting the claimed value or a wrong
geometry at the optimum is `refuted`; no run at the prediction (and nothing better) or failed
numerics is `inconclusive`.  A run below a rigorous lower bound is a contradiction inside the
verifier, never a verdict.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import mpmath

from ncverify.claim import Prediction
from ncverify.evidence.certificates import Certificate
from ncverify.evidence.optimize import Run
from ncverify.evidence.results import Check, Evidence, Tolerances
from ncverify.report import GeometryEvidence, Verdict


@dataclass(frozen=True)
class Compared:
    """E3: the claimed optimum against the certificate's (exact) bound."""

    check: Check
    claimed_minus_bound: float


def compare_certificate(cert: Certificate, claimed: mpmath.mpf, tol: Tolerances) -> Compared:
    """E3: the claimed optimum matches the certificate's bound; it fails below the bound, or
    above a bound that pins the optimum (`pins`); above a looser bound it decides nothing."""
    exact = cert.bound_exact if cert.bound_exact is not None else mpmath.mpf(cert.bound)
    diff = float(claimed - exact)
    allowed = tol.certificate * abs(float(exact))
    detail = f"claimed optimum minus the {cert.kind} optimum ({mpmath.nstr(exact, 17)})"
    passed: bool | None = abs(diff) <= allowed
    if not passed and diff > 0 and not pins(cert, tol):
        passed = None
        detail = (
            f"{detail}: above this bound, but the certificate's bracket [bound, primal] is wider "
            f"than the tolerance (relative gap {cert.gap:.2e}), so it decides nothing"
        )
    check = Check(Evidence.CERTIFICATE, "E3 certificate", passed, diff, allowed, detail)
    return Compared(check, diff)


def pins(cert: Certificate, tol: Tolerances) -> bool:
    """An exact certificate pins the optimum only when its own bracket [bound, primal] is
    narrower than the tolerance (a convex-dual bound with a loose gap pins nothing)."""
    return cert.exact and (cert.gap is None or cert.gap <= tol.certificate)


def contradiction(runs: Sequence[Run], cert: Certificate | None) -> str | None:
    """A run below a rigorous lower bound by more than its proven error: a verifier bug."""
    if cert is None or not cert.rigorous:
        return None
    for run in runs:
        if math.isfinite(run.objective) and run.objective < cert.bound - run.error_bound:
            return (
                f"random-start run {run.index} ends at {run.objective!r}, below the rigorous "
                f"{cert.kind} lower bound {cert.bound!r} by more than its evaluation error "
                f"bound {run.error_bound:.3e}: the verifier contradicts itself; no verdict is "
                "trustworthy, please report this instance"
            )
    return None


@dataclass(frozen=True)
class Evidences:
    """What the verdict reads: every check, the classified runs, the certificate, whether E1
    holds, and the counterexample's and the contradiction's presence."""

    checks: tuple[Check, ...]
    runs: tuple[Run, ...]
    certificate: Certificate | None
    e1_ok: bool
    refuted_by_point: bool  # a certified counterexample exists
    contradiction: bool
    claimed_minus_bound: float | None
    prediction: Prediction
    tol: Tolerances
    searched_to_prediction: bool = False  # a start of the batched search ended at the prediction

    def failed(self) -> set[Evidence]:
        return {c.evidence for c in self.checks if c.passed is False}


def value_proven(ev: Evidences) -> bool:
    """The claimed optimum is proven: E1 holds and a rigorous certificate that determines the
    optimum (exact, with its own bracket inside the tolerance) matches it."""
    cert = ev.certificate
    if cert is None or not (cert.rigorous and cert.exact) or not ev.e1_ok:
        return False
    if cert.gap is not None and cert.gap > ev.tol.certificate:
        return False
    return any(c.evidence == Evidence.CERTIFICATE and c.passed is True for c in ev.checks)


def verdict(ev: Evidences) -> tuple[Verdict, GeometryEvidence | None]:
    """The verdict and, where the claim holds, how its geometry is established."""
    failed = ev.failed()
    if ev.refuted_by_point or Evidence.PREDICTED_POINT in failed:
        return Verdict.REFUTED, None
    if Evidence.CERTIFICATE in failed and ev.certificate is not None:
        return _against_certificate(ev), None
    at = [r for r in ev.runs if r.outcome == "at-prediction"]
    if Evidence.GEOMETRY in failed and at:
        return Verdict.REFUTED, None
    if ev.contradiction:
        return Verdict.INCONCLUSIVE, None
    return _holding(ev, bool(at))


def _against_certificate(ev: Evidences) -> Verdict:
    cert = ev.certificate
    assert cert is not None
    below_bound = ev.claimed_minus_bound is not None and ev.claimed_minus_bound < 0
    if cert.rigorous and (below_bound or pins(cert, ev.tol)):
        # a rigorous lower bound above the claimed value, or an exact optimum that differs
        return Verdict.REFUTED
    return Verdict.INCONCLUSIVE  # a loose bound proves nothing either way


def _holding(ev: Evidences, at: bool) -> tuple[Verdict, GeometryEvidence | None]:
    """Nothing refutes the claim: how much the evidence supports it.  `at`: a random-start run
    reached the prediction (E4 can compare its geometry); `ev.searched_to_prediction`: a start
    of the batched search did (its end supports the value, not the geometry)."""
    unique = ev.prediction.unique
    geometry_seen = any(c.evidence == Evidence.GEOMETRY and c.passed for c in ev.checks)
    if at and (geometry_seen or not unique):  # E4 matched a run at the prediction
        # certified only where E3 matched the value: above a loose bound (a spent budget, a
        # relaxation's gap) it decided nothing
        matched = any(c.evidence == Evidence.CERTIFICATE and c.passed is True for c in ev.checks)
        verdict_ = (
            Verdict.CERTIFIED if ev.certificate is not None and matched else Verdict.CONSISTENT
        )
        return verdict_, GeometryEvidence.RUN if unique else GeometryEvidence.NOT_UNIQUE
    # no run reached the prediction (or none matched its geometry closely enough to tell), or
    # none ran: only a certificate can still decide the claim
    proven = value_proven(ev)
    # the search reaches the claimed value and nothing beats it; neither geometry nor value is
    # proven
    if (at or ev.searched_to_prediction) and not proven:
        return Verdict.CONSISTENT, None
    if ev.runs and (not proven or any(r.outcome == "failed" for r in ev.runs)):
        return Verdict.INCONCLUSIVE, None
    if not proven and not ev.e1_ok:  # E1 skipped (too large), no runs: no evidence either way
        return Verdict.INCONCLUSIVE, None
    if not proven:  # no runs and no proven value: E1 alone, nothing contradicts the claim
        return Verdict.CONSISTENT, None
    if not unique:
        return Verdict.CERTIFIED, GeometryEvidence.NOT_UNIQUE
    if ev.certificate is not None and ev.certificate.unique:
        return Verdict.CERTIFIED, GeometryEvidence.CERTIFIED_UNIQUE
    return Verdict.CONSISTENT, GeometryEvidence.ATTAINED
