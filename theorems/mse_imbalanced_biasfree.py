r"""Any class sizes, no bias, MSE: a length-weighted orthogonal frame, and small classes collapse.
With class counts $n_1, \dots, n_K$ (any), $M \ge 1$ linear layers $W_1, \dots, W_M$ on free
features, no bias and MSE, every global minimiser has NC1 (the features of each class collapse to
their class mean), and with $\rho_k = N^{M+1} P / n_k^M$ the class gain
$\gamma_k = (W \bar H)_{kk}$ is $\max(0, 1 - \sqrt{\rho_k})$ for $M = 1$; for $M \ge 2$ it is
the largest root in $(\frac{M-1}{2M}, 1)$ of $\gamma^{M-1}(1-\gamma)^{M+1} = \rho_k$ while
$\rho_k < \mathrm{thr}_M = (M-1)^{M-1}/M^{2M}$, and $0$ beyond it (the class *collapses*:
$w_k = 0$, $\bar h_k = 0$), with a tie at $\rho_k = \mathrm{thr}_M$; only the $R$ largest
classes can be alive.  The alive classes form an orthogonal frame with class-dependent lengths:
with $S_k \ge 0$ defined by $\gamma_k = S_k/(S_k + N \lambda_H)$,
$W W^T = \operatorname{diag}(S_k)$,
$\bar H^T \bar H = \operatorname{diag}(S_k/(S_k + N \lambda_H)^2)$,
$W = \operatorname{diag}(S_k + N \lambda_H) \bar H^T$ and
$W \bar H = \operatorname{diag}(\gamma_k)$; the optimal value is
$F^* = \sum_k [n_k (\gamma_k - 1)^2/(2N) + ((M+1)/2) P^{1/(M+1)} n_k^{1/(M+1)} \gamma_k^q]$.
Here $N = \sum_k n_k$, $P = \lambda_H \prod_m \lambda_{W_m}$ is the product of the weight decays
of the features ($\lambda_H$) and of the layers ($\lambda_{W_m}$), $q = 2/(M+1)$,
$W = W_M \cdots W_1$ has the rows $w_k$, $\bar H$ has the class means $\bar h_k$ of the features
as columns, and $R = \min(K, d, d_1, \dots, d_{M-1})$ is the bottleneck, with $d$ the feature
dimension and $d_m$ the output width of layer $m$.

Per layer, along class $k$ every $W_m$ has the singular value $\sqrt{t_k / \lambda_{W_m}}$ and
$\sqrt{n_k} \lVert \bar h_k \rVert = \sqrt{t_k / \lambda_H}$, with
$t_k = P^{1/(M+1)} (\sqrt{n_k} \gamma_k)^q$, so the same relations hold at every layer $m$ for the
pair $(W_M \cdots W_m, \bar H_m)$, where $\bar H_m$ holds the class means of the features that
enter layer $m$.

**Regimes.** Each class is *alive* ($\gamma_k > 0$), *collapsed* ($\gamma_k = 0$ because
$\rho_k \ge \mathrm{thr}_M$, or $\rho_k \ge 1$ for $M = 1$), a *tie* ($\rho_k = \mathrm{thr}_M$
exactly for $M \ge 2$: zero and $\gamma_k = (M-1)/M$ give the same value, so the minimiser is not
unique) or cut by the *bottleneck* (alive on its own, but not among the $R$ largest classes).  For
$M \ge 2$ the collapse is a jump: for
$\mathrm{thr}_M < \rho_k < (\frac{M-1}{2M})^{M-1} (\frac{M+1}{2M})^{M+1}$ a positive stationary
point still exists, but zero is better — the *gap* in which the published rule ("take the largest
root") is wrong (docs/theory/mse.md#reference-code).

**Phase boundary.** With all lambdas tied to one $\lambda$ (in general: with the geometric mean
$P^{1/(M+1)}$ in its place) class $k$ is alive iff
$\lambda < \lambda_k^* = (\mathrm{thr}_M n_k^M / N^{M+1})^{1/(M+1)}$; the report gives every
$\lambda_k^*$ and the distance $\min_k |\operatorname{log}(\rho_k / \mathrm{thr}_M)| / (M+1)$,
which is $\min_k |\operatorname{log}(\lambda / \lambda_k^*)|$, over the classes that the
bottleneck does not cut.  In the paper's form: class $k$ is alive iff
$b / n_k < \tau_M = (M-1)^{(M-1)/M} / M^2$, with the scalar $b = N (N P)^{1/M}$ (not the bias).

Every regime is decided exactly from the rational inputs (`5e-4` is $1/2000$), never through a
float: the threshold comparison is between rationals and the root is an exact algebraic number.

Source: H. Dang, T. Tran, S. Osher, H. Tran-The, N. Ho, T. Nguyen, "Neural Collapse in Deep
Linear Networks: From Balanced to Imbalanced Data", ICML 2023, arXiv 2301.00437 (the imbalanced
bias-free MSE result); docs/theory/mse.md#imbalanced-bias-free.

Example:

>>> from ncverify import Problem
>>> p = Problem.build(counts="200,100,50,50", depth=3, width=64, lambda_w="5e-4", lambda_h="5e-4")
>>> [str(c.regime) for c in claim.closed_form(p).classes]
['alive', 'alive', 'alive', 'alive']
"""

