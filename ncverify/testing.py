"""Test helpers: hypothesis strategies for problem instances and an assertion on a claim.

A researcher checks a claim of their own inside pytest the way the project's tests check theirs:

```python
from hypothesis import given, settings

import theorems
from ncverify.testing import assert_claim_holds, problems

CLAIM_ID = "..."  # a registered claim's id (`ncverify list`)

my_claim = theorems.registry()[CLAIM_ID]  # or an instance of your own Claim subclass


@settings(deadline=None, max_examples=5)  # one verification takes about a second
@given(problems(balanced=True, bias="free", max_classes=5, max_depth=3))
def test_my_claim(problem):
    assert_claim_holds(my_claim, problem, restarts=4)
```

(hypothesis' default deadline of 200 ms per example is shorter than one verification.)

`problems(...)` draws valid `Problem`s with *exact* rational lambdas (decimals with two
significant digits, e.g. `37/10000`), so that thresholds and regimes are decided exactly.
`assert_claim_holds` runs `ncverify.verify.verify` and raises `AssertionError` with the report's
reason unless the verdict is `certified` or `consistent`; `assert_predicted_point_is_stationary`
checks only the closed form against the objective (no optimiser), the first thing to test when
writing a claim.
"""

from __future__ import annotations

import math
from dataclasses import fields
from fractions import Fraction
from typing import Any

from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument

from ncverify.backend import Backend
from ncverify.claim import Claim
from ncverify.model.objective import Objective, Params, norm
from ncverify.model.problem import BIAS_MODES, PENALISED_LOSSES, Loss, Problem
from ncverify.report import Report
from ncverify.verify import Settings, verify

__all__ = ["assert_claim_holds", "failure_reason", "lambdas", "problems"]


def _as_fraction(x: Fraction | int | float | str, name: str) -> Fraction:
    if isinstance(x, float):
        if not math.isfinite(x):
            raise InvalidArgument(f"{name} must be finite, got {x!r}.")
        return Fraction(repr(x))  # 5e-4 means 1/2000, not the binary float next to it
    return Fraction(x)


def _decade(x: Fraction) -> int:
    """The integer `e` with `10^e <= x < 10^(e+1)`, decided exactly."""
    e = math.floor(math.log10(x))
    while Fraction(10) ** e > x:  # the float logarithm may be off by one at powers of ten
        e -= 1
    while Fraction(10) ** (e + 1) <= x:
        e += 1
    return e


def lambdas(
    min_value: Fraction | int | float | str = Fraction(1, 10**4),
    max_value: Fraction | int | float | str = Fraction(1, 10),
) -> st.SearchStrategy[Fraction]:
    """Exact positive rationals in `[min_value, max_value]`, spread over the decades.

    Each value is a two-significant-digit decimal `m * 10^e` (`10 <= m <= 99`), drawn so that
    every decade in the range is equally likely: weight decays matter on a log scale.
    """
    lo, hi = _as_fraction(min_value, "min_value"), _as_fraction(max_value, "max_value")
    if not 0 < lo <= hi:
        raise InvalidArgument(f"need 0 < min_value <= max_value, got {lo} and {hi}.")
    if lo == hi:
        return st.just(lo)
    # m * 10^e with 10 <= m <= 99 covers the decade [10^(e+1), 10^(e+2))
    e_lo = _decade(lo) - 1
    top = _decade(hi)
    e_hi = max(e_lo, top - 2 if Fraction(10) ** top == hi else top - 1)

    def in_range(pair: tuple[int, int]) -> Fraction:
        mantissa, exponent = pair
        value = mantissa * Fraction(10) ** exponent
        return min(max(value, lo), hi)  # clamp partial decades at the ends

    return st.tuples(st.integers(10, 99), st.integers(e_lo, e_hi)).map(in_range)


