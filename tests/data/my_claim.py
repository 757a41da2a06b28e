r"""Balanced classes, no bias, MSE: the built-in claim `mse-balanced-biasfree`, checked from outside.

A researcher's own module, which ncverify knows nothing of until it is named on the command line
(`ncverify check tests/data/my_claim.py ...`, or `my_claim:claim` on `PYTHONPATH`): its `claim`
delegates every piece of mathematics to the built-in claim under a new id, so that the verdicts
of the two must agree on every instance (`tests/test_outside_claims.py`).  `wrong` is a claim
that is false wherever the weight decay is small: that the zero solution is always optimal.
"""

from __future__ import annotations

import mpmath
import numpy as np
import sympy as sp

import theorems
from ncverify.backend import Backend
from ncverify.claim import Claim, ClassPrediction, Prediction, Step, to_backend
from ncverify.model.objective import Params
from ncverify.model.problem import Problem
from ncverify.model.scalar import Regime

BUILTIN = theorems.get("mse-balanced-biasfree")


class MyBalancedBiasFree(Claim):
    """The built-in claim's mathematics under another id: an honest claim."""

    id = "my-balanced-biasfree"
    title = "Balanced MSE without bias (the built-in claim, from outside)"
    source = BUILTIN.source
    status = BUILTIN.status
    loss = "mse"
    bias = "none"
    certificates = BUILTIN.certificates

    def hypotheses(self, problem: Problem) -> list[str]:
        return BUILTIN.hypotheses(problem)

    def closed_form(self, problem: Problem) -> Prediction:
        return BUILTIN.closed_form(problem)

    def minimiser(self, problem: Problem, backend: Backend) -> Params:
        return BUILTIN.minimiser(problem, backend)

    def derivation(self) -> list[Step]:
        return BUILTIN.derivation()


class AlwaysZero(Claim):
    """A wrong claim: the zero solution, with value 1/2, is the global minimiser at every lambda
    (true only beyond the collapse threshold)."""

    id = "my-always-zero"
    title = "Balanced MSE without bias: always the zero solution (wrong)"
    source = "nobody: a deliberately wrong claim for the tests"
    status = "false"
    loss = "mse"
    bias = "none"

    def hypotheses(self, problem: Problem) -> list[str]:
        return BUILTIN.hypotheses(problem)

    def closed_form(self, problem: Problem) -> Prediction:
        classes = tuple(
            ClassPrediction(n, Regime.COLLAPSED, sp.Integer(0), 0.0, 0.0) for n in problem.counts
        )
        return Prediction(
            objective=mpmath.mpf(1) / 2,  # ||Y||^2 / (2N) at W H = 0
            classes=classes,
            bias=None,
            unique=True,
            geometry="zero",
            zero=True,
            objective_form="1/2",
        )

    def minimiser(self, problem: Problem, backend: Backend) -> Params:
        shapes = problem.layer_shapes
        layers = tuple(np.zeros(shape) for shape in shapes)
        return to_backend(Params(layers, np.zeros((problem.widths[0], problem.N)), None), backend)

    def derivation(self) -> list[Step]:
        return [Step("The zero solution is optimal.", r"W H = 0", "lemma", "nowhere")]


claim = MyBalancedBiasFree()
wrong = AlwaysZero()
