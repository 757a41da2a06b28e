"""The claim interface: what one theorem module provides, and what the engine gives back.

A claim module in `theorems/` exposes `claim`, an instance of a `Claim` subclass with
`id`, `title`, `source`, `status`, and the four methods of docs/adding-a-claim.md: `hypotheses`,
`closed_form`, `minimiser`, `derivation`.  The engine (`ncverify.verify`) does the rest.  A
claim may also declare its `truth_region` (`TruthRegion`): the instances on which a theorem or
an exact certificate establishes it, which `scripts/soak.py` draws from.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any

import mpmath
import numpy as np
import sympy as sp

from ncverify.backend import Backend
from ncverify.model.objective import Params
from ncverify.model.problem import Loss, Problem, ProblemError
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


@dataclass(frozen=True, kw_only=True)
class Prediction:
    """The symbolic prediction of a claim for one instance: its value, and where the claim has
    them, what it says of each class (none: a claim about the value and a geometry only)."""

    objective: mpmath.mpf  # the claimed optimal value, high precision
    classes: tuple[ClassPrediction, ...] = ()
    bias: tuple[float, ...] | None = None
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


class NoPrediction(ValueError):
    """Raised by `Claim.closed_form` for a problem outside its hypotheses where the claim has
    nothing to predict (a probe of a one-layer program at depth): one sentence saying why.  A
    probe then says `not-applicable` with that sentence, instead of checking a guess."""


@dataclass(frozen=True)
class SearchBudget:
    """What a claim's own counterexample search may do: its seed, and how many random starts
    it may add to its structured candidates (0 where the random-start runs are off)."""

    seed: int = 0
    random_starts: int = 8


@dataclass(frozen=True)
class Candidate:
    """A structured point proposed by a claim's own counterexample search."""

    point: Params
    origin: str
    info: dict[str, Any] = field(default_factory=dict)


#: What can establish a claim on its truth region (`TruthRegion.basis`).
BASES = ("proven", "certified", "none")

#: Certificate kinds that determine the optimum itself wherever they apply (`Certificate.exact`):
#: the separable reduction (MSE, no bias or a free one, any depth), the one-layer max-margin dual,
#: and the one-layer convex dual when every width is at least `K` (below that its program drops
#: the rank constraint and is only a relaxation).  A region with basis `"certified"` rests on one.
EXACT_CERTIFICATES = ("separable-reduction", "convex-dual", "max-margin-dual")

#: The certificate kinds above that exist at one layer only, and those that need `d >= K`.
ONE_LAYER_CERTIFICATES = ("convex-dual", "max-margin-dual")
WIDE_CERTIFICATES = ("convex-dual",)

Range = tuple[int, int]
LambdaRange = tuple[str, str]