@st.composite
def _problem(
    draw: st.DrawFn,
    *,
    loss: str | None,
    bias: str | None,
    balanced: bool | None,
    min_classes: int,
    max_classes: int,
    min_depth: int,
    max_depth: int,
    max_width: int,
    min_samples: int,
    max_samples: int,
    min_lambda: Fraction,
    max_lambda: Fraction,
    allow_bottleneck: bool,
    tied_lambdas: bool,
) -> Problem:
    loss_v = draw(st.sampled_from(PENALISED_LOSSES)) if loss is None else loss
    bias_v = draw(st.sampled_from(BIAS_MODES)) if bias is None else bias
    # without a bottleneck every width is at least K, so K cannot exceed max_width
    k_max = max_classes if allow_bottleneck else min(max_classes, max_width)
    k = draw(st.integers(min_classes, k_max))
    if balanced is True:
        counts = (draw(st.integers(min_samples, max_samples)),) * k
    else:
        counts = tuple(
            draw(st.lists(st.integers(min_samples, max_samples), min_size=k, max_size=k))
        )
        if balanced is False and len(set(counts)) == 1:
            # make it unbalanced by moving one class to another size in range
            other = min_samples if counts[0] != min_samples else max_samples
            counts = (other, *counts[1:])
    depth = draw(st.integers(min_depth, max_depth))
    w_min = 1 if allow_bottleneck else k
    widths = tuple(draw(st.lists(st.integers(w_min, max_width), min_size=depth, max_size=depth)))
    lam = lambdas(min_lambda, max_lambda)
    if tied_lambdas:
        value = draw(lam)
        lambda_w, lambda_h = (value,) * depth, value
    else:
        lambda_w = tuple(draw(st.lists(lam, min_size=depth, max_size=depth)))
        lambda_h = draw(lam)
    lambda_b = draw(lam) if bias_v == "regularised" else None
    # label smoothing's alpha: any rational strictly between 0 and 1
    smoothing = Fraction(draw(st.integers(1, 99)), 100) if loss_v == "ls" else None
    # focal loss's gamma: quarters from 1 to 10
    focusing = Fraction(draw(st.integers(4, 40)), 4) if loss_v == "focal" else None
    return Problem(
        counts=counts,
        depth=depth,
        widths=widths,
        lambda_w=lambda_w,
        lambda_h=lambda_h,
        loss=loss_v,
        bias=bias_v,
        lambda_b=lambda_b,
        smoothing=smoothing,
        focusing=focusing,
    )


