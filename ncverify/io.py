"""Files: the self-contained counterexample file that `ncverify recheck` re-evaluates.

A counterexample file is a compressed `.npz`: the arrays `W1..WM`, `H` (and `b`) as float64, and a
`meta` JSON string (schema `ncverify.counterexample/1`) with the claim id, the problem (lambdas as
exact rationals), the objective, the claimed optimum, the gap and its proven error bound, and the
high-precision certificate, which is informational only: `recheck` recomputes everything.
"""

from __future__ import annotations

import hashlib
import json
import os
import zipfile
from typing import TYPE_CHECKING, Any

import numpy as np

from ncverify.model.objective import Params
from ncverify.report import COUNTEREXAMPLE_SCHEMA, clean, version

if TYPE_CHECKING:  # pragma: no cover
    from ncverify.backend import Backend
    from ncverify.report import Report


class CounterexampleFileError(ValueError):
    """A file that is not a readable counterexample file; the message is one sentence."""


def save_counterexample(directory: str, report: Report, backend: Backend) -> str:
    """Write the report's counterexample as a self-contained `.npz`; returns its path (also set
    as `report.counterexample.path`).  The name is the claim id and a digest of the metadata."""
    ce = report.counterexample
    assert ce is not None and ce.point is not None
    os.makedirs(directory, exist_ok=True)
    arrays = {f"W{m}": backend.to_numpy(w).astype(np.float64) for m, w in enumerate(ce.point.Ws, 1)}
    arrays["H"] = backend.to_numpy(ce.point.H).astype(np.float64)
    if ce.point.b is not None:
        arrays["b"] = backend.to_numpy(ce.point.b).astype(np.float64)
    meta = {
        "schema": COUNTEREXAMPLE_SCHEMA,
        "ncverify": version(),
        "claim": report.claim.id,
        "problem": report.problem.describe(),
        "objective": ce.objective,
        "claimed": ce.claimed,
        "gap": ce.gap,
        "error_bound": ce.error_bound,
        "origin": ce.origin,
        "certificate": ce.certificate,  # informational: `recheck` recomputes everything
    }
    digest = hashlib.sha256(json.dumps(clean(meta), sort_keys=True).encode()).hexdigest()[:12]
    path = os.path.join(directory, f"{report.claim.id}-{digest}.npz")
    np.savez_compressed(path, meta=np.array(json.dumps(clean(meta))), **arrays)
    ce.path = path
    return path


def load_counterexample(path: str) -> tuple[dict[str, Any], Params]:
    if not os.path.exists(path):
        raise CounterexampleFileError(f"no such file: {path!r}.")
    try:
        data = np.load(path, allow_pickle=False)
        meta = json.loads(str(data["meta"]))
        depth = meta["problem"]["depth"]
        ws = tuple(np.asarray(data[f"W{m}"], dtype=np.float64) for m in range(1, depth + 1))
        h = np.asarray(data["H"], dtype=np.float64)
        b = np.asarray(data["b"], dtype=np.float64) if "b" in data.files else None
    except (OSError, EOFError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError):
        raise CounterexampleFileError(f"{path!r} is not an ncverify counterexample file.") from None
    if meta.get("schema") != COUNTEREXAMPLE_SCHEMA:
        raise CounterexampleFileError(
            f"{path!r} has schema {meta.get('schema')!r}, expected {COUNTEREXAMPLE_SCHEMA!r}."
        )
    return meta, Params(ws, h, b)
