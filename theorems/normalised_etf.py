r"""Normalised features: the global minimisers are simplex ETFs.
With $K$ balanced classes, one layer, no bias, every classifier row on the sphere of radius
$r_W$ and every feature on the sphere of radius $r_H$, the mean cross-entropy
$\tfrac1N\sum_i \mathrm{CE}(W h_i, y_i)$ is minimised, for every feature dimension
$d \ge K - 1$, exactly by the simplex ETFs: the classifier rows $w_k = r_W u_k$ with $u_k$ the
unit vertices of a centred regular simplex, and every feature of class $k$ equal to $r_H u_k$.
With $c = r_W r_H$ the optimal value is
$F^* = \log\bigl(1 + (K-1)\, e^{-cK/(K-1)}\bigr)$.

What is checked.  At the ETF: its exact value (an interval enclosure of the projected point) and
that its gradient tangent to the spheres vanishes; claim-agnostic runs on the spheres from
Gaussian starts, each judged by its exact value, none of which may end below $F^*$; and that the
geometry of the runs at the optimum is the ETF's (their Gram matrices).  The value is a proven
lower bound (docs/theory/normalised.md#etf: Jensen twice and Cauchy–Schwarz), but no certificate
kind computes it independently here, so the verdict is at most *consistent*.

Source: Yaras, Wang, Zhu, Balzano, Qu, "Neural Collapse with Normalized Features: A Geometric
Analysis over the Riemannian Manifold", NeurIPS 2022, arXiv 2209.09211 (the global minimisers of
the normalised unconstrained-feature problem); the proof of the value as this project derives
it: docs/theory/normalised.md#etf.
"""

from __future__ import annotations

import mpmath
import numpy as np
import sympy as sp

from ncverify.backend import Backend
from ncverify.claim import Claim, Prediction, Step, TruthRegion, to_backend
from ncverify.model.factorisations import unit_simplex
from ncverify.model.intervals import ends, interval_precision
from ncverify.model.objective import Params
from ncverify.model.problem import Problem
from theorems._hypotheses import BALANCED, LINEAR

PREC = 200


def _etf_loss_identity() -> sp.Expr:
    """At the ETF a sample's own logit is `c`, the others `-c/(K-1)`: its cross-entropy
    `log(e^c + (K-1) e^(-c/(K-1))) - c` is `log(1 + (K-1) e^(-cK/(K-1)))` (exponentiated)."""
    k, c = sp.symbols("K c", positive=True)
    own, other = c, -c / (k - 1)
    lhs = (sp.exp(own) + (k - 1) * sp.exp(other)) * sp.exp(-own)
    rhs = 1 + (k - 1) * sp.exp(-c * k / (k - 1))
    return sp.simplify(lhs - rhs)


def _sum_of_squares_identity() -> sp.Expr:
    """`sum_k |K w_k - s|^2 = K^2 sum_k |w_k|^2 - K |s|^2` with `s = sum_j w_j` (here for
    scalar `w_k`, `K = 3`; each coordinate of vectors adds the same identity)."""
    w = sp.symbols("w1:4")
    s = sum(w)
    return sp.expand(sum((3 * x - s) ** 2 for x in w) - (9 * sum(x**2 for x in w) - 3 * s**2))


