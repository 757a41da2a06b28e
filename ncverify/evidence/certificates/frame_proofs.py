"""Proving the leaves of `frame-branch-and-bound` while its search goes on
(docs/theory/depth-certificates.md#frame).

The float search closes a few leaves a box; proving one in `mpmath.iv` costs about as much as
proposing it.  So the leaves go, in batches, to worker processes (`workers.pool`, killed with
the check) that prove them while the search proposes the next, and no leaf is kept once it is
proven: a budget of tens of thousands of boxes makes hundreds of thousands of leaves.  The least
proven bound is a minimum, the same whichever process proved what.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from typing import Any

import mpmath
import numpy as np

from ncverify.evidence import workers
from ncverify.evidence.certificates.frame_bounds import LeafProposal, proven_leaf
from ncverify.evidence.certificates.gram import TARGET_GAP
from ncverify.model.intervals import interval_precision

#: Leaves per batch sent to a worker, and batches in flight before the search waits for one
#: (which bounds the leaves held in memory).
BATCH = 400
IN_FLIGHT = 8

Leaf = tuple[np.ndarray, np.ndarray, np.ndarray, float, LeafProposal]


def prove_batch(depth: int, bits: int, target: mpmath.mpf, leaves: list[Leaf]) -> mpmath.mpf:
    """The least proven bound of `sum_i x_i^p`, `p = 1/(depth + 1)`, over `leaves`, or `target`
    if all are proven above it (a worker's task; `bits` of interval precision)."""
    least = target
    with interval_precision(bits) as iv:
        p = iv.mpf(1) / (depth + 1)
        for l, u, r, h, prop in leaves:
            least = min(least, proven_leaf(p, l, u, r, h, prop, iv, target))
    return least


class Prover:
    """Takes each leaf the search closes, proves it (in `pool`'s workers, or here when there is
    no pool) and keeps the least bound; a leaf proven above the target counts as the target."""

    def __init__(self, depth: int, bits: int, pool: ProcessPoolExecutor | None) -> None:
        self.depth, self.bits, self.pool = depth, bits, pool
        self.target = mpmath.mpf(0)
        self.least = mpmath.inf
        self.proven = 0
        self._batch: list[Leaf] = []
        self._flying: deque[Future[mpmath.mpf]] = deque()

    def aim(self, target: float) -> None:
        self.target = mpmath.mpf(target) * (1 - mpmath.mpf(TARGET_GAP))
        self.least = self.target

    def lower(self, value: float) -> None:
        """From now on a leaf proven above `value` counts as `value`, and so needs only its crude
        bound (the least open leaf's float bound: no proof of the others can go below it by
        more than rounding, and every leaf still gets a valid bound)."""
        self.target = min(self.target, mpmath.mpf(value))

    def __call__(self, *leaf: Any) -> None:
        self._batch.append(leaf)  # type: ignore[arg-type]
        self.proven += 1
        if len(self._batch) >= BATCH:
            self._send()

    def finish(self) -> mpmath.mpf:
        """Every leaf proven: the least bound."""
        self._send()
        while self._flying:
            self._collect()
        return self.least

    def _send(self) -> None:
        batch, self._batch = self._batch, []
        if not batch:
            return
        if self.pool is None:
            self.least = min(self.least, prove_batch(self.depth, self.bits, self.target, batch))
            return
        while len(self._flying) >= IN_FLIGHT:
            self._collect()
        self._flying.append(
            self.pool.submit(prove_batch, self.depth, self.bits, self.target, batch)
        )

    def _collect(self) -> None:
        self.least = min(self.least, self._flying.popleft().result())


@contextlib.contextmanager
def prover(depth: int, bits: int) -> Iterator[Prover]:
    """A `Prover` with one worker process per CPU beyond the search's own (none on one CPU;
    `NCVERIFY_JOBS` caps them as it does every pool)."""
    jobs = min(workers.default_jobs("numpy", 3) - 1, 2)
    if jobs < 1:
        yield Prover(depth, bits, None)
        return
    with workers.pool(jobs) as pool:
        yield Prover(depth, bits, pool)
