"""Problem instances of the deep linear unconstrained-feature model.

A `Problem` fixes everything a claim is checked on: the class counts `n_k`, the depth `M`,
the widths `d, d_1, ..., d_{M-1}`, the weight decays `lambda_{W_m}`, `lambda_H` (and `lambda_b`),
the loss and the bias mode.  Lambdas are kept as exact rationals (`Fraction`) so that regimes
and thresholds can be decided exactly; a decimal such as `5e-4` is parsed to `1/2000`, never
through a float.

The objective it describes is

$$F = L(W_M \\cdots W_1 H + b 1^T, Y) + \\sum_m \\tfrac{\\lambda_{W_m}}{2}\\|W_m\\|_F^2
      + \\tfrac{\\lambda_H}{2}\\|H\\|_F^2 \\; (+ \\tfrac{\\lambda_b}{2}\\|b\\|^2).$$

Example:

>>> p = Problem.build(counts="200,100,50,50", depth=3, width=64, lambda_w="5e-4", lambda_h="5e-4")
>>> p.K, p.N, p.bottleneck, p.lambda_w
(4, 400, 4, (Fraction(1, 2000), Fraction(1, 2000), Fraction(1, 2000)))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from fractions import Fraction

from ncverify.limits import (
    FLOAT_BYTES,
    LAMBDA_RANGE,
    MAX_CLASSES,
    MAX_COUNT,
    MAX_DEPTH,
    PRODUCT_RANGE,
    RADIUS_RANGE,
    REPRESENTABLE_LAMBDA,
    REPRESENTABLE_PRODUCT,
    skip_unless_fits,
)


class Loss(StrEnum):
    """The loss of the model (a member compares equal to its string, `Loss.MSE == "mse"`)."""

    MSE = "mse"
    CE = "ce"
    #: cross-entropy against smoothed labels `(1 - alpha) e_y + (alpha / K) 1`, with
    #: `alpha = smoothing` in (0, 1) (docs/theory/label-smoothing.md)
    LS = "ls"
    #: focal loss `-(1 - p_y)^gamma log p_y` with `gamma = focusing` in [1, 10]
    #: (docs/theory/focal.md); not convex in the logits
    FOCAL = "focal"
    #: the limit of "ce" as every lambda tends to zero: minimise the weighted norms subject to
    #: every margin `(w_{y_i} - w_j)^T h_i >= 1` (docs/theory/ce.md#max-margin)
    MAX_MARGIN = "max-margin"
    #: cross-entropy with every classifier row and every feature on a sphere of fixed radius
    #: (`radius_w`, `radius_h`; docs/theory/normalised.md): no weight decay enters
    NORMALISED_CE = "normalised-ce"
    #: the supervised contrastive loss of features on the unit sphere at temperature `tau =
    #: temperature` (docs/theory/supcon.md): no classifier, no layers, no weight decay
    SUPCON = "supcon"
    #: cross-entropy with weight decay whose features are constrained non-negative, `H >= 0`
    #: (the features after a ReLU; docs/theory/relu-features.md): one layer, no bias
    NONNEGATIVE_CE = "nonnegative-ce"

    @property
    def penalised(self) -> bool:
        """A data term plus weight decay, with an objective `F` to descend (the max-margin
        problem is constrained instead, and its lambdas only scale its value; a normalised
        problem fixes the norms, and its lambdas do not enter)."""
        return self in PENALISED_LOSSES


class BiasMode(StrEnum):
    """The last layer's bias: none, free (unregularised) or regularised (with `lambda_b`)."""

    NONE = "none"
    FREE = "free"
    REGULARISED = "regularised"


class Activation(StrEnum):
    """What sits between two layers: nothing (the deep linear model) or a ReLU (the deep
    unconstrained-feature model with nonlinear layers); never after the last layer."""

    LINEAR = "linear"
    RELU = "relu"


