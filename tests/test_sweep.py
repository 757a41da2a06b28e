"""`ncverify sweep`: grids, the results file, and execution on a real Dask cluster.

What would make these tests fail:
- a grid value of a lambda that is not an exact short decimal, or that strays from the geometric
  (or arithmetic) grid by more than the rounding to 6 significant digits allows; end points that
  are not the given values; `--lambda-h tied` not tying lambda_H to lambda_W at every point;
- bad input (malformed ranges, a tied per-layer list, an existing results file without
  `--resume`, a plot of three varying parameters, ...) not ending in exit code 2 with one sentence
  before any cluster starts;
- the results file keeping a line cut short by an interrupt, or a point twice;
- a sweep on a Dask cluster started here (a scheduler and two workers, separate processes on
  127.0.0.1) giving other reports than the sweep on the default local cluster (timings aside);
- a worker killed while it runs a point losing or duplicating that point;
- `--resume` recomputing a point that is already in the file (counted by the scheduler's own
  transition log, not by the code under test), or not finishing the missing ones;
- the phase diagram missing the claimed critical lambda, computed here from docs/theory/mse.md#balanced-bias and #imbalanced-bias-free.

The Dask tests use tiny instances (K = 3, n = 4, M = 2, d = 3, 2 restarts); every process they
start is stopped by them, within bounded time.
"""

from __future__ import annotations

import contextlib
import copy
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

import theorems
from ncverify.app import sweep as sw
from ncverify.app.cli import app
from ncverify.model.problem import Problem
from ncverify.verify import Settings

CLAIM = "mse-balanced-bias"
TINY = ["--counts", "4,4,4", "--depth", "2", "--width", "3", "--bias", "free", "--restarts", "2"]
# three points: two alive, the last beyond the zero threshold lambda* = 1/12 (see below)
GRID3 = ["--lambda-w", "1e-3:1e-1:3:log", "--lambda-h", "tied"]
GRID4 = ["--lambda-w", "1e-3:3e-2:4:log", "--lambda-h", "tied"]
TIMEOUT = 150  # seconds for any one process this module waits for


# ---- grids --------------------------------------------------------------------------------------
def test_log_grid_is_exact_short_decimals_on_the_geometric_grid() -> None:
    axis = sw.parse_axis("lambda_w", "1e-4:1e-1:16:log")
    assert axis.log and len(axis.values) == 16
    ideal = np.geomspace(1e-4, 1e-1, 16)
    assert axis.values[0].exact == Fraction(1, 10000)
    assert axis.values[-1].exact == Fraction(1, 10)
    for c, target in zip(axis.values, ideal, strict=True):
        assert Fraction(c.text) == c.exact  # the decimal is read exactly
        digits = c.text.split("e")[0].replace(".", "").lstrip("0")
        assert len(digits) <= sw.SIGNIFICANT_DIGITS
        # rounding to 6 significant digits moves a value by at most half a unit of the 6th
        assert abs(float(c.exact) / target - 1) <= 5e-6
        assert abs(c.ideal / target - 1) <= 1e-12
    assert all(a.exact < b.exact for a, b in zip(axis.values, axis.values[1:], strict=False))


def test_linear_and_integer_grids() -> None:
    lin = sw.parse_axis("lambda_h", "1e-3:2e-3:3")
    assert [c.exact for c in lin.values] == [Fraction(1, 1000), Fraction(3, 2000), Fraction(1, 500)]
    assert not lin.log
    third = sw.parse_axis("lambda_w", "1/3:1:3")  # ends kept exact, the middle rounded
    assert [c.text for c in third.values] == ["1/3", "0.666667", "1"]
    assert [c.exact for c in third.values] == [Fraction(1, 3), Fraction(666667, 10**6), 1]
    assert abs(third.values[1].ideal - 2 / 3) < 1e-15
    assert [c.text for c in sw.parse_axis("depth", "1:3:3").values] == ["1", "2", "3"]
    # 2, 2.5, 3, 3.5, 4 rounded half up, repeats dropped
    assert [c.text for c in sw.parse_axis("classes", "2:4:5").values] == ["2", "3", "4"]
    assert [c.text for c in sw.parse_axis("samples", "10:1000:3:log").values] == [
        "10",
        "100",
        "1000",
    ]


