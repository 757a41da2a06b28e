#!/usr/bin/env bash
# Device check (under 5 minutes), for a machine with an accelerator and no network.
# Installs the project from the wheels carried in wheels/ (see prepare-device-wheels.sh) into a
# virtual environment that sees the machine's own torch, runs the `gpu` tests, times one check
# on CPU and on CUDA side by side, and prints a summary.
set -uo pipefail
cd "$(dirname "$0")/.."
python3 -m venv --system-site-packages /tmp/ncv-device
PY=/tmp/ncv-device/bin/python
$PY -m pip install -q --no-index --find-links wheels --no-deps wheels/ncverify-*.whl
$PY -m pip install -q --no-index --find-links wheels ncverify array-api-strict 2>&1 | tail -2
$PY - <<'PY'
import torch
print(f"torch {torch.__version__}, cuda available: {torch.cuda.is_available()}, "
      f"device: {torch.cuda.get_device_name(0) if torch.cuda.is_available() else '-'}")
PY
echo "== gpu tests"
$PY -m pytest -q -m gpu tests/test_backends.py 2>&1 | tail -3
echo "== timing: one check, torch CPU vs torch CUDA (same instance, same run)"
$PY - <<'PY'
import time
import theorems
from ncverify import Backend, Problem, Settings, verify

claim = theorems.get("mse-balanced-biasfree")
problem = Problem.build(counts="100,100,100,100", depth=3, width=64)
rows = []
for device in ("cpu", "cuda"):
    be = Backend.create("torch", device)
    t = time.perf_counter()
    rep = verify(claim, problem, be, Settings(restarts=4))
    rows.append((device, time.perf_counter() - t, rep.verdict, rep.best_objective))
for device, secs, verdict, best in rows:
    print(f"{device:5s} {secs:8.2f} s  verdict {verdict:10s} best {best:.15g}")
print(f"CUDA / CPU time ratio: {rows[1][1] / rows[0][1]:.3f}")
PY
echo "== benchmark: K = 1000, n = 10, width 1024, depth 3, one reduced run (200 L-BFGS iterations)"
$PY - <<'PY'
import time
import numpy as np
from ncverify import Backend, Problem
from ncverify.evidence.optimize import descend, random_start
from ncverify.model.objective import Objective
from ncverify.model.reduction import default_parameterisation

problem = Problem.build(classes=1000, samples=10, depth=3, width=1024,
                        lambda_w="1e-4", lambda_h="1e-4")
param = default_parameterisation(problem)
start = random_start(problem, np.random.default_rng([0, 0]), 1.0, param)
rows = []
for device in ("cpu", "cuda"):
    be = Backend.create("torch", device)
    obj = Objective(problem, be.xp, dtype=be.dtype, device=be.device, parameterisation=param)
    t = time.perf_counter()
    _, info = descend(obj, start.map(be.asarray), max_iter=200)
    rows.append((device, time.perf_counter() - t, info["evaluations"], info["objective"]))
for device, secs, evals, value in rows:
    print(f"{device:5s} {secs:8.2f} s  {evals} evaluations  {1e3 * secs / evals:.1f} ms each  "
          f"F {value:.15g}")
print(f"CUDA / CPU time per evaluation: {(rows[1][1] / rows[1][2]) / (rows[0][1] / rows[0][2]):.3f}")
PY
