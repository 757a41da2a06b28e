"""Load one of the recording scripts of `scripts/` as a module, for the tests that re-run what it
recorded (the scripts are not a package: they are run by hand as `python scripts/NAME.py`)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]


def script(name: str) -> ModuleType:
    """`scripts/NAME.py` as the module `NAME` (registered, so that its dataclasses resolve)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module
