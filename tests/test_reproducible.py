"""A check's numbers do not depend on how many threads the machine's BLAS starts with.

OpenBLAS started with one thread takes other code paths than one started with several and
limited to one at run time: the batched search of `maxmargin-sel` at K = 7, M = 4 ended 1 % lower
on a two-core machine than in a sweep's Dask workers (which start BLAS with one thread), so a
sweep and the check its table names disagreed.  `ncverify` fixes one BLAS thread before numpy
loads its BLAS, unless the user sets the variable.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

NCVERIFY = str(Path(sys.executable).with_name("ncverify"))
CHECK = [
    "check", "maxmargin-sel", "--classes", "7", "--samples", "1", "--depth", "4", "--width", "7",
    "--no-claim-candidates", "--restarts", "2", "--escalate", "0", "--quiet", "--json", "-",
]  # fmt: skip
BLAS_THREADS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def _search(env: dict[str, str]) -> list[float]:
    proc = subprocess.run(
        [NCVERIFY, *CHECK], capture_output=True, text=True, timeout=600, env=env, check=False
    )
    report = json.loads(proc.stdout)
    return [end["value"] for end in report["search"]["best"]]


def test_the_search_ends_where_it_ends_with_blas_started_on_one_thread() -> None:
    machine = {k: v for k, v in os.environ.items() if k not in BLAS_THREADS}
    one = {**machine, **dict.fromkeys(BLAS_THREADS, "1")}
    assert _search(machine) == _search(one)


def test_importing_ncverify_first_starts_blas_on_one_thread() -> None:
    machine = {k: v for k, v in os.environ.items() if k not in BLAS_THREADS}
    code = (
        "import ncverify, numpy\n"
        "from threadpoolctl import threadpool_info\n"
        "print(max(i['num_threads'] for i in threadpool_info() if i['user_api'] == 'blas'))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=machine, check=True
    )
    assert proc.stdout.strip() == "1"