LOSSES: tuple[str, ...] = tuple(Loss)
#: the losses with an objective `F` (`ncverify.model.objective`): a data term plus weight decay
PENALISED_LOSSES: tuple[Loss, ...] = (Loss.MSE, Loss.CE, Loss.LS, Loss.FOCAL)
#: focal loss's gamma: the least and the greatest accepted (`Problem._check_focusing`)
FOCUSING_RANGE: tuple[Fraction, Fraction] = (Fraction(1), Fraction(10))
#: the supervised contrastive loss's temperature: the least and the greatest accepted
#: (`Problem._check_temperature`)
TEMPERATURE_RANGE: tuple[Fraction, Fraction] = (Fraction(1, 100), Fraction(100))
BIAS_MODES: tuple[str, ...] = tuple(BiasMode)
ACTIVATIONS: tuple[str, ...] = tuple(Activation)


class ProblemError(ValueError):
    """Input no claim could accept; its message is one sentence naming the problem."""


def exact(value: object, name: str) -> Fraction:
    """Parse a positive finite number exactly: `"5e-4"` becomes `Fraction(1, 2000)`.

    Floats are read through their shortest decimal representation, so `5e-4` (float) is also
    `1/2000`.  Text is read as a `Decimal` first, whose exponent is checked before any exact
    rational is formed: `Fraction("1e999999999")` would build a billion-digit integer.
    """
    if isinstance(value, Fraction):
        result = value
    elif isinstance(value, bool):
        raise ProblemError(f"{name} must be a positive finite number, not {value!r}.")
    elif isinstance(value, int):
        result = Fraction(value)
    elif isinstance(value, float):
        if not math.isfinite(value):
            raise ProblemError(f"{name} must be a positive finite number, not {value!r}.")
        result = Fraction(repr(value))
    elif isinstance(value, str):
        result = _parse_exact(value.strip(), name)
    else:
        raise ProblemError(f"{name} must be a positive finite number, not {value!r}.")
    if result <= 0:
        raise ProblemError(f"{name} must be a positive finite number, not {value!s}.")
    return result


#: Longest text of one number: more digits than any float64 computation could use.
MAX_NUMBER_TEXT = 400


def _parse_exact(text: str, name: str) -> Fraction:
    """A decimal (`5e-4`) or a rational (`1/2000`, as the reports write them), exactly; a
    magnitude far outside float64 is refused before the rational is formed."""
    bad = ProblemError(f"{name} must be a positive finite number, not {text!r}.")
    if len(text) > MAX_NUMBER_TEXT:
        raise ProblemError(f"{name} has more than {MAX_NUMBER_TEXT} characters.")
    if "/" in text:
        num, _, den = text.partition("/")
        try:
            result = Fraction(int(num), int(den))
        except (ValueError, ZeroDivisionError):
            raise bad from None
        return result
    try:
        dec = Decimal(text)
    except InvalidOperation:
        raise bad from None
    if not dec.is_finite() or dec <= 0:
        raise bad
    if not -FLOAT_DECADES <= dec.adjusted() <= FLOAT_DECADES:
        raise ProblemError(
            f"{name} = {text} is outside what float64 can represent (about 1e-308 to 1e308)."
        )
    return Fraction(dec)


#: Decimal exponents beyond which a number is not a float64 (its normal range is 1e-308..1e308).
FLOAT_DECADES = 308


def _int_list(value: object, name: str) -> tuple[int, ...]:
    """Parse `"100,100,50"` or a sequence of integers; one sentence on any malformed entry."""
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",")]
        if any(p == "" for p in parts):
            raise ProblemError(f"{name} must be a comma-separated list of integers, not {value!r}.")
    elif isinstance(value, int) and not isinstance(value, bool):
        parts = [value]
    elif isinstance(value, Sequence):
        parts = list(value)
    else:
        raise ProblemError(f"{name} must be a comma-separated list of integers, not {value!r}.")
    out = []
    for p in parts:
        if isinstance(p, bool):
            raise ProblemError(f"{name} must contain integers, not {p!r}.")
        if isinstance(p, int):
            out.append(p)
            continue
        try:
            out.append(int(str(p)))
        except ValueError:
            raise ProblemError(f"{name} must contain integers, not {p!r}.") from None
    return tuple(out)


