r"""Imbalanced cross-entropy with non-negative features: orthogonal class means, minority collapse.
With $K$ classes of $n_k$ samples, one layer, no bias and the features constrained to
$H \ge 0$ (as a ReLU leaves them), the claim is that the global minimisers of
$\tfrac1N\sum_i \mathrm{CE}(W h_i, y_i) + \tfrac{\lambda_W}{2}\lVert W\rVert^2
+ \tfrac{\lambda_H}{2}\lVert H\rVert^2$ collapse every class onto its mean, the class means are
orthogonal, $\bar h_k = a_k e_k$, and column $k$ of $W$ is $z_k / a_k$ with the centred logits
$z_k = m_k(e_k - \tfrac1K\mathbf 1)$.  With $s = \sqrt{\lambda_W\lambda_H}$ and
$c_k = N s\sqrt{(K-1)/(K n_k)}$, class $k$ is alive exactly when $c_k < (K-1)/K$, i.e. when
$n_k > K N^2 s^2/(K-1)$, with margin $m_k = \log\bigl((K-1)(1-c_k)/c_k\bigr)$; otherwise its
features and its column of $W$ vanish (minority collapse of the class).  The optimal value is
$F^* = \sum_k \tfrac{n_k}{N}\log\bigl(1 + (K-1)e^{-m_k}\bigr) + s\sqrt{n_k(K-1)/K}\,m_k$, and
the classifier rows are the scaled, centred class means,
$w_j = \sum_k (m_k / a_k^2)(\delta_{jk} - \tfrac1K)\,\bar h_k$.

What is checked.  At the claim's point: its exact value and the conditions of a minimum on the
orthant (E1); claim-agnostic runs on the orthant from Gaussian starts, each judged by its exact
value, none of which may end below $F^*$; the Gram matrices of the runs at the optimum (E4).
The collapse and the value of the orthogonal structure are proven (docs/theory/relu-features.md);
that orthogonal class means are optimal among all non-negative ones is the paper's theorem, which
this project does not prove: no certificate covers the constrained problem, so the verdict is at
most *consistent*.

Source: Dang, Tran, Nguyen, Ho, "Neural Collapse for Cross-entropy Class-Imbalanced Learning with
Unconstrained ReLU Features Model", ICML 2024, arXiv 2401.02058 (orthogonal class means of
class-dependent lengths, classifiers aligned with the scaled, centred class means, and the
thresholds of minority collapse); the closed forms here are this project's own derivation from
the model (docs/theory/relu-features.md), the paper's exact statement not being at hand.
"""

from __future__ import annotations

import math

import mpmath
import numpy as np
import sympy as sp

from ncverify.backend import Backend
from ncverify.claim import (
    Boundary,
    Claim,
    ClassPrediction,
    Phase,
    Prediction,
    Quantity,
    Regime,
    Step,
    TruthRegion,
    to_backend,
)
from ncverify.model.intervals import ends, interval_precision
from ncverify.model.objective import Params
from ncverify.model.problem import Problem
from theorems._hypotheses import LINEAR

PREC = 200


def _balance_identity() -> sp.Expr:
    """`lambda_W/2 |z|^2/a^2 + lambda_H n/2 a^2` at its minimiser over `a > 0`,
    `a^4 = lambda_W |z|^2 / (lambda_H n)`, is `sqrt(lambda_W lambda_H n) |z|`."""
    lw, lh, n, z = sp.symbols("lambda_W lambda_H n z", positive=True)
    a = (lw * z**2 / (lh * n)) ** sp.Rational(1, 4)
    return sp.simplify(lw / 2 * z**2 / a**2 + lh * n / 2 * a**2 - sp.sqrt(lw * lh * n) * z)


def _margin_identity() -> sp.Expr:
    """The class's scalar problem `(n/N) log(1 + (K-1) e^-m) + s sqrt(n(K-1)/K) m` is stationary
    at `m = log((K-1)(1-c)/c)`, `c = N s sqrt((K-1)/(K n))`."""
    k, n, big_n, s, m = sp.symbols("K n N s m", positive=True)
    phi = n / big_n * sp.log(1 + (k - 1) * sp.exp(-m)) + s * sp.sqrt(n * (k - 1) / k) * m
    c = big_n * s * sp.sqrt((k - 1) / (k * n))
    return sp.simplify(sp.diff(phi, m).subs(m, sp.log((k - 1) * (1 - c) / c)))


def _centring_identity() -> sp.Expr:
    """`|m (e_k - 1/K)|^2 = m^2 (K-1)/K` (here K = 4, class 1): the centred logits' norm."""
    m = sp.Symbol("m", positive=True)
    z = [m * (1 - sp.Rational(1, 4))] + [-m / 4] * 3
    return sp.simplify(sum(x**2 for x in z) - m**2 * sp.Rational(3, 4))