@dataclass(frozen=True)
class TruthRegion:
    """The instances on which a claim is established true, as data rather than prose.

    `basis` says what establishes it: `"proven"` (a published theorem, or a proof on a theory
    page, named in `reference`), `"certified"` (no theorem: ncverify's own exact certificate
    `certificate` decides every instance of the region), or `"none"` (nothing is established;
    the region is empty and `reason` says why, see `TruthRegion.empty`).  The ranges describe a
    box *inside* what the basis establishes, kept small so that one check of a drawn instance
    takes seconds: `scripts/soak.py` draws instances from it, and a refutation inside a proven
    region is a false refutation by definition.

    Integer ranges are inclusive `(least, most)`.  `balanced`: every class has the same count
    (else each count is drawn on its own, equal counts included).  `wide`: every width is at
    least `K` (the bottleneck `R = K`), for theorems and certificates that need it.  Lambdas are
    decimal strings read exactly (`"1e-4"` is 1/10000), drawn log-uniformly, one per layer for
    `lambda_w`; `lambda_b` is the range of a regularised bias's weight decay.
    """

    basis: str
    reference: str = ""
    reason: str = ""
    certificate: str | None = None
    loss: str = "mse"
    activation: str = "linear"
    biases: tuple[str, ...] = ("none",)
    classes: Range = (2, 6)
    samples: Range = (1, 20)
    balanced: bool = True
    #: the counts take exactly two values, the smaller one for at least two classes (a majority
    #: and a minority group); not with `balanced`
    two_groups: bool = False
    depth: Range = (1, 4)
    widths: Range = (1, 8)
    wide: bool = False
    lambda_w: LambdaRange = ("1e-3", "0.5")
    lambda_h: LambdaRange = ("1e-3", "0.5")
    lambda_b: LambdaRange | None = None
    #: the radii of a normalised problem (`Loss.NORMALISED_CE`), drawn log-uniformly like lambdas
    radius_w: LambdaRange | None = None
    radius_h: LambdaRange | None = None
    #: label smoothing's alpha (`Loss.LS`), drawn log-uniformly like the lambdas
    smoothing: LambdaRange | None = None
    #: focal loss's gamma (`Loss.FOCAL`), drawn log-uniformly like the lambdas
    focusing: LambdaRange | None = None
    #: the contrastive loss's temperature (`Loss.SUPCON`), drawn log-uniformly like the lambdas
    temperature: LambdaRange | None = None

    def __post_init__(self) -> None:
        wrong = self._inconsistencies()
        if wrong:
            raise ValueError(f"inconsistent truth region: {'; '.join(wrong)}.")

    def _inconsistencies(self) -> list[str]:
        """What makes the declaration itself wrong (checked on construction)."""
        out: list[str] = []
        if self.basis not in BASES:
            out.append(f"basis must be one of {BASES}, not {self.basis!r}")
        if self.basis == "none":
            return out if self.reason else [*out, "an empty region needs a reason"]
        if not self.reference:
            out.append("a non-empty region needs a reference")
        if self.basis == "certified":
            out += _certificate_inconsistencies(self)
        for name in ("classes", "samples", "depth", "widths"):
            lo, hi = getattr(self, name)
            if not 1 <= lo <= hi:
                out.append(f"{name} must be a range 1 <= least <= most, not {(lo, hi)}")
        for name, bounds in self._lambda_ranges():
            lo, hi = (Fraction(x) for x in bounds)
            if not 0 < lo <= hi:
                out.append(f"{name} must be a range 0 < least <= most, not {bounds}")
        if self.wide and self.widths[1] < self.classes[1]:
            out.append("wide regions need widths up to the largest K")
        if self.two_groups and (
            self.balanced or self.classes[0] < 3 or self.samples[0] == self.samples[1]
        ):
            out.append("two groups need unbalanced counts, K >= 3 and two sample sizes")
        if ("regularised" in self.biases) != (self.lambda_b is not None):
            out.append("lambda_b is a range exactly when a regularised bias is allowed")
        normalised = self.loss == Loss.NORMALISED_CE
        if normalised != (self.radius_w is not None and self.radius_h is not None):
            out.append("radii are ranges exactly when the loss is normalised-ce")
        if (self.loss == Loss.LS) != (self.smoothing is not None):
            out.append("smoothing is a range exactly when the loss is ls")
        if (self.loss == Loss.FOCAL) != (self.focusing is not None):
            out.append("focusing is a range exactly when the loss is focal")
        if (self.loss == Loss.SUPCON) != (self.temperature is not None):
            out.append("temperature is a range exactly when the loss is supcon")
        return out

    def _lambda_ranges(self) -> list[tuple[str, LambdaRange]]:
        ranges = [("lambda_w", self.lambda_w), ("lambda_h", self.lambda_h)]
        return ranges + ([("lambda_b", self.lambda_b)] if self.lambda_b is not None else [])

    @classmethod
    def empty(cls, reason: str, reference: str = "") -> TruthRegion:
        """A region with no instance: nothing establishes the claim anywhere (`reason`)."""
        return cls(basis="none", reason=reason, reference=reference)

    @property
    def is_empty(self) -> bool:
        return self.basis == "none"

    # ---- membership -------------------------------------------------------------------------
    def outside(self, problem: Problem) -> list[str]:
        """Why `problem` is not in the region, in words; empty when it is."""
        if self.is_empty:
            return [f"the region is empty: {self.reason}"]
        p, out = problem, []
        out += _mismatch("loss", p.loss, (self.loss,))
        out += _mismatch(
            "activation", p.activation if p.depth > 1 else self.activation, (self.activation,)
        )
        out += _mismatch("bias", p.bias, self.biases)
        out += _out_of("K", p.K, self.classes)
        out += [x for n in sorted(set(p.counts)) for x in _out_of("a class count", n, self.samples)]
        if self.balanced and not p.balanced:
            out.append("the classes must be balanced")
        if self.two_groups and not _two_groups(p.counts):
            out.append("the counts must take two values, the smaller one for at least two classes")
        out += _out_of("the depth", p.depth, self.depth)
        out += [x for w in sorted(set(p.widths)) for x in _out_of("a width", w, self.widths)]
        if self.wide and p.bottleneck < p.K:
            out.append(f"every width must be at least K = {p.K}")
        out += [x for lam in p.lambda_w for x in _lambda_out_of("lambda_W", lam, self.lambda_w)]
        out += _lambda_out_of("lambda_H", p.lambda_h, self.lambda_h)
        if p.lambda_b is not None and self.lambda_b is not None:
            out += _lambda_out_of("lambda_b", p.lambda_b, self.lambda_b)
        for name in ("radius_w", "radius_h", "smoothing", "focusing", "temperature"):
            given, span = getattr(p, name), getattr(self, name)
            if given is not None and span is not None:
                out += _lambda_out_of(name, given, span)
        return out

    def contains(self, problem: Problem) -> bool:
        """Is `problem` an instance of the region?"""
        return not self.outside(problem)

    # ---- drawing ----------------------------------------------------------------------------
    def draw(self, rng: np.random.Generator) -> Problem:
        """A random instance of the region: every integer uniform in its range, every lambda
        log-uniform (three significant digits, exact), the bias mode uniform among `biases`.

        Raises `ValueError` for an empty region.
        """
        if self.is_empty:
            raise ValueError(f"cannot draw from an empty truth region: {self.reason}")
        k = _uniform(rng, self.classes)
        depth = _uniform(rng, self.depth)
        counts = self._counts(rng, k)
        least = max(self.widths[0], k) if self.wide else self.widths[0]
        widths = tuple(_uniform(rng, (least, self.widths[1])) for _ in range(depth))
        lambda_w = tuple(_log_uniform(rng, self.lambda_w) for _ in range(depth))
        lambda_h = _log_uniform(rng, self.lambda_h)
        bias = self.biases[int(rng.integers(len(self.biases)))]
        lambda_b = (
            _log_uniform(rng, self.lambda_b) if bias == "regularised" and self.lambda_b else None
        )
        radius_w = None if self.radius_w is None else _log_uniform(rng, self.radius_w)
        radius_h = None if self.radius_h is None else _log_uniform(rng, self.radius_h)
        smoothing = None if self.smoothing is None else _log_uniform(rng, self.smoothing)
        focusing = None if self.focusing is None else _log_uniform(rng, self.focusing)
        temperature = None if self.temperature is None else _log_uniform(rng, self.temperature)
        return Problem(
            counts=counts,
            depth=depth,
            widths=widths,
            lambda_w=lambda_w,
            lambda_h=lambda_h,
            loss=self.loss,
            bias=bias,
            lambda_b=lambda_b,
            activation=self.activation if depth > 1 else "linear",
            radius_w=radius_w,
            radius_h=radius_h,
            smoothing=smoothing,
            focusing=focusing,
            temperature=temperature,
        )

    def _counts(self, rng: np.random.Generator, k: int) -> tuple[int, ...]:
        if self.balanced:
            return (_uniform(rng, self.samples),) * k
        if not self.two_groups:
            return tuple(_uniform(rng, self.samples) for _ in range(k))
        small = _uniform(rng, (self.samples[0], self.samples[1] - 1))
        large = _uniform(rng, (small + 1, self.samples[1]))
        minority = _uniform(rng, (2, k - 1))
        return (large,) * (k - minority) + (small,) * minority

    # ---- description ------------------------------------------------------------------------
    def summary(self) -> str:
        """The ranges in one line of words (the region table of docs/reliability.md)."""
        if self.is_empty:
            return "empty"
        counts = "balanced" if self.balanced else "two groups" if self.two_groups else "any counts"
        widths = f"{_span(self.widths)}, every width >= K" if self.wide else _span(self.widths)
        parts = [
            f"K {_span(self.classes)}",
            f"n_k {_span(self.samples)} ({counts})",
            f"M {_span(self.depth)}",
            f"widths {widths}",
            f"lambda_W {_span(self.lambda_w)}",
            f"lambda_H {_span(self.lambda_h)}",
            f"loss {self.loss}",
            f"bias {'/'.join(self.biases)}",
        ]
        if self.lambda_b is not None:
            parts.append(f"lambda_b {_span(self.lambda_b)}")
        if self.activation != "linear":
            parts.append(f"activation {self.activation}")
        if self.radius_w is not None and self.radius_h is not None:
            parts.append(f"r_W {_span(self.radius_w)}, r_H {_span(self.radius_h)}")
        if self.smoothing is not None:
            parts.append(f"smoothing {_span(self.smoothing)}")
        if self.focusing is not None:
            parts.append(f"focusing {_span(self.focusing)}")
        if self.temperature is not None:
            parts.append(f"temperature {_span(self.temperature)}")
        return ", ".join(parts)

    def describe(self) -> dict[str, object]:
        """Every field, as JSON."""
        return {name: getattr(self, name) for name in self.__dataclass_fields__}