def _counts(counts: object, classes: object, samples: object) -> tuple[int, ...]:
    """The class sizes from `counts`, or from `classes` copies of `samples`."""
    if counts is not None and (classes is not None or samples is not None):
        raise ProblemError("give either counts or classes and samples, not both.")
    if counts is not None:
        return _int_list(counts, "counts")
    k = _int_list(classes if classes is not None else 4, "classes")
    n = _int_list(samples if samples is not None else 100, "samples")
    if len(k) != 1 or len(n) != 1:
        raise ProblemError("classes and samples must each be a single integer.")
    if k[0] < 2:
        raise ProblemError(f"need at least K = 2 classes, got K = {k[0]}.")
    _at_most(k[0], MAX_CLASSES, "the number of classes K")  # before K copies are made
    return (n[0],) * k[0]


def _depth(depth: object) -> int:
    depth_t = _int_list(depth, "depth")
    if len(depth_t) != 1:
        raise ProblemError(f"depth must be a single positive integer, not {depth!r}.")
    m = depth_t[0]
    if m < 1:
        raise ProblemError(f"depth must be a positive integer, got {m}.")
    _at_most(m, MAX_DEPTH, "the depth")  # before M copies of the width are made
    return m


def _widths(width: object, widths: object, depth: int) -> tuple[int, ...]:
    """`widths` as given, or `depth` copies of `width` (64 by default)."""
    if width is not None and widths is not None:
        raise ProblemError("give either width or widths, not both.")
    if widths is not None:
        return _int_list(widths, "widths")
    w = _int_list(width if width is not None else 64, "width")
    if len(w) != 1:
        raise ProblemError("width must be a single integer; use widths for a list.")
    return w * depth


def _fraction_list(value: object, name: str) -> tuple[Fraction, ...]:
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",")]
        if any(p == "" for p in parts):
            raise ProblemError(f"{name} must be a number or a comma-separated list, not {value!r}.")
    elif isinstance(value, Sequence):
        parts = list(value)
    else:
        parts = [value]
    return tuple(exact(p, name) for p in parts)


def _member(kind: type[StrEnum], value: object, name: str) -> StrEnum:
    try:
        return kind(value)
    except ValueError:
        choices = ", ".join(kind)
        raise ProblemError(f"{name} must be one of {choices}, not {value!r}.") from None


def _at_most(value: int, limit: int, what: str) -> None:
    if value > limit:
        shown = f"{value:.3g}" if value > 10**15 else str(value)
        raise ProblemError(f"{what} must be at most {limit}, not {shown}.")


def _in_float_range(value: Fraction, bounds: tuple[float, float], what: str) -> None:
    """Every numerical step computes in float64: a lambda (or the product of them that the closed
    forms take roots of) far from 1 overflows or vanishes there (`ncverify.limits.LAMBDA_RANGE`)."""
    low, high = bounds
    # the ends as the decimals the message prints (the float 1e-100 is a little above 10^-100,
    # and a user who typed the printed end was refused)
    if not Fraction(repr(low)) <= value <= Fraction(repr(high)):
        raise ProblemError(
            f"{what} must lie between {low:.0e} and {high:.0e} (float64 must represent it and "
            f"its products), not about 1e{_decade(value)}."
        )


def _input_ranges(lw: tuple[Fraction, ...], lh: Fraction, lb: Fraction | None) -> None:
    """The lambdas a user may give (`ncverify.limits.LAMBDA_RANGE`, `PRODUCT_RANGE`): narrower
    than what a `Problem` may hold, so that the problems the runs derive from it stay valid."""
    named = [(lam, "lambda_W") for lam in lw] + [(lh, "lambda_H"), (lb, "lambda_b")]
    for lam, name in named:
        if lam is not None:
            _in_float_range(lam, LAMBDA_RANGE, name)
    product = lh * math.prod(lw, start=Fraction(1))
    _in_float_range(product, PRODUCT_RANGE, "the product lambda_H prod lambda_W")


