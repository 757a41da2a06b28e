"""What a point's class-level logits look like: which classes are alive and the rank of the map
(`W Hbar` at layer 1, or the network's own logits through ReLUs).  Every run and every
counterexample is described by it; nothing here judges a claim."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ncverify.backend import to_host
from ncverify.evidence.metrics import class_means
from ncverify.model.objective import Objective, Params

#: A class is alive when its logit vector has norm above this (the targets have norm 1, so this
#: is scale-free; a test relative to ||hbar_k|| would call every class of the zero point alive).
ALIVE = 1e-6


@dataclass(frozen=True)
class Structure:
    """Alive classes, the numerical rank of the `K x K` logits and their singular values."""

    alive_classes: tuple[int, ...]
    rank_WH: int  # noqa: N815 - the name of the JSON field
    singular_values_WH: tuple[float, ...]  # noqa: N815

    def to_json(self) -> dict[str, object]:
        return {
            "alive_classes": list(self.alive_classes),
            "rank_WH": self.rank_WH,
            "singular_values_WH": list(self.singular_values_WH),
        }


def logit_structure(logits: np.ndarray) -> Structure:
    """Alive classes (logit columns above `ALIVE`) and the numerical rank of the logits."""
    alive = tuple(k for k, v in enumerate(np.linalg.norm(logits, axis=0)) if v > ALIVE)
    sv = np.linalg.svd(logits, compute_uv=False)
    rank = int(np.sum(sv > ALIVE * max(1.0, float(sv[0])))) if sv.size else 0
    return Structure(alive, rank, tuple(float(s) for s in sv))


def structure(objective: Objective, p: Params) -> Structure:
    """The structure of a point of `objective`'s problem, from layer 1 (every run is described:
    the NC1 of all layers would cost more than this)."""
    if objective.relu:  # the class means of the logits: no end-to-end product to factor
        means = class_means(objective, objective.logits(p))
        return logit_structure(to_host(means))
    hbar = class_means(objective, objective.first_features(p.H))
    classifier = p.Ws[-1]
    for w in reversed(p.Ws[:-1]):
        classifier = classifier @ w
    # the K x K logits factor through the width: with C = Q R (thin QR), the logits Q (R Hbar)
    # have the column norms and singular values of the small R Hbar (O(K d^2), not O(K^3))
    c, h = to_host(classifier), to_host(hbar)
    if c.shape[1] < c.shape[0]:
        c, h = np.eye(c.shape[1]), np.linalg.qr(c, mode="r") @ h
    return logit_structure(c @ h)