def _certificate_inconsistencies(region: TruthRegion) -> list[str]:
    """A certified region must rest on an exact certificate, within where that one is exact."""
    kind = region.certificate
    if kind not in EXACT_CERTIFICATES:
        return [f"a certified region needs an exact certificate {EXACT_CERTIFICATES}, not {kind!r}"]
    out = []
    if kind in ONE_LAYER_CERTIFICATES and region.depth != (1, 1):
        out.append(f"{kind} exists at one layer only: depth must be (1, 1)")
    if kind in WIDE_CERTIFICATES and not region.wide:
        out.append(f"{kind} is exact only where every width is at least K: set wide")
    return out


def _two_groups(counts: tuple[int, ...]) -> bool:
    sizes = sorted(set(counts))
    return len(sizes) == 2 and counts.count(sizes[0]) >= 2


def _uniform(rng: np.random.Generator, bounds: Range) -> int:
    return int(rng.integers(bounds[0], bounds[1] + 1))


def _log_uniform(rng: np.random.Generator, bounds: LambdaRange) -> Fraction:
    """Log-uniform in `[lo, hi]`, rounded to three significant digits (an exact decimal)."""
    lo, hi = Fraction(bounds[0]), Fraction(bounds[1])
    value = Fraction(f"{math.exp(rng.uniform(math.log(lo), math.log(hi))):.3g}")
    return min(max(value, lo), hi)


