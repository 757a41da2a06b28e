"""The cost model: what an input may ask for, what each step may cost, and how a step says it
was skipped.

No input may hang or abort the process, and every cost is decided *before* the work:

- **What an instance may ask for at all** (`MAX_CLASSES`, `MAX_DEPTH`, `LAMBDA_RANGE`, ...): more
  is bad input (one sentence, exit code 2), checked by `ncverify.model.problem.Problem` and the
  command line before anything is allocated.  These do not depend on the machine.
- **Memory** (`memory_budget`, from the machine and the process's address-space limit):
  `check_memory` refuses an input no step could hold (`InputTooLarge`, bad input);
  `skip_unless_fits` skips one step whose arrays would not fit.  `--force` never lifts these: a
  step that cannot fit would abort the process, not merely take long.
- **Multiply-adds** (`check_runs_size`): a step whose work would be out of proportion is skipped
  by raising `StepSkipped` with one sentence saying why and how to force it.

The pipeline records each skip in the report and goes on with the evidence that remains; the
verdict then says no more than that evidence.  `check --force` (`Settings.force`) runs every
step whatever its multiply-adds: `verify` sets the `forcing` context for the length of one
verification, and each step asks `forced()`.
"""

from __future__ import annotations

import contextlib
import contextvars
import os
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


#: Work of all the random-start runs of one check, in multiply-adds (about a quarter of an hour
#: on one core): the descents of a run are capped so that their worst case stays below it.
MAX_SEARCH_COST = 1e12
#: What one evaluation costs beyond its multiply-adds (Python and array overhead, about 50 us):
#: on a small instance it is most of the cost.
EVALUATION_OVERHEAD = 50_000
#: Fewest iterations a descent may be capped to; below it the runs are skipped instead.
MIN_DESCENT_ITERATIONS = 200


