"""Re-evaluate a saved counterexample from scratch, in a fresh process, trusting nothing in it.

The file holds the claim id, the problem, the point and the numbers the saving run computed.
Every one of them is recomputed, and the file is judged in this order:

1. **the file** (`ncverify.io.load_counterexample`): its format, the types of its fields, its
   sizes (bounded before any array is read), finite float64 arrays of the saved problem's shapes;
   and the claim it names must be registered.  Otherwise bad input (`RecheckError`, exit 2).
   Recheck never imports code that a file names: a claim from outside ncverify (a file, a
   module, an installed package; the file's `claim_origin`) must be named again by the user
   (`--claim`), with the file's id, and a claim file or module whose sha256 differs from the
   recorded one is refused (`check_origin`): its mathematics may have changed since.
2. **the numbers that do not depend on the claim**: the problem's derived fields (`K`, `N`, the
   bottleneck, the float lambdas) against the problem rebuilt from its exact fields, the recorded
   error bound against the bound of an evaluation of the point, and the recorded objective
   against the point's value.  A disagreement is bad input naming the field: the file disagrees
   with itself, and nothing it says can be taken as evidence.
3. **the claim's hypotheses and the problem kind** on the saved problem: outside them the verdict
   is `not-applicable`, whatever the point's value; a point of another problem refutes nothing.
4. **the claim's numbers**: the claimed optimum against the claim's closed form, the gap, and
   the recorded certificate against the one recomputed from the point and the (now checked)
   recorded value; a disagreement is bad input, as in 2.
5. **the verdict**, from the recomputed certificate alone (`ncverify.evidence.point_certificate.certify_point`,
   shared with the verifier): `refuted` when the point beats the claimed optimum beyond every
   proven error bound, else `inconclusive`.

Every tolerance is relative: the recomputed error bound, the recorded one once it is checked,
and a rounding allowance of Higham's `gamma_k` for the longest chain of operations of the
problem in the dtype whose error bound the file records (float64, or float32 for a float32 run).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from decimal import Decimal, DecimalException, localcontext
from typing import Any

import numpy as np

from ncverify.claim import Claim, Prediction
from ncverify.evidence.point_certificate import certify_point
from ncverify.io import CounterexampleFileError, load_counterexample, saved_problem
from ncverify.kinds import kind_mismatch, kind_of
from ncverify.model.objective import Objective, Params
from ncverify.model.problem import Problem
from ncverify.model.reduction import PARAMETERISATIONS, to_class_means, unavailable
from ncverify.report import Verdict, clean

#: float64's machine epsilon: the file's numbers are float64 (JSON), its arrays too.
EPS64 = float(np.finfo(np.float64).eps)
#: Ulps allowed between a recorded number and the same number computed again from the same
#: inputs: the passages through JSON and through mpmath's decimal strings each round once.
SAME_ULPS = 4
#: Relative precision of the certificate's 30-digit decimal strings (`objective_digits`).
DIGITS_RELATIVE = Decimal("1e-28")
#: Longest decimal string of the certificate compared (a 30-digit number with its exponent).
MAX_DIGITS_TEXT = 100

Tolerance = Callable[[float], float]


class RecheckError(ValueError):
    """A file that cannot be rechecked; the message is one sentence."""


class Disagreement(Exception):
    """A recorded number that its recomputation contradicts: the file disagrees with itself."""

    def __init__(self, field: str, recorded: object, recomputed: object) -> None:
        super().__init__(
            f"its recorded {field} is {_shown(recorded)}, but recomputed from its own problem "
            f"and point it is {_shown(recomputed)}"
        )


def recheck_file(path: str, named: Claim | None = None) -> dict[str, Any]:
    """The verdict that the saved counterexample at `path` supports, recomputed from scratch,
    for its built-in claim, or for the claim `named` on the command line (`--claim`).

    Returns the JSON-ready result (`claim`, `claim_origin`, `verdict`, `objective`, `claimed`,
    `gap`, `error_bound`, `certificate`, `problem`, `hypotheses`, `checked`, `detail`).

    Raises:
        RecheckError: bad input: a malformed file, an unknown claim, an outside claim not named
            again or named with another id or content, or a recorded number that its
            recomputation contradicts (one sentence naming the field and both values).
    """
    try:
        meta, point = load_counterexample(path)
        problem = saved_problem(meta)
    except CounterexampleFileError as exc:
        raise RecheckError(str(exc)) from None
    claim = named if named is not None else builtin_claim(path, meta)
    check_origin(path, meta, named)
    try:
        with np.errstate(all="ignore"):  # an overflow is a non-finite value, judged as such
            result = _recheck(meta, problem, claim, point)
    except Disagreement as exc:
        raise RecheckError(f"{path!r} disagrees with itself: {exc}.") from None
    return clean({"claim": result.pop("claim"), "claim_origin": meta["claim_origin"], **result})


# ---- step 1: the claim ------------------------------------------------------------------------------
def builtin_claim(path: str, meta: dict[str, Any]) -> Claim:
    """The built-in claim a file names, looked up by id; a claim from outside ncverify is not
    imported on the file's say-so: the user must name it again (`--claim`)."""
    import theorems
    from ncverify.app.claims import describe, reference_of_origin

    origin = meta["claim_origin"]
    if origin["kind"] != "built-in":
        raise RecheckError(
            f"{path!r} was saved from {describe(origin)}, and recheck never imports code that a "
            f"file names: name the claim again, e.g. --claim {reference_of_origin(origin, meta['claim'])}."
        )
    registry = theorems.registry()
    if meta["claim"] not in registry:
        raise RecheckError(f"{path!r} names an unknown claim {_shown(meta['claim'])}.")
    return registry[meta["claim"]]


