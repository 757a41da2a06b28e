"""The batched search (`ncverify.model.batched`, `ncverify.evidence.batched_lbfgs`,
`ncverify.evidence.batched_search`): each row is the class-mean objective of its own point, the
rows of a batch never influence each other, a batched descent ends where a per-run descent from
the same starts ends, and a check reports what the search did."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.optimize as so
from hypothesis import given, settings
from hypothesis import strategies as st

from ncverify.backend import Backend, to_host
from ncverify.evidence import workers
from ncverify.evidence.batched_lbfgs import batched_lbfgs
from ncverify.evidence.batched_search import (
    HOST_CHUNK_BYTES,
    MEMORY_SHARE,
    batched_search,
    chunk_rows,
    chunks,
    descend_starts,
    plan,
    row_bytes,
    start_rows,
)
from ncverify.model.batched import BatchedObjective, Layout, pad
from ncverify.model.objective import Objective, Params
from ncverify.model.problem import Problem

NCVERIFY = str(Path(sys.executable).with_name("ncverify"))
HEADS = [
    {"loss": "ce"},
    {"loss": "mse", "activation": "relu", "bias": "regularised", "lambda_b": "0.01"},
    {"loss": "ce", "activation": "relu", "bias": "free"},
    {"loss": "mse"},
]


def problem_of(
    head: dict[str, str], counts: tuple[int, ...] = (3, 2, 4), width: int = 5
) -> Problem:
    return Problem.build(
        counts=counts, depth=3, width=width, lambda_w="0.01", lambda_h="0.02", **head
    )


def row_point(layout: Layout, row: np.ndarray) -> Params:
    parts, b = layout.unpack(row[None, :], np)
    return Params(tuple(w[0] for w in parts[:-1]), parts[-1][0], None if b is None else b[0])


@pytest.mark.parametrize("head", HEADS)
@pytest.mark.parametrize("backend", ["numpy", "array-api-strict", "torch"])
def test_each_row_is_the_class_mean_objective_of_its_point(head: dict, backend: str) -> None:
    """Against `Objective` (an independent implementation, one point at a time) on the host."""
    if backend == "torch":
        pytest.importorskip("torch", reason="torch is an optional extra")
    problem = problem_of(head)
    be = Backend.create(backend)
    batched = BatchedObjective(problem, be.xp, dtype=be.dtype, device=be.device)
    rows = np.random.default_rng(1).normal(size=(4, batched.layout.size))
    values, grads = batched.value_and_grad(be.asarray(rows))
    values, grads = to_host(values), to_host(grads)
    single = Objective(problem, np, parameterisation="class-means")
    for row, value, grad in zip(rows, values, grads, strict=True):
        p = row_point(batched.layout, row)
        expected = float(single.value(p))
        assert math.isclose(value, expected, rel_tol=64 * be.eps)
        g = single.value_and_grad(p)[1]
        flat = np.concatenate([np.ravel(a) for a in g.arrays()])
        assert np.allclose(grad, flat, rtol=1e-10, atol=1e-10 * np.abs(flat).max())


@settings(max_examples=20, deadline=None)
@given(st.sampled_from(HEADS), st.floats(0.1, 2.0), st.integers(0, 2**32 - 1))
def test_the_gradient_is_the_derivative_of_the_value(head: dict, scale: float, seed: int) -> None:
    """Central differences along a random direction: the error is `O(h^2)` times the third
    derivative, far below the directional derivative's size at `h = 1e-5` (ReLU kinks have
    measure zero)."""
    problem = problem_of(head)
    f = BatchedObjective(problem, np)
    rng = np.random.default_rng(seed)
    x = scale * rng.normal(size=(3, f.layout.size))
    e = rng.normal(size=x.shape)
    t = np.array([1.0, 8.0, 0.125])
    _, g = f.value_and_grad(x, t)
    h = 1e-5
    up, down = f.value_and_grad(x + h * e, t)[0], f.value_and_grad(x - h * e, t)[0]
    slope = np.sum(g * e, axis=1)
    scale_of = np.abs(f.value_and_grad(x, t)[0]) + np.abs(slope) + 1.0
    assert np.all(np.abs((up - down) / (2 * h) - slope) <= 1e-5 * scale_of)


def test_a_narrow_point_padded_to_the_instance_widths_keeps_its_value() -> None:
    """Linear layers work in widths `min(d, K)`; zero rows and columns change nothing."""
    problem = problem_of({"loss": "ce"}, counts=(2, 3), width=7)
    f = BatchedObjective(problem, np)
    assert all(r <= problem.K for r, _ in f.layout.shapes[:-1])
    row = np.random.default_rng(2).normal(size=f.layout.size)
    p = row_point(f.layout, row)
    ws, g = pad(problem, list(p.Ws), p.H, np)
    wide = Objective(problem, np, parameterisation="class-means")
    assert math.isclose(float(wide.value(Params(tuple(ws), g))), float(f.value_and_grad(row[None])[0][0]), rel_tol=1e-13)  # fmt: skip


def quadratic(a: np.ndarray, c: np.ndarray):  # noqa: ANN201
    """Rows `1/2 x^T A_i x - c_i^T x`, and their minimisers `A_i^{-1} c_i`."""

    def fg(x: np.ndarray, rows: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        aa, cc = (a, c) if rows is None else (a[rows], c[rows])
        ax = np.einsum("bij,bj->bi", aa, x)
        return 0.5 * np.sum(x * ax, axis=1) - np.sum(cc * x, axis=1), ax - cc

    return fg, np.linalg.solve(a, c[:, :, None])[:, :, 0]


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 6), st.integers(2, 12), st.integers(0, 2**32 - 1))
def test_rows_reach_their_own_minimisers_and_never_influence_each_other(
    b: int, n: int, seed: int
) -> None:
    """Strictly convex quadratics of condition number up to 100: every row ends at its own
    minimiser, and a row run alone follows exactly the same iterates as in the batch."""
    rng = np.random.default_rng(seed)
    q = np.linalg.qr(rng.normal(size=(b, n, n)))[0]
    eig = np.geomspace(1.0, 100.0, n)[None, :] * rng.uniform(0.5, 2.0, size=(b, 1))
    a = np.einsum("bij,bj,bkj->bik", q, eig, q)
    c = rng.normal(size=(b, n))
    fg, xstar = quadratic(a, c)
    x0 = rng.normal(size=(b, n))
    res = batched_lbfgs(fg, x0, np, 500)
    err = np.linalg.norm(res.x - xstar, axis=1) / np.maximum(np.linalg.norm(xstar, axis=1), 1.0)
    assert np.all(err < 1e-6)
    alone_fg, _ = quadratic(a[:1], c[:1])
    alone = batched_lbfgs(alone_fg, x0[:1], np, 500)
    assert np.array_equal(alone.x[0], res.x[0])


@pytest.mark.parametrize("backend", ["numpy", "array-api-strict", "torch"])
def test_rows_that_stop_early_leave_the_others_unchanged_on_every_namespace(backend: str) -> None:
    """Quadratics of condition numbers 1 to 10^4 stop after very different numbers of
    iterations, so the working set shrinks several times: on every namespace each row still
    ends at its own minimiser, and the rows come back in their order."""
    if backend == "torch":
        pytest.importorskip("torch", reason="torch is an optional extra")
    be = Backend.create(backend)
    rng = np.random.default_rng(7)
    b, n = 24, 8
    q = np.linalg.qr(rng.normal(size=(b, n, n)))[0]
    cond = np.geomspace(1.0, 1e4, b)[:, None]
    a = np.einsum("bij,bj,bkj->bik", q, cond ** np.linspace(0, 1, n)[None, :], q)
    c = rng.normal(size=(b, n))
    _, xstar = quadratic(a, c)
    a_, c_ = be.asarray(a), be.asarray(c)
    xp = be.xp

    def fg(x, rows):  # noqa: ANN001, ANN202
        aa = a_ if rows is None else xp.take(a_, rows, axis=0)
        cc = c_ if rows is None else xp.take(c_, rows, axis=0)
        ax = xp.matmul(aa, x[:, :, None])[:, :, 0]
        return 0.5 * xp.sum(x * ax, axis=1) - xp.sum(cc * x, axis=1), ax - cc

    res = batched_lbfgs(fg, be.asarray(rng.normal(size=(b, n))), xp, 2000)
    x = to_host(res.x)
    err = np.linalg.norm(x - xstar, axis=1) / np.maximum(np.linalg.norm(xstar, axis=1), 1.0)
    assert np.all(err < 1e-5), err.max()
    assert bool(np.all(to_host(res.converged)))
    fstar = -0.5 * np.sum(c * xstar, axis=1)
    assert np.allclose(to_host(res.f), fstar, rtol=1e-8, atol=1e-8 * np.abs(fstar).max())


CE5 = Problem.build(
    classes=5, samples=1, depth=2, width=10, lambda_w="1.3e-4", lambda_h="1.3e-4", loss="ce"
)


def test_batched_and_per_run_descents_from_the_same_starts_find_the_same_basins() -> None:
    """The batched L-BFGS against scipy's L-BFGS-B run start by start on the same rows (K = 5,
    M = 2, where the ETF is beaten by a rank-3 point): the same best value, and shares of the
    best basin within four standard errors of each other."""
    f = BatchedObjective(CE5, np)
    starts = plan(CE5, 64)
    rows = start_rows(CE5, f.layout, starts, seed=3)
    plain = [i for i, s in enumerate(starts) if s.factor == 1]
    rows = rows[plain]
    batched = batched_lbfgs(lambda x, r: f.value_and_grad(x), rows, np, 3000).f
    single = []
    for row in rows:

        def fg(x: np.ndarray) -> tuple[float, np.ndarray]:
            v, g = f.value_and_grad(x[None, :])
            return float(v[0]), g[0]

        res = so.minimize(fg, row, jac=True, method="L-BFGS-B", options={"maxiter": 3000, "ftol": 1e-15, "gtol": 1e-12})  # fmt: skip
        single.append(res.fun)
    single = np.array(single)
    best = min(batched.min(), single.min())
    assert math.isclose(batched.min(), single.min(), rel_tol=1e-8)
    share_b = np.mean(batched <= best * (1 + 1e-6))
    share_s = np.mean(single <= best * (1 + 1e-6))
    n = len(rows)
    p = (share_b + share_s) / 2
    assert abs(share_b - share_s) <= 4 * math.sqrt(2 * p * (1 - p) / n) + 1 / n


def test_the_search_beats_the_etf_where_it_is_beaten_and_says_how_often() -> None:
    """At K = 5, M = 2, lambda = 1.3e-4 the ETF (its value from `ce-balanced`'s closed form,
    computed here, not copied) is beaten: the lowest basin is below it, and the basins partition
    the starts."""
    from theorems.ce_balanced import claim

    claimed = float(claim.closed_form(CE5).objective)
    found = batched_search(CE5, Backend.create(), claimed, 1e-8, starts=32, seed=0, max_iter=3000)
    c = found.coverage
    assert c.starts == 32 == sum(n for _, n in found.families)
    assert sum(b.runs for b in c.basins) + c.failed == 32
    assert c.basins[0].value < claimed * (1 - 1e-6) and c.basins[0].outcomes == ("better",)
    assert found.ends[0].value == c.basins[0].value
    full = Objective(CE5, np)
    assert math.isclose(float(full.value(found.ends[0].point)), found.ends[0].value, rel_tol=1e-12)


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [NCVERIFY, *args], capture_output=True, text=True, timeout=600, check=False
    )


def test_a_check_reports_the_batched_search_in_text_and_json() -> None:
    args = ["check", "ce-balanced", "--classes", "5", "--samples", "1", "--depth", "2",
            "--width", "10", "--lambda-w", "1.3e-4", "--lambda-h", "1.3e-4",
            "--no-claim-candidates", "--search-starts", "64"]  # fmt: skip
    text = run(*args)
    assert text.returncode == 1, text.stderr
    assert "batched search (" in text.stdout and "COUNTEREXAMPLE from batched search" in text.stdout
    report = json.loads(run(*args, "--quiet", "--json", "-").stdout)
    assert report["schema"] == "ncverify.report/6" and report["verdict"] == "refuted"
    search = report["search"]
    assert search["starts"] == 64 == sum(f["starts"] for f in search["families"])
    assert search["coverage"]["starts"] == 64
    assert report["counterexample"]["origin"].startswith("batched search start")
    assert report["counterexample"]["objective"] == search["best"][0]["value"]


@pytest.mark.parametrize("value", ["-1", "70000", "many"])
def test_bad_search_starts_are_bad_input(value: str) -> None:
    proc = run("check", "ce-balanced", "--search-starts", value)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "start" in proc.stderr.lower()


@pytest.mark.parametrize("starts", [1, 2, 7, 14, 49, 64, 70, 256])
def test_the_starts_use_every_scale_once_and_half_of_them_have_low_rank_features(
    starts: int,
) -> None:
    problem = problem_of({"loss": "ce"})
    chosen = plan(problem, starts)
    grid = np.geomspace(0.1, 10.0, max(starts, 2))[:starts]
    assert np.allclose(sorted(s.scale for s in chosen), grid, rtol=1e-12)
    low = [s.rank for s in chosen if s.rank is not None]
    assert len(low) == starts // 2 and all(1 <= r <= problem.bottleneck for r in low)


def test_a_batched_search_at_the_prediction_backs_a_consistent_verdict() -> None:
    """Two classes, L = 3, one random-start run: whether the check is `consistent` or
    `inconclusive` follows from whether any start (batched or random) reached the prediction,
    with the batched search on and off; on this instance the batched search reaches it and the
    runs do not, so the search alone decides."""
    args = [
        NCVERIFY, "check", "dnc-binary", "--classes", "2", "--samples", "1", "--depth", "3",
        "--width", "2", "--activation", "relu", "--lambda-w", "1e-3", "--lambda-h", "1e-3",
        "--restarts", "1", "--escalate", "0", "--quiet", "--json", "-",
    ]  # fmt: skip
    seen = {}
    for starts in ("256", "0"):
        proc = subprocess.run([*args, "--search-starts", starts], capture_output=True, text=True)
        report = json.loads(proc.stdout)
        runs_at = report["numerical"]["coverage"]["at_prediction"]
        search = report["search"]
        search_at = search["coverage"]["at_prediction"] if search else 0
        reached = runs_at > 0 or search_at > 0
        assert report["counterexample"] is None
        assert report["verdict"] == ("consistent" if reached else "inconclusive"), report["notes"]
        seen[starts] = (runs_at, search_at)
    assert seen["256"][0] == 0 and seen["256"][1] > 0, seen


@given(starts=st.integers(1, 5000), most=st.integers(1, 700))
def test_the_chunks_cover_every_start_once_in_the_fewest_chunks_of_near_equal_size(
    starts: int, most: int
) -> None:
    parts = chunks(starts, most)
    assert [i for p in parts for i in range(p.start, p.stop)] == list(range(starts))
    sizes = [p.stop - p.start for p in parts]
    assert max(sizes) <= most and len(parts) == math.ceil(starts / most)
    assert max(sizes) - min(sizes) <= len(parts)  # only the last chunk may be shorter


def test_a_host_chunk_fits_the_cache_budget_and_a_device_chunk_only_the_memory_budget() -> None:
    problem = Problem.build(classes=20, samples=1, depth=3, width=20, lambda_w="1e-3",
                            lambda_h="1e-3", activation="relu")  # fmt: skip
    layout = Layout.of(problem)
    host, device = chunk_rows(layout, problem, host=True), chunk_rows(layout, problem)
    assert (
        1
        <= host * row_bytes(layout, problem)
        <= HOST_CHUNK_BYTES
        < device * row_bytes(layout, problem)
    )


def test_the_search_in_worker_processes_ends_where_it_ends_in_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Chunks of a DNC search (each holds a few rows of width 60) descended in two worker
    processes and in this one: every end the same, to the last bit."""
    problem = Problem.build(classes=6, samples=1, depth=3, width=60, lambda_w="1e-3",
                            lambda_h="1e-3", activation="relu")  # fmt: skip
    layout = Layout.of(problem)
    starts = plan(problem, 24)
    rows = start_rows(problem, layout, starts, seed=3)
    factors = np.array([s.factor for s in starts])
    assert len(chunks(24, chunk_rows(layout, problem, host=True))) > 2
    ends = {}
    for jobs in ("1", "2"):
        monkeypatch.setenv("NCVERIFY_JOBS", jobs)
        ends[jobs] = descend_starts(problem, Backend.create(), rows, factors, (50, 150))
    assert np.array_equal(ends["1"][1], ends["2"][1]) and np.array_equal(ends["1"][0], ends["2"][0])
    assert ends["1"][2:] == ends["2"][2:]


