r"""The max-margin limit: the class-mean logits of a minimiser are the simplex-encoded labels.
With $K$ classes of $n_k$ samples (any sizes), features collapsed to their class means, $M$
linear layers and no bias, the max-margin problem, which is the limit of regularised
cross-entropy as every weight decay tends to zero, is
$\min \sum_m \tfrac{\lambda_{W_m}}{2}\lVert W_m\rVert_F^2 + \tfrac{\lambda_H}{2}\lVert H\rVert_F^2$
subject to every margin $(w_{y_i} - w_j)^T h_i \ge 1$.  The claim: it is solved by the class-mean
logits $Z = W_M \cdots W_1 \bar H$ equal to the simplex-encoded labels
$Z^* = I - \mathbf 1\mathbf 1^T/K$, with value
$F^* = \tfrac{M+1}{2} P^{1/(M+1)} \sum_i \sigma_i(Z^* D)^q$.  Here
$D = \operatorname{diag}(\sqrt{n_k})$, $q = 2/(M+1)$, $P = \lambda_H \prod_m \lambda_{W_m}$,
and $\sigma_i$ are singular values.  For balanced classes of $n$ samples the value is
$\tfrac{M+1}{2} P^{1/(M+1)} (K-1)\, n^{q/2}$.

What is checked.  At one layer the problem is convex, and a weak-duality certificate (rational
multipliers, an exact positive-semidefiniteness check) bounds the optimum from below; it meets
the labels' value, so the *value* is certified.  That the labels are the only minimiser needs an
argument of its own, which the evidence does not give.  For two classes the value is proven at
every depth (the `two-class-scalar` certificate, docs/theory/depth-certificates.md).  At depth, the
labels are a KKT point; the
claim's search tries the orthoplex codes, which beat the labels exactly where an integer
comparison says, and claim-agnostic runs search the $K \times K$ logits.

Source: Thrampoulidis, Kini, Vakilian, Behnia, "Imbalance Trouble: Revisiting Neural-Collapse
Geometry", NeurIPS 2022, arXiv 2208.05512 (SELI at one layer); at depth: Garrod & Keating,
NeurIPS 2025, arXiv 2410.23169, and Garrod, Keating, Thrampoulidis, ICML 2026, arXiv 2605.23087
(depth promotes low-rank codes); docs/theory/ce.md#max-margin.
"""

from __future__ import annotations

from fractions import Fraction

import mpmath
import numpy as np
import sympy as sp

from ncverify.backend import Backend
from ncverify.claim import (
    Candidate,
    Claim,
    ClassPrediction,
    Prediction,
    Regime,
    SearchBudget,
    Step,
    TruthRegion,
    to_backend,
)
from ncverify.model.max_margin import factor_constant, labels, lift_logits, schatten_enclosure
from ncverify.model.objective import Params
from ncverify.model.problem import Problem
from theorems._hypotheses import model_hypotheses
from theorems._max_margin import witness


def _unit_margin_identity() -> sp.Expr:
    """`z_kk - z_jk - 1` for the labels `I - J/K`: zero for every `K`."""
    k = sp.Symbol("K", positive=True)
    return (1 - 1 / k) - (-1 / k) - 1


