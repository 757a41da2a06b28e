"""ncverify: a symbolic-numeric verifier for Neural Collapse theorems in deep linear networks."""

from __future__ import annotations

from .backend import Backend
from .claim import Claim, Prediction, Step
from .problem import Problem, ProblemError
from .verify import Settings, verify

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