def _decade(value: Fraction) -> int:
    """The decimal exponent of a positive rational, even where its float would be 0 or inf."""
    return math.floor(math.log10(value.numerator) - math.log10(value.denominator))


@dataclass(frozen=True)
class Problem:
    """One instance: validated on construction, immutable, hashable.

    Attributes:
        counts: samples per class `(n_1, ..., n_K)`.
        depth: number of linear layers `M >= 1`.
        widths: `(d, d_1, ..., d_{M-1})`: feature dimension, then hidden widths.
        lambda_w: `(lambda_{W_1}, ..., lambda_{W_M})`, exact.
        lambda_h: `lambda_H`, exact.
        loss: `Loss.MSE`, `Loss.CE`, `Loss.LS` (cross-entropy against smoothed labels, with
            `smoothing`), `Loss.FOCAL` (focal loss, with `focusing`) or `Loss.MAX_MARGIN` (the constrained limit of CE: minimise the
            regulariser subject to every margin at least 1; the lambdas weight its norms).
        bias: `"none"`, `"free"` (unregularised) or `"regularised"` (with `lambda_b`).
        lambda_b: the bias weight decay when `bias == "regularised"`, else `None`.
        activation: `"linear"` (the default) or `"relu"` between consecutive layers:
            `H_{m+1} = relu(W_m H_m)` for `m < M`, the logits `W_M H_M (+ b)`.
        radius_w, radius_h: the spheres of `Loss.NORMALISED_CE`; smoothing: label smoothing's
            alpha; focusing: focal loss's gamma; temperature: `Loss.SUPCON`'s tau (whose
            problem has features only, no layers: `layer_shapes` is empty).
    """

    counts: tuple[int, ...]
    depth: int
    widths: tuple[int, ...]
    lambda_w: tuple[Fraction, ...]
    lambda_h: Fraction
    loss: Loss = Loss.MSE
    bias: BiasMode = BiasMode.NONE
    lambda_b: Fraction | None = None
    activation: Activation = Activation.LINEAR
    #: the radii of the classifier rows and of the features (`Loss.NORMALISED_CE` only)
    radius_w: Fraction | None = None
    radius_h: Fraction | None = None
    #: label smoothing's `alpha` in (0, 1) (`Loss.LS` only)
    smoothing: Fraction | None = None
    #: focal loss's `gamma` in [1, 10] (`Loss.FOCAL` only)
    focusing: Fraction | None = None
    #: the supervised contrastive loss's temperature `tau` in [1/100, 100] (`Loss.SUPCON` only)
    temperature: Fraction | None = None

    def __post_init__(self) -> None:
        if len(self.counts) < 2:
            raise ProblemError(f"need at least K = 2 classes, got K = {len(self.counts)}.")
        _at_most(len(self.counts), MAX_CLASSES, "the number of classes K")
        for n in self.counts:
            if n < 1:
                raise ProblemError(f"every class count must be a positive integer, got {n}.")
            _at_most(n, MAX_COUNT, "a class count")
        if self.depth < 1:
            raise ProblemError(f"depth must be a positive integer, got {self.depth}.")
        _at_most(self.depth, MAX_DEPTH, "the depth")
        if len(self.widths) != self.depth:
            raise ProblemError(
                f"depth {self.depth} needs {self.depth} widths (d, d_1, ..., d_{{M-1}}), "
                f"got {len(self.widths)}."
            )
        for w in self.widths:
            if w < 1:
                raise ProblemError(f"every width must be a positive integer, got {w}.")
        if len(self.lambda_w) != self.depth:
            raise ProblemError(
                f"depth {self.depth} needs one lambda_W or {self.depth} of them, "
                f"got {len(self.lambda_w)}."
            )
        for lam in (*self.lambda_w, self.lambda_h):
            if not isinstance(lam, Fraction) or lam <= 0:
                raise ProblemError(f"every lambda must be a positive finite number, got {lam}.")
            _in_float_range(lam, REPRESENTABLE_LAMBDA, "every lambda")
        _in_float_range(
            self.lambda_product, REPRESENTABLE_PRODUCT, "the product lambda_H prod lambda_W"
        )
        for name, kind in (("loss", Loss), ("bias", BiasMode), ("activation", Activation)):
            # strings from users and files become members (frozen: set through object)
            object.__setattr__(self, name, _member(kind, getattr(self, name), name))
        if self.loss == Loss.MAX_MARGIN and (
            self.bias != BiasMode.NONE or self.activation != Activation.LINEAR
        ):
            raise ProblemError("the max-margin problem has no bias and linear layers.")
        self._check_radii()
        self._check_smoothing()
        self._check_focusing()
        self._check_temperature()
        if self.loss == Loss.NONNEGATIVE_CE and (
            self.depth != 1 or self.bias != BiasMode.NONE or self.activation != Activation.LINEAR
        ):
            raise ProblemError(
                "the problem with non-negative features has one layer, no bias and no activation."
            )
        if self.bias == "regularised":
            if self.lambda_b is None or self.lambda_b <= 0:
                raise ProblemError("a regularised bias needs a positive lambda_b.")
            _in_float_range(self.lambda_b, REPRESENTABLE_LAMBDA, "lambda_b")
        elif self.lambda_b is not None:
            raise ProblemError("lambda_b is only meaningful with a regularised bias.")

    def _check_smoothing(self) -> None:
        """Label smoothing, and only it, has its `alpha`: strictly between 0 (cross-entropy)
        and 1 (uniform targets, which no logits can tell apart)."""
        if self.loss != Loss.LS:
            if self.smoothing is not None:
                raise ProblemError("a smoothing belongs to label smoothing (--loss ls).")
            return
        if self.smoothing is None:
            raise ProblemError("label smoothing needs its alpha (--smoothing, between 0 and 1).")
        if not isinstance(self.smoothing, Fraction) or not 0 < self.smoothing < 1:
            raise ProblemError(
                f"the smoothing alpha must lie strictly between 0 and 1, not {self.smoothing}."
            )

    def _check_focusing(self) -> None:
        """Focal loss, and only it, has its `gamma`, between 1 and 10: below 1 the loss's
        curvature is unbounded as `p_y -> 1` (`(1 - p)^(gamma - 1)` blows up), and 10 is far
        beyond the values the literature uses (0.5 to 5)."""
        if self.loss != Loss.FOCAL:
            if self.focusing is not None:
                raise ProblemError("a focusing gamma belongs to focal loss (--loss focal).")
            return
        if self.focusing is None:
            raise ProblemError("focal loss needs its gamma (--focusing, between 1 and 10).")
        if (
            not isinstance(self.focusing, Fraction)
            or not FOCUSING_RANGE[0] <= self.focusing <= (FOCUSING_RANGE[1])
        ):
            raise ProblemError(
                f"the focusing gamma must lie between 1 and 10, not {self.focusing}."
            )

    def _check_temperature(self) -> None:
        """The supervised contrastive problem, and only it, has a temperature, between 1/100
        and 100 (similarities up to 100 in magnitude, whose exponentials float64 holds); its
        features are all there is (one layer of them, no bias, no activation), and every class
        needs a second sample to be its samples' positive."""
        if self.loss != Loss.SUPCON:
            if self.temperature is not None:
                raise ProblemError(
                    "a temperature belongs to the contrastive problem (--loss supcon)."
                )
            return
        if self.temperature is None:
            raise ProblemError(
                "the contrastive problem needs its temperature (--temperature, 1/100 to 100)."
            )
        low, high = TEMPERATURE_RANGE
        if not isinstance(self.temperature, Fraction) or not low <= self.temperature <= high:
            raise ProblemError(
                f"the temperature must lie between 1/100 and 100, not {self.temperature}."
            )
        if self.depth != 1 or self.bias != BiasMode.NONE or self.activation != Activation.LINEAR:
            raise ProblemError(
                "the contrastive problem has one layer of features, no bias and no activation."
            )
        if min(self.counts) < 2:
            raise ProblemError(
                "the contrastive loss needs at least 2 samples in every class (an anchor's "
                "positives are the other samples of its class)."
            )

    def _check_radii(self) -> None:
        """Radii belong to the normalised problem, which has one layer, no bias and both radii."""
        given = (self.radius_w, self.radius_h)
        if self.loss != Loss.NORMALISED_CE:
            if given != (None, None):
                raise ProblemError("radii belong to the normalised problem (--loss normalised-ce).")
            return
        if None in given:
            raise ProblemError("the normalised problem needs both radii (--radius-w, --radius-h).")
        if self.depth != 1 or self.bias != BiasMode.NONE or self.activation != Activation.LINEAR:
            raise ProblemError("the normalised problem has one layer, no bias and no activation.")
        for r in given:
            _in_float_range(r, RADIUS_RANGE, "every radius")  # type: ignore[arg-type]

    # ---- construction -------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        *,
        counts: object = None,
        classes: object = None,
        samples: object = None,
        depth: object = 3,
        width: object = None,
        widths: object = None,
        lambda_w: object = "5e-4",
        lambda_h: object = "5e-4",
        lambda_b: object = None,
        loss: str = "mse",
        bias: str | None = None,
        activation: str = "linear",
        radius_w: object = None,
        radius_h: object = None,
        smoothing: object = None,
        focusing: object = None,
        temperature: object = None,
    ) -> Problem:
        """Build from loose user input (strings from the CLI, numbers from Python).

        `counts` or (`classes`, `samples`) give the class sizes; `width` sets every width, or
        `widths` lists `d, d_1, ..., d_{M-1}`; `lambda_w` is one value or one per layer; giving
        `lambda_b` implies a regularised bias.
        """
        counts_t = _counts(counts, classes, samples)
        m = _depth(depth)
        widths_t = _widths(width, widths, m)
        lw = _fraction_list(lambda_w, "lambda_W")
        if len(lw) == 1:
            lw = lw * m
        lh = exact(lambda_h, "lambda_H")
        lb = None if lambda_b is None else exact(lambda_b, "lambda_b")
        if bias is None:
            bias = "regularised" if lb is not None else "none"
        _input_ranges(lw, lh, lb)
        rw = None if radius_w is None else exact(radius_w, "radius_w")
        rh = None if radius_h is None else exact(radius_h, "radius_h")
        alpha = None if smoothing is None else exact(smoothing, "the smoothing alpha")
        gamma = None if focusing is None else exact(focusing, "the focusing gamma")
        tau = None if temperature is None else exact(temperature, "the temperature")
        return cls(
            counts=counts_t,
            depth=m,
            widths=widths_t,
            lambda_w=lw,
            lambda_h=lh,
            loss=loss,
            bias=bias,
            lambda_b=lb,
            activation=activation,
            radius_w=rw,
            radius_h=rh,
            smoothing=alpha,
            focusing=gamma,
            temperature=tau,
        )

    def with_(self, **changes: object) -> Problem:
        """A copy with some fields replaced (validated again)."""
        return replace(self, **changes)

    # ---- derived quantities ---------------------------------------------------------------
    @property
    def K(self) -> int:  # noqa: N802 - the paper's name
        return len(self.counts)

    @property
    def N(self) -> int:  # noqa: N802
        return sum(self.counts)

    def summary(self) -> str:
        """The instance in one line: every parameter, lambdas as exact rationals."""
        if self.balanced and self.K > 12:
            counts = f"[{self.counts[0]}]*{self.K}"
        elif self.K > 12:
            counts = f"[{', '.join(map(str, self.counts[:6]))}, ..., {self.counts[-1]}]"
        else:
            counts = str(list(self.counts))
        return (
            f"K={self.K} counts={counts} depth={self.depth} widths={list(self.widths)} "
            f"lambda_W={[str(x) for x in self.lambda_w]} lambda_H={self.lambda_h} "
            f"loss={self.loss} bias={self.bias}"
            + (f" activation={self.activation}" if self.activation != "linear" else "")
            + (f" lambda_b={self.lambda_b}" if self.lambda_b is not None else "")
            + (
                f" radius_W={self.radius_w} radius_H={self.radius_h}"
                if self.radius_w is not None
                else ""
            )
            + (f" smoothing={self.smoothing}" if self.smoothing is not None else "")
            + (f" focusing={self.focusing}" if self.focusing is not None else "")
            + (f" temperature={self.temperature}" if self.temperature is not None else "")
        )

    @property
    def balanced(self) -> bool:
        return len(set(self.counts)) == 1

    @property
    def bottleneck(self) -> int:
        """`R = min(K, d, d_1, ..., d_{M-1})`: the largest rank any product can have."""
        return min(self.K, *self.widths)

    @property
    def lambda_product(self) -> Fraction:
        """`P = lambda_H * prod_m lambda_{W_m}`."""
        p = self.lambda_h
        for lam in self.lambda_w:
            p *= lam
        return p

    @property
    def layer_shapes(self) -> list[tuple[int, int]]:
        """Shapes of `W_1, ..., W_M`: `W_m` maps width `m-1` to width `m`, the last one to `K`
        (none for the contrastive problem, whose features have no classifier)."""
        if self.loss == Loss.SUPCON:
            return []
        dims = [*self.widths, self.K]
        return [(dims[m + 1], dims[m]) for m in range(self.depth)]

    @property
    def n_parameters(self) -> int:
        return self.point_entries()

    def point_entries(self, columns: int | None = None) -> int:
        """Float entries of a point `(W_1, ..., W_M, H, b)` whose features have `columns`
        columns: every sample's (`N`, the default), or `K` for the class means."""
        cols = self.N if columns is None else columns
        total = sum(a * b for a, b in self.layer_shapes) + self.widths[0] * cols
        return total + (self.K if self.bias != "none" else 0)

    def labels(self) -> list[int]:
        """Class index of every sample, samples ordered class by class.

        Every array with one column per sample is indexed by these, so this is where a step
        that would build one too large for memory stops (`StepSkipped`, said in the report).
        """
        skip_unless_fits(
            FLOAT_BYTES * self.point_entries(), f"every sample's features (N = {self.N})"
        )
        return [k for k, n in enumerate(self.counts) for _ in range(n)]

    def describe(self) -> dict[str, object]:
        """Every parameter, lambdas as given (float) and as exact rationals (`"1/2000"`)."""
        return {
            "counts": list(self.counts),
            "K": self.K,
            "N": self.N,
            "depth": self.depth,
            "widths": list(self.widths),
            "bottleneck": self.bottleneck,
            "loss": str(self.loss),  # plain strings in a JSON payload, not enum members
            "bias": str(self.bias),
            "activation": str(self.activation),
            "lambda_w": [float(x) for x in self.lambda_w],
            "lambda_w_exact": [str(x) for x in self.lambda_w],
            "lambda_h": float(self.lambda_h),
            "lambda_h_exact": str(self.lambda_h),
            "lambda_b": None if self.lambda_b is None else float(self.lambda_b),
            "lambda_b_exact": None if self.lambda_b is None else str(self.lambda_b),
            "radius_w": None if self.radius_w is None else float(self.radius_w),
            "radius_w_exact": None if self.radius_w is None else str(self.radius_w),
            "radius_h": None if self.radius_h is None else float(self.radius_h),
            "radius_h_exact": None if self.radius_h is None else str(self.radius_h),
            "smoothing": None if self.smoothing is None else float(self.smoothing),
            "smoothing_exact": None if self.smoothing is None else str(self.smoothing),
            "focusing": None if self.focusing is None else float(self.focusing),
            "focusing_exact": None if self.focusing is None else str(self.focusing),
            "temperature": None if self.temperature is None else float(self.temperature),
            "temperature_exact": None if self.temperature is None else str(self.temperature),
        }