def check_origin(path: str, meta: dict[str, Any], named: Claim | None) -> None:
    """A claim named with `--claim` must be the file's: the same id; a built-in claim for a
    built-in claim's file; and where both the recorded and the named origin carry a sha256
    (a claim file, a module's file), the same content."""
    from ncverify.app.claims import describe, origin_of

    if named is None:
        return
    recorded, given = meta["claim_origin"], origin_of(named)
    if named.id != meta["claim"]:
        raise RecheckError(
            f"{path!r} was saved from the claim {_shown(meta['claim'])}, but --claim names "
            f"{_shown(named.id)}."
        )
    if (recorded["kind"] == "built-in") != (given["kind"] == "built-in"):
        raise RecheckError(
            f"{path!r} was saved from {describe(recorded)}, but --claim names {describe(given)}."
        )
    before, now = recorded.get("sha256"), given.get("sha256")
    if before is not None and now is not None and before != now:
        raise RecheckError(
            f"{path!r} was saved from {describe(recorded)} with sha256 {before[:12]}..., but "
            f"{describe(given)} now has sha256 {now[:12]}...: its code changed since; recheck "
            "with the claim as it was saved."
        )


def _recheck(meta: dict[str, Any], problem: Problem, claim: Claim, point: Params) -> dict[str, Any]:
    """Steps 2 to 5 of the module docstring on a file that `load_counterexample` accepted."""
    checked = ["problem"]
    check_problem_fields(meta["problem"], problem)
    kind = kind_of(problem.loss)
    value, bound = evaluate(problem, point)
    recorded_bound = float(meta["error_bound"])
    if kind.exact_values:  # the recorded bound is the certificate's: step 4
        eps, value_error = EPS64, 0.0
    else:
        eps = check_error_bound(recorded_bound, recordable_bounds(problem, point), problem)
        value_error = recorded_bound
        checked.append("error_bound")
    recorded = float(meta["objective"])
    tol = value_error + bound + rounding(problem, eps, recorded, value)
    check_number("objective", recorded, value, tol)
    checked.append("objective")
    unmet = unmet_hypotheses(claim, problem)
    if unmet:
        return _result(claim, problem, Verdict.NOT_APPLICABLE, value, bound, None, unmet, checked)
    prediction = claim.closed_form(problem)
    claimed = float(prediction.objective)
    check_number("claimed", float(meta["claimed"]), claimed, SAME_ULPS * EPS64 * abs(claimed))
    gap_tol = tol + SAME_ULPS * EPS64 * max(abs(claimed), abs(value))
    check_number("gap", float(meta["gap"]), claimed - value, gap_tol)
    checked += ["claimed", "gap"]
    cert = certify_point(problem, prediction, point, recorded, recorded_bound)
    if kind.exact_values:
        check_number("error_bound", recorded_bound, cert.bound, same(cert.bound))
        checked.append("error_bound")
    if isinstance(meta.get("certificate"), dict):
        check_certificate(meta["certificate"], cert.to_json(), problem)
        checked.append("certificate")
    if not cert.exact:  # the float path used the recorded value: the verdict uses our own
        cert = certify_point(problem, prediction, point, value, bound)
    verdict = Verdict.REFUTED if cert.certified else Verdict.INCONCLUSIVE
    return _result(claim, problem, verdict, value, bound, (prediction, cert), [], checked)


# ---- step 2: the numbers of the point -------------------------------------------------------------
def evaluate(problem: Problem, point: Params) -> tuple[float, float]:
    """The point's value as its kind takes it (`ncverify.kinds`): `F(point)` in float64 over
    every sample with its proven rounding-error bound, or, where the kind's values are exact (the
    max-margin problem), the value at margin one with bound 0 (its certificate encloses it)."""
    value = kind_of(problem.loss).value_of(problem, point)
    return value.value, value.error


