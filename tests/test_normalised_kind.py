"""The normalised kind (`ncverify.kinds.normalised`) as the pipeline uses it, with no claim: a
session opened on a prediction made here (the value of the simplex ETF, computed in this file)
must accept the ETF at E1, reject a point that is not stationary, classify runs against the
prediction, and certify exactly a point that beats a prediction set too high."""

from __future__ import annotations

import math

import mpmath
import numpy as np
import pytest

from ncverify.backend import Backend
from ncverify.claim import Prediction
from ncverify.evidence.results import Tolerances
from ncverify.kinds import kind_mismatch, kind_of
from ncverify.model.objective import Params
from ncverify.model.problem import Problem
from ncverify.pipeline import Settings

NUMPY = Backend.create()
TOL = Tolerances.for_eps(NUMPY.eps)


def problem(k: int, r_h: str, d: int | None = None) -> Problem:
    return Problem.build(
        classes=k,
        samples=3,
        depth=1,
        width=d or max(2, k - 1),
        loss="normalised-ce",
        radius_w=1,
        radius_h=r_h,
    )


def etf(p: Problem) -> Params:
    """The simplex ETF built here: classifier rows `r_W u_k`, features `r_H u_k` (every sample
    of class k), `u_k` the unit vertices of a centred simplex."""
    k, d = p.K, p.widths[0]
    centred = np.eye(k) - np.ones((k, k)) / k
    vals, vecs = np.linalg.eigh(centred)
    basis = vecs[:, vals > 0.5]  # K x (K - 1), orthonormal, orthogonal to the ones
    u = np.zeros((k, d))
    u[:, : k - 1] = basis / np.linalg.norm(basis, axis=1, keepdims=True)
    w = float(p.radius_w) * u
    h = float(p.radius_h) * np.repeat(u.T, p.counts, axis=1)
    return Params((w,), h)


def prediction(p: Problem, value: float) -> Prediction:
    return Prediction(objective=mpmath.mpf(value), unique=True, geometry="simplex ETF", zero=False)


def etf_value(p: Problem) -> float:
    c, k = float(p.radius_w * p.radius_h), p.K
    return math.log1p((k - 1) * math.exp(-c * k / (k - 1)))


def session(p: Problem, value: float, predicted: Params | None = None):  # noqa: ANN201
    return kind_of(p.loss).open(p, NUMPY, prediction(p, value), predicted, TOL, Settings().runs())


@pytest.mark.parametrize(("k", "r_h"), [(2, "3"), (3, "2"), (4, "5")])
def test_the_etf_passes_e1_and_the_runs_reach_it(k: int, r_h: str) -> None:
    p = problem(k, r_h)
    point = etf(p)
    s = session(p, etf_value(p), point)
    e1 = s.predicted_point(point)
    assert e1.ok, [c.detail for c in e1.checks]
    runs = s.runs(4, 2000, None)
    assert {r.outcome for r in runs} == {"at-prediction"}
    geometry = s.geometry(e1, runs)
    assert [c.passed for c in geometry.checks] == [True]


def test_a_rotated_etf_is_the_same_geometry_and_a_perturbed_one_is_not_stationary() -> None:
    p = problem(3, "2", d=3)
    point = etf(p)
    q, _ = np.linalg.qr(np.random.default_rng(0).standard_normal((3, 3)))
    rotated = Params((point.Ws[0] @ q,), q.T @ point.H)
    s = session(p, etf_value(p), rotated)
    assert s.predicted_point(rotated).ok
    bent = Params((point.Ws[0] + 0.05 * np.eye(3)[[0, 1, 2]],), point.H)
    e1 = session(p, etf_value(p), bent).predicted_point(bent)
    assert not e1.ok


def test_a_prediction_set_too_high_is_beaten_and_the_point_is_certified_exactly() -> None:
    p = problem(3, "2")
    wrong = etf_value(p) * 1.01
    s = session(p, wrong)
    runs = s.runs(2, 2000, None)
    assert {r.outcome for r in runs} == {"better"}
    full = s.lifted(runs[0].point)
    cert = s.certify(full, s.value(runs[0].point))
    assert cert.certified and cert.exact and cert.gap > cert.bound > 0


def test_a_claim_of_another_kind_is_not_probed_here() -> None:
    why = kind_mismatch("ce", "normalised-ce")
    assert why is not None and "different optima" in why
    assert kind_mismatch("normalised-ce", "normalised-ce") is None
