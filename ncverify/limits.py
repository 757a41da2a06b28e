"""Size limits of the verification steps, and how a step says it was skipped.

No input may hang or abort the process: a step whose cost for an instance would exceed what a
check can afford is skipped *before* it starts, by raising `StepSkipped` with one sentence
saying why and how to force it.  The pipeline records that sentence in the report and goes on
with the evidence that remains; the verdict then says no more than that evidence.

`check --force` (`Settings.force`) runs every step whatever its size: `verify` sets the
`forcing` context for the length of one verification, and each step asks `forced()`.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

#: Largest cost of one objective evaluation, in multiply-adds, for which the random-start runs
#: (E2) are attempted: one run takes thousands of evaluations (the full problem with K = 4,
#: N = 10^6 samples and width 64, 8e8 multiply-adds, is about a minute per run on one core).
MAX_EVALUATION_COST = 1_000_000_000
#: Largest `K` for which the predicted Gram matrices (`K x K` each) go into the JSON report.
MAX_CLASSES_FOR_GRAMS = 256
#: The sentence every skip note ends with.
HOW_TO_FORCE = "pass --force (Settings(force=True)) to run it anyway"

_FORCE: contextvars.ContextVar[bool] = contextvars.ContextVar("ncverify_force", default=False)


class StepSkipped(Exception):
    """A verification step declined an instance too large for it; the message says why."""


def forced() -> bool:
    """True inside `forcing(True)`: every step runs whatever the size of the instance."""
    return _FORCE.get()


@contextlib.contextmanager
def forcing(on: bool) -> Iterator[None]:
    token = _FORCE.set(on)
    try:
        yield
    finally:
        _FORCE.reset(token)


def check_runs_size(cost: int) -> None:
    """Raise `StepSkipped` when random-start runs whose every evaluation of the objective costs
    `cost` multiply-adds would take too long."""
    if cost > MAX_EVALUATION_COST and not forced():
        raise StepSkipped(
            f"the random-start runs are skipped: every evaluation of the objective costs about "
            f"{cost:.1e} multiply-adds, above the limit of {MAX_EVALUATION_COST:.0e}, and one run "
            f"takes thousands of evaluations; {HOW_TO_FORCE}"
        )
