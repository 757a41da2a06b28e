"""One task per grid point: its key, the `check` command that reproduces it, and running it."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from ncverify.app.sweep._common import ALIVE_GAIN, FLAGS
from ncverify.model.problem import Problem
from ncverify.verify import Settings


# ---- tasks --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PointTask:
    """Everything a worker needs to check one point (plain, picklable data)."""

    key: str
    index: int
    claim: str  # a CLAIM argument (`ncverify.app.claims.reference`): resolved on the worker
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
            # only when not linear: the keys of earlier results files stay valid
            **({"activation": problem.activation} if problem.activation != "linear" else {}),
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
            **({"continuation": False} if not settings.continuation else {}),
        },
        "backend": list(backend),
    }
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def check_command(claim: str, options: dict[str, str | None], extra: Sequence[str]) -> str:
    """The `ncverify check` command that reproduces one point's report (`claim`: the CLAIM
    argument, an id, a claim file's path or `module:attribute`)."""
    words = ["ncverify", "check", claim]
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
    from ncverify.app.claims import resolve
    from ncverify.backend import Backend
    from ncverify.verify import verify

    claim = resolve(task.claim)
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
    runs or without a penalised objective (the max-margin and normalised problems).  A class
    counts as alive in the run when its gain exceeds `ALIVE_GAIN`."""
    import numpy as np

    from ncverify.evidence.metrics import layer_geometry
    from ncverify.model.objective import Objective
    from ncverify.model.problem import Loss
    from ncverify.report import clean

    runs = [r for r in report.runs if math.isfinite(r.objective)]
    if not runs or not Loss(report.problem.loss).penalised:  # no objective F to read gains from
        return None
    best = min(runs, key=lambda r: r.objective)
    be = report.backend
    objective = Objective(
        report.problem,
        be.xp,
        dtype=be.dtype,
        device=be.device,
        parameterisation=report.parameterisation,  # that of the run points
    )
    geom = layer_geometry(objective, best.point.map(be.asarray))[0]
    wh, w, hbar = (
        np.asarray(be.to_numpy(a), dtype=np.float64) for a in (geom.WH, geom.W, geom.Hbar)
    )
    gains = np.diag(wh)
    return clean(
        {
            "index": best.index,
            "objective": best.objective,
            "gains": gains,
            "norms_w": np.linalg.norm(w, axis=1),
            "norms_h": np.linalg.norm(hbar, axis=0),
            "alive": [k for k, g in enumerate(gains) if g > ALIVE_GAIN],
        }
    )
