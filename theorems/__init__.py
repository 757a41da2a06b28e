"""Claims about global minimisers, one module each; each module exposes `claim`.

Claims are discovered automatically: adding one needs no edit outside `theorems/`.
"""

from __future__ import annotations

import importlib
import pkgutil

from ncverify.claim import Claim


def registry() -> dict[str, Claim]:
    """Every claim module's `claim`, by id, in module order."""
    out: dict[str, Claim] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        claim = getattr(module, "claim", None)
        if isinstance(claim, Claim):
            out[claim.id] = claim
    return out


def get(claim_id: str) -> Claim:
    """The claim with this id; `KeyError` with the known ids otherwise."""
    claims = registry()
    if claim_id not in claims:
        raise KeyError(claim_id)
    return claims[claim_id]
