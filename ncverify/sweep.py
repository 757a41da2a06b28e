"""Sweeps: one `check` per point of a parameter grid, run through Dask, drawn as a phase diagram.

`ncverify sweep CLAIM` takes the options of `check`; any of `--lambda-w`, `--lambda-h`,
`--lambda-b`, `--depth`, `--classes`, `--samples` and `--width` may be a range
`start:stop:count[:log]`, and `--lambda-h tied` sets `lambda_H = lambda_W` at every point.  The
grid is the Cartesian product of the ranges; every point is one `ncverify.verify.verify` call,
with the same seed at every point, so a point's report is the report `check` gives for the same
options (timings aside).

Grid values of the lambdas are exact rationals, so that regimes are decided exactly: an interior
point of a log grid, `start (stop/start)^{i/(count-1)}`, is rounded to `SIGNIFICANT_DIGITS`
significant decimal digits and that decimal is read exactly (`0.000158489` is
`158489/1000000000`); the end points are the given values themselves.  Each point records the
decimal, the rational and the unrounded grid value.  Integer ranges are rounded to integers
(repeated values are dropped).

Execution: a `distributed.LocalCluster` of worker processes on this machine's cores (loopback
only), or an existing cluster (`--scheduler ADDRESS`).  Each finished point is appended at once
to the results file as one JSON line: the report object of `check --json` plus a `sweep` member
(`key`, grid `index`, the point's coordinates, the equivalent `check` command).  The key is a
digest of everything that determines the report (claim, problem, settings, backend), so
`--resume` skips every point whose key is in the file, and a point is never written twice.
A worker lost mid-sweep loses nothing: the scheduler reschedules its tasks on the remaining
workers, and a task that the scheduler gives up on (`KilledWorker`) is resubmitted.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import math
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from fractions import Fraction
from typing import Any

import mpmath

from .problem import Problem, ProblemError, exact
from .report import Verdict
from .verify import Settings

SIGNIFICANT_DIGITS = 6
RANGE_OPTIONS: tuple[str, ...] = (
    "classes",
    "samples",
    "depth",
    "width",
    "lambda_w",
    "lambda_h",
    "lambda_b",
)
INTEGER_OPTIONS = frozenset({"classes", "samples", "depth", "width"})
LAMBDA_OPTIONS = frozenset({"lambda_w", "lambda_h", "lambda_b"})
FLAGS = {  # option name -> the CLI flag, for messages and reproducing commands
    "counts": "--counts",
    "classes": "--classes",
    "samples": "--samples",
    "depth": "--depth",
    "width": "--width",
    "widths": "--widths",
    "lambda_w": "--lambda-w",
    "lambda_h": "--lambda-h",
    "lambda_b": "--lambda-b",
    "bias": "--bias",
    "loss": "--loss",
}
TASK_PREFIX = "ncverify-point"
ALIVE_GAIN = 1e-4  # a class is alive in an optimiser run when (W Hbar)_kk exceeds this
MAX_RESUBMIT = 3  # resubmissions of a point after the scheduler gave up on it (KilledWorker)
PLOT_FORMATS = ("png", "svg", "pdf")
VERDICT_COLOURS = {
    Verdict.CERTIFIED: "#2ca02c",
    Verdict.CONSISTENT: "#98df8a",
    Verdict.REFUTED: "#d62728",
    Verdict.INCONCLUSIVE: "#ffbf00",
    Verdict.NOT_APPLICABLE: "#b0b0b0",
}


class SweepError(ValueError):
    """Input no sweep could accept; its message is one sentence."""


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


# ---- tasks --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PointTask:
    """Everything a worker needs to check one point (plain, picklable data)."""

    key: str
    index: int
    claim_id: str
    problem: Problem
    settings: Settings
    backend: tuple[str, str | None, str]
    coordinates: dict[str, dict[str, Any]]
    tied: bool
    command: str


def point_key(
    claim_id: str, problem: Problem, settings: Settings, backend: tuple[str, str | None, str]
) -> str:
    """A digest of everything that determines a point's report: two points share a key exactly
    when `check` would give them the same report (timings aside)."""
    identity = {
        "claim": claim_id,
        "problem": {
            "counts": list(problem.counts),
            "depth": problem.depth,
            "widths": list(problem.widths),
            "lambda_w": [str(x) for x in problem.lambda_w],
            "lambda_h": str(problem.lambda_h),
            "lambda_b": None if problem.lambda_b is None else str(problem.lambda_b),
            "loss": problem.loss,
            "bias": problem.bias,
        },
        "settings": {
            "restarts": settings.restarts,
            "seed": settings.seed,
            "scales": [float(s) for s in settings.scales],
            "certificate": settings.certificate,
            "optimise": settings.optimise,
            "probe": settings.probe,
            "max_iter": settings.max_iter,
            "curvature_steps": settings.curvature_steps,
            "escalate": settings.escalate,
            # only when set: the keys of earlier results files stay valid
            **({"force": True} if settings.force else {}),
        },
        "backend": list(backend),
    }
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def check_command(claim_id: str, options: dict[str, str | None], extra: Sequence[str]) -> str:
    """The `ncverify check` command that reproduces one point's report."""
    words = ["ncverify", "check", claim_id]
    for name, flag in FLAGS.items():
        value = options.get(name)
        if value is not None:
            words += [flag, value]
    return " ".join([*words, *extra])