def recordable_bounds(problem: Problem, point: Params) -> list[tuple[float, float]]:
    """`(machine epsilon, error bound)` of every evaluation of the point whose bound a check
    records: in float64, and in float32 where every entry is a float32 number (a float32 run
    saves its point cast exactly to float64); over every sample and over each reduction that
    a check optimises in (`ncverify.model.reduction`), at the point's class means."""
    out = []
    for dtype in (np.float64, np.float32):
        cast = point.map(lambda a, t=dtype: a.astype(t))
        if not all(
            np.array_equal(a, c) for a, c in zip(point.arrays(), cast.arrays(), strict=True)
        ):
            continue
        for parameterisation in PARAMETERISATIONS:
            if unavailable(problem, parameterisation) is not None:
                continue
            objective = Objective(problem, np, dtype=dtype, parameterisation=parameterisation)
            at = cast if parameterisation == "full" else to_class_means(problem.counts, cast, np)
            out.append((float(np.finfo(dtype).eps), objective.error_bound(at)))
    return out


def check_error_bound(
    recorded: float, candidates: list[tuple[float, float]], problem: Problem
) -> float:
    """The machine epsilon of the evaluation whose error bound the file records.

    A bound is computed in floats, so a recomputation agrees with the recorded one to within the
    rounding of its own chain of operations, not exactly.  None agreeing: a disagreement (a
    larger bound would widen every tolerance after it, a smaller one is not what was computed).
    """
    for eps, bound in candidates:
        if abs(recorded - bound) <= gamma(chain_length(problem), eps) * bound:
            return eps
    raise Disagreement("error_bound", recorded, candidates[0][1])


def gamma(k: int, eps: float) -> float:
    """Higham's `gamma_k = k u / (1 - k u)`, `u = eps / 2`: the relative rounding error of a
    chain of `k` floating-point operations (infinite where `k u >= 1/2`: no bound)."""
    ku = k * eps / 2
    return ku / (1 - ku) if ku < 0.5 else math.inf


def chain_length(problem: Problem) -> int:
    """The longest chain of rounded operations in evaluating `F` or its certificate's
    structure, generously: every entry of the point and every term of the loss."""
    entries = sum(a * b for a, b in problem.layer_shapes) + problem.widths[0] * problem.N
    return entries + problem.K * problem.N + problem.K


def rounding(problem: Problem, eps: float, *values: float) -> float:
    """The rounding allowance between two evaluations of the same value: `gamma_k` of the
    problem's chain length, relative to the largest of `values`.  (Between the saving run's
    reduced point and the saved full point the features were rounded once more.)"""
    return gamma(chain_length(problem), eps) * max(abs(v) for v in values)


def same(x: float) -> float:
    """The tolerance between two computations of `x` from the same inputs: `SAME_ULPS` ulps."""
    return SAME_ULPS * EPS64 * abs(x)


def check_number(field: str, recorded: float, recomputed: float, tol: float) -> None:
    """`recorded` must be within `tol` of `recomputed`, which must be finite."""
    if not (math.isfinite(recomputed) and abs(recorded - recomputed) <= tol):
        raise Disagreement(field, recorded, recomputed)


def check_problem_fields(recorded: dict[str, Any], problem: Problem) -> None:
    """Every field that the recorded problem shares with `problem.describe()` (the problem
    rebuilt from the exact fields): the derived ones must follow from the exact ones."""
    for key, value in clean(problem.describe()).items():
        if key in recorded:
            check_same(f"problem.{key}", recorded[key], value, same)


def check_same(field: str, recorded: object, recomputed: object, tol: Tolerance) -> None:
    """`recorded` must have the JSON shape of `recomputed` (a `clean`ed value) and the same
    values: booleans, integers and strings equal, numbers within `tol(recomputed)`."""
    if recomputed is None or isinstance(recomputed, bool | str):
        same_value = recorded == recomputed and type(recorded) is type(recomputed)
    elif isinstance(recomputed, int):
        same_value = type(recorded) is int and recorded == recomputed
    elif isinstance(recomputed, float):
        number = _as_float(recorded)
        same_value = number is not None and abs(number - recomputed) <= tol(recomputed)
    elif isinstance(recomputed, list):
        if not isinstance(recorded, list) or len(recorded) != len(recomputed):
            raise Disagreement(field, recorded, recomputed)
        for i, (r, c) in enumerate(zip(recorded, recomputed, strict=True)):
            check_same(f"{field}[{i}]", r, c, tol)
        return
    elif isinstance(recomputed, dict):
        if not isinstance(recorded, dict):
            raise Disagreement(field, recorded, recomputed)
        for key, value in recomputed.items():
            if key in recorded:
                check_same(f"{field}.{key}", recorded[key], value, tol)
        return
    else:  # pragma: no cover - `clean` leaves nothing else
        same_value = False
    if not same_value:
        raise Disagreement(field, recorded, recomputed)


