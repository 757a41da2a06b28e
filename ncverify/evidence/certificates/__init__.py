"""Independent certificates of the optimal value, one module per kind, registered by name.

- `separable-reduction` (`separable.py`): exact per-mode global minimisation of MSE problems that
  separate (no bias or a free bias, with any counts).
- `convex-dual` (`convex.py`): a rigorous weak-duality lower bound for one-layer problems (any
  counts, MSE or CE, any bias mode), its feasibility proven in verified floating point
  (`verified.py`).

Claims list the kinds they support in `certificates`; the pipeline calls `CERTIFIERS[kind]`.

- `max-margin-dual` (`max_margin.py`): a rigorous weak-duality lower bound for the one-layer
  max-margin problem (`Loss.MAX_MARGIN`), with rational multipliers checked exactly.
- `two-class-scalar` (`two_classes.py`): two classes at any depth, balanced cross-entropy or the
  max-margin problem: a chain of inequalities down to a scalar problem, minimised rigorously.
- `gram-branch-and-bound` (`gram.py`): three or four classes at depth, balanced cross-entropy or
  the max-margin problem: branch and bound over the Gram matrix of the centred logits, every
  box's bound proven in interval arithmetic; it runs only with a box budget (`BUDGETED`).
- `frame-branch-and-bound` (`frame.py`): four balanced classes of the max-margin problem at depth:
  branch and bound over the eigenvalues and the eigenvector frame of that Gram matrix, every
  leaf's bound proven in interval arithmetic; budgeted too.
"""

from __future__ import annotations

from collections.abc import Callable

from ncverify.evidence.certificates.certificate import Certificate
from ncverify.evidence.certificates.convex import convex_dual
from ncverify.evidence.certificates.frame import frame_branch_and_bound
from ncverify.evidence.certificates.gram import gram_branch_and_bound
from ncverify.evidence.certificates.max_margin import max_margin_dual
from ncverify.evidence.certificates.separable import rho, separable_applies, separable_reduction
from ncverify.evidence.certificates.two_classes import two_class_scalar

__all__ = [
    "BUDGETED",
    "CERTIFIERS",
    "Certificate",
    "convex_dual",
    "frame_branch_and_bound",
    "gram_branch_and_bound",
    "max_margin_dual",
    "rho",
    "separable_applies",
    "separable_reduction",
    "two_class_scalar",
]

#: Certificate kinds by name: each takes a problem and returns a Certificate, or None when it
#: does not apply to that instance.  Claims list the kinds they support in `certificates`.
CERTIFIERS: dict[str, Callable[..., Certificate | None]] = {
    "separable-reduction": separable_reduction,
    "convex-dual": convex_dual,
    "max-margin-dual": max_margin_dual,
    "two-class-scalar": two_class_scalar,
    "gram-branch-and-bound": gram_branch_and_bound,
    "frame-branch-and-bound": frame_branch_and_bound,
}

#: The kinds that take a box budget (`Settings.certificate_boxes`) as the keyword `boxes`.
BUDGETED: frozenset[str] = frozenset({"gram-branch-and-bound", "frame-branch-and-bound"})