class MaxMarginSEL(Claim):
    id = "maxmargin-sel"
    title = "Max-margin limit: the simplex-encoded labels at every depth"
    source = (
        'Thrampoulidis, Kini, Vakilian, Behnia, "Imbalance Trouble: Revisiting Neural-Collapse '
        'Geometry", NeurIPS 2022, arXiv 2208.05512: SELI at one layer'
    )
    status = "proven for M = 1 (SELI); false at depth for many K (low-rank codes)"
    loss = "max-margin"
    bias = "none"
    certificates = (
        "max-margin-dual",
        "two-class-scalar",
        "frame-branch-and-bound",
        "gram-branch-and-bound",
    )
    # one layer only: at depth the orthoplex codes refute it for many K
    truth_region = TruthRegion(
        basis="proven",
        reference="Thrampoulidis et al. 2022, SELI at one layer "
        "(docs/theory/ce.md#max-margin-one-layer)",
        loss="max-margin",
        balanced=False,
        depth=(1, 1),
        wide=True,
    )

    def hypotheses(self, problem: Problem) -> list[str]:
        return model_hypotheses(problem, loss="max-margin", bias="none", bottleneck=1)

    def enclosure(self, problem: Problem) -> tuple[mpmath.mpf, mpmath.mpf]:
        """`((M+1)/2) P^{1/(M+1)} S_q(Z* D)`, enclosed (both factors are intervals)."""
        q = Fraction(2, problem.depth + 1)
        s_lo, s_hi = schatten_enclosure(labels(problem.K), problem.counts, q)
        c_lo, c_hi = factor_constant(problem)
        with mpmath.workprec(220):
            return c_lo * s_lo, c_hi * s_hi

    def closed_form(self, problem: Problem) -> Prediction:
        lo, hi = self.enclosure(problem)
        point = lift_logits(problem, np.eye(problem.K) - 1 / problem.K)
        w = point.Ws[-1]
        for wm in reversed(point.Ws[:-1]):
            w = w @ wm
        starts = np.cumsum((0, *problem.counts[:-1]))
        gain = sp.Rational(problem.K - 1, problem.K)  # z_kk of the labels
        classes = tuple(
            ClassPrediction(
                n,
                Regime.ALIVE,
                gain,
                float(np.linalg.norm(w[k])),
                float(np.linalg.norm(point.H[:, s])),
            )
            for k, (n, s) in enumerate(zip(problem.counts, starts, strict=True))
        )
        with mpmath.workprec(220):
            mid = (lo + hi) / 2
        notes = [
            "the claim is about the logits and the value; that the labels are the only "
            "minimiser is not claimed here (it needs an argument of its own)"
        ]
        found = witness(problem.K, problem.depth) if problem.balanced else None
        if found is not None:
            notes.append(
                f"the {found.name} code beats the labels here: {found.inequality} "
                "(docs/theory/ce.md#max-margin)"
            )
        return Prediction(
            objective=mid,
            classes=classes,
            bias=None,
            unique=False,
            geometry="simplex-encoded labels (SEL)",
            zero=False,
            notes=tuple(notes),
            objective_form="((M+1)/2) P^(1/(M+1)) sum_i sigma_i((I - J/K) D)^q",
            objective_enclosure=(lo, hi),
        )

    def minimiser(self, problem: Problem, backend: Backend) -> Params:
        return to_backend(lift_logits(problem, np.eye(problem.K) - 1 / problem.K), backend)

    def search(self, problem: Problem, backend: Backend, budget: SearchBudget) -> list[Candidate]:
        """The orthoplex code (less a vertex for odd K), where it beats the labels (balanced)."""
        found = witness(problem.K, problem.depth) if problem.balanced else None
        if found is None:
            return []
        point = to_backend(lift_logits(problem, found.logits()), backend)
        info = {"summary": f"{found.name} code: {found.inequality}", "code": found.name}
        return [Candidate(point, f"{found.name} code (r = {found.r})", info)]

    def default_problem(self) -> Problem:
        """Four balanced classes of 10 samples, one layer of width 8, unit weights."""
        return Problem.build(
            counts="10,10,10,10",
            depth=1,
            width=8,
            lambda_w="1",
            lambda_h="1",
            loss="max-margin",
            bias="none",
        )

    def derivation(self) -> list[Step]:
        return [
            Step(
                "The balanced factors of logits Z cost ((M+1)/2) P^(1/(M+1)) S_q(Z D), the least "
                "of any factorisation with collapsed features (the factorisation lemma, "
                "docs/theory/lemmas.md#lemma-factorisation); the test checks the balanced lift.",
                r"\sum_m \tfrac{\lambda_{W_m}}{2}\lVert W_m\rVert_F^2 + \tfrac{\lambda_H}{2}"
                r"\lVert H\rVert_F^2 \ge \tfrac{M+1}{2} P^{1/(M+1)} \sum_i \sigma_i(ZD)^q",
                "test",
                "tests/test_maxmargin_claim.py::test_the_balanced_lift_has_the_factorisation_value",
            ),
            Step(
                "The simplex-encoded labels are feasible: every margin equals 1.",
                r"z_{kk} - z_{jk} = (1 - \tfrac1K) - (-\tfrac1K) = 1",
                "sympy",
                "theorems/maxmargin_sel.py::_unit_margin_identity",
                _unit_margin_identity,
            ),
            Step(
                "At one layer the problem is convex, and weak duality with rational multipliers "
                "bounds its optimum below; the bound meets the labels' value.",
                r"\sum_{jk}\mu_{jk}/t \le \min_Z \lVert ZD\rVert_*,\quad "
                r"t^2\operatorname{diag}(n) - A(\mu)^TA(\mu) \succeq 0",
                "test",
                "tests/test_max_margin_certificate.py::test_the_bound_is_rigorous_and_meets_the_primal_optimum",
            ),
            Step(
                "At depth the orthoplex codes have singular values 2 (and 1), and beat the labels "
                "where an integer comparison says.",
                r"r\,2^q < K - 1 \iff 4 r^{M+1} < (2r-1)^{M+1}",
                "test",
                "tests/test_max_margin_certificate.py::test_the_witness_codes_evaluate_exactly_to_their_closed_forms",
            ),
        ]


claim = MaxMarginSEL()
