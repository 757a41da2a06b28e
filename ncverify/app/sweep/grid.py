"""Grids: ranges of options parsed into exact grid points (lambdas as exact rationals)."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from decimal import Decimal, localcontext
from fractions import Fraction
from typing import Any

import mpmath

from ncverify.app.sweep._common import (
    FLAGS,
    INTEGER_OPTIONS,
    RANGE_OPTIONS,
    SIGNIFICANT_DIGITS,
    SweepError,
)
from ncverify.limits import MAX_SWEEP_POINTS
from ncverify.model.problem import ProblemError, exact


# ---- grids --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Coordinate:
    """One value of a grid axis: the text handed to `Problem.build`, the exact rational it
    denotes, and (for a lambda) the unrounded grid value it approximates."""

    text: str
    exact: Fraction
    ideal: float

    def to_json(self) -> dict[str, Any]:
        return {"value": self.text, "exact": str(self.exact), "ideal": self.ideal}


@dataclass(frozen=True)
class Axis:
    """The values one option takes over the sweep (a single value when it is not a range)."""

    name: str
    values: tuple[Coordinate, ...]
    log: bool = False

    @property
    def varying(self) -> bool:
        return len(self.values) > 1


def is_range(text: str | None) -> bool:
    """Is an option value a range `start:stop:count[:log]`?"""
    return text is not None and ":" in text


def decimal_text(value: Fraction | mpmath.mpf, digits: int = SIGNIFICANT_DIGITS) -> str:
    """`value` rounded to `digits` significant decimal digits, as a short decimal string."""
    if isinstance(value, Fraction):
        with localcontext() as ctx:
            ctx.prec = 60
            dec = Decimal(value.numerator) / Decimal(value.denominator)
    else:
        dec = Decimal(mpmath.nstr(value, 40, min_fixed=-math.inf, max_fixed=math.inf))
    text = f"{dec:.{digits}g}"
    if "e" in text:  # drop zeros of the mantissa: 1.00000e-05 -> 1e-05
        mantissa, exponent = text.split("e")
        if "." in mantissa:
            mantissa = mantissa.rstrip("0").rstrip(".")
        return f"{mantissa}e{exponent}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def parse_axis(name: str, text: str) -> Axis:
    """The grid of one option given as a range `start:stop:count[:log]`."""
    flag = FLAGS[name]
    parts = [p.strip() for p in text.split(":")]
    if len(parts) not in (3, 4) or (len(parts) == 4 and parts[3] not in ("log", "lin")):
        raise SweepError(
            f"{flag} range must be start:stop:count or start:stop:count:log, not {text!r}."
        )
    log = len(parts) == 4 and parts[3] == "log"
    try:
        count = int(parts[2])
    except ValueError:
        raise SweepError(
            f"the count of the {flag} range must be an integer, not {parts[2]!r}."
        ) from None
    if count < 1:
        raise SweepError(f"the count of the {flag} range must be at least 1, not {count}.")
    if count > MAX_SWEEP_POINTS:  # before the grid is built: each point is a whole check
        raise SweepError(
            f"the count of the {flag} range must be at most {MAX_SWEEP_POINTS}, not {parts[2]}."
        )
    try:
        start, stop = exact(parts[0], name), exact(parts[1], name)
    except ProblemError:
        raise SweepError(
            f"the ends of the {flag} range must be positive finite numbers, not {text!r}."
        ) from None
    if name in INTEGER_OPTIONS:
        return Axis(name, _integer_grid(flag, start, stop, count, log), log)
    return Axis(name, _lambda_grid(parts[0], parts[1], start, stop, count, log), log)


def _integer_grid(
    flag: str, start: Fraction, stop: Fraction, count: int, log: bool
) -> tuple[Coordinate, ...]:
    if start.denominator != 1 or stop.denominator != 1:
        raise SweepError(f"the ends of the {flag} range must be integers.")
    seen: dict[int, float] = {}
    for i in range(count):
        ideal = _grid_value(start, stop, i, count, log)
        value = int(mpmath.floor(ideal + mpmath.mpf("0.5")))
        seen.setdefault(value, float(ideal))
    return tuple(Coordinate(str(v), Fraction(v), ideal) for v, ideal in seen.items())


def _lambda_grid(
    start_text: str, stop_text: str, start: Fraction, stop: Fraction, count: int, log: bool
) -> tuple[Coordinate, ...]:
    out: list[Coordinate] = []
    for i in range(count):
        if i == 0:
            out.append(Coordinate(start_text, start, float(start)))
        elif i == count - 1:
            out.append(Coordinate(stop_text, stop, float(stop)))
        else:
            ideal = _grid_value(start, stop, i, count, log)
            text = decimal_text(ideal if log else start + (stop - start) * i / (count - 1))
            out.append(Coordinate(text, Fraction(text), float(ideal)))
    values = [c.exact for c in out]
    if len(set(values)) != len(values):
        raise SweepError(
            f"the range {start_text}:{stop_text}:{count} repeats values at "
            f"{SIGNIFICANT_DIGITS} significant digits; use fewer points."
        )
    return tuple(out)


def _grid_value(start: Fraction, stop: Fraction, i: int, count: int, log: bool) -> mpmath.mpf:
    """Point i of `count` from `start` to `stop`, geometric or arithmetic, in high precision."""
    with mpmath.workdps(40):
        a, b = (
            mpmath.mpf(start.numerator) / start.denominator,
            mpmath.mpf(stop.numerator) / stop.denominator,
        )
        if count == 1:
            return +a
        t = mpmath.mpf(i) / (count - 1)
        return a * (b / a) ** t if log else a + (b - a) * t


@dataclass(frozen=True)
class GridPoint:
    """One point of the grid: its index, its coordinates and the `check` options there."""

    index: int
    coordinates: dict[str, Coordinate]
    options: dict[str, str | None]


def expand(options: dict[str, str | None], tied: bool) -> tuple[list[Axis], list[GridPoint]]:
    """The axes and the grid points of a sweep.

    `options` holds the `check` options as strings (None where not given); those named in
    `RANGE_OPTIONS` may be ranges, and each range is one axis (other values pass through to
    `Problem.build` unchanged, so a per-layer list of `--lambda-w` still works).  With `tied`,
    `lambda_h` follows `lambda_w` at every point, which must then be one value or a range.
    """
    axes: list[Axis] = []
    for name in RANGE_OPTIONS:
        text = options.get(name)
        if text is None or (name == "lambda_h" and tied) or not is_range(text):
            continue
        axes.append(parse_axis(name, text))
    if tied:
        lw = options.get("lambda_w")
        if lw is None or (not is_range(lw) and "," in lw):
            raise SweepError(
                "--lambda-h tied needs one --lambda-w value or range, not a per-layer list."
            )
    for name in ("counts", "widths"):
        if is_range(options.get(name)):
            raise SweepError(f"{FLAGS[name]} cannot be a range; give {name} as a list.")
    size = math.prod(len(a.values) for a in axes)
    if size > MAX_SWEEP_POINTS:
        raise SweepError(
            f"the grid has {size} points, more than the {MAX_SWEEP_POINTS} one sweep may run; "
            "split it into several sweeps."
        )
    points = []
    for index, combo in enumerate(itertools.product(*(a.values for a in axes))):
        coords = {a.name: c for a, c in zip(axes, combo, strict=True)}
        point_options = dict(options)
        for name, c in coords.items():
            point_options[name] = c.text
        if tied:
            point_options["lambda_h"] = point_options["lambda_w"]
        points.append(GridPoint(index, coords, point_options))
    return axes, points
