"""Soak the verdicts: random instances inside every claim's truth region, each a real check.

Every claim declares, as data, the region where its truth is established (`Claim.truth_region`,
`ncverify.claim.TruthRegion`): by a theorem (`proven`) or by ncverify's own exact certificate
(`certified`).  This script draws instances inside those regions, round-robin over the claims
whose region is not empty, checks each one exactly as `ncverify check` would (the library's
`verify`, the same settings), and writes one JSON line per instance as it finishes:

    python scripts/soak.py --instances 2000 --seed 0 --restarts 4 --out soak.jsonl
    python scripts/soak.py ... --workers 2                     # a local process pool
    python scripts/soak.py ... --scheduler tcp://HOST:8786     # a Dask cluster
    python scripts/soak.py ... --resume                        # skip the instances already there
    python scripts/soak.py --summary soak.jsonl [--markdown]   # the summary of a finished file

Why: a verifier that refutes a true theorem is worse than one that says nothing.  Inside a proven
region every refutation is *false* by definition; every refutation's counterexample is saved and
re-evaluated from scratch by `ncverify recheck FILE --json` in a fresh process, and a refutation
that recheck does not confirm as `refuted` (or that has no point to recheck) is false too.  A
crash of one instance is recorded with its exception and the soak goes on.

Instance `i` depends only on `(seed, i)` and the claims selected: its claim is the `i`-th in
round-robin order, its problem is drawn from `numpy.random.default_rng([seed, i])`, and its check
runs with seed `seed + i`; each line carries the `ncverify check` command that reproduces it.
The first line of the file (and one more per `--resume`) records how the soak was run.

The summary: instances per claim, verdict counts, false refutations (there must be none),
crashes, the inconclusive share and its causes, time per check.  Exit code 1 when there is any
false refutation or crash, else 0 (2 on bad usage).
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import os
import platform
import shlex
import shutil
import statistics
import subprocess
import sys
import time
import traceback
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SCHEMA = "ncverify.soak/1"
#: Notes kept per record, and characters per note: the file is meant to be committed.
NOTES, NOTE_CHARS = 3, 160
#: Seconds that one `ncverify recheck` may take before its refutation counts as unconfirmed.
RECHECK_TIMEOUT = 600


# ---- the claims ---------------------------------------------------------------------------------
def load_claims(files: Iterable[str] = ()) -> tuple[dict[str, Any], dict[str, str]]:
    """The registered claims and those of `files` (modules exposing `claim`, as `theorems/`
    modules do) by id, and the file of each claim that comes from one (a file's claim replaces
    a registered one of the same id)."""
    import theorems

    claims, sources = dict(theorems.registry()), {}
    for path in files:
        claim = _claim_of_file(path)
        claims[claim.id], sources[claim.id] = claim, path
    return claims, sources


def _registered(claim_id: str) -> Any:
    import theorems

    return theorems.get(claim_id)


@functools.cache
def _claim_of_file(path: str) -> Any:
    """The `claim` of the Python file at `path` (an external claim, e.g. one under test)."""
    from ncverify.claim import Claim

    name = f"soak_claim_{abs(hash(os.path.abspath(path)))}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise SystemExit(f"soak: cannot import a claim from {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    claim = getattr(module, "claim", None)
    if not isinstance(claim, Claim):
        raise SystemExit(f"soak: {path} exposes no `claim` (an instance of ncverify.claim.Claim)")
    return claim


def soaked_claims(claims: dict[str, Any], selected: list[str] | None) -> list[str]:
    """The ids to soak, sorted: those `selected` (all by default) whose region is not empty."""
    ids = sorted(claims) if selected is None else selected
    unknown = [c for c in ids if c not in claims]
    if unknown:
        raise SystemExit(f"soak: unknown claim(s) {unknown}; known: {sorted(claims)}")
    chosen = sorted(c for c in ids if not claims[c].truth_region.is_empty)
    if not chosen:
        raise SystemExit("soak: every selected claim has an empty truth region: nothing to draw")
    return chosen


# ---- the tasks ----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Task:
    """One instance to check: everything a worker needs, picklable (a Dask worker included)."""

    index: int
    claim_id: str
    claim_file: str | None  # the file the claim comes from; None: a registered claim
    problem: Any  # ncverify.model.problem.Problem
    seed: int
    restarts: int
    save_dir: str
    basis: str

    @property
    def claim(self) -> str:
        """How the command line names the claim: its file, or its registered id."""
        return self.claim_file or self.claim_id

    @property
    def command(self) -> str:
        return check_command(self.claim, self.problem, self.restarts, self.seed)


def plan(
    claims: dict[str, Any],
    ids: list[str],
    *,
    instances: int,
    seed: int,
    restarts: int,
    save_dir: str,
    sources: dict[str, str] | None = None,
    skip: set[int] | frozenset[int] = frozenset(),
) -> Iterator[Task]:
    """Instance `i` for every `i < instances` not in `skip`: claim `ids[i % len(ids)]`, its
    problem drawn from `default_rng([seed, i])`, checked with seed `seed + i`."""
    for i in range(instances):
        if i in skip:
            continue
        claim = claims[ids[i % len(ids)]]
        region = claim.truth_region
        problem = region.draw(np.random.default_rng([seed, i]))
        source = (sources or {}).get(claim.id)
        yield Task(i, claim.id, source, problem, seed + i, restarts, save_dir, region.basis)


def decimal(x: Fraction) -> str:
    """A lambda as the command line reads it: the shortest decimal when exact, else `p/q`."""
    text = repr(float(x))
    return text if Fraction(text) == x else str(x)


def check_command(claim: str, p: Any, restarts: int, seed: int) -> str:
    """The `ncverify check` command that reproduces one instance's check (`claim`: an id, or
    the claim's file)."""
    words = [
        "ncverify check",
        claim,
        f"--counts {','.join(map(str, p.counts))}",
        f"--depth {p.depth}",
        f"--widths {','.join(map(str, p.widths))}",
        f"--lambda-w {','.join(decimal(x) for x in p.lambda_w)}",
        f"--lambda-h {decimal(p.lambda_h)}",
        f"--loss {p.loss}",
    ]
    if p.activation != "linear":
        words.append(f"--activation {p.activation}")
    if p.lambda_b is not None:
        words.append(f"--lambda-b {decimal(p.lambda_b)}")
    else:
        words.append(f"--bias {p.bias}")
    return " ".join([*words, f"--restarts {restarts}", f"--seed {seed}"])