def _span(bounds: tuple[object, object]) -> str:
    lo, hi = bounds
    return str(lo) if lo == hi else f"{lo}..{hi}"


def _mismatch(name: str, value: str, allowed: tuple[str, ...]) -> list[str]:
    return [] if value in allowed else [f"the {name} must be {' or '.join(allowed)}, not {value}"]


def _out_of(name: str, value: int, bounds: Range) -> list[str]:
    lo, hi = bounds
    return [] if lo <= value <= hi else [f"{name} must be in {lo}..{hi}, not {value}"]


def _lambda_out_of(name: str, value: Fraction, bounds: LambdaRange) -> list[str]:
    lo, hi = (Fraction(x) for x in bounds)
    return [] if lo <= value <= hi else [f"{name} must be in {bounds[0]}..{bounds[1]}, not {value}"]


class Claim(ABC):
    """Base class of a claim; subclasses fill in the mathematics."""

    id: str = ""
    title: str = ""
    source: str = ""
    status: str = ""
    loss: str = "mse"
    bias: str = "none"
    certificates: tuple[str, ...] = ()
    #: where the claim is established true (a theorem or an exact certificate), as data;
    #: empty unless the claim declares one (`scripts/soak.py` draws its instances from it)
    truth_region: TruthRegion = TruthRegion.empty("the claim declares no truth region")

    @abstractmethod
    def hypotheses(self, problem: Problem) -> list[str]:
        """Unmet hypotheses in plain words; empty when the claim applies to `problem`."""

    @abstractmethod
    def closed_form(self, problem: Problem) -> Prediction:
        """The symbolic prediction for `problem`: the optimal value in high precision, per class
        what the claim says, its geometry and phase."""

    @abstractmethod
    def minimiser(self, problem: Problem, backend: Backend) -> Params:
        """The predicted point `W_1..W_M, H (, b)` on `backend` (every sample's features)."""

    @abstractmethod
    def derivation(self) -> list[Step]:
        """The worked derivation, each step with how it is checked."""

    def search(self, problem: Problem, backend: Backend, budget: SearchBudget) -> list[Candidate]:
        """Claim-specific counterexample candidates (structured points), none by default.

        Each candidate is a full point on `backend`; the engine evaluates it on the full
        objective with its rounding-error bound, exactly like an optimiser run.  `budget` says
        how many random starts the search may add (none where the runs are off); a search too
        large for an instance raises `ncverify.limits.StepSkipped` with the reason.
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