# ---- step 3: the claim's hypotheses ---------------------------------------------------------------
def unmet_hypotheses(claim: Claim, problem: Problem) -> list[str]:
    """The claim's unmet hypotheses on the saved problem, and a problem of another kind: the
    max-margin problem under a penalised-loss claim or the reverse (different optima, as `verify`
    says), or another loss than the claim's where its hypotheses do not already say so."""
    unmet = list(claim.hypotheses(problem))
    mismatch = kind_mismatch(claim.loss, problem.loss)
    if mismatch is not None:
        unmet.append(mismatch)
    elif claim.loss != problem.loss and not unmet:
        unmet.append(
            f"the claim is about the {claim.loss} loss, the saved problem has {problem.loss}"
        )
    return unmet


# ---- step 4: the recorded certificate ----------------------------------------------------------------
def check_certificate(
    recorded: dict[str, Any], recomputed: dict[str, Any], problem: Problem
) -> None:
    """The recorded certificate against the one recomputed from the same point and the same
    (checked) value: numbers within `SAME_ULPS`, the 30-digit strings within their precision,
    the structure's matrices within the rounding of their products; the method's wording is not
    compared."""
    for key, value in clean(recomputed).items():
        if key not in recorded or key == "method":
            continue
        field = f"certificate.{key}"
        if key.endswith("_digits"):
            check_digits(field, recorded[key], value)
        elif key == "structure" and isinstance(value, dict):
            check_structure(field, recorded[key], value, problem)
        else:
            check_same(field, recorded[key], value, same)


def check_digits(field: str, recorded: object, recomputed: str) -> None:
    """Two decimal strings of the same number (mpmath `nstr`, 30 digits) must agree to their
    precision; parsed as `Decimal`, never as an exact rational (an exponent costs nothing)."""
    if not isinstance(recorded, str) or len(recorded) > MAX_DIGITS_TEXT:
        raise Disagreement(field, recorded, recomputed)
    try:
        with localcontext() as ctx:
            ctx.prec = 40
            a, b = Decimal(recorded), Decimal(recomputed)
            agree = (a == b) or (b.is_finite() and abs(a - b) <= DIGITS_RELATIVE * abs(b))
    except DecimalException:  # not a number; an exponent beyond the context's range
        agree = False
    if not agree:
        raise Disagreement(field, recorded, recomputed)


def check_structure(
    field: str, recorded: object, recomputed: dict[str, Any], problem: Problem
) -> None:
    """The point's structure (logits, Gram matrices, singular values): each array within the
    rounding of the products that made it, relative to its largest entry."""
    if not isinstance(recorded, dict):
        raise Disagreement(field, recorded, recomputed)
    for key, value in recomputed.items():
        if key not in recorded:
            continue
        flat = np.abs(np.asarray(value if isinstance(value, list) else [value or 0], dtype=float))
        scale = float(flat.max()) if flat.size else 0.0
        allowed = gamma(chain_length(problem), EPS64) * scale
        check_same(f"{field}.{key}", recorded[key], value, lambda _x, t=allowed: t)


# ---- step 5: the result -----------------------------------------------------------------------------
def _result(
    claim: Claim,
    problem: Problem,
    verdict: Verdict,
    value: float,
    bound: float,
    judged: tuple[Prediction, dict[str, Any]] | None,
    unmet: list[str],
    checked: list[str],
) -> dict[str, Any]:
    agree = f"The file agrees with itself ({', '.join(checked)} recomputed). "
    if judged is None:
        detail = (
            agree
            + "The saved problem is outside the claim's hypotheses: "
            + "; ".join(unmet)
            + ". "
            "A point of it refutes nothing about the claim."
        )
        claimed = gap = cert = None
    else:
        prediction, cert = judged
        claimed = float(prediction.objective)
        gap = claimed - value
        beats = cert.certified
        detail = agree + (
            f"F(saved point) = {cert.objective_digits}, claimed optimum "
            f"{cert.claimed_digits}{'' if cert.rigorous else ' (not an enclosure)'}, "
            f"gap {cert.gap:.6e}, proven error bound {cert.bound:.3e} ({cert.method}): "
            + (
                "the point beats the claimed optimum by more than the bound."
                if beats
                else "the point does not beat the claimed optimum beyond the bound."
            )
        )
    return {
        "claim": claim.id,
        "verdict": verdict,
        "objective": value,
        "claimed": claimed,
        "gap": gap,
        "error_bound": bound,
        "certificate": None if cert is None else cert.to_json(),
        "problem": problem.describe(),
        "hypotheses": unmet,
        "checked": checked,
        "detail": detail,
    }


def _as_float(value: object) -> float | None:
    """A JSON number as a float; None for anything else, or an integer beyond float64."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        return float(value)
    except OverflowError:
        return None


def _shown(value: object) -> str:
    """A value as a sentence shows it: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