# ---- one instance (runs on a worker) ------------------------------------------------------------
def run_task(task: Task) -> dict[str, Any]:
    """Check one instance and return its record; an exception becomes a recorded crash."""
    os.environ.setdefault("NCVERIFY_JOBS", "1")  # the parallelism is across instances
    record: dict[str, Any] = {
        "index": task.index,
        "claim": task.claim_id,
        "basis": task.basis,
        "problem": task.problem.describe(),
        "command": task.command,
    }
    start = time.perf_counter()
    try:
        report = _verify(task)
    except Exception as exc:  # noqa: BLE001 - a crash is a finding, recorded, never fatal
        record["verdict"] = "crash"
        record["time"] = round(time.perf_counter() - start, 3)
        record["crash"] = crash_record(exc)
        return record
    record["verdict"] = str(report.verdict)
    record["time"] = round(time.perf_counter() - start, 3)
    if report.verdict != "certified":  # a certified check's notes say nothing new
        record["notes"] = [n[:NOTE_CHARS] for n in report.notes[:NOTES]]
    if record["verdict"] == "inconclusive":
        record["cause"] = inconclusive_cause(report)
    if record["verdict"] == "refuted":
        record["refutation"] = refutation_record(report, task)
    return record


def _verify(task: Task) -> Any:
    from ncverify.verify import Settings, verify

    claim = _claim_of_file(task.claim_file) if task.claim_file else _registered(task.claim_id)
    settings = Settings(restarts=task.restarts, seed=task.seed, save_dir=task.save_dir)
    return verify(claim, task.problem, settings=settings)


