"""The library's entry point: `verify(claim, problem, backend, settings)` runs the verification
pipeline (`ncverify.pipeline`) and, where `Settings.save_dir` asks, saves the counterexample as a
self-contained file (`ncverify.io`), recording its path in the report it returns.

Evidence and verdicts: docs/verdicts.md.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from ncverify.backend import Backend
from ncverify.claim import Claim
from ncverify.io import save_counterexample
from ncverify.model.problem import Problem
from ncverify.pipeline import Settings, Tolerances, affordable
from ncverify.pipeline import verify as run_pipeline
from ncverify.report import Report

__all__ = ["Settings", "Tolerances", "affordable", "verify"]


def verify(
    claim: Claim,
    problem: Problem,
    backend: Backend | None = None,
    settings: Settings | None = None,
    progress: Callable[[str, int, int], None] | None = None,
) -> Report:
    """Check `claim` on `problem` and return the report (`ncverify.pipeline.verify`), with the
    counterexample saved where `settings.save_dir` is set."""
    settings = settings or Settings()
    report = run_pipeline(claim, problem, backend, settings, progress)
    found = report.counterexample
    if found is None or not settings.save_dir:
        return report
    path = save_counterexample(settings.save_dir, report, report.backend)
    return dataclasses.replace(report, counterexample=dataclasses.replace(found, path=path))