def descent_iterations(runs: int, descents: int, cost: int, max_iter: int) -> int:
    """Iterations each descent of `runs` runs (`descents` descents each, every iteration about
    one evaluation of `cost` multiply-adds) may take: `max_iter`, or fewer where the worst case
    of all of them would exceed `MAX_SEARCH_COST`; `StepSkipped` where even
    `MIN_DESCENT_ITERATIONS` would.  Typical descents take tens to thousands of iterations, so
    the cap rarely binds where the search is affordable at all."""
    if forced():
        return max_iter
    per_iteration = runs * descents * (cost + EVALUATION_OVERHEAD)
    cap = min(max_iter, int(MAX_SEARCH_COST // per_iteration))
    if cap < MIN_DESCENT_ITERATIONS:
        raise StepSkipped(
            f"the random-start runs are skipped: {runs} runs of {descents} descents each, at "
            f"about {cost + EVALUATION_OVERHEAD:.1e} multiply-adds an iteration, could take "
            f"{per_iteration * MIN_DESCENT_ITERATIONS:.1e} multiply-adds at "
            f"{MIN_DESCENT_ITERATIONS} iterations a descent, above the limit of "
            f"{MAX_SEARCH_COST:.0e}; {HOW_TO_FORCE}"
        )
    return cap


def check_runs_size(cost: int) -> None:
    """Raise `StepSkipped` when random-start runs whose every evaluation of the objective costs
    `cost` multiply-adds would take too long."""
    if cost > MAX_EVALUATION_COST and not forced():
        raise StepSkipped(
            f"the random-start runs are skipped: every evaluation of the objective costs about "
            f"{cost:.1e} multiply-adds, above the limit of {MAX_EVALUATION_COST:.0e}, and one run "
            f"takes thousands of evaluations; {HOW_TO_FORCE}"
        )


# ---- what an instance may ask for at all (bad input above these: one sentence, exit 2) ------------
#: Largest number of classes: the closed forms do per-class exact arithmetic (about a millisecond
#: a class), so `predict` at this size takes seconds and a check's per-class tables stay readable.
MAX_CLASSES = 10_000
#: Largest class count: counts enter the float64 objective as weights, exact up to 2**53.
MAX_COUNT = 2**53
#: Largest depth: the closed forms solve a scalar problem of degree `M + 1` per class in exact and
#: interval arithmetic; at depth 100 that takes seconds, and no claim in the field is stated deeper.
MAX_DEPTH = 100
#: Weight decays are read exactly, but every numerical step works in float64: a lambda given as
#: input, and the product `P = lambda_H prod lambda_W` the closed forms take roots of, must lie
#: well inside its normal range (`2.2e-308 .. 1.8e308`).
LAMBDA_RANGE = (1e-100, 1e100)
PRODUCT_RANGE = (1e-200, 1e200)
#: What any `Problem` may hold, inputs and the problems derived from them: the lambda continuation
#: of the runs scales every lambda by 1/8 to 4, so `P` by up to `8^-(M+1)` (1e-91 at depth 100)
#: or `4^(M+1)` (1e61), and the input ranges above stay inside these.
REPRESENTABLE_LAMBDA = (1e-150, 1e150)
REPRESENTABLE_PRODUCT = (1e-300, 1e300)
#: Radii of a normalised problem: the logits are bounded by `r_W r_H`, whose exponential the
#: softmax takes in float64 (`exp(700)` overflows): products of radii up to 100 keep every logit
#: gap representable, and radii below 1e-6 make every class equally likely to rounding.
RADIUS_RANGE = (1e-6, 1e2)
#: Largest number of random-start runs of one check (`restarts * 2**escalate`): every run keeps its
#: end point and its row of the report.
MAX_RUNS = 65_536
#: Largest seed: numpy's generators take any non-negative integer, the reports print it, and the
#: sweep's commands repeat it; 2**63 - 1 is the largest a JSON reader keeps exactly as int64.
MAX_SEED = 2**63 - 1
#: Largest box budget of the branch-and-bound certificates at depth: every box the Gram kind
#: splits keeps a proposal (about a kilobyte) until its bound is proven, at up to 50 ms a box for
#: four classes (about 40 minutes at the cap); three classes need a few thousand to ten thousand.
#: The frame kind proves its closed leaves as it goes and keeps only the open ones (about a
#: kilobyte each, some 110 000 at 45 000 boxes), at about 20 ms a box on 2 cores.
MAX_CERTIFICATE_BOXES = 50_000
#: Largest number of points of one sweep (each is a whole check).
MAX_SWEEP_POINTS = 10_000

#: Bytes of one float64 entry.
FLOAT_BYTES = 8
#: Copies of its point that one optimiser run holds at once: ten L-BFGS pairs, the gradient, the
#: line search's trial points and the objective's intermediate products.
WORKING_COPIES = 32


class InputTooLarge(ValueError):
    """An input whose cost no step could afford (bad input, exit 2); the message is one sentence."""


def memory_budget() -> int:
    """Bytes one check may hold in arrays: half of the machine's memory, and half of the process's
    address-space limit where one is set (`ulimit -v`, `RLIMIT_AS`), so that a refusal comes
    before the kernel's abort; `NCVERIFY_MEMORY_BUDGET` (bytes) lowers it further."""
    budgets = [_physical_memory() // 2]
    with contextlib.suppress(ImportError, ValueError, OSError):
        import resource

        soft, _ = resource.getrlimit(resource.RLIMIT_AS)
        if soft not in (resource.RLIM_INFINITY, -1) and soft > 0:
            budgets.append(soft // 2)
    env = os.environ.get("NCVERIFY_MEMORY_BUDGET")
    if env:
        with contextlib.suppress(ValueError):
            budgets.append(max(1, int(env)))
    return min(budgets)


def _physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX: assume a small machine
        return 8 * 2**30


def bytes_text(n: float) -> str:
    """`3.2 GB`: a size in words for the sentences of this module."""
    if n >= 1e15:
        return f"{n:.2g} bytes"
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n / 1e3:.3g} kB"


def fits_in_memory(n_bytes: int) -> bool:
    return n_bytes <= memory_budget()


def check_memory(n_bytes: int, what: str) -> None:
    """Raise `InputTooLarge` when `what` needs more memory than the budget: no `--force` lifts
    this (a step that cannot fit would abort the process, not merely take long)."""
    budget = memory_budget()
    if n_bytes > budget:
        raise InputTooLarge(
            f"{what} needs about {bytes_text(n_bytes)} of memory, more than the "
            f"{bytes_text(budget)} a check may use on this machine."
        )


def skip_unless_fits(n_bytes: int, step: str) -> None:
    """Raise `StepSkipped` when `step` would need more memory than the budget (never forced)."""
    budget = memory_budget()
    if n_bytes > budget:
        raise StepSkipped(
            f"{step} is skipped: it needs about {bytes_text(n_bytes)} of memory, more than the "
            f"{bytes_text(budget)} a check may use on this machine"
        )