def problems(
    *,
    loss: str | None = "mse",
    bias: str | None = None,
    balanced: bool | None = None,
    min_classes: int = 2,
    max_classes: int = 5,
    min_depth: int = 1,
    max_depth: int = 3,
    max_width: int = 8,
    min_samples: int = 1,
    max_samples: int = 10,
    min_lambda: Fraction | int | float | str = Fraction(1, 10**4),
    max_lambda: Fraction | int | float | str = Fraction(1, 10),
    allow_bottleneck: bool = False,
    tied_lambdas: bool = False,
) -> st.SearchStrategy[Problem]:
    """Valid `Problem`s with exact rational lambdas, filtered by keyword.

    Args:
        loss: `"mse"`, `"ce"`, `"ls"` (label smoothing, with an alpha drawn in (0, 1)),
            `"focal"` (focal loss, with a gamma drawn in [1, 10]), or `None` for any of them.
        bias: `"none"`, `"free"`, `"regularised"`, or `None` for any bias mode.
        balanced: `True` for equal counts, `False` for unequal ones, `None` for either.
        min_classes, max_classes: range of `K` (at least 2).
        min_depth, max_depth: range of the depth `M` (at least 1).
        max_width: largest feature dimension / hidden width.
        min_samples, max_samples: range of each class count `n_k`.
        min_lambda, max_lambda: range of every weight decay (exact; floats are read via `repr`).
        allow_bottleneck: if False (the default) every width is at least `K`, so `R = K`;
            if True widths go down to 1 and `R < K` happens.
        tied_lambdas: one lambda for every layer and for `H` (the paper's setting).
    """
    if loss is not None and loss not in PENALISED_LOSSES:
        raise InvalidArgument(f"loss must be one of {PENALISED_LOSSES} or None, not {loss!r}.")
    if bias is not None and bias not in BIAS_MODES:
        raise InvalidArgument(f"bias must be one of {BIAS_MODES} or None, not {bias!r}.")
    if not 2 <= min_classes <= max_classes:
        raise InvalidArgument(
            f"need 2 <= min_classes <= max_classes, got {min_classes}, {max_classes}."
        )
    if not 1 <= min_depth <= max_depth:
        raise InvalidArgument(f"need 1 <= min_depth <= max_depth, got {min_depth}, {max_depth}.")
    if not 1 <= min_samples <= max_samples:
        raise InvalidArgument(
            f"need 1 <= min_samples <= max_samples, got {min_samples}, {max_samples}."
        )
    if balanced is False and min_samples == max_samples:
        raise InvalidArgument("unbalanced counts need min_samples < max_samples.")
    if max_width < 1:
        raise InvalidArgument(f"max_width must be at least 1, got {max_width}.")
    if not allow_bottleneck and max_width < min_classes:
        raise InvalidArgument(
            f"without a bottleneck every width is at least K >= {min_classes}, "
            f"but max_width = {max_width}."
        )
    lo, hi = _as_fraction(min_lambda, "min_lambda"), _as_fraction(max_lambda, "max_lambda")
    if not 0 < lo <= hi:
        raise InvalidArgument(f"need 0 < min_lambda <= max_lambda, got {lo} and {hi}.")
    return _problem(
        loss=loss,
        bias=bias,
        balanced=balanced,
        min_classes=min_classes,
        max_classes=max_classes,
        min_depth=min_depth,
        max_depth=max_depth,
        max_width=max_width,
        min_samples=min_samples,
        max_samples=max_samples,
        min_lambda=lo,
        max_lambda=hi,
        allow_bottleneck=allow_bottleneck,
        tied_lambdas=tied_lambdas,
    )


def failure_reason(report: Report) -> str:
    """Why a report does not support its claim: verdict, unmet hypotheses, failed checks,
    optimiser outcomes and the counterexample, one line each."""
    lines = [f"claim {report.claim.id!r} is {report.verdict} on {report.problem.summary()}"]
    lines += [f"unmet hypothesis: {h}" for h in report.hypotheses]
    for c in report.checks:
        if c.passed is False:
            lines.append(
                f"failed {c.name}: value {c.value!r}, tolerance {c.tolerance!r}; {c.detail}"
            )
    if report.runs:
        counts = report.outcome_counts()
        lines.append(
            "optimiser runs: "
            + ", ".join(f"{v} {k}" for k, v in counts.items() if v)
            + f"; best objective {report.best_objective!r}"
        )
    ce = report.counterexample
    if ce is not None:
        lines.append(
            f"counterexample from {ce.origin}: objective {ce.objective!r} below the claimed "
            f"{ce.claimed!r} by {ce.gap:.3e} (evaluation error bound {ce.error_bound:.3e})"
        )
    lines += [f"note: {n}" for n in report.notes]
    return "\n".join(lines)


def assert_claim_holds(
    claim: Claim,
    problem: Problem,
    *,
    backend: Backend | None = None,
    **settings: Any,
) -> Report:
    """Verify `claim` on `problem`; raise `AssertionError` unless it is certified or consistent.

    Keyword arguments are fields of `ncverify.verify.Settings` (`restarts`, `seed`, `scales`,
    `certificate`, `optimise`, `probe`, `max_iter`, ...).  Returns the report for further checks.
    """
    known = {f.name for f in fields(Settings)}
    unknown = sorted(set(settings) - known)
    if unknown:
        raise TypeError(f"unknown settings {unknown}; known: {sorted(known)}.")
    report = verify(claim, problem, backend, Settings(**settings))
    if not report.verdict.holds:
        raise AssertionError(failure_reason(report))
    return report


