"""ncverify: a symbolic-numeric verifier for Neural Collapse theorems in deep linear networks."""

from __future__ import annotations

from ncverify.backend import Backend
from ncverify.claim import Claim, Prediction, Step
from ncverify.model.problem import Problem, ProblemError
from ncverify.verify import Settings, verify

__all__ = [
    "Backend",
    "Claim",
    "Prediction",
    "Problem",
    "ProblemError",
    "Settings",
    "Step",
    "verify",
]