def crash_record(exc: BaseException) -> dict[str, str]:
    """The exception of a crash: its type, message and the innermost frames of its traceback."""
    frames = traceback.format_exception(type(exc), exc, exc.__traceback__)
    return {"type": type(exc).__name__, "message": str(exc)[:500], "where": "".join(frames[-3:])}


def inconclusive_cause(report: Any) -> str:
    """Why an `inconclusive` report could not decide, in a few words (the summary groups by it)."""
    from ncverify.report import Evidence

    if report.contradiction is not None:
        return "a run below a rigorous lower bound (the verifier contradicts itself)"
    if any(c.evidence == Evidence.CERTIFICATE and c.passed is False for c in report.checks):
        return "the certificate was too loose to decide"
    runs = report.runs
    if any(r.outcome == "failed" for r in runs):
        return "a run failed (numerics)"
    if not runs:
        skipped = [c.name for c in report.checks if c.passed is None]
        return "no runs" + (f" (skipped: {', '.join(skipped)})" if skipped else "")
    if not any(r.outcome == "at-prediction" for r in runs):
        if all(r.outcome == "worse" for r in runs):
            return "no run reached the prediction (every run ended above it)"
        return "no run reached the prediction"
    return "runs reached the prediction, but their geometry could not be told apart"


def refutation_record(report: Any, task: Task) -> dict[str, Any]:
    """The counterexample, its recheck in a fresh process, and whether the refutation is false:
    any refutation inside a proven region, and any that recheck does not confirm."""
    ce = report.counterexample
    path = None if ce is None else ce.path
    rechecked = recheck(path, task.claim_file) if path else None
    why = false_refutation(task.basis, path, rechecked)
    shown = path and (os.path.relpath(path, ROOT) if path.startswith(str(ROOT)) else path)
    out: dict[str, Any] = {"counterexample": shown, "recheck": rechecked, "false": why is not None}
    if why:
        out["why"] = why
    if ce is not None:
        out["gap"] = ce.gap
        out["origin"] = ce.origin
    else:
        failed = [c.name for c in report.checks if c.passed is False]
        out["failed_checks"] = failed
    return out


def recheck(path: str, claim_file: str | None = None) -> dict[str, Any]:
    """`ncverify recheck PATH --json` in a fresh process (naming the claim's file again where it
    comes from one: recheck never imports code that a saved file names): its verdict and exit
    code."""
    beside = Path(sys.executable).with_name("ncverify")  # the virtualenv's console script
    exe = str(beside) if beside.exists() else (shutil.which("ncverify") or "ncverify")
    command = [exe, "recheck", path, "--json", *(["--claim", claim_file] if claim_file else [])]
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=RECHECK_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return {"verdict": None, "exit": None, "error": f"{type(exc).__name__}: {exc}"[:300]}
    try:
        verdict = json.loads(done.stdout)["verdict"]
    except (ValueError, KeyError, TypeError):
        tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or [""]
        return {"verdict": None, "exit": done.returncode, "error": tail[0][:300]}
    return {"verdict": verdict, "exit": done.returncode}


def false_refutation(basis: str, path: str | None, rechecked: dict[str, Any] | None) -> str | None:
    """Why a refutation is false, or None when it stands."""
    if basis == "proven":
        return "a refutation inside a proven region"
    if path is None or rechecked is None:
        return "no counterexample point to recheck"
    if rechecked.get("verdict") != "refuted":
        return f"recheck says {rechecked.get('verdict') or rechecked.get('error')}"
    return None


