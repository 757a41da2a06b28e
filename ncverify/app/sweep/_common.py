"""Constants and the error type shared by the sweep's modules."""

from __future__ import annotations

from ncverify.paths import PLOT_FORMATS  # noqa: F401 - the formats of every ncverify plot
from ncverify.report import Verdict

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
    "activation": "--activation",
    "radius_w": "--radius-w",
    "radius_h": "--radius-h",
    "smoothing": "--smoothing",
    "focusing": "--focusing",
    "temperature": "--temperature",
}
TASK_PREFIX = "ncverify-point"
ALIVE_GAIN = 1e-4  # a class is alive in an optimiser run when (W Hbar)_kk exceeds this
MAX_RESUBMIT = 3  # resubmissions of a point after the scheduler gave up on it (KilledWorker)
VERDICT_COLOURS = {
    Verdict.CERTIFIED: "#2ca02c",
    Verdict.CONSISTENT: "#98df8a",
    Verdict.REFUTED: "#d62728",
    Verdict.INCONCLUSIVE: "#ffbf00",
    Verdict.NOT_APPLICABLE: "#b0b0b0",
}


class SweepError(ValueError):
    """Input no sweep could accept; its message is one sentence."""