def _margins(problem: Problem) -> list[mpmath.mpf]:
    """`m_k` in `PREC` bits (0 for a collapsed class)."""
    k, big_n = problem.K, problem.N
    with mpmath.workprec(PREC):
        lw, lh = (
            mpmath.mpf(x.numerator) / x.denominator for x in (problem.lambda_w[0], problem.lambda_h)
        )
        s = mpmath.sqrt(lw * lh)
        out = []
        for n in problem.counts:
            c = big_n * s * mpmath.sqrt(mpmath.mpf(k - 1) / (k * n))
            out.append(mpmath.log((k - 1) * (1 - c) / c) if c < mpmath.mpf(k - 1) / k else 0)
        return out


def _critical_s(problem: Problem, n: int) -> float:
    """The `s = sqrt(lambda_W lambda_H)` beyond which a class of `n` samples collapses."""
    return math.sqrt((problem.K - 1) * n / problem.K) / problem.N


class ReluFeaturesImbalanced(Claim):
    id = "ce-imbalanced-relu-features"
    title = "Imbalanced cross-entropy, non-negative features: orthogonal class means"
    source = (
        'Dang, Tran, Nguyen, Ho, "Neural Collapse for Cross-entropy Class-Imbalanced Learning '
        'with Unconstrained ReLU Features Model", ICML 2024, arXiv 2401.02058'
    )
    status = (
        "the paper's theorem; the value of the orthogonal structure and the thresholds are "
        "derived here, their optimality is not (docs/theory/relu-features.md)"
    )
    loss = "nonnegative-ce"
    bias = "none"
    truth_region = TruthRegion.empty(
        "no certificate covers the constrained problem, and the optimality of orthogonal class "
        "means is the paper's theorem, not proven here",
        reference="Dang, Tran, Nguyen, Ho 2024",
    )

    def hypotheses(self, problem: Problem) -> list[str]:
        unmet = []
        if problem.activation != "linear" and problem.depth > 1:
            unmet.append(LINEAR)
        if problem.loss != "nonnegative-ce":
            unmet.append("the features must be non-negative (--loss nonnegative-ce)")
        if problem.widths[0] < problem.K:
            unmet.append(f"the feature dimension d = {problem.widths[0]} must be at least K")
        return unmet

    def enclosure(self, problem: Problem) -> tuple[mpmath.mpf, mpmath.mpf]:
        """`F*` in interval arithmetic, each `m_k` enclosed from its closed form."""
        k, big_n = problem.K, problem.N
        with interval_precision(PREC) as iv:
            lw, lh = (
                iv.mpf(x.numerator) / x.denominator for x in (problem.lambda_w[0], problem.lambda_h)
            )
            s = iv.sqrt(lw * lh)
            total = iv.mpf(0)
            for n, alive in zip(problem.counts, (m > 0 for m in _margins(problem)), strict=True):
                if not alive:
                    total += iv.mpf(n) / big_n * iv.log(iv.mpf(k))
                    continue
                c = big_n * s * iv.sqrt(iv.mpf(k - 1) / (k * n))
                m = iv.log((k - 1) * (1 - c) / c)
                total += iv.mpf(n) / big_n * iv.log(1 + (k - 1) * iv.exp(-m))
                total += s * iv.sqrt(iv.mpf(n * (k - 1)) / k) * m
            return ends(total)

    def closed_form(self, problem: Problem) -> Prediction:
        lo, hi = self.enclosure(problem)
        with mpmath.workprec(PREC):
            mid = (lo + hi) / 2
        w, hbar = _point(problem)
        k = problem.K
        classes = tuple(
            ClassPrediction(
                n,
                Regime.ALIVE if m > 0 else Regime.COLLAPSED,
                sp.Float(float(m * (k - 1) / k), 17),
                float(np.linalg.norm(w[j])),
                float(np.linalg.norm(hbar[:, j])),
                _critical_s(problem, n),
            )
            for j, (n, m) in enumerate(zip(problem.counts, _margins(problem), strict=True))
        )
        return Prediction(
            objective=mid,
            classes=classes,
            unique=True,
            geometry="orthogonal class means of lengths a_k, classifier columns z_k / a_k",
            zero=all(c.regime == Regime.COLLAPSED for c in classes),
            objective_form="sum_k (n_k/N) log(1 + (K-1) e^-m_k) + s sqrt(n_k (K-1)/K) m_k",
            objective_enclosure=(lo, hi),
            notes=("unique up to an isometry of the feature space that keeps H >= 0",),
            phase=self._phase(problem),
        )

    def _phase(self, problem: Problem) -> Phase:
        s = math.sqrt(float(problem.lambda_w[0]) * float(problem.lambda_h))
        lam_w, lam_h = float(problem.lambda_w[0]), float(problem.lambda_h)
        boundaries = []
        for n in sorted(set(problem.counts)):
            crit, cls = (
                _critical_s(problem, n),
                tuple(j for j, c in enumerate(problem.counts) if c == n),
            )
            change = "the class collapses beyond it (features and classifier column zero)"
            boundaries += [
                Boundary("lambda", crit, cls, change),
                Boundary("lambda_h", crit * crit / lam_w, cls, change),
                Boundary("lambda_w", crit * crit / lam_h, cls, change),
            ]
        crits = [_critical_s(problem, n) for n in set(problem.counts)]
        return Phase(
            boundaries=tuple(boundaries),
            distance=min(abs(math.log(s / c)) for c in crits),
            quantities=(
                Quantity("s", s, None, "s = sqrt(lambda_W lambda_H)"),
                Quantity(
                    "alive",
                    sum(m > 0 for m in _margins(problem)),
                    None,
                    "classes with n_k > K N^2 s^2 / (K - 1)",
                ),
            ),
        )

    def minimiser(self, problem: Problem, backend: Backend) -> Params:
        w, hbar = _point(problem)
        return to_backend(Params((w,), np.repeat(hbar, problem.counts, axis=1)), backend)

    def default_problem(self) -> Problem:
        """Counts 200, 100, 20, 10, width 4, every lambda 1e-2: the class of 10 collapses."""
        return Problem.build(
            counts="200,100,20,10",
            depth=1,
            width=4,
            lambda_w="1e-2",
            lambda_h="1e-2",
            loss="nonnegative-ce",
            bias="none",
        )

    def derivation(self) -> list[Step]:
        test = "tests/test_relu_features.py::"
        here = "theorems/ce_imbalanced_relu_features.py::"
        return [
            Step(
                "For a fixed W each feature's problem is strictly convex on the convex orthant: "
                "the features of a class meet one minimiser, and the class means are an exact "
                "reduction.",
                r"h_i = \bar h_{y_i}",
                "test",
                test + "test_moving_a_class_onto_its_mean_never_raises_f",
            ),
            Step(
                "With orthogonal class means the classes separate: class k's loss and penalty "
                "see only a_k and column k of W, and balancing the two norms gives the penalty "
                "s sqrt(n_k) |z_k| of its logits.",
                r"\min_{a>0} \tfrac{\lambda_W}{2}\tfrac{\lVert z\rVert^2}{a^2} + "
                r"\tfrac{\lambda_H n}{2}a^2 = \sqrt{\lambda_W\lambda_H n}\,\lVert z\rVert",
                "sympy",
                here + "_balance_identity",
                _balance_identity,
            ),
            Step(
                "The loss sees only the differences of the logits, so the norm is least for the "
                "centred, symmetric logits m (e_k - 1/K), of norm m sqrt((K-1)/K).",
                r"\lVert m(e_k - \tfrac1K\mathbf 1)\rVert^2 = m^2\tfrac{K-1}{K}",
                "sympy",
                here + "_centring_identity",
                _centring_identity,
            ),
            Step(
                "The class's scalar problem is convex in m and stationary at the closed form, "
                "which is positive exactly when c_k < (K-1)/K; otherwise m_k = 0 and the class "
                "collapses.",
                r"m_k = \log\frac{(K-1)(1-c_k)}{c_k},\quad c_k = Ns\sqrt{\tfrac{K-1}{Kn_k}}",
                "sympy",
                here + "_margin_identity",
                _margin_identity,
            ),
            Step(
                "That orthogonal class means are optimal among all non-negative ones is the "
                "paper's theorem, not proven here: no run may end below the claimed value.",
                r"F \ge F^*",
                "test",
                test + "test_no_run_ends_below_the_claimed_value",
            ),
        ]


def _point(problem: Problem) -> tuple[np.ndarray, np.ndarray]:
    """`W` (`K x d`) and the class means (`d x K`) of the claim: `hbar_k = a_k e_k`, column `k` of
    `W` equal to `z_k / a_k`, `z_k = m_k (e_k - 1/K)`, `a_k^4 = lambda_W |z_k|^2/(lambda_H n_k)`."""
    k, d = problem.K, problem.widths[0]
    lam_w, lam_h = float(problem.lambda_w[0]), float(problem.lambda_h)
    w, hbar = np.zeros((k, d)), np.zeros((d, k))
    for j, (n, m) in enumerate(zip(problem.counts, _margins(problem), strict=True)):
        if m == 0:
            continue
        z = float(m) * (np.eye(k)[j] - 1 / k)
        a = (lam_w * float(z @ z) / (lam_h * n)) ** 0.25
        hbar[j, j], w[:, j] = a, z / a
    return w, hbar


claim = ReluFeaturesImbalanced()