# ---- running ------------------------------------------------------------------------------------
Writer = Callable[[dict[str, Any]], None]


def run_local(tasks: Iterator[Task], workers: int, write: Writer) -> None:
    """Run `tasks` on a local process pool, at most `2 * workers` in flight; a worker that dies
    records its in-flight instances as crashes and the pool is started again."""
    pool = ProcessPoolExecutor(max_workers=workers)
    pending: dict[Future[dict[str, Any]], Task] = {}
    try:
        for task in tasks:
            pending[pool.submit(run_task, task)] = task
            if len(pending) >= 2 * workers:
                pool = _drain(pool, pending, write, workers)
        while pending:
            pool = _drain(pool, pending, write, workers)
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _drain(
    pool: ProcessPoolExecutor,
    pending: dict[Future[dict[str, Any]], Task],
    write: Writer,
    workers: int,
) -> ProcessPoolExecutor:
    """Write what finished first; a broken pool is replaced by a new one (returned)."""
    done, _ = wait(list(pending), return_when=FIRST_COMPLETED)
    broken = False
    for future in done:
        task = pending.pop(future)
        try:
            write(future.result())
        except BrokenProcessPool as exc:
            broken = True
            write(lost_record(task, exc))
    if broken:  # every other in-flight future of a broken pool is lost too
        for future, task in list(pending.items()):
            write(lost_record(task, BrokenProcessPool("the pool broke while it ran")))
            pending.pop(future)
        pool.shutdown(wait=False, cancel_futures=True)
        return ProcessPoolExecutor(max_workers=workers)
    return pool


def lost_record(task: Task, exc: BaseException) -> dict[str, Any]:
    """The record of an instance whose worker died (or that the cluster lost) under it."""
    return {
        "index": task.index,
        "claim": task.claim_id,
        "basis": task.basis,
        "problem": task.problem.describe(),
        "command": task.command,
        "verdict": "crash",
        "crash": {"type": type(exc).__name__, "message": f"the worker died: {exc}"[:500]},
    }


def run_dask(tasks: Iterator[Task], scheduler: str, write: Writer) -> None:
    """Run `tasks` on the Dask cluster at `scheduler`, a bounded number in flight."""
    from distributed import Client, as_completed

    with Client(scheduler) as client:
        window = 2 * max(1, sum(client.nthreads().values()))
        futures: dict[Any, Task] = {}
        queue = as_completed()
        for task in tasks:
            future = client.submit(run_task, task, pure=False)
            futures[future] = task
            queue.add(future)
            if len(futures) >= window:
                _collect(next(queue), futures, write)
        for future in queue:
            _collect(future, futures, write)


def _collect(future: Any, futures: dict[Any, Task], write: Writer) -> None:
    task = futures.pop(future)
    if future.status == "finished":
        write(future.result())
    else:  # the cluster lost it, or run_task itself failed to run
        write(lost_record(task, future.exception()))


