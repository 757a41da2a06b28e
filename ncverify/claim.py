"""The claim interface: what one theorem module provides, and what the engine gives back.

A claim module in `theorems/` exposes `claim`, an instance of a `Claim` subclass with
`id`, `title`, `source`, `status`, and the four methods of DESIGN.md: `hypotheses`,
`closed_form`, `minimiser`, `derivation`.  The engine (`ncverify.verify`) does the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import mpmath
import numpy as np
import sympy as sp

from .backend import Backend
from .objective import Params
from .problem import Problem

REGIMES = ("alive", "collapsed", "tie", "bottleneck")


@dataclass(frozen=True)
class Step:
    """One step of a worked derivation.

    `check` says how the step is checked: `"sympy"` (the `identity` must simplify to zero),
    `"test"` (the named test checks it on random instances) or `"lemma"` (it cites a lemma
    the test suite checks; `reference` names the test).
    """

    text: str
    formula: str
    check: str
    reference: str
    identity: Callable[[], sp.Expr] | None = None

    def verify_identity(self) -> bool:
        """True when the sympy identity of this step holds exactly."""
        if self.identity is None:
            return self.check != "sympy"
        return sp.simplify(self.identity()) == 0


@dataclass(frozen=True)
class ClassPrediction:
    """What a claim says about one class."""

    count: int
    regime: str
    gain: sp.Expr  # exact
    length_w: float  # ||w_k||, row k of W_M ... W_1
    length_h: float  # ||hbar_k||
    critical_lambda: float | None = None  # tied-lambda phase boundary, where the claim has one

    @property
    def gain_float(self) -> float:
        return float(sp.N(self.gain, 30))


@dataclass(frozen=True)
class Prediction:
    """The symbolic prediction of a claim for one instance."""

    objective: mpmath.mpf  # the claimed optimal value, high precision
    classes: tuple[ClassPrediction, ...]
    bias: tuple[float, ...] | None
    unique: bool  # is the geometry unique (up to orthogonal changes of hidden bases)?
    geometry: str  # "orthogonal frame", "simplex ETF", "zero", ...
    notes: tuple[str, ...] = ()
    phase: dict[str, Any] = field(default_factory=dict)
    objective_exact: str = ""  # a closed-form expression of the optimum, for the report
    # a rigorous enclosure (lo, hi) of the claimed optimum, where the claim proves one
    # (interval arithmetic); counterexamples are certified against it
    objective_enclosure: tuple[mpmath.mpf, mpmath.mpf] | None = None

    @property
    def objective_float(self) -> float:
        return float(self.objective)


@dataclass(frozen=True)
class Candidate:
    """A structured point proposed by a claim's own counterexample search."""

    point: Params
    origin: str
    info: dict[str, Any] = field(default_factory=dict)


class Claim:
    """Base class of a claim; subclasses fill in the mathematics."""

    id: str = ""
    title: str = ""
    source: str = ""
    status: str = ""
    loss: str = "mse"
    bias: str = "none"
    certificates: tuple[str, ...] = ()

    def hypotheses(self, problem: Problem) -> list[str]:
        """Unmet hypotheses in plain words; empty when the claim applies to `problem`."""
        raise NotImplementedError

    def closed_form(self, problem: Problem) -> Prediction:
        raise NotImplementedError

    def minimiser(self, problem: Problem, backend: Backend) -> Params:
        raise NotImplementedError

    def derivation(self) -> list[Step]:
        raise NotImplementedError

    def search(self, problem: Problem, backend: Backend, settings: Any) -> list[Candidate]:
        """Claim-specific counterexample candidates (structured points), none by default.

        Each candidate is a full point on `backend`; the engine evaluates it on the full
        objective with its rounding-error bound, exactly like an optimiser run.
        """
        return []

    def default_problem(self) -> Problem:
        return Problem.build(
            classes=4, samples=100, depth=3, width=64, loss=self.loss, bias=self.bias
        )

    def statement(self) -> str:
        """The claim in words: the first paragraph of its module's docstring."""
        import sys

        doc = sys.modules[type(self).__module__].__doc__ or ""
        return doc.strip().split("\n\n")[0]

    def describe(self) -> dict[str, object]:
        return {
            "id": self.id,
            "title": self.title,
            "source": self.source,
            "status": self.status,
            "loss": self.loss,
            "bias": self.bias,
            "certificates": list(self.certificates),
        }


def host_params(point: Params, backend: Backend) -> Params:
    return point.map(backend.to_numpy)


def to_backend(point: Params, backend: Backend) -> Params:
    return point.map(lambda a: backend.asarray(np.asarray(a, dtype=np.float64)))
