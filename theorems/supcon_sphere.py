r"""Supervised contrastive features on the sphere: the global minimisers are collapsed simplex ETFs.
With $K$ balanced classes of $n \ge 2$ samples, every feature on the unit sphere of
$\mathbb{R}^d$ and no classifier, the mean supervised contrastive loss at temperature $\tau$,
$L(H) = \tfrac1N \sum_i \bigl(\log \sum_{a \ne i} e^{h_i^\top h_a/\tau}
- \tfrac{1}{n-1}\sum_{p \in P(i)} h_i^\top h_p/\tau\bigr)$ ($P(i)$: the other samples of $i$'s
class), is minimised, for every feature dimension $d \ge K - 1$, exactly by the collapsed simplex
ETFs: every feature of class $k$ equal to $u_k$, the unit vertices of a centred regular simplex.
The optimal value is
$L^* = \log\bigl(n - 1 + n(K-1)\, e^{-K/((K-1)\tau)}\bigr)$.

What is checked.  At the collapsed ETF: its exact value (an interval enclosure of the projected
point) and that its gradient tangent to the sphere vanishes; claim-agnostic runs on the sphere
from Gaussian starts, every sample its own feature, each judged by its exact value, none of which
may end below $L^*$; and that the runs at the optimum have the ETF's Gram matrix (collapse and
simplex at once).  The value is a proven lower bound (docs/theory/supcon.md#bound: Jensen
twice and the sum of the features), but no certificate kind computes it independently here, so
the verdict is at most *consistent*.

Source: Graf, Hofer, Niethammer, Kwitt, "Dissecting Supervised Contrastive Learning", ICML 2021,
arXiv 2102.08817 (the minimisers of the supervised contrastive loss on the sphere); the loss here
is the mean over anchors of the whole batch's loss, and the proof of the value is this project's
own derivation: docs/theory/supcon.md#bound.
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
    """At the collapsed ETF an anchor's similarities are `1/tau` with its `n - 1` positives and
    `-1/((K-1) tau)` with the `n (K-1)` others: its loss `log(sum e^s) - 1/tau` is the claimed
    value (exponentiated)."""
    k, n, tau = sp.symbols("K n tau", positive=True)
    same, other = 1 / tau, -1 / ((k - 1) * tau)
    lhs = ((n - 1) * sp.exp(same) + n * (k - 1) * sp.exp(other)) * sp.exp(-same)
    rhs = n - 1 + n * (k - 1) * sp.exp(-k / ((k - 1) * tau))
    return sp.simplify(lhs - rhs)


def _cross_class_identity() -> sp.Expr:
    """The inner products of features in different classes sum to `|s|^2 - sum_k |s_k|^2`, with
    `s_k` the sum of class `k`'s features and `s` of all (here two scalar features in each of
    three classes; each coordinate of vectors adds the same identity)."""
    h = sp.symbols("h1:7")
    classes = [h[0:2], h[2:4], h[4:6]]
    cross = sum(
        a * b
        for i, ci in enumerate(classes)
        for j, cj in enumerate(classes)
        if i != j
        for a in ci
        for b in cj
    )
    s = sum(h)
    return sp.expand(cross - (s**2 - sum(sum(c) ** 2 for c in classes)))


class SupConSphere(Claim):
    id = "supcon-sphere"
    title = "Supervised contrastive features on the sphere: collapse onto a simplex ETF"
    source = (
        'Graf, Hofer, Niethammer, Kwitt, "Dissecting Supervised Contrastive Learning", ICML 2021, '
        "arXiv 2102.08817"
    )
    status = "proven for balanced classes and d >= K - 1 (a proof: docs/theory/supcon.md)"
    loss = "supcon"
    bias = "none"
    truth_region = TruthRegion(
        basis="proven",
        reference="Graf et al. 2021; the proof of docs/theory/supcon.md#bound",
        loss="supcon",
        classes=(2, 6),
        samples=(2, 6),
        depth=(1, 1),
        widths=(2, 8),
        wide=True,
        temperature=("0.1", "2"),
    )

    def hypotheses(self, problem: Problem) -> list[str]:
        unmet = []
        if problem.activation != "linear" and problem.depth > 1:
            unmet.append(LINEAR)
        if problem.loss != "supcon":
            unmet.append("the problem must be the contrastive one (--loss supcon)")
        if not problem.balanced:
            unmet.append(BALANCED)
        if problem.widths[0] < problem.K - 1:
            unmet.append(f"the feature dimension d = {problem.widths[0]} must be at least K - 1")
        return unmet

    def enclosure(self, problem: Problem) -> tuple[mpmath.mpf, mpmath.mpf]:
        """`log(n - 1 + n (K-1) exp(-K/((K-1) tau)))`, enclosed in interval arithmetic."""
        k, n, tau = problem.K, problem.counts[0], problem.temperature
        with interval_precision(PREC) as iv:
            gap = iv.mpf(tau.denominator) / tau.numerator * k / (k - 1)
            return ends(iv.log(n - 1 + n * (k - 1) * iv.exp(-gap)))

    def closed_form(self, problem: Problem) -> Prediction:
        lo, hi = self.enclosure(problem)
        with mpmath.workprec(PREC):
            mid = (lo + hi) / 2
        return Prediction(
            objective=mid,
            unique=True,
            geometry="every class collapsed onto a vertex of a simplex ETF",
            zero=False,
            objective_form="log(n - 1 + n (K-1) exp(-K/((K-1) tau)))",
            objective_enclosure=(lo, hi),
            notes=("unique up to a rotation of the feature space",),
        )

    def minimiser(self, problem: Problem, backend: Backend) -> Params:
        u = unit_simplex(problem.K, problem.widths[0])
        return to_backend(Params((), np.repeat(u.T, problem.counts, axis=1)), backend)

    def default_problem(self) -> Problem:
        """Four balanced classes of 5 samples, feature dimension 8, temperature 1/2."""
        return Problem.build(
            counts="5,5,5,5", depth=1, width=8, loss="supcon", bias="none", temperature="0.5"
        )

    def derivation(self) -> list[Step]:
        test = "tests/test_supcon_sphere.py::"
        return [
            Step(
                "At the collapsed ETF an anchor's similarity is 1/tau with its n - 1 positives "
                "and -1/((K-1) tau) with the n(K-1) other samples: its loss is the claimed value.",
                r"\log\bigl((n-1)e^{1/\tau} + n(K-1)e^{-1/((K-1)\tau)}\bigr) - \tfrac1\tau = "
                r"\log\bigl(n-1 + n(K-1)e^{-K/((K-1)\tau)}\bigr)",
                "sympy",
                "theorems/supcon_sphere.py::_etf_loss_identity",
                _etf_loss_identity,
            ),
            Step(
                "Jensen on the exponentials of the positives and of the others, then on the "
                "convex increasing t -> log(n - 1 + n(K-1) e^t): the mean loss is at least that "
                "function of the mean gap t between an anchor's mean similarity to the other "
                "classes and to its own.",
                r"L \ge \log\bigl(n-1 + n(K-1)e^{\bar t}\bigr),\quad \bar t = \tfrac1N\sum_i"
                r"\Bigl(\tfrac{1}{n(K-1)}\sum_{y_a \ne y_i} s_{ia} - \tfrac{1}{n-1}"
                r"\sum_{p \in P(i)} s_{ip}\Bigr)",
                "test",
                test + "test_the_jensen_bound_holds_at_random_points",
            ),
            Step(
                "The similarities across classes sum to |s|^2 - sum_k |s_k|^2 over tau (s_k the "
                "sum of class k's features, s of all), at least -K n^2 / tau; those within a "
                "class are at most 1/tau: the mean gap is at least -K/((K-1) tau).",
                r"\sum_{y_a \ne y_i} h_i^\top h_a = \lVert s\rVert^2 - \sum_k \lVert s_k\rVert^2"
                r"\ge -K n^2",
                "sympy",
                "theorems/supcon_sphere.py::_cross_class_identity",
                _cross_class_identity,
            ),
            Step(
                "So every point costs at least the ETF's value, and equality forces equal "
                "features within a class (|s_k| = n), s = 0 and equal similarities across "
                "classes: the collapsed simplex ETF.",
                r"L \ge \log\bigl(n-1 + n(K-1)e^{-K/((K-1)\tau)}\bigr) = L^*",
                "test",
                test + "test_no_run_ends_below_the_claimed_value",
            ),
        ]


claim = SupConSphere()
