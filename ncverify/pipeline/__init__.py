"""The one verification pipeline (`orchestrator.py`), its settings and its verdict rules.

It names no problem kind (`ncverify.kinds`) and writes nothing: `ncverify.verify.verify` is the
library's entry point, which also saves a counterexample where the settings ask.
"""

from __future__ import annotations

from ncverify.evidence.results import Tolerances
from ncverify.pipeline.orchestrator import affordable, verify
from ncverify.pipeline.settings import Settings

__all__ = ["Settings", "Tolerances", "affordable", "verify"]