@pytest.mark.parametrize("side_by_side", [1, 2])
def test_no_more_chunks_run_at_once_than_fit_the_memory_budget(
    side_by_side: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With room in the search's share of the memory budget for one chunk, the chunks run one
    after the other in this process even where two workers are asked for; with room for two,
    in two workers."""
    problem = Problem.build(classes=6, samples=1, depth=3, width=60, lambda_w="1e-3",
                            lambda_h="1e-3", activation="relu")  # fmt: skip
    layout = Layout.of(problem)
    starts = plan(problem, 12)
    parts = chunks(12, chunk_rows(layout, problem, host=True))
    chunk = max(p.stop - p.start for p in parts) * row_bytes(layout, problem)
    monkeypatch.setenv("NCVERIFY_MEMORY_BUDGET", str(MEMORY_SHARE * chunk * side_by_side))
    monkeypatch.setenv("NCVERIFY_JOBS", "2")
    pools = []
    real_pool = workers.pool
    monkeypatch.setattr(workers, "pool", lambda jobs: pools.append(jobs) or real_pool(jobs))
    rows = start_rows(problem, layout, starts, seed=1)
    factors = np.array([s.factor for s in starts])
    descend_starts(problem, Backend.create(), rows, factors, (5, 5))
    assert len(parts) >= 2 and pools == ([] if side_by_side == 1 else [2])
