"""Execution on a Dask cluster (a local one on loopback, or an existing scheduler)."""

from __future__ import annotations

import contextlib
import logging
import os
import signal
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from ncverify.app.sweep._common import MAX_RESUBMIT, TASK_PREFIX, SweepError
from ncverify.app.sweep.results import ResultsFile
from ncverify.app.sweep.tasks import PointTask, run_point


# ---- execution ----------------------------------------------------------------------------------
def default_workers() -> int:
    """The usable CPU cores of this machine."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


@contextlib.contextmanager
def dask_client(scheduler: str | None, workers: int | None) -> Iterator[Any]:
    """A Dask client: of an existing cluster at `scheduler`, or of a local cluster of
    `workers` single-threaded worker processes listening on loopback only (closed on exit)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise SweepError(
            "sweep needs dask and distributed: pip install 'ncverify[sweeps]'."
        ) from None
    if scheduler is not None:
        try:
            client = Client(scheduler, timeout="5s", set_as_default=False)
        except (OSError, TimeoutError, ValueError, TypeError) as exc:
            raise SweepError(
                f"cannot connect to the Dask scheduler at {scheduler!r}: {exc}."
            ) from None
        try:
            yield client
        finally:
            client.close()
        return
    cluster = LocalCluster(
        n_workers=workers or default_workers(),
        threads_per_worker=1,
        processes=True,
        host="127.0.0.1",
        dashboard_address=None,
        # the cluster's own logs (a worker's heartbeat racing the shutdown, say) are not the
        # user's business: a point's failure reaches us through its future and is reported
        silence_logs=logging.CRITICAL,
        preload=[__name__],  # each worker runs `dask_setup` below as it starts: quiet on Ctrl-C
    )
    client = Client(cluster, set_as_default=False)
    try:
        yield client
    finally:
        with _quiet("distributed"):
            client.close()
            cluster.close()


def dask_setup(worker: Any) -> None:  # noqa: ARG001 - the signature of Dask's preload hook
    """Ignore SIGINT in a worker process of the local cluster (Dask's preload hook, run in the
    worker's main thread as it starts).

    Why: Ctrl-C at a terminal sends SIGINT to the whole foreground process group, the local
    workers included, and each of them printed a KeyboardInterrupt traceback (17 lines a worker)
    under the sweep's own message.  The sweep's process answers Ctrl-C alone: it says what is
    saved, and closing the cluster stops the workers.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def _quiet(name: str) -> Iterator[None]:
    """The logger `name` (and its children) silent inside the block, as before after it."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.CRITICAL + 1)
    try:
        yield
    finally:
        logger.setLevel(level)


@dataclass
class Outcome:
    """What a sweep did: records by key, how many were computed or reused, and failures."""

    records: dict[str, dict[str, Any]]
    computed: int = 0
    reused: int = 0
    resubmitted: int = 0
    failures: dict[str, str] = field(default_factory=dict)


def _reuse(tasks: Sequence[PointTask], results: ResultsFile, outcome: Outcome) -> list[PointTask]:
    """Take the tasks already in `results` into `outcome`; returns those still to run."""
    pending = []
    for t in tasks:
        if t.key in results:
            outcome.records[t.key] = results.records[t.key]
            outcome.reused += 1
        else:
            pending.append(t)
    return pending


def _resubmit(client: Any, task: PointTask, attempt: int) -> Any:
    """The task again, after the scheduler gave up on a worker (a new key: the old one failed)."""
    key = f"{TASK_PREFIX}-{task.key}-again{attempt}"
    return client.submit(run_point, task, key=key, pure=False, retries=1)


def execute(
    tasks: Sequence[PointTask],
    results: ResultsFile,
    client: Any,
    progress: Callable[[int, int], None] | None = None,
) -> Outcome:
    """Run every task whose key is not yet in `results`, appending each record as it finishes
    (`client` is not used when there is none to run)."""
    from distributed import as_completed
    from distributed.scheduler import KilledWorker

    outcome = Outcome(records={})
    total = len(tasks)
    pending = _reuse(tasks, results, outcome)
    done = outcome.reused
    if progress is not None:
        progress(done, total)
    if not pending:
        return outcome
    futures: dict[Any, PointTask] = {}
    attempts: dict[str, int] = {}
    for t in pending:
        fut = client.submit(run_point, t, key=f"{TASK_PREFIX}-{t.key}", pure=False, retries=1)
        futures[fut] = t
    completed = as_completed(list(futures), loop=client.loop)
    try:
        for fut in completed:
            task = futures.pop(fut)
            if fut.status == "finished":
                record = fut.result()
                if results.append(record):
                    outcome.computed += 1
                outcome.records[task.key] = results.records[task.key]
                done += 1
            elif fut.status == "cancelled":
                outcome.failures[task.key] = "cancelled on the cluster"
                done += 1
            else:
                exc = fut.exception()
                n = attempts.get(task.key, 0)
                if isinstance(exc, KilledWorker) and n < MAX_RESUBMIT:
                    attempts[task.key] = n + 1
                    outcome.resubmitted += 1
                    again = _resubmit(client, task, n + 1)
                    futures[again] = task
                    completed.add(again)
                else:
                    outcome.failures[task.key] = f"{type(exc).__name__}: {exc}"
                    done += 1
            fut.release()
            if progress is not None:
                progress(done, total)
    finally:
        for fut in futures:  # interrupted: nothing left running for us on the cluster
            fut.cancel()
    return outcome