def test_tied_lambda_h_follows_lambda_w_at_every_point() -> None:
    axes, points = sw.expand(
        {"lambda_w": "1e-3:1e-2:4:log", "depth": "1:2:2", "counts": "4,4,4"}, tied=True
    )
    assert [a.name for a in axes] == ["depth", "lambda_w"]
    assert len(points) == 8
    for p in points:
        assert p.options["lambda_h"] == p.options["lambda_w"] == p.coordinates["lambda_w"].text
    claim = theorems.get(CLAIM)
    from ncverify.app.cli import build_problem

    for p in points:
        args = {k: p.options.get(k) for k in sw.FLAGS}
        problem = build_problem(claim, **args)
        assert problem.lambda_h == problem.lambda_w[0] == p.coordinates["lambda_w"].exact
        assert problem.depth == int(p.coordinates["depth"].text)


def test_point_key_identifies_what_determines_the_report() -> None:
    settings = Settings(restarts=2, seed=0)
    spec = ("numpy", None, "float64")
    a = Problem.build(counts="4,4,4", depth=2, width=3, lambda_w="5e-4", lambda_h="5e-4")
    same = Problem.build(counts=[4, 4, 4], depth=2, width=3, lambda_w="0.0005", lambda_h=5e-4)
    other = Problem.build(counts="4,4,4", depth=2, width=3, lambda_w="5e-4", lambda_h="6e-4")
    key = sw.point_key(CLAIM, a, settings, spec)
    assert key == sw.point_key(CLAIM, same, settings, spec)
    assert key != sw.point_key(CLAIM, other, settings, spec)
    assert key != sw.point_key(CLAIM, a, Settings(restarts=2, seed=1), spec)
    assert key != sw.point_key(CLAIM, a, Settings(restarts=3, seed=0), spec)
    assert key != sw.point_key("mse-balanced-biasfree", a, settings, spec)
    assert key != sw.point_key(CLAIM, a, settings, ("numpy", None, "float32"))


