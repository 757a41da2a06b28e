"""Re-evaluate a saved counterexample from scratch, in a fresh process.

The file holds the claim id, the problem and the point; nothing computed by the run that saved
it is trusted: the claimed optimum is recomputed from the claim's closed form, the point's
objective and its rounding-error bound are recomputed, and the verdict follows from them alone
(the high-precision certificate of `ncverify.model.exact.certify_point`, shared with the verifier).
"""

from __future__ import annotations

from typing import Any

from ncverify.backend import Backend
from ncverify.io import CounterexampleFileError, load_counterexample
from ncverify.model.exact import certify_point
from ncverify.model.max_margin import value_at_margin_one
from ncverify.model.objective import Objective, Params
from ncverify.model.problem import Problem, ProblemError
from ncverify.report import Verdict


class RecheckError(ValueError):
    """A file that cannot be rechecked; the message is one sentence."""


def load(path: str) -> tuple[dict[str, Any], Params]:
    try:
        return load_counterexample(path)
    except CounterexampleFileError as exc:
        raise RecheckError(str(exc)) from None


def problem_from(meta: dict[str, Any]) -> Problem:
    p = meta["problem"]
    try:
        return Problem.build(
            counts=p["counts"],
            depth=p["depth"],
            widths=p["widths"],
            lambda_w=p["lambda_w_exact"],
            lambda_h=p["lambda_h_exact"],
            lambda_b=p["lambda_b_exact"],
            loss=p["loss"],
            bias=p["bias"],
            activation=p.get("activation", "linear"),  # files saved before it was a field
        )
    except (ProblemError, KeyError) as exc:
        raise RecheckError(f"the saved problem is invalid: {exc}") from None


def recheck_file(path: str) -> dict[str, Any]:
    import theorems

    meta, point = load(path)
    problem = problem_from(meta)
    registry = theorems.registry()
    if meta["claim"] not in registry:
        raise RecheckError(f"the file names an unknown claim {meta['claim']!r}.")
    claim = registry[meta["claim"]]
    shapes = [w.shape for w in point.Ws]
    if shapes != problem.layer_shapes or point.H.shape != (problem.widths[0], problem.N):
        raise RecheckError("the saved arrays do not match the saved problem's shapes.")
    prediction = claim.closed_form(problem)
    claimed = prediction.objective
    if problem.loss == "max-margin":  # constrained: the value at margin 1, enclosed exactly below
        value, bound = value_at_margin_one(problem, point), 0.0
    else:
        objective = Objective(problem, Backend.create("numpy").xp)
        value, bound = objective.value(point), objective.error_bound(point)
    cert = certify_point(problem, prediction, point, value, bound)
    beats = cert["certified"]
    verdict = Verdict.REFUTED if beats else Verdict.INCONCLUSIVE
    detail = (
        f"F(saved point) = {cert['objective_digits']}, claimed optimum "
        f"{cert['claimed_digits']}{'' if cert['claimed_rigorous'] else ' (not an enclosure)'}, "
        f"gap {cert['gap']:.6e}, proven error bound {cert['bound']:.3e} ({cert['method']}): "
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
        "claimed": float(claimed),
        "gap": float(claimed) - value,
        "error_bound": bound,
        "certificate": cert,
        "problem": problem.describe(),
        "detail": detail,
    }
