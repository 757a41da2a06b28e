"""Problem kinds, one module each (`base.py` has the interface): the pipeline finds the kind of
an instance here and names none itself.

- `penalised.py`: mean squared error or cross-entropy plus weight decay, linear or ReLU layers;
- `max_margin.py`: the constrained max-margin limit of cross-entropy.
"""

from __future__ import annotations

from ncverify.kinds.base import KindSession, ProblemKind, RunCost, RunSettings
from ncverify.kinds.max_margin import MaxMargin
from ncverify.kinds.penalised import Penalised

__all__ = [
    "KINDS",
    "KindSession",
    "ProblemKind",
    "RunCost",
    "RunSettings",
    "kind_mismatch",
    "kind_of",
]

#: Every kind; each loss belongs to exactly one.
KINDS: tuple[ProblemKind, ...] = (Penalised(), MaxMargin())


def kind_mismatch(claim_loss: str, problem_loss: str) -> str | None:
    """Why a claim about one kind of problem says nothing about an instance of another (their
    optima differ), or None where the kinds agree."""
    own, given = kind_of(claim_loss), kind_of(problem_loss)
    if own is given:
        return None
    return (
        f"{given.description} and {own.description} have different optima: a claim about one "
        "cannot be probed on the other"
    )


def kind_of(loss: str) -> ProblemKind:
    """The kind whose problems have this loss."""
    for kind in KINDS:
        if kind.covers(loss):
            return kind
    raise ValueError(f"no problem kind covers the loss {loss!r}.")