def test_results_file_drops_cut_lines_and_never_repeats_a_key(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    rec = [{"verdict": "certified", "sweep": {"key": f"k{i}"}} for i in range(3)]
    lines = [json.dumps(rec[0]), json.dumps(rec[1]), json.dumps(rec[0]), json.dumps(rec[2])[:17]]
    path.write_text("\n".join(lines))  # an interrupted write: no final newline, a cut record
    with pytest.raises(sw.SweepError):
        sw.ResultsFile(str(path), resume=False)
    results = sw.ResultsFile(str(path), resume=True)
    assert set(results.records) == {"k0", "k1"} and results.dropped == 2
    assert path.read_text().splitlines() == [json.dumps(rec[0]), json.dumps(rec[1])]
    assert not results.append(rec[1])
    assert results.append(rec[2])
    assert [json.loads(x)["sweep"]["key"] for x in path.read_text().splitlines()] == [
        "k0",
        "k1",
        "k2",
    ]
    assert path.read_text().endswith("\n")


@pytest.mark.parametrize(
    "args",
    [
        ["--lambda-w", "1e-3:1e-2:0:log"],
        ["--lambda-w", "1e-3:1e-2"],
        ["--lambda-w", "a:1e-2:3"],
        ["--lambda-w", "-1e-3:1e-2:3:log"],
        ["--lambda-w", "1e-3:1e-2:3:cubic"],
        ["--depth", "1.5:3:3"],
        ["--lambda-w", "1e-3,2e-3", "--lambda-h", "tied"],
        ["--lambda-w", "1e-3:1e-2:3", "--plot", "phase.txt"],
        ["--lambda-w", "1e-3:1e-2:2", "--depth", "1:2:2", "--width", "3:4:2", "--plot", "p.png"],
        ["--depth", "1:3:3", "--widths", "3,3"],
        ["--workers", "0"],
        ["--workers", "2", "--scheduler", "tcp://127.0.0.1:1"],
        ["--resume"],
        ["--restarts", "two"],
        ["--backend", "nosuch"],
    ],
)
def test_bad_input_exits_2_with_one_sentence(
    args: list[str], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # through the console script's entry point, as the installed `ncverify` runs
    from ncverify.app.cli import main

    monkeypatch.setattr(sys, "argv", ["ncverify", "sweep", CLAIM, "--counts", "4,4,4", *args])
    with pytest.raises(SystemExit) as info:
        main()
    text = capsys.readouterr().err.strip()
    assert info.value.code == 2, text
    assert text.startswith("error:") and "Traceback" not in text and text.count("\n") == 0


def test_existing_results_file_needs_resume(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_text("")
    result = CliRunner().invoke(app, ["sweep", CLAIM, *GRID3, "--out", str(path)])
    assert result.exit_code == 2 and "--resume" in result.output


def test_unknown_claim_exits_2() -> None:
    result = CliRunner().invoke(app, ["sweep", "no-such-claim", *GRID3])
    assert result.exit_code == 2 and "unknown claim" in result.output


# ---- plots (in process, no cluster) -------------------------------------------------------------
def _critical_lambda_balanced(k: int, n: int, m: int) -> float:
    """docs/theory/mse.md#balanced-bias: the ETF modes of the biased claim are those of §3.1 with n_k = n, so
    with tied lambdas the gain vanishes from lambda* = (thr_M n^M / N^{M+1})^{1/(M+1)} on,
    thr_M = (M-1)^{M-1} / M^{2M}."""
    thr = (m - 1) ** (m - 1) / m ** (2 * m)
    return (thr * n**m / (k * n) ** (m + 1)) ** (1 / (m + 1))


def _local_records(axes_options: dict[str, str], settings: Settings) -> tuple[list, list]:
    """Run the grid's points in this process (run_point, no cluster)."""
    from ncverify.app.cli import build_problem

    claim = theorems.get(CLAIM)
    options = {
        "counts": "4,4,4",
        "width": "3",
        "bias": "free",
        "depth": "2",
        **axes_options,
    }
    axes, points = sw.expand(options, tied=True)
    spec = ("numpy", None, "float64")
    records = []
    for p in points:
        problem = build_problem(claim, **{k: p.options.get(k) for k in sw.FLAGS})
        key = sw.point_key(claim.id, problem, settings, spec)
        coords = {n: c.to_json() for n, c in p.coordinates.items()}
        task = sw.PointTask(key, p.index, claim.id, problem, settings, spec, coords, True, "")
        records.append(sw.run_point(task))
    return axes, records


def test_phase_diagrams_show_the_claimed_threshold(tmp_path: Path) -> None:
    settings = Settings(restarts=1, certificate=False, optimise=False, curvature_steps=0)
    axes, records = _local_records({"lambda_w": "1e-2:2e-1:4:log"}, settings)
    # 0.01, 0.0271, 0.0737 below lambda* = 1/12, 0.2 above it
    assert [r["prediction"]["alive"] == [True] * 3 for r in records] == [True, True, True, False]
    svg = tmp_path / "phase.svg"
    sw.plot(records, axes, str(svg), "1-D")
    text = svg.read_text()
    assert text.lstrip().startswith("<?xml") and "<svg" in text
    assert f"{_critical_lambda_balanced(3, 4, 2):.3g}" in text  # 0.0833 = 1/12
    axes2, records2 = _local_records({"lambda_w": "1e-2:2e-1:3:log", "depth": "1:2:2"}, settings)
    png = tmp_path / "phase.png"
    sw.plot(records2, axes2, str(png), "2-D")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000


# ---- a real Dask cluster on loopback ------------------------------------------------------------
def _stop(proc: subprocess.Popen) -> None:
    """Stop a process this module started: SIGTERM, then SIGKILL after 10 s."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


class Cluster:
    """A Dask scheduler and two single-threaded workers, separate processes on 127.0.0.1."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.file = folder / "scheduler.json"
        self.env = {
            **os.environ,
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
        }
        self.procs: list[subprocess.Popen] = []
        self.workers: list[subprocess.Popen] = []
        self.client: Any = None
        self.address = ""

    def _spawn(self, name: str, args: list[str]) -> subprocess.Popen:
        log = open(self.folder / f"{name}.log", "w")  # noqa: SIM115 - closed with the process
        proc = subprocess.Popen(
            [sys.executable, "-m", "dask", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=self.env,
            cwd=self.folder,
        )
        log.close()
        self.procs.append(proc)
        return proc

    def start(self) -> None:
        self._spawn(
            "scheduler",
            [
                "scheduler",
                "--host",
                "127.0.0.1",
                "--port",
                "0",
                "--no-dashboard",
                "--scheduler-file",
                str(self.file),
            ],
        )
        for i in range(2):
            self.workers.append(
                self._spawn(
                    f"worker{i}",
                    [
                        "worker",
                        "--scheduler-file",
                        str(self.file),
                        "--host",
                        "127.0.0.1",
                        "--nthreads",
                        "1",
                        "--no-nanny",
                        "--no-dashboard",
                        "--memory-limit",
                        "0",
                    ],
                )
            )
        deadline = time.monotonic() + 60
        while not self.file.exists() or not self.file.read_text().strip():
            if time.monotonic() > deadline or self.procs[0].poll() is not None:
                raise RuntimeError("the Dask scheduler did not start")
            time.sleep(0.2)
        from distributed import Client

        self.address = json.loads(self.file.read_text())["address"]
        self.client = Client(self.address, timeout="30s", set_as_default=False)
        self.client.wait_for_workers(2, timeout=90)

    def stop(self) -> None:
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.client.close(timeout=10)
        for proc in reversed(self.procs):
            _stop(proc)

    def worker_pids(self) -> dict[str, tuple[int, int]]:
        """Address -> (pid, tasks processing), as the scheduler sees its workers."""
        return self.client.run_on_scheduler(
            lambda dask_scheduler: {
                ws.address: (ws.pid, len(ws.processing)) for ws in dask_scheduler.workers.values()
            }
        )

    def transitions(self) -> list[tuple[str, str, str, float]]:
        """The scheduler's transition log: (task key, from, to, time)."""
        return self.client.run_on_scheduler(
            lambda dask_scheduler: [
                (str(t.key), str(t.start), str(t.finish), float(t.timestamp))
                for t in dask_scheduler.transition_log
            ]
        )


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("dask"))
    try:
        c.start()
        yield c
    finally:
        c.stop()


def _sweep(args: list[str], timeout: float = TIMEOUT) -> subprocess.CompletedProcess:
    """`ncverify sweep` as a separate process (its own session, so that a local cluster it
    starts is stopped with it if it overruns)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "ncverify.app.cli", "sweep", CLAIM, *args, "--quiet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate(timeout=10)
        pytest.fail(f"ncverify sweep overran {timeout} s: {err[-2000:]}")
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def _records(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _without_timings(record: dict[str, Any]) -> dict[str, Any]:
    r = copy.deepcopy(record)
    r.pop("timing", None)
    return r


def _expected_keys(grid: list[str]) -> set[str]:
    """The keys of a grid's points, built here from the same options the CLI receives."""
    from ncverify.app.cli import build_problem

    claim = theorems.get(CLAIM)
    opts = dict(zip(TINY[0::2], TINY[1::2], strict=True)) | dict(
        zip(grid[0::2], grid[1::2], strict=True)
    )
    options = {name: opts.get(flag) for name, flag in sw.FLAGS.items()}
    options["lambda_h"] = None
    _, points = sw.expand(options, tied=True)
    settings = Settings(restarts=2, seed=0)
    keys = set()
    for p in points:
        problem = build_problem(claim, **{k: p.options.get(k) for k in sw.FLAGS})
        keys.add(sw.point_key(claim.id, problem, settings, ("numpy", None, "float64")))
    return keys


@pytest.fixture(scope="module")
def cluster_run(cluster: Cluster, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("cluster-run") / "cluster.jsonl"
    result = _sweep([*TINY, *GRID3, "--scheduler", cluster.address, "--out", str(out)])
    assert result.returncode == 0, result.stderr
    return out


def test_cluster_is_on_loopback(cluster: Cluster) -> None:
    assert cluster.address.startswith("tcp://127.0.0.1:")
    workers = cluster.worker_pids()
    assert len(workers) == 2
    assert all(a.startswith("tcp://127.0.0.1:") for a in workers)
    assert {pid for pid, _ in workers.values()} == {p.pid for p in cluster.workers}


def test_cluster_sweep_matches_the_local_sweep(cluster_run: Path, tmp_path: Path) -> None:
    local = tmp_path / "local.jsonl"
    result = _sweep([*TINY, *GRID3, "--workers", "2", "--out", str(local)])
    assert result.returncode == 0, result.stderr
    remote = {r["sweep"]["key"]: r for r in _records(cluster_run)}
    here = {r["sweep"]["key"]: r for r in _records(local)}
    assert set(remote) == set(here) == _expected_keys(GRID3)
    for key, r in here.items():
        assert r["verdict"] == remote[key]["verdict"] == "certified"
        assert r["numerical"]["best_objective"] == remote[key]["numerical"]["best_objective"]
        assert _without_timings(r) == _without_timings(remote[key])
    # the zero regime starts at the claimed lambda* = 1/12: alive below it, collapsed above
    crit = _critical_lambda_balanced(3, 4, 2)
    for r in here.values():
        lam = float(Fraction(r["problem"]["lambda_w_exact"][0]))
        alive = r["sweep"]["best_run"]["alive"]
        assert alive == ([0, 1, 2] if lam < crit else []), (lam, alive)
        assert r["problem"]["lambda_h_exact"] == r["problem"]["lambda_w_exact"][0]
    assert "verdict" in result.stdout and "certified" in result.stdout
    # each line is the report `check` gives for the point's options (timings aside)
    from ncverify.verify import verify

    middle = next(r for r in here.values() if r["sweep"]["index"] == 1)
    problem = Problem.build(
        counts="4,4,4", depth=2, width=3, bias="free", lambda_w="0.01", lambda_h="0.01"
    )
    assert middle["problem"] == problem.describe()
    report = verify(theorems.get(CLAIM), problem, None, Settings(restarts=2, seed=0)).to_json()
    line = _without_timings(middle)
    del line["sweep"]
    assert _without_timings(report) == line
    assert "--lambda-w 0.01 --lambda-h 0.01" in middle["sweep"]["command"]


def test_resume_recomputes_only_the_missing_points(
    cluster: Cluster, cluster_run: Path, tmp_path: Path
) -> None:
    full = cluster_run.read_text().splitlines()
    assert len(full) == 3
    partial = tmp_path / "partial.jsonl"
    partial.write_text(full[0] + "\n" + full[1][: len(full[1]) // 2])  # interrupted mid-write
    kept = json.loads(full[0])["sweep"]["key"]
    since = time.time()
    result = _sweep(
        [*TINY, *GRID3, "--scheduler", cluster.address, "--out", str(partial), "--resume"]
    )
    assert result.returncode == 0, result.stderr
    lines = partial.read_text().splitlines()
    assert lines[0] == full[0]  # untouched, timings included
    records = [json.loads(x) for x in lines]
    keys = [r["sweep"]["key"] for r in records]
    assert len(keys) == 3 and set(keys) == _expected_keys(GRID3)
    # the scheduler ran exactly the two missing points
    ran = {
        k.removeprefix(f"{sw.TASK_PREFIX}-")
        for k, _, finish, t in cluster.transitions()
        if t >= since and finish == "memory" and k.startswith(sw.TASK_PREFIX)
    }
    assert ran == set(keys) - {kept}
    before = {json.loads(x)["sweep"]["key"]: json.loads(x) for x in full}
    for r in records[1:]:
        assert r["timing"] != before[r["sweep"]["key"]]["timing"]  # computed again ...
        assert _without_timings(r) == _without_timings(before[r["sweep"]["key"]])  # ... the same


def test_a_killed_worker_loses_no_point(cluster: Cluster, tmp_path: Path) -> None:
    out = tmp_path / "kill.jsonl"
    since = time.time()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "ncverify.app.cli",
            "sweep",
            CLAIM,
            *TINY,
            *GRID4,
            "--scheduler",
            cluster.address,
            "--out",
            str(out),
            "--quiet",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        # wait until a worker is running a point (a snapshot taken once may fall between two
        # points), then kill it in the middle of that point
        deadline = time.monotonic() + TIMEOUT
        ours = {p.pid for p in cluster.workers}
        while True:
            busy = [
                (addr, pid) for addr, (pid, n) in cluster.worker_pids().items() if n and pid in ours
            ]
            if busy:
                break
            assert proc.poll() is None, proc.communicate()[1]
            assert time.monotonic() < deadline, "no worker ran a point in time"
            time.sleep(0.05)
        victim_address, victim = busy[0]
        done_before = out.read_text().count("\n") if out.exists() else 0
        assert done_before < 4
        os.kill(victim, signal.SIGKILL)
        _, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate(timeout=10)
    assert proc.returncode == 0, err
    keys = [r["sweep"]["key"] for r in _records(out)]
    assert len(keys) == 4 and set(keys) == _expected_keys(GRID4)
    assert all(r["verdict"] == "certified" for r in _records(out))
    # the point the victim held was scheduled again, on the worker that is left
    log = [x for x in cluster.transitions() if x[3] >= since and x[0].startswith(sw.TASK_PREFIX)]
    started: dict[str, int] = {}
    for key, _, finish, _ in log:
        if finish == "processing":
            started[key] = started.get(key, 0) + 1
    assert max(started.values()) >= 2, started
    assert victim_address not in cluster.worker_pids()