# ---- the results file ---------------------------------------------------------------------------
def read_lines(path: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The meta lines and the instance records of a results file.  A last line cut short (the
    soak was killed while writing it) is dropped."""
    metas, records = [], []
    text = path.read_text() if path.exists() else ""
    for line in text.splitlines():
        try:
            item = json.loads(line)
        except ValueError:
            continue
        (metas if "meta" in item else records).append(item)
    return [m["meta"] for m in metas], records


def trim_partial_line(path: Path) -> None:
    """Cut a last line that a killed soak left without its newline, so that appending is safe."""
    data = path.read_bytes()
    if data and not data.endswith(b"\n"):
        path.write_bytes(data[: data.rfind(b"\n") + 1])


def meta(args: argparse.Namespace, ids: list[str], resumed: bool) -> dict[str, Any]:
    """How this soak was run: the command, the settings and the commit it ran at."""
    from ncverify.report import version

    return {
        "schema": SCHEMA,
        "resumed": resumed,
        "command": "python scripts/soak.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
        "instances": args.instances,
        "seed": args.seed,
        "restarts": args.restarts,
        "claims": ids,
        "claim_files": list(args.claim_file),
        "commit": _git("rev-parse", "HEAD"),
        "uncommitted_changes": bool(_git("status", "--porcelain", "--untracked-files=no")),
        "ncverify": version(),
        "python": platform.python_version(),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "workers": args.workers if args.scheduler is None else args.scheduler,
        "started": time.strftime("%Y-%m-%d %H:%M:%S %z"),
    }


def _git(*args: str) -> str | None:
    try:
        done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


# ---- the summary --------------------------------------------------------------------------------
def summarise(metas: list[dict[str, Any]], records: list[dict[str, Any]]) -> dict[str, Any]:
    """Everything the summary says, as data: per claim and overall."""
    by_claim: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in records:
        by_claim[r["claim"]].append(r)
    times = [r["time"] for r in records if r.get("verdict") != "crash" and "time" in r]
    inconclusive = [r for r in records if r.get("verdict") == "inconclusive"]
    refuted = [r for r in records if r.get("verdict") == "refuted"]
    return {
        "meta": metas,
        "instances": len(records),
        "claims": {
            cid: {
                "basis": rs[0].get("basis"),
                "instances": len(rs),
                "verdicts": dict(Counter(r["verdict"] for r in rs)),
                "median_time": _median([r["time"] for r in rs if "time" in r]),
            }
            for cid, rs in sorted(by_claim.items())
        },
        "verdicts": dict(Counter(r["verdict"] for r in records)),
        "false_refutations": [r for r in refuted if r["refutation"]["false"]],
        "confirmed_refutations": [r for r in refuted if not r["refutation"]["false"]],
        "crashes": [r for r in records if r.get("verdict") == "crash"],
        "inconclusive": len(inconclusive),
        "causes": dict(Counter(r.get("cause", "?") for r in inconclusive).most_common()),
        "time_median": _median(times),
        "time_max": max(times) if times else None,
        "time_total": sum(times),
    }


def _median(xs: list[float]) -> float | None:
    return statistics.median(xs) if xs else None


def _share(part: int, whole: int) -> str:
    return f"{part} of {whole} ({100 * part / whole:.2f}%)" if whole else "0"


VERDICTS = ("certified", "consistent", "refuted", "inconclusive", "not-applicable", "crash")


def render_text(s: dict[str, Any]) -> str:
    """The summary as plain text (the end of a soak, `--summary FILE`)."""
    lines = [f"soak: {s['instances']} instances"]
    for m in s["meta"]:
        lines.append(f"  ran: {m['command']}  (commit {m.get('commit')}, {m.get('started')})")
    lines.append(f"  {'claim':26} {'basis':10} {'n':>5} " + " ".join(f"{v:>8.8}" for v in VERDICTS))
    for cid, c in s["claims"].items():
        counts = " ".join(f"{c['verdicts'].get(v, 0):>8}" for v in VERDICTS)
        lines.append(f"  {cid:26} {c['basis']:10} {c['instances']:>5} {counts}")
    lines.append(f"false refutations: {len(s['false_refutations'])}")
    for r in s["false_refutations"]:
        lines.append(f"  #{r['index']} {r['claim']}: {r['refutation'].get('why')}: {r['command']}")
    lines.append(
        f"refutations confirmed by recheck (certified regions): {len(s['confirmed_refutations'])}"
    )
    lines.append(f"crashes: {len(s['crashes'])}")
    for r in s["crashes"]:
        lines.append(f"  #{r['index']} {r['claim']}: {r['crash']['type']}: {r['crash']['message']}")
    lines.append(f"inconclusive: {_share(s['inconclusive'], s['instances'])}")
    for cause, n in s["causes"].items():
        lines.append(f"  {n:>5}  {cause}")
    if s["time_median"] is not None:
        lines.append(
            f"time per check: median {s['time_median']:.2f} s, max {s['time_max']:.2f} s, "
            f"total {s['time_total'] / 60:.1f} min"
        )
    return "\n".join(lines)


def render_markdown(s: dict[str, Any]) -> str:
    """The summary as Markdown (docs/reliability.md includes it at build time)."""
    out = [
        f"**{s['instances']} instances**; false refutations: **{len(s['false_refutations'])}**; "
        f"crashes: **{len(s['crashes'])}**; inconclusive: **{_share(s['inconclusive'], s['instances'])}**.",
        "",
        "| claim | basis | instances | " + " | ".join(VERDICTS) + " | median time (s) |",
        "| --- | --- | ---: | " + " | ".join("---:" for _ in VERDICTS) + " | ---: |",
    ]
    for cid, c in s["claims"].items():
        counts = " | ".join(str(c["verdicts"].get(v, 0)) for v in VERDICTS)
        median = "" if c["median_time"] is None else f"{c['median_time']:.2f}"
        out.append(f"| `{cid}` | {c['basis']} | {c['instances']} | {counts} | {median} |")
    total = " | ".join(str(s["verdicts"].get(v, 0)) for v in VERDICTS)
    out += [f"| all | | {s['instances']} | {total} | |", ""]
    out += _markdown_findings(s)
    if s["time_median"] is not None:
        out.append(
            f"Time per check: median {s['time_median']:.2f} s, max {s['time_max']:.2f} s; "
            f"{s['time_total'] / 60:.1f} minutes of checks in all."
        )
        out.append("")
    for m in s["meta"]:
        changes = " (with uncommitted changes)" if m.get("uncommitted_changes") else ""
        out += [
            f"{'Resumed' if m.get('resumed') else 'Run'} on {m.get('started')} at commit "
            f"`{m.get('commit')}`{changes}, ncverify {m.get('ncverify')}, Python "
            f"{m.get('python')}, {m.get('machine')}, workers: {m.get('workers')}:",
            "",
            "```bash",
            m["command"],
            "```",
            "",
        ]
    return "\n".join(out)


def _markdown_findings(s: dict[str, Any]) -> list[str]:
    out = []
    for title, rows, text in (
        ("False refutations", s["false_refutations"], lambda r: r["refutation"].get("why")),
        ("Crashes", s["crashes"], lambda r: f"{r['crash']['type']}: {r['crash']['message']}"),
        ("Refutations confirmed by recheck", s["confirmed_refutations"], lambda r: "refuted"),
    ):
        if rows:
            out += [f"{title}:", ""]
            out += [f"- #{r['index']} `{r['claim']}`: {text(r)}; `{r['command']}`" for r in rows]
            out.append("")
    if s["causes"]:
        out += [
            "Causes of the inconclusive verdicts:",
            "",
            "| cause | instances |",
            "| --- | ---: |",
        ]
        out += [f"| {cause} | {n} |" for cause, n in s["causes"].items()]
        out.append("")
    return out


def failed(s: dict[str, Any]) -> bool:
    """Any false refutation or crash: the soak fails."""
    return bool(s["false_refutations"] or s["crashes"])


def markdown_summary(path: str | Path) -> str:
    """The Markdown summary of the results file at `path` (for the docs page)."""
    return render_markdown(summarise(*read_lines(Path(path))))


# ---- the command line ---------------------------------------------------------------------------
def parse(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--instances", type=int, default=40, help="instances to draw (default 40)")
    ap.add_argument("--seed", type=int, default=0, help="the stream of instances (default 0)")
    ap.add_argument("--out", help="the results file (JSON lines, appended as instances finish)")
    ap.add_argument(
        "--restarts", type=int, default=8, help="random-start runs per check (8, as `check`)"
    )
    ap.add_argument("--claims", help="comma-separated claim ids (default: every claim)")
    ap.add_argument(
        "--claim-file",
        action="append",
        default=[],
        metavar="FILE.py",
        help="also a claim from a Python file exposing `claim` (repeatable)",
    )
    ap.add_argument("--workers", type=int, default=1, help="local worker processes (default 1)")
    ap.add_argument("--scheduler", help="a Dask scheduler address, e.g. tcp://HOST:8786")
    ap.add_argument("--save-dir", help="where counterexamples go (default: next to --out)")
    ap.add_argument("--resume", action="store_true", help="skip the instances already in --out")
    ap.add_argument("--summary", metavar="FILE", help="only print the summary of FILE")
    ap.add_argument("--markdown", action="store_true", help="print the summary as Markdown")
    args = ap.parse_args(argv)
    if args.summary is None and args.out is None:
        ap.error("--out FILE is needed to run a soak (or --summary FILE to read one)")
    if args.instances < 1 or args.restarts < 1 or args.workers < 1:
        ap.error("--instances, --restarts and --workers must be positive")
    return args


def soak(args: argparse.Namespace) -> None:
    """Draw, run and append every instance not already in `args.out`."""
    claim_files = [os.path.abspath(f) for f in args.claim_file]
    claims, sources = load_claims(claim_files)
    selected = None if args.claims is None else [c.strip() for c in args.claims.split(",")]
    ids = soaked_claims(claims, selected)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.exists() and out.stat().st_size and not args.resume:
        raise SystemExit(f"soak: {out} exists; give --resume to continue it, or another --out")
    skip: set[int] = set()
    if args.resume and out.exists():
        trim_partial_line(out)
        metas, records = read_lines(out)
        _check_resumable(metas, args, ids)
        skip = {r["index"] for r in records}
    save_dir = args.save_dir or str(out.with_suffix("")) + "-counterexamples"
    tasks = plan(
        claims,
        ids,
        instances=args.instances,
        seed=args.seed,
        restarts=args.restarts,
        save_dir=os.path.abspath(save_dir),
        sources=sources,
        skip=skip,
    )
    with out.open("a") as fh:
        fh.write(json.dumps({"meta": meta(args, ids, bool(skip))}, separators=(",", ":")) + "\n")
        fh.flush()
        todo = args.instances - len(skip & set(range(args.instances)))
        write = _writer(fh, todo)
        if args.scheduler:
            run_dask(tasks, args.scheduler, write)
        else:
            run_local(tasks, args.workers, write)


def _check_resumable(metas: list[dict[str, Any]], args: argparse.Namespace, ids: list[str]) -> None:
    """A resumed soak must draw the same instances: the same seed, restarts and claims."""
    if not metas:
        return
    first = metas[0]
    for name, now in (("seed", args.seed), ("restarts", args.restarts), ("claims", ids)):
        if first.get(name) != now:
            raise SystemExit(f"soak: cannot resume: {name} was {first.get(name)}, now {now}")


def _writer(fh: Any, todo: int) -> Writer:
    done = [0]

    def write(record: dict[str, Any]) -> None:
        fh.write(json.dumps(record, separators=(",", ":"), allow_nan=False) + "\n")
        fh.flush()
        done[0] += 1
        verdict = record.get("verdict")
        flag = ""
        if verdict == "refuted":
            flag = " FALSE REFUTATION" if record["refutation"]["false"] else " (rechecked)"
        print(
            f"[{done[0]}/{todo}] #{record['index']} {record['claim']}: {verdict}{flag} "
            f"({record.get('time', 0):.2f} s)",
            file=sys.stderr,
            flush=True,
        )

    return write


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    if args.summary is None:
        soak(args)
    path = Path(args.summary or args.out)
    summary = summarise(*read_lines(path))
    print(render_markdown(summary) if args.markdown else render_text(summary))
    return 1 if failed(summary) else 0


if __name__ == "__main__":
    sys.exit(main())
