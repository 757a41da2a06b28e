"""ncverify: a symbolic-numeric verifier for Neural Collapse theorems in deep linear networks."""

from __future__ import annotations

import os

# One BLAS thread, fixed before numpy loads its BLAS.  Why: the verifier's products are small
# (`ncverify.evidence.optimize.single_threaded_blas` limits the threads at run time as well), and
# OpenBLAS started with one thread takes other code paths than one started with several and
# limited at run time: a check's batched search ended in other points (its counterexample 1 %
# lower) in a sweep's Dask workers, which start BLAS with one thread, and on one-core machines,
# than on a machine of two or more cores.  Set by the user, the variables are left alone.
for _variable in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_variable, "1")

from ncverify.backend import Backend  # noqa: E402
from ncverify.claim import Claim, Prediction, Step  # noqa: E402
from ncverify.model.problem import Problem, ProblemError  # noqa: E402
from ncverify.verify import Settings, verify  # noqa: E402

__all__ = [
    "Backend",
    "Claim",
    "Prediction",
    "Problem",
    "ProblemError",
    "Settings",
    "Step",
    "verify",
]
