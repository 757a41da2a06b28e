"""Problem kinds, one module each (`base.py` has the interface), found here by discovery: a
module of this package that defines `kind`, an instance of `ProblemKind`, is a kind, so adding
one touches no other module.  The pipeline finds the kind of an instance here and names none.
Each module's docstring says what its problems are (`ncverify.kinds.KINDS` lists them).
"""

from __future__ import annotations

import importlib
import pkgutil

from ncverify.kinds.base import KindSession, ProblemKind, RunCost, RunSettings

__all__ = [
    "KINDS",
    "KindSession",
    "ProblemKind",
    "RunCost",
    "RunSettings",
    "kind_mismatch",
    "kind_of",
]


def _discovered() -> tuple[ProblemKind, ...]:
    """The `kind` of every module of this package, in module order."""
    found = []
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name == "base" or info.name.startswith("_"):
            continue
        kind = getattr(importlib.import_module(f"{__name__}.{info.name}"), "kind", None)
        if isinstance(kind, ProblemKind):
            found.append(kind)
    return tuple(found)


#: Every kind; each loss belongs to exactly one.
KINDS: tuple[ProblemKind, ...] = _discovered()


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