def assert_predicted_point_is_stationary(
    claim: Claim, problem: Problem, *, backend: Backend | None = None
) -> Params:
    """The claim's predicted point has its claimed value and a vanishing gradient.

    Both are computed by `ncverify.model.objective`, not by the claim: the value must match the claimed
    optimum within the proven evaluation error bound (plus `1e-12` relative), and the gradients
    of the loss and of the regulariser, which at a stationary point cancel, must sum to rounding
    noise relative to their sizes (`1e-9`).  Returns the point (on `backend`, default numpy).
    """
    backend = backend or Backend.create()
    if problem.loss == Loss.MAX_MARGIN:
        return _assert_margin_point_is_kkt(claim, problem, backend)
    if not problem.loss.penalised:
        return _assert_e1_holds(claim, problem, backend)
    objective = Objective(problem, backend.xp, dtype=backend.dtype, device=backend.device)
    claimed = float(claim.closed_form(problem).objective)
    point = claim.minimiser(problem, backend)
    value, err = objective.value(point), objective.error_bound(point)
    if not abs(value - claimed) <= err + 1e-12 * abs(claimed):
        raise AssertionError(
            f"F(predicted point) = {value!r} but the claimed optimum is {claimed!r} "
            f"(evaluation error bound {err:.3e})"
        )
    grad_loss, grad_reg = objective.grad_parts(point)
    total = norm(grad_loss.zip_map(grad_reg, lambda a, c: a + c))
    scale = norm(grad_loss) + norm(grad_reg)
    if not total <= 1e-9 * scale + 1e-15:
        raise AssertionError(
            f"the predicted point is not stationary: ||grad F|| = {total:.3e}, while the loss "
            f"and regulariser gradients have norms summing to {scale:.3e}"
        )
    return point


def _assert_e1_holds(claim: Claim, problem: Problem, backend: Backend) -> Params:
    """Any other kind: E1 of the kind of the problem (`ncverify.kinds`) holds at the point."""
    from ncverify.evidence.results import Tolerances
    from ncverify.kinds import kind_of

    point = claim.minimiser(problem, backend)
    session = kind_of(problem.loss).open(
        problem,
        backend,
        claim.closed_form(problem),
        point,
        Tolerances.for_eps(backend.eps),
        Settings().runs(),
    )
    failed = [c for c in session.predicted_point(point).checks if not c.passed]
    if failed:
        raise AssertionError("; ".join(f"{c.name}: {c.detail}" for c in failed))
    return point


def _assert_margin_point_is_kkt(claim: Claim, problem: Problem, backend: Backend) -> Params:
    """The max-margin analogue: the predicted point at margin 1 has the claimed value (exact
    enclosures overlap) and its logits are a KKT point (`ncverify.evidence.margin_kkt`)."""
    from ncverify.evidence.margin_kkt import kkt
    from ncverify.model.exact import enclose_objective
    from ncverify.model.max_margin import class_logits

    pred = claim.closed_form(problem)
    point = claim.minimiser(problem, backend)
    host = point.map(backend.to_numpy)
    box = enclose_objective(problem, host)
    lo, hi = pred.objective_enclosure if pred.objective_enclosure else (pred.objective,) * 2
    tol = 1e-12 * abs(float(pred.objective))
    if not (float(box.a) <= float(hi) + tol and float(lo) - tol <= float(box.b)):
        raise AssertionError(
            f"the predicted point at margin 1 has the value [{box.a}, {box.b}], but the claimed "
            f"optimum is [{lo}, {hi}]"
        )
    residual = kkt(class_logits(host, problem.counts), problem.counts, problem.depth).residual
    if not residual <= 1e-9:
        raise AssertionError(f"the predicted logits are not a KKT point: residual {residual:.3e}")
    return point