@contextlib.contextmanager
def _serial_runs() -> Iterator[None]:
    """Run the optimiser's restarts in this process: a sweep's parallelism is across points,
    and a Dask worker process must not fork pools of its own."""
    old = os.environ.get("NCVERIFY_JOBS")
    os.environ["NCVERIFY_JOBS"] = "1"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("NCVERIFY_JOBS", None)
        else:
            os.environ["NCVERIFY_JOBS"] = old


def run_point(task: PointTask) -> dict[str, Any]:
    """Check one point (on a worker) and return its results-file record."""
    import theorems

    from .backend import Backend
    from .verify import verify

    claim = theorems.registry()[task.claim_id]
    backend = Backend.create(*task.backend)
    with _serial_runs():
        report = verify(claim, task.problem, backend, task.settings)
    record = report.to_json()
    record["sweep"] = {
        "key": task.key,
        "index": task.index,
        "point": task.coordinates,
        "tied": task.tied,
        "command": task.command,
        "best_run": best_run_classes(report),
    }
    return record


def best_run_classes(report: Any) -> dict[str, Any] | None:
    """Per class, at the best random-start run (lowest objective): the gain `(W Hbar)_{kk}`,
    `||w_k||` (row k of `W_M ... W_1`) and `||hbar_k||` (class mean at layer 1); None without
    runs.  A class counts as alive in the run when its gain exceeds `ALIVE_GAIN`."""
    import numpy as np

    from .metrics import layer_geometry
    from .objective import Objective
    from .report import clean

    runs = [r for r in report.runs if math.isfinite(r.objective)]
    if not runs:
        return None
    best = min(runs, key=lambda r: r.objective)
    be = report.backend
    objective = Objective(report.problem, be.xp, dtype=be.dtype, device=be.device)
    geom = layer_geometry(objective, best.point.map(be.asarray))[0]
    wh, w, hbar = (
        np.asarray(be.to_numpy(a), dtype=np.float64) for a in (geom.WH, geom.W, geom.Hbar)
    )
    gains = np.diag(wh)
    return clean(
        {
            "seed": best.seed,
            "objective": best.objective,
            "gains": gains,
            "norms_w": np.linalg.norm(w, axis=1),
            "norms_h": np.linalg.norm(hbar, axis=0),
            "alive": [k for k, g in enumerate(gains) if g > ALIVE_GAIN],
        }
    )


