"""The claim interface: what one theorem module provides, and what the engine gives back.

A claim module in `theorems/` exposes `claim`, an instance of a `Claim` subclass with
`id`, `title`, `source`, `status`, and the four methods of docs/adding-a-claim.md: `hypotheses`,
`closed_form`, `minimiser`, `derivation`.  The engine (`ncverify.verify`) does the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any

import mpmath
import numpy as np
import sympy as sp

from ncverify.backend import Backend
from ncverify.model.objective import Params
from ncverify.model.problem import Problem, ProblemError
from ncverify.model.scalar import Regime


@dataclass(frozen=True)
class Boundary:
    """A phase boundary of a claim at an instance: along `axis`, the other parameters as in
    the instance, the regime of `classes` changes at `critical`.

    Axes: `lambda` (every lambda_W and lambda_H tied to one value), `lambda_w` (every layer's
    lambda_W set to one value), `lambda_h`, `lambda_b`.  Reports, sweep plots and the claim
    pages draw boundaries from these fields alone.
    """

    axis: str
    critical: float
    classes: tuple[int, ...]
    change: str  # in words, e.g. "collapse beyond it"


@dataclass(frozen=True)
class Quantity:
    """A named number of a claim's closed form (e.g. `rho`), shown and serialised as is."""

    name: str
    value: float | None
    exact: str | None
    meaning: str


@dataclass(frozen=True)
class Phase:
    """Where an instance sits in a claim's phase diagram."""

    boundaries: tuple[Boundary, ...] = ()
    # |log(lambda / lambda*)| to the nearest boundary (log of the tied lambda), where defined
    distance: float | None = None
    quantities: tuple[Quantity, ...] = ()

    def quantity(self, name: str) -> Quantity:
        for q in self.quantities:
            if q.name == name:
                return q
        raise KeyError(name)

    def on(self, axis: str) -> tuple[Boundary, ...]:
        """The boundaries along `axis`."""
        return tuple(b for b in self.boundaries if b.axis == axis)


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
    regime: Regime
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
    geometry: str  # in words: "orthogonal frame", "simplex ETF", "zero", ...
    zero: bool  # the predicted minimiser is the zero solution (W Hbar = 0): E4 checks that
    notes: tuple[str, ...] = ()
    phase: Phase = field(default_factory=Phase)
    objective_form: str = ""  # the closed-form expression the optimum comes from, in words
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
        """The paper's synthetic configuration: K = 4, n = 100, M = 3, width 64, every lambda
        5e-4 (lambda_b too, where the bias is regularised)."""
        return Problem.build(
            classes=4,
            samples=100,
            depth=3,
            width=64,
            lambda_w="5e-4",
            lambda_h="5e-4",
            lambda_b="5e-4" if self.bias == "regularised" else None,
            loss=self.loss,
            bias=self.bias,
        )

    def stated_hypotheses(self) -> list[str]:
        """The claim's hypotheses in words, as `hypotheses` states them: collected from
        variants of the default instance that change one thing each (the loss, the bias, the
        balance of the counts, the number of classes, the activation, the widths, the depth), so
        that they cannot drift from the code."""
        d = self.default_problem()
        changes: list[dict[str, Any]] = [{"loss": loss} for loss in ("mse", "ce")]
        changes += [
            {"bias": b, "lambda_b": Fraction(1, 2000) if b == "regularised" else None}
            for b in ("none", "free", "regularised")
        ]
        changes.append({"counts": tuple(d.counts[0] * (k + 1) for k in range(d.K))})
        changes += [{"counts": (d.counts[0],) * k} for k in (2, 3)]
        changes.append({"activation": "relu" if d.activation == "linear" else "linear"})
        changes.append({"widths": (1,) * d.depth})
        for depth in (1, 2, 5):
            changes.append(
                {
                    "depth": depth,
                    "widths": (d.widths[0],) * depth,
                    "lambda_w": (d.lambda_w[0],) * depth,
                }
            )
        found: list[str] = []
        for change in changes:
            try:
                problem = replace(d, **change)
            except ProblemError:  # not an instance at all (e.g. a max-margin problem with a bias)
                continue
            found += [h for h in self.hypotheses(problem) if h not in found]
        return found

    def thresholds_text(self) -> str:
        """The claim's thresholds in words, for `show` and the claim's page ("" for none)."""
        return ""

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


def to_backend(point: Params, backend: Backend) -> Params:
    return point.map(lambda a: backend.asarray(np.asarray(a, dtype=np.float64)))