class NormalisedETF(Claim):
    id = "normalised-etf"
    title = "Normalised features: the simplex ETF is globally optimal"
    source = (
        'Yaras, Wang, Zhu, Balzano, Qu, "Neural Collapse with Normalized Features: A Geometric '
        'Analysis over the Riemannian Manifold", NeurIPS 2022, arXiv 2209.09211'
    )
    status = "proven for balanced classes and d >= K - 1 (a proof: docs/theory/normalised.md)"
    loss = "normalised-ce"
    bias = "none"
    truth_region = TruthRegion(
        basis="proven",
        reference="Yaras et al. 2022; the proof of docs/theory/normalised.md#etf",
        loss="normalised-ce",
        classes=(2, 6),
        samples=(1, 10),
        depth=(1, 1),
        widths=(2, 8),
        wide=True,
        radius_w=("0.5", "2"),
        radius_h=("0.5", "5"),
    )

    def hypotheses(self, problem: Problem) -> list[str]:
        unmet = []
        if problem.activation != "linear" and problem.depth > 1:
            unmet.append(LINEAR)
        if problem.depth != 1:
            unmet.append("the network must have one layer (M = 1)")
        if problem.loss != "normalised-ce":
            unmet.append("the problem must be the normalised one (--loss normalised-ce)")
        if not problem.balanced:
            unmet.append(BALANCED)
        if problem.widths[0] < problem.K - 1:
            unmet.append(f"the feature dimension d = {problem.widths[0]} must be at least K - 1")
        return unmet

    def enclosure(self, problem: Problem) -> tuple[mpmath.mpf, mpmath.mpf]:
        """`log(1 + (K-1) exp(-cK/(K-1)))`, enclosed in interval arithmetic."""
        k, c = problem.K, problem.radius_w * problem.radius_h
        with interval_precision(PREC) as iv:
            gap = iv.mpf(c.numerator) / c.denominator * k / (k - 1)
            return ends(iv.log(1 + (k - 1) * iv.exp(-gap)))

    def closed_form(self, problem: Problem) -> Prediction:
        lo, hi = self.enclosure(problem)
        with mpmath.workprec(PREC):
            mid = (lo + hi) / 2
        return Prediction(
            objective=mid,
            unique=True,
            geometry="simplex ETF, every feature on its classifier row",
            zero=False,
            objective_form="log(1 + (K-1) exp(-r_W r_H K/(K-1)))",
            objective_enclosure=(lo, hi),
            notes=("unique up to a rotation of the feature space",),
        )

    def minimiser(self, problem: Problem, backend: Backend) -> Params:
        u = unit_simplex(problem.K, problem.widths[0])
        w = float(problem.radius_w) * u
        h = float(problem.radius_h) * np.repeat(u.T, problem.counts, axis=1)
        return to_backend(Params((w,), h), backend)

    def default_problem(self) -> Problem:
        """Four balanced classes of 10 samples, feature dimension 3 = K - 1, r_W = 1, r_H = 5."""
        return Problem.build(
            counts="10,10,10,10",
            depth=1,
            width=3,
            loss="normalised-ce",
            bias="none",
            radius_w="1",
            radius_h="5",
        )

    def derivation(self) -> list[Step]:
        test = "tests/test_normalised_claim.py::"
        return [
            Step(
                "At the ETF a sample's own logit is c = r_W r_H and every other -c/(K-1) (the "
                "vertices of a centred simplex have inner products -1/(K-1)): its "
                "cross-entropy is the claimed value.",
                r"\log\bigl(e^{c} + (K-1)e^{-c/(K-1)}\bigr) - c = "
                r"\log\bigl(1 + (K-1)e^{-cK/(K-1)}\bigr)",
                "sympy",
                "theorems/normalised_etf.py::_etf_loss_identity",
                _etf_loss_identity,
            ),
            Step(
                "Jensen on the exponentials, then on the convex increasing "
                "t -> log(1 + (K-1) e^t): the mean loss is at least that function of the mean "
                "gap t between the other logits and the own one.",
                r"\tfrac1N\sum_i \mathrm{CE}_i \ge \log\bigl(1 + (K-1)e^{\bar t}\bigr),\quad "
                r"\bar t = \tfrac1N\sum_i \tfrac{1}{K-1}\sum_{j\ne y_i}(w_j - w_{y_i})^\top h_i",
                "test",
                test + "test_the_jensen_bound_holds_at_random_points",
            ),
            Step(
                "With s the sum of the rows, the mean gap is at least -r_H/(K-1) times the mean of "
                "||K w_k - s||, which Cauchy-Schwarz bounds by K r_W.",
                r"\sum_k \lVert K w_k - s\rVert^2 = K^2\sum_k \lVert w_k\rVert^2 - K\lVert s\rVert^2"
                r"\le K^3 r_W^2",
                "sympy",
                "theorems/normalised_etf.py::_sum_of_squares_identity",
                _sum_of_squares_identity,
            ),
            Step(
                "So every point costs at least the ETF's value, and equality forces s = 0, equal "
                "norms ||K w_k - s||, features along K w_k and equal gaps: the simplex ETF.",
                r"F \ge \log\bigl(1 + (K-1)e^{-r_W r_H K/(K-1)}\bigr) = F^*",
                "test",
                test + "test_no_run_ends_below_the_claimed_value",
            ),
        ]


claim = NormalisedETF()