# ---- the results file ---------------------------------------------------------------------------
class ResultsFile:
    """An append-only JSON-lines file of point records, at most one per key.

    Opening it for a resumed sweep drops a line cut short by an interrupted write (the file is
    rewritten without it); opening an existing file without `resume` is refused.
    """

    def __init__(self, path: str | None, resume: bool) -> None:
        self.path = path
        self.records: dict[str, dict[str, Any]] = {}
        self.dropped = 0
        if path is None:
            if resume:
                raise SweepError("--resume needs --out FILE, the results file to continue.")
            return
        if os.path.isdir(path):
            raise SweepError(f"the results file {path!r} is a directory.")
        if os.path.exists(path):
            if not resume:
                raise SweepError(
                    f"the results file {path!r} exists; pass --resume to continue it "
                    "or choose another file."
                )
            self._load(path)
        # checked, not created: a sweep that stops before its first point (an unreachable
        # scheduler, an interrupt) leaves no empty file behind to block the rerun
        from .paths import OutputError, check_file

        try:
            check_file(path, "results file")
        except OutputError as exc:
            raise SweepError(str(exc)) from None

    def _load(self, path: str) -> None:
        try:
            with open(path, encoding="utf-8") as fh:
                lines = fh.read().split("\n")
        except (OSError, UnicodeDecodeError) as exc:
            raise SweepError(f"cannot read the results file {path!r}: {exc}.") from None
        kept: list[str] = []
        for line in lines:
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                key = record["sweep"]["key"]
            except (ValueError, KeyError, TypeError):
                self.dropped += 1  # cut short by an interrupted write, or not a sweep record
                continue
            if key in self.records:
                self.dropped += 1
                continue
            self.records[key] = record
            kept.append(line)
        if self.dropped or (lines and lines[-1] != ""):
            tmp = f"{path}.tmp-{os.getpid()}"
            with open(tmp, "w", encoding="utf-8") as fh:
                fh.write("".join(line + "\n" for line in kept))
            os.replace(tmp, path)

    def __contains__(self, key: str) -> bool:
        return key in self.records

    def append(self, record: dict[str, Any]) -> bool:
        """Append a finished point at once (flushed to disk); False if its key is already there."""
        key = record["sweep"]["key"]
        if key in self.records:
            return False
        self.records[key] = record
        if self.path is not None:
            line = json.dumps(record, allow_nan=False, separators=(",", ":"))
            with open(self.path, "a", encoding="utf-8") as fh:
                fh.write(line + "\n")
                fh.flush()
                os.fsync(fh.fileno())
        return True


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
        silence_logs=logging.ERROR,
    )
    client = Client(cluster, set_as_default=False)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


@dataclass
class Outcome:
    """What a sweep did: records by key, how many were computed or reused, and failures."""

    records: dict[str, dict[str, Any]]
    computed: int = 0
    reused: int = 0
    resubmitted: int = 0
    failures: dict[str, str] = field(default_factory=dict)


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
    pending = []
    for t in tasks:
        if t.key in results:
            outcome.records[t.key] = results.records[t.key]
            outcome.reused += 1
        else:
            pending.append(t)
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
                    again = client.submit(
                        run_point,
                        task,
                        key=f"{TASK_PREFIX}-{task.key}-again{n + 1}",
                        pure=False,
                        retries=1,
                    )
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


# ---- summaries ----------------------------------------------------------------------------------
def best_run(record: dict[str, Any]) -> dict[str, Any] | None:
    """The random-start run with the lowest objective, or None."""
    numerical = record.get("numerical") or {}
    runs = [r for r in numerical.get("runs") or [] if r.get("objective") is not None]
    return min(runs, key=lambda r: r["objective"]) if runs else None


def predicted_alive(record: dict[str, Any]) -> list[int] | None:
    pred = record.get("prediction")
    if pred is None or pred.get("alive") is None:
        return None
    return [k for k, a in enumerate(pred["alive"]) if a]


def run_alive(record: dict[str, Any]) -> list[int] | None:
    """The classes alive in the best random-start run: gain `(W Hbar)_kk > ALIVE_GAIN`."""
    best = record.get("sweep", {}).get("best_run")
    return None if best is None else list(best["alive"])


def agreement(record: dict[str, Any]) -> bool | None:
    """Do the claim's alive classes and the best run's alive classes agree?  None where there
    is nothing to compare.  A class whose claimed gain is positive but at most `ALIVE_GAIN` is
    below the run's resolution and left out."""
    claimed, observed = predicted_alive(record), run_alive(record)
    if claimed is None or observed is None:
        return None
    gains = record["prediction"]["gains"]
    unresolved = {k for k, g in enumerate(gains) if g is not None and 0 < g <= ALIVE_GAIN}
    return set(claimed) - unresolved == set(observed) - unresolved