from __future__ import annotations

from fractions import Fraction
from functools import lru_cache

import mpmath
import numpy as np
import sympy as sp

from ncverify.backend import Backend
from ncverify.claim import (
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
from ncverify.model.factorisations import balanced_layers
from ncverify.model.objective import Params
from ncverify.model.problem import Problem
from ncverify.model.scalar import collapse_threshold
from theorems import _balanced as bal
from theorems._balanced import DANG_2023 as D
from theorems._hypotheses import model_hypotheses

gamma, n, N, P, lam = sp.symbols("gamma n N P lambda", positive=True)


def gap_top(depth: int) -> Fraction:
    """`max_gamma gamma^{M-1}(1-gamma)^{M+1}`, attained at `gamma = (M-1)/(2M)`: above it no
    positive stationary point exists (for `M = 1`, at `gamma = 0`: 1)."""
    m = depth
    g = Fraction(m - 1, 2 * m)
    return g ** (m - 1) * (1 - g) ** (m + 1)


@lru_cache(maxsize=1024)
def _threshold_gain(depth: int, rho: Fraction) -> tuple[sp.Expr, Regime]:
    # root isolation of a degree-2M polynomial is the slow part; each (M, rho) is done once
    return bal.threshold_gain(depth, rho)


class MSEImbalancedBiasFree(Claim):
    id = "mse-imbalanced-biasfree"
    title = "Imbalanced MSE without bias: length-weighted orthogonal frame, minority collapse"
    source = f"{D}: the imbalanced bias-free MSE result"
    status = "proven (M = 1: convex in A = W H)"
    loss = "mse"
    bias = "none"
    certificates = ("convex-dual", "separable-reduction")
    truth_region = TruthRegion(
        basis="proven",
        reference="Dang et al. 2023, imbalanced bias-free MSE, gains by lemma 3 "
        "(docs/theory/mse.md#imbalanced-bias-free)",
        balanced=False,
    )
    geometry_name = "length-weighted orthogonal frame"

    def hypotheses(self, problem: Problem) -> list[str]:
        return model_hypotheses(problem, loss="mse", bias="none")

    def default_problem(self) -> Problem:
        return Problem.build(
            counts="200,100,50,50", depth=3, width=64, lambda_w="5e-4", lambda_h="5e-4"
        )

    # ---- the mathematics, in overridable pieces ---------------------------------------------
    def rho(self, problem: Problem, count: int) -> Fraction:
        """`rho_k = N^{M+1} P / n_k^M`, exact."""
        return bal.rho_of(problem, count)

    def threshold(self, depth: int) -> Fraction:
        """`thr_M = (M-1)^{M-1} / M^{2M}` (1 for `M = 1`, where the boundary is `rho_k = 1`), as
        the phase report shows it; `gain` applies the same threshold through the rule."""
        return collapse_threshold(depth)

    def gain(self, problem: Problem, count: int) -> tuple[sp.Expr, Regime]:
        """The class gain `gamma_k` and its regime (alive / collapsed / tie) by the claim's
        threshold rule, before the bottleneck is applied."""
        return _threshold_gain(problem.depth, self.rho(problem, count))

    def lengths(self, problem: Problem, count: int, g: float) -> tuple[float, float]:
        """`(||w_k||, ||hbar_k||)` of the balanced factorisation with gain `g`."""
        return bal.lengths(problem, count, g)

    def slots(self, problem: Problem) -> list[int]:
        """The classes that the bottleneck lets live: the `R` largest (the first index among
        equal counts, as the separable certificate orders them)."""
        order = sorted(range(problem.K), key=lambda k: -problem.counts[k])
        return sorted(order[: problem.bottleneck])

    def cut_tie(self, problem: Problem) -> bool:
        """Does the bottleneck cut between two classes of equal count that would both live?"""
        r = problem.bottleneck
        if r >= problem.K:
            return False
        order = sorted(range(problem.K), key=lambda k: -problem.counts[k])
        inside, outside = order[r - 1], order[r]
        return (
            problem.counts[inside] == problem.counts[outside]
            and self.gain(problem, problem.counts[outside])[0] != 0
        )

    def gains(self, problem: Problem) -> list[tuple[sp.Expr, Regime]]:
        """Per class: the exact gain and the regime, the bottleneck applied."""
        slots = set(self.slots(problem))
        out = []
        for k, count in enumerate(problem.counts):
            g, regime = self.gain(problem, count)
            if g != 0 and k not in slots:
                out.append((sp.Integer(0), Regime.BOTTLENECK))
            else:
                out.append((g, regime))
        return out

    # ---- closed form --------------------------------------------------------------------------
    def closed_form(self, problem: Problem) -> Prediction:
        gains = self.gains(problem)
        slots = set(self.slots(problem))
        thr = self.threshold(problem.depth)
        value = self.objective(problem, gains)
        classes = []
        for count, (g, regime) in zip(problem.counts, gains, strict=True):
            lw, lh = self.lengths(problem, count, float(sp.N(g, 30))) if g != 0 else (0.0, 0.0)
            classes.append(
                ClassPrediction(count, regime, g, lw, lh, bal.critical_lambda(problem, count))
            )
        regimes = [r for _, r in gains]
        cut_tie = self.cut_tie(problem)
        notes = []
        if Regime.TIE in regimes:
            tied = [k for k, r in enumerate(regimes) if r == Regime.TIE]
            notes.append(
                f"class(es) {tied} sit exactly at the collapse threshold rho_k = thr_M: zero and "
                "gamma = (M-1)/M give the same value, so the minimiser is not unique"
            )
        if Regime.BOTTLENECK in regimes:
            cut = [k for k, r in enumerate(regimes) if r == Regime.BOTTLENECK]
            notes.append(
                f"bottleneck R = {problem.bottleneck} < K: class(es) {cut} would live on their own "
                "but only the R largest classes can"
            )
        if cut_tie:
            notes.append(
                "the bottleneck cuts between classes of equal count: which of them live is not "
                "unique (the table shows one choice)"
            )
        with mpmath.workdps(30):
            log_thr = mpmath.log(bal.mp(thr))
            rhos = {k: self.rho(problem, problem.counts[k]) for k in range(problem.K)}
            distances = [
                abs(mpmath.log(bal.mp(rhos[k])) - log_thr) / (problem.depth + 1) for k in slots
            ]
            distance = float(min(distances))
            effective = float(mpmath.root(bal.mp(problem.lambda_product), problem.depth + 1))
        return Prediction(
            objective=value,
            classes=tuple(classes),
            bias=None,
            unique=Regime.TIE not in regimes and not cut_tie,
            geometry=self.geometry_name if any(g != 0 for g, _ in gains) else "zero",
            notes=tuple(notes),
            zero=all(g == 0 for g, _ in gains),
            phase=self.phase(problem, gains, rhos, distance, effective),
            objective_form="sum_k [n_k (gamma_k - 1)^2/(2N) + ((M+1)/2) P^{1/(M+1)} "
            "n_k^{1/(M+1)} gamma_k^q], gamma = " + ", ".join(str(sp.N(g, 20)) for g, _ in gains),
        )

    def phase(
        self,
        problem: Problem,
        gains: list[tuple[sp.Expr, Regime]],
        rhos: dict[int, Fraction],
        distance: float,
        effective: float,
    ) -> Phase:
        """One boundary per group of equal counts, at its critical lambda; `rho_k`, the
        threshold, the top of the collapse gap and which classes sit in it."""
        thr = self.threshold(problem.depth)
        top = gap_top(problem.depth) if problem.depth > 1 else None
        boundaries: list = []
        for count in sorted(set(problem.counts), reverse=True):
            members = [k for k, c in enumerate(problem.counts) if c == count]
            boundaries += bal.lambda_boundaries(
                problem,
                bal.critical_lambda(problem, count),
                members,
                f"the classes of {count} samples collapse beyond it",
            )
        in_gap = [
            top is not None and thr < rhos[k] < top and gains[k][1] == Regime.COLLAPSED
            for k in range(problem.K)
        ]
        return Phase(
            boundaries=tuple(boundaries),
            distance=distance,
            quantities=(
                Quantity(
                    "rho",
                    [float(rhos[k]) for k in range(problem.K)],
                    [str(rhos[k]) for k in range(problem.K)],
                    "rho_k = N^(M+1) P / n_k^M per class",
                ),
                Quantity(
                    "threshold",
                    float(thr),
                    str(thr),
                    "thr_M = (M-1)^(M-1) / M^(2M): class k is alive iff rho_k < thr_M",
                ),
                Quantity(
                    "gap_top",
                    None if top is None else float(top),
                    None if top is None else str(top),
                    "max of gamma^(M-1) (1-gamma)^(M+1): between thr_M and it a positive "
                    "stationary point exists but loses to zero",
                ),
                Quantity(
                    "in_gap",
                    in_gap,
                    None,
                    "per class: collapsed although a positive stationary point exists",
                ),
                Quantity(
                    "effective_lambda",
                    effective,
                    None,
                    "P^(1/(M+1)), compared with each class's critical lambda",
                ),
            ),
        )

    def objective(self, problem: Problem, gains: list[tuple[sp.Expr, Regime]]) -> mpmath.mpf:
        """`F*`, summed over groups of equal count (so equal counts reproduce the balanced claim
        term for term): `phi_n(gamma) * alive + n/(2N) * dead` per group."""
        total = mpmath.mpf(0)
        with mpmath.workdps(50):
            for count in dict.fromkeys(problem.counts):
                members = [k for k, c in enumerate(problem.counts) if c == count]
                live = [k for k in members if gains[k][0] != 0]
                g = gains[live[0]][0] if live else sp.Integer(0)
                total += bal.mode_value(problem, count, g) * len(live) + mpmath.mpf(count) / (
                    2 * problem.N
                ) * (len(members) - len(live))
        return total

    def layer_targets(self, problem: Problem) -> list[dict[str, list[float]]]:
        """Per layer m = 1..M, per class: the singular value of `W_m` along the class, the diagonal
        of `(W_M...W_m)(W_M...W_m)^T`, of `Hbar_m^T Hbar_m` and of `W_M...W_m Hbar_m` (all the
        Gram matrices are diagonal in the class basis)."""
        m = problem.depth
        p_root = float(problem.lambda_product) ** (1 / (m + 1))
        t = [
            p_root * (np.sqrt(count) * float(sp.N(g, 30))) ** (2 / (m + 1))
            for count, (g, _) in zip(problem.counts, self.gains(problem), strict=True)
        ]
        sigma = [[(tk / float(lw)) ** 0.5 for tk in t] for lw in problem.lambda_w]
        h1 = [
            (tk / float(problem.lambda_h)) ** 0.5 / np.sqrt(c)
            for tk, c in zip(t, problem.counts, strict=True)
        ]
        out = []
        for layer in range(m):
            below = np.prod([sigma[j] for j in range(layer)], axis=0) if layer else np.ones(len(t))
            above = np.prod([sigma[j] for j in range(layer, m)], axis=0)
            hm = np.asarray(h1) * below
            out.append(
                {
                    "singular_values": list(sigma[layer]),
                    "WWt": list(above**2),
                    "HtH": list(hm**2),
                    "WH": list(above * hm),
                }
            )
        return out

    def minimiser(self, problem: Problem, backend: Backend) -> Params:
        gains = self.gains(problem)
        alive = [k for k, (g, _) in enumerate(gains) if g != 0]
        frame = np.eye(problem.K)[:, alive]
        s = np.array([np.sqrt(problem.counts[k]) * float(sp.N(gains[k][0], 30)) for k in alive])
        return to_backend(balanced_layers(problem, frame, s, frame), backend)

    # ---- documentation ------------------------------------------------------------------------
    def thresholds_text(self) -> str:
        """The collapse thresholds, the gap and the default instance's critical lambdas."""
        rows = []
        for m in range(2, 10):
            thr, top = collapse_threshold(m), gap_top(m)
            rows.append(f"M={m}: thr={thr} ({float(thr):.4g}), gap up to {float(top):.4g}")
        p = self.default_problem()
        crit = ", ".join(f"n={c}: {bal.critical_lambda(p, c):.4g}" for c in dict.fromkeys(p.counts))
        return (
            "class k is alive iff rho_k = N^{M+1} P / n_k^M < thr_M = (M-1)^{M-1}/M^{2M} "
            "(M = 1: rho_k < 1, continuously); tied lambdas: iff lambda < lambda_k* = "
            "(thr_M n_k^M / N^{M+1})^{1/(M+1)}; for M >= 2 a positive stationary point that loses "
            "to zero exists for thr_M < rho_k < ((M-1)/(2M))^{M-1}((M+1)/(2M))^{M+1} (the gap). "
            + "; ".join(rows)
            + f". Default instance (counts {list(p.counts)}, M = {p.depth}): lambda_k* {crit}."
        )

    def derivation(self) -> list[Step]:
        scalar = bal.scalar_steps("K modes, class k's with target sqrt(n_k)")
        return [
            *scalar[:4],
            Step(
                "A stationary gamma > 0 of class k's problem solves a polynomial equation in "
                "rho_k = N^{M+1} P / n_k^M.",
                r"\varphi_k'(\gamma) = 0 \iff \gamma^{M-1}(1-\gamma)^{M+1} = \rho_k = "
                r"\tfrac{N^{M+1}P}{n_k^M}",
                "sympy",
                "theorems/mse_imbalanced_biasfree.py::_stationarity_identity",
                _stationarity_identity,
            ),
            scalar[5],
            Step(
                "Thresholds: f(gamma) = gamma^{M-1}(1-gamma)^{M+1} rises to its maximum at "
                "(M-1)/(2M) and falls to 0 at 1; its value at (M-1)/M is thr_M.  A root below "
                "(M-1)/(2M) is below (M-1)/M and loses to zero, so only the root in "
                "((M-1)/(2M), 1) can win, and it does iff rho_k < thr_M.  For thr_M < rho_k < "
                "f((M-1)/(2M)) that root exists but loses (the gap).",
                r"f'\!\left(\tfrac{M-1}{2M}\right) = 0,\quad f\!\left(\tfrac{M-1}{M}\right) = "
                r"\mathrm{thr}_M = \tfrac{(M-1)^{M-1}}{M^{2M}},\quad "
                r"f\!\left(\tfrac{M-1}{2M}\right) = \left(\tfrac{M-1}{2M}\right)^{M-1}"
                r"\left(\tfrac{M+1}{2M}\right)^{M+1}",
                "sympy",
                "theorems/mse_imbalanced_biasfree.py::_threshold_identity",
                _threshold_identity,
            ),
            Step(
                "The same boundary in the other forms: tied lambdas, rho_k = thr_M exactly at "
                "lambda = lambda_k*; in the paper's variables, rho_k = (b/n_k)^M and "
                "thr_M = tau_M^M, and the gain is x^M/(x^M+1) at a root x of "
                "b/n_k = x^{M-1}/(x^M+1)^2.",
                r"\lambda_k^* = \left(\tfrac{\mathrm{thr}_M n_k^M}{N^{M+1}}\right)^{1/(M+1)},\quad "
                r"b = N(NP)^{1/M},\; \tau_M = \tfrac{(M-1)^{(M-1)/M}}{M^2},\; "
                r"\gamma_k = \tfrac{x_k^M}{x_k^M+1}",
                "sympy",
                "theorems/mse_imbalanced_biasfree.py::_boundary_forms_identity",
                _boundary_forms_identity,
            ),
            Step(
                "For M = 1 the problem is convex in A and the gain is a soft threshold.",
                r"\gamma_k = \max\left(0,\, 1 - \sqrt{\rho_k}\right)",
                "sympy",
                "theorems/mse_imbalanced_biasfree.py::_soft_threshold_identity",
                _soft_threshold_identity,
            ),
            Step(
                "At most R modes can be non-zero; a live class saves n_k/(2N) gamma_k "
                "(M gamma_k - M + 1) (M >= 2; n_k gamma_k^2/(2N) for M = 1), which grows with "
                "n_k, so the R largest classes are the ones alive (equal counts at the cut: not "
                "unique).",
                r"\text{alive} \subseteq \{\text{the } R \text{ largest } n_k\}",
                "test",
                "tests/test_imbalanced.py::test_bottleneck_keeps_the_largest_classes",
            ),
            Step(
                "The balanced factorisation of A = diag(sqrt(n_k) gamma_k) is a length-weighted "
                "orthogonal frame; stationarity in H gives hbar_k = (1 - gamma_k) w_k/(N lambda_H), "
                "hence gamma_k = S_k/(S_k + N lambda_H) with S_k = ||w_k||^2.",
                r"WW^T = \mathrm{diag}(S_k),\; \bar H^T\bar H = \mathrm{diag}\!\left("
                r"\tfrac{S_k}{(S_k+N\lambda_H)^2}\right),\; W = \mathrm{diag}(S_k+N\lambda_H)"
                r"\bar H^T,\; W\bar H = \mathrm{diag}(\gamma_k)",
                "test",
                "tests/test_imbalanced.py::test_weighted_frame_geometry",
            ),
            Step(
                "Per layer, W_m has the singular value sqrt(t_k/lambda_{W_m}) along class k and "
                "sqrt(n_k)||hbar_k|| = sqrt(t_k/lambda_H); the predicted point is stationary with "
                "the claimed value F*.",
                r"t_k = P^{1/(M+1)}(\sqrt{n_k}\gamma_k)^q,\quad F^* = \sum_k \tfrac{n_k(\gamma_k-1)^2}"
                r"{2N} + \tfrac{M+1}{2}P^{1/(M+1)}n_k^{1/(M+1)}\gamma_k^q",
                "test",
                "tests/test_imbalanced.py::test_predicted_point_is_stationary_with_claimed_value",
            ),
        ]


# ---- sympy identities of the derivation (each must simplify to zero) ----------------------------
def _stationarity_identity() -> sp.Expr:
    # phi'(gamma) = 0  <=>  (1-gamma) gamma^{1-q} = N c_k / n_k, c_k = P^{1/(M+1)} n_k^{1/(M+1)};
    # both sides positive on (0, 1), and their (M+1)-th powers are f(gamma) and rho_k
    total = sp.Integer(0)
    for m in range(1, 8):
        q = sp.Rational(2, m + 1)
        c = P ** sp.Rational(1, m + 1) * n ** sp.Rational(1, m + 1)
        phi = n * (gamma - 1) ** 2 / (2 * N) + sp.Rational(m + 1, 2) * c * gamma**q
        derivative = sp.diff(phi, gamma)
        # phi' = (n/N) gamma^{q-1} [N c/n - (1-gamma) gamma^{1-q}]
        total += sp.simplify(
            derivative - n / N * gamma ** (q - 1) * (N * c / n - (1 - gamma) * gamma ** (1 - q))
        )
        lhs = sp.powsimp(sp.expand_power_base((N * c / n) ** (m + 1), force=True), force=True)
        total += sp.simplify(lhs - N ** (m + 1) * P / n**m)
        total += sp.simplify(
            sp.powsimp(((1 - gamma) * gamma ** (1 - q)) ** (m + 1), force=True)
            - gamma ** (m - 1) * (1 - gamma) ** (m + 1)
        )
    return sp.simplify(total)


def _threshold_identity() -> sp.Expr:
    total = sp.Integer(0)
    for m in range(2, 10):
        f = gamma ** (m - 1) * (1 - gamma) ** (m + 1)
        peak = sp.Rational(m - 1, 2 * m)
        total += sp.diff(f, gamma).subs(gamma, peak)
        total += f.subs(gamma, sp.Rational(m - 1, m)) - sp.Rational(
            (m - 1) ** (m - 1), m ** (2 * m)
        )
        top = gap_top(m)
        total += f.subs(gamma, peak) - sp.Rational(top.numerator, top.denominator)
    return sp.simplify(total)


def _boundary_forms_identity() -> sp.Expr:
    total = sp.Integer(0)
    x = sp.Symbol("x", positive=True)
    for m in range(1, 8):
        thr = sp.Integer(collapse_threshold(m).numerator) / collapse_threshold(m).denominator
        crit = (thr * n**m / N ** (m + 1)) ** sp.Rational(1, m + 1)
        rho_tied = N ** (m + 1) * lam ** (m + 1) / n**m  # P = lambda^{M+1}
        total += sp.simplify(
            sp.powsimp(sp.expand_power_base(rho_tied.subs(lam, crit), force=True), force=True) - thr
        )
        bb = N * (N * P) ** sp.Rational(1, m)
        total += sp.simplify(
            sp.powsimp(sp.expand_power_base((bb / n) ** m, force=True), force=True)
            - N ** (m + 1) * P / n**m
        )
        if m >= 2:
            tau = sp.Integer(m - 1) ** sp.Rational(m - 1, m) / m**2
            total += sp.simplify(tau**m - thr)
        g = x**m / (x**m + 1)
        total += sp.simplify(
            g ** (m - 1) * (1 - g) ** (m + 1) - (x ** (m - 1) / (x**m + 1) ** 2) ** m
        )
    return sp.simplify(total)


def _soft_threshold_identity() -> sp.Expr:
    # M = 1: psi(gamma) = (gamma-1)^2/2 + sqrt(rho) gamma is convex with psi'(1 - sqrt(rho)) = 0
    r = sp.Symbol("rho", positive=True)
    psi = (gamma - 1) ** 2 / 2 + sp.sqrt(r) * gamma
    return sp.simplify(sp.diff(psi, gamma).subs(gamma, 1 - sp.sqrt(r))) + sp.simplify(
        sp.diff(psi, gamma, 2) - 1
    )


claim = MSEImbalancedBiasFree()