def summary_rows(
    records: Sequence[dict[str, Any]], axes: Sequence[Axis]
) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the summary table (one row per point, grid order)."""
    varying = [a.name for a in axes if a.varying] or [a.name for a in axes][:1]
    header = [
        *varying,
        "verdict",
        "claimed F*",
        "best run F",
        "at/worse/better",
        "alive (claim)",
        "alive (best run)",
        "agree",
        "certificate",
        "counterexample gap",
        "time (s)",
    ]
    rows = []
    for r in records:
        point = r["sweep"]["point"]
        numerical = r.get("numerical") or {}
        counts = numerical.get("counts") or {}
        pred = r.get("prediction") or {}
        ce = r.get("counterexample")
        agree = agreement(r)
        rows.append(
            [
                *(point[name]["value"] if name in point else "-" for name in varying),
                r["verdict"],
                _num(pred.get("objective")),
                _num(numerical.get("best_objective")),
                f"{counts.get('at', 0)}/{counts.get('worse', 0)}/{counts.get('better', 0)}"
                if counts
                else "-",
                _classes(predicted_alive(r)),
                _classes(run_alive(r)),
                "-" if agree is None else ("yes" if agree else "NO"),
                (r.get("certificate") or {}).get("kind", "-"),
                "-" if ce is None else _num(ce.get("gap"), 3),
                f"{(r.get('timing') or {}).get('total', 0.0):.1f}",
            ]
        )
    return header, rows


def summary_table(records: Sequence[dict[str, Any]], axes: Sequence[Axis], title: str) -> Any:
    """The summary table (rich), one row per point, verdicts coloured."""
    from rich.table import Table
    from rich.text import Text

    from .render import VERDICT_STYLE

    header, rows = summary_rows(records, axes)
    table = Table(title=title)
    for col in header:
        table.add_column(col)
    verdict_col = header.index("verdict")
    for row in rows:
        cells: list[Any] = list(row)
        cells[verdict_col] = Text(row[verdict_col], style=VERDICT_STYLE.get(row[verdict_col], ""))
        table.add_row(*cells)
    return table


def title(claim_id: str, problem: Problem, axes: Sequence[Axis], tied: bool) -> str:
    """A one-line description of a sweep: the claim and the parameters that do not vary."""
    varying = {a.name for a in axes if a.varying}
    parts = [f"ncverify sweep {claim_id}"]
    if not varying & {"classes", "samples"}:
        parts.append(f"counts={','.join(str(c) for c in problem.counts)}")
    elif "classes" not in varying:
        parts.append(f"K={problem.K}")
    if "depth" not in varying:
        parts.append(f"M={problem.depth}")
    if "width" not in varying:
        parts.append(f"d={problem.widths[0]}")
    if "lambda_w" not in varying:
        parts.append(
            f"lambda_W={','.join(decimal_text(x) for x in dict.fromkeys(problem.lambda_w))}"
        )
    if tied:
        parts.append("lambda_H=lambda_W")
    elif "lambda_h" not in varying:
        parts.append(f"lambda_H={decimal_text(problem.lambda_h)}")
    parts.append(f"loss={problem.loss} bias={problem.bias}")
    return " ".join(parts)


def _num(x: float | None, digits: int = 10) -> str:
    return "-" if x is None else f"{x:.{digits}g}"


def _classes(ks: list[int] | None) -> str:
    if ks is None:
        return "-"
    return ",".join(str(k) for k in ks) if ks else "none"


# ---- the phase diagram --------------------------------------------------------------------------
def plot_axes(axes: Sequence[Axis]) -> list[Axis]:
    """The axes a plot shows: the varying ones; one or two are needed."""
    varying = [a for a in axes if a.varying]
    if len(varying) not in (1, 2):
        raise SweepError(
            f"--plot needs one or two varying parameters, this sweep has {len(varying)}."
        )
    return varying


def check_plot_path(path: str) -> None:
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    if ext not in PLOT_FORMATS:
        raise SweepError(f"--plot must name a .png, .svg or .pdf file, not {path!r}.")
    from .paths import OutputError, check_file

    try:
        check_file(path, "plot file")
    except OutputError as exc:
        raise SweepError(str(exc)) from None


def axis_value(record: dict[str, Any], name: str) -> float:
    return float(Fraction(record["sweep"]["point"][name]["exact"]))


def boundaries_on_axis(record: dict[str, Any], name: str) -> list[tuple[float, list[int]]]:
    """The claim's phase boundaries along the sweep axis `name` at this point, as (critical
    value, classes): read from the report's `prediction.phase.boundaries`, along the tied axis
    `lambda` where `--lambda-h tied` moves lambda_H with lambda_W."""
    phase = (record.get("prediction") or {}).get("phase") or {}
    tied = record["sweep"].get("tied", False)
    if tied and name == "lambda_h":
        return []
    axis = "lambda" if tied and name == "lambda_w" else name
    return [
        (float(b["critical"]), list(b["classes"]))
        for b in phase.get("boundaries") or []
        if b["axis"] == axis and b.get("critical") is not None and math.isfinite(b["critical"])
    ]


def plot(records: Sequence[dict[str, Any]], axes: Sequence[Axis], path: str, title: str) -> None:
    """Draw the phase diagram of `records` (grid order) to `path` (PNG, SVG or PDF)."""
    import matplotlib
    from matplotlib.figure import Figure

    shown = plot_axes(axes)
    # SVG text stays text (searchable, editable), not outlines
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        fig = Figure(figsize=(10, 7.5), layout="constrained")
        if len(shown) == 1:
            _plot_1d(fig, records, shown[0], title)
        else:
            _plot_2d(fig, records, shown, title)
        # the format from the target's extension; written beside it, then renamed over it
        fmt = os.path.splitext(path)[1].lower().lstrip(".")
        tmp = f"{path}.tmp-{os.getpid()}"
        try:
            fig.savefig(tmp, dpi=130, format=fmt)
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)


def _label(name: str) -> str:
    return {
        "lambda_w": r"$\lambda_W$",
        "lambda_h": r"$\lambda_H$",
        "lambda_b": r"$\lambda_b$",
        "depth": "depth M",
        "classes": "classes K",
        "samples": "samples per class n",
        "width": "width d",
    }.get(name, name)


def _cells(xs: Sequence[float], log: bool) -> list[tuple[float, float]]:
    """Intervals around each x (midpoints between neighbours; half a step at the ends)."""
    t = [math.log(x) if log else x for x in xs]
    if len(t) == 1:
        edges = [t[0] - 0.5, t[0] + 0.5] if not log else [t[0] - 0.1, t[0] + 0.1]
    else:
        mids = [(a + b) / 2 for a, b in itertools.pairwise(t)]
        edges = [t[0] - (mids[0] - t[0]), *mids, t[-1] + (t[-1] - mids[-1])]
    back = (lambda v: math.exp(v)) if log else (lambda v: v)
    return [(back(a), back(b)) for a, b in itertools.pairwise(edges)]


def _class_colours(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return [cmap(k % 10) for k in range(n)]


def _verdict_legend(ax: Any, verdicts: Sequence[str]) -> list[Any]:
    from matplotlib.patches import Patch

    return [
        Patch(facecolor=VERDICT_COLOURS.get(v, "#000000"), alpha=0.35, label=v)
        for v in VERDICT_COLOURS
        if v in verdicts
    ]


def _plot_1d(fig: Any, records: Sequence[dict[str, Any]], axis: Axis, title: str) -> None:
    """Two panels over one varying parameter: per-class gains (claimed and best run) and which
    classes are alive, each cell coloured by its verdict."""
    from matplotlib.lines import Line2D

    ax_gain, ax_alive = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2])
    xs = [axis_value(r, axis.name) for r in records]
    verdicts = [r["verdict"] for r in records]
    cells = _cells(xs, axis.log)
    for ax in (ax_gain, ax_alive):
        for (a, b), v in zip(cells, verdicts, strict=True):
            ax.axvspan(a, b, color=VERDICT_COLOURS.get(v, "#000000"), alpha=0.25, lw=0)
        if axis.log:
            ax.set_xscale("log")
        ax.set_xlim(cells[0][0], cells[-1][1])
    n_classes = max(
        (len((r.get("prediction") or {}).get("gains") or []) for r in records), default=0
    )
    colours = _class_colours(max(n_classes, 1))
    _gain_panel(ax_gain, records, xs, n_classes, colours)
    outside = _draw_thresholds(ax_gain, records, axis, colours, cells, label=True)
    _draw_thresholds(ax_alive, records, axis, colours, cells, label=False)
    fig.suptitle(title, fontsize=9)
    handles, labels = ax_gain.get_legend_handles_labels()
    extra = _verdict_legend(ax_gain, verdicts) + [
        Line2D([], [], ls="", label=f"critical $\\lambda^*$ outside the sweep: {text}")
        for text in outside
    ]
    ax_gain.legend(
        handles + extra,
        labels + [h.get_label() for h in extra],
        fontsize=7,
        loc="upper left",
        bbox_to_anchor=(1.0, 1.0),
    )
    _alive_panel(ax_alive, records, xs, n_classes, colours)
    ax_alive.set_xlabel(_label(axis.name) + (" (= $\\lambda_H$)" if _tied(records) else ""))


def _gain_panel(
    ax: Any, records: Sequence[dict[str, Any]], xs: list[float], n_classes: int, colours: list
) -> None:
    """Per class, `(W Hbar)_kk` at the claimed point (a line while the class is alive, none
    across a jump to 0) and at the best random-start run (x): the same quantity for every
    claim.  Collapsed classes sit at 0; each class is drawn a little lower than the one before
    (a fraction of the axis) so that they do not hide each other there."""
    import numpy as np

    run_values: list[float] = []
    for k in range(n_classes):
        lift = -0.012 * k  # visual offset only, for points at gain 0
        pts = [
            (x, v[k]) for x, r in zip(xs, records, strict=True) if len(v := claimed_diagonal(r)) > k
        ]
        if pts:
            px = np.array([x for x, _ in pts])
            py = np.array([g for _, g in pts], dtype=float)
            counts = {r["problem"]["counts"][k] for r in records if k < len(r["problem"]["counts"])}
            label = f"class {k}" + (f" (n={counts.pop()})" if len(counts) == 1 else "")
            ax.plot(px, np.where(py > ALIVE_GAIN, py, np.nan), "-", color=colours[k], lw=1.5)
            ax.plot(
                px, np.where(py > ALIVE_GAIN, py, lift), "o", color=colours[k], ms=4, label=label
            )
        runs = [
            (x, r["sweep"]["best_run"]["gains"][k])
            for x, r in zip(xs, records, strict=True)
            if (r["sweep"].get("best_run") or {}).get("gains") is not None
            and k < len(r["sweep"]["best_run"]["gains"])
        ]
        if runs:
            ax.plot(*zip(*runs, strict=True), "x", color=colours[k], ms=7, mew=1.5)
            run_values += [g for _, g in runs if g is not None]
    if run_values:
        ax.plot([], [], "x", color="k", ms=7, mew=1.5, label="best random-start run")
    cx = [x for x, r in zip(xs, records, strict=True) if r.get("counterexample")]
    if cx:
        top = max([1.0, *run_values, *(g for r in records for g in claimed_diagonal(r))])
        ax.plot(
            cx,
            [1.04 * top] * len(cx),
            "*",
            color=VERDICT_COLOURS[Verdict.REFUTED],
            ms=12,
            mec="k",
            ls="",
            label="certified counterexample",
        )
    ax.set_ylabel(r"$(W\bar H)_{kk}$: claimed point (o), best run (x)")


def _alive_panel(
    ax: Any, records: Sequence[dict[str, Any]], xs: list[float], n_classes: int, colours: list
) -> None:
    """Claimed alive (filled) or collapsed (hollow); a black dot where the best run is alive,
    a red cross where the two disagree."""
    from matplotlib.lines import Line2D

    for x, r in zip(xs, records, strict=True):
        claimed = set(predicted_alive(r) or [])
        observed = run_alive(r)
        for k in range(len(r["problem"]["counts"])):
            c = colours[k % len(colours)]
            if r.get("prediction") is not None:
                ax.plot([x], [k], "o", ms=10, mec=c, mfc=c if k in claimed else "none", mew=1.5)
            if observed is not None and k in observed:
                ax.plot([x], [k], "k.", ms=5)
            if observed is not None and (k in observed) != (k in claimed):
                ax.plot([x], [k], "x", color="red", ms=12, mew=2)
    ax.set_yticks(range(n_classes))
    ax.set_ylim(-0.6, n_classes - 0.4)
    ax.invert_yaxis()
    ax.set_ylabel("class")
    marker = {"ls": "", "ms": 8}
    ax.legend(
        handles=[
            Line2D([], [], marker="o", mfc="grey", mec="grey", label="alive (claim)", **marker),
            Line2D([], [], marker="o", mfc="none", mec="grey", label="collapsed (claim)", **marker),
            Line2D(
                [],
                [],
                marker=".",
                ls="",
                color="k",
                label=f"alive in the best run ($(W\\bar H)_{{kk}} > {ALIVE_GAIN:g}$)",
            ),
            Line2D([], [], marker="x", ls="", color="red", label="claim and best run disagree"),
        ],
        fontsize=7,
        loc="upper left",
        bbox_to_anchor=(1.0, 1.0),
    )


def claimed_diagonal(record: dict[str, Any]) -> list[float]:
    """`(W Hbar)_kk` at the claimed point (from the report's Gram matrices; the claimed gains
    where the report has none; empty without a prediction)."""
    pred = record.get("prediction") or {}
    wh = (pred.get("gram") or {}).get("WH")
    if wh:
        return [float(wh[k][k]) for k in range(len(wh))]
    return [float(g) for g in pred.get("gains") or [] if g is not None]


def _tied(records: Sequence[dict[str, Any]]) -> bool:
    return bool(records) and all(r["sweep"].get("tied") for r in records)


def _draw_thresholds(
    ax: Any,
    records: Sequence[dict[str, Any]],
    axis: Axis,
    colours: list[Any],
    cells: list[tuple[float, float]],
    label: bool,
) -> list[str]:
    """Vertical lines at each class's claimed critical lambda along a lambda axis (one line per
    distinct value: equal classes share it); returns the ones outside the sweep, as text."""
    if axis.name not in LAMBDA_OPTIONS or not records:
        return []
    drawn: dict[float, list[int]] = {}
    for r in records:
        for x, classes in boundaries_on_axis(r, axis.name):
            key = float(f"{x:.12g}")
            drawn.setdefault(key, [])
            drawn[key] += [k for k in classes if k not in drawn[key]]
    outside = []
    for x, ks in sorted(drawn.items()):
        name = ",".join(str(k) for k in ks)
        if not (cells[0][0] <= x <= cells[-1][1]):
            outside.append(f"class {name} ({x:.3g})")
            continue
        ax.axvline(
            x,
            color=colours[ks[0] % len(colours)],
            ls="--",
            lw=1.2,
            label=f"claimed critical $\\lambda^*$, class {name} ({x:.3g})" if label else None,
        )
    return outside


def _plot_2d(fig: Any, records: Sequence[dict[str, Any]], shown: list[Axis], title: str) -> None:
    from matplotlib.colors import to_rgba

    # x: a lambda axis where there is one, so thresholds are vertical marks
    lam = [a for a in shown if a.name in LAMBDA_OPTIONS]
    x_axis = lam[0] if lam else shown[0]
    y_axis = next(a for a in shown if a is not x_axis)
    xs = [c.exact for c in x_axis.values]
    ys = [c.exact for c in y_axis.values]
    ax = fig.subplots()
    image = [[to_rgba("white") for _ in xs] for _ in ys]
    colours = _class_colours(10)
    for r in records:
        point = r["sweep"]["point"]
        i = ys.index(Fraction(point[y_axis.name]["exact"]))
        j = xs.index(Fraction(point[x_axis.name]["exact"]))
        image[i][j] = to_rgba(VERDICT_COLOURS.get(r["verdict"], "#000000"), 0.55)
        claimed, observed = predicted_alive(r), run_alive(r)
        text = f"{_count(claimed)}|{_count(observed)}"
        if r.get("counterexample"):
            text += "\n×"
        ax.text(j, i, text, ha="center", va="center", fontsize=7)
        vals = [float(c) for c in xs]
        for x, classes in boundaries_on_axis(r, x_axis.name):
            if not (min(vals) <= x <= max(vals)):
                continue
            pos = _fractional_index(vals, x, x_axis.log)
            ax.plot([pos, pos], [i - 0.45, i + 0.45], color=colours[classes[0] % 10], lw=2)
    ax.imshow(image, aspect="auto", origin="lower", interpolation="nearest")
    ax.set_xticks(range(len(xs)), [c.text for c in x_axis.values], rotation=60, fontsize=7)
    ax.set_yticks(range(len(ys)), [c.text for c in y_axis.values], fontsize=7)
    ax.set_xlabel(_label(x_axis.name) + (" (= $\\lambda_H$)" if _tied(records) else ""))
    ax.set_ylabel(_label(y_axis.name))
    ax.set_title(
        title + "\ncell: classes alive (claim | best run); × certified counterexample; "
        "coloured ticks: claimed critical $\\lambda^*$ per class",
        fontsize=9,
    )
    patches = _verdict_legend(ax, [r["verdict"] for r in records])
    if patches:
        ax.legend(handles=patches, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))


def _count(ks: list[int] | None) -> str:
    return "-" if ks is None else str(len(ks))


def _fractional_index(values: Sequence[float], x: float, log: bool) -> float:
    t = [math.log(v) if log else v for v in values]
    tx = math.log(x) if log else x
    for i, (a, b) in enumerate(itertools.pairwise(t)):
        if a <= tx <= b:
            return i + (tx - a) / (b - a) if b != a else float(i)
    return 0.0 if tx < t[0] else float(len(t) - 1)
