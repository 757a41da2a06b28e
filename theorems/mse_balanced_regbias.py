r"""Balanced data, weight-decayed last-layer bias, MSE: a simplex ETF while the mean mode is off.
With $K$ classes of $n$ samples each, $M$ linear layers $W_1, \dots, W_M$ on free features, the
MSE loss and a last-layer bias $b$ penalised by $\lambda_b \lVert b\rVert^2/2$, the optimal
bias given $W \bar H$ is $b^* = (\mathbf 1 - W \bar H \mathbf 1)/(K(1 + \lambda_b))$, and what
remains of the loss weighs the all-ones (mean) direction of the class means by
$\mu = \lambda_b/(1 + \lambda_b)$ instead of 1.  The claim: the problem splits over the modes of
that weighted target as lemma 3 (the separation lemma) splits the unweighted one, so the $K-1$
centred modes solve the free-bias scalar problem ($\rho = K^{M+1} n P$) and the mean mode the
same problem with $\rho_0 = \rho/\mu^{M+1}$.  While the mean mode is collapsed
($\rho_0 > \mathrm{thr}_M$; $M = 1$: $\mu \le K\sqrt{n \lambda_{W_1} \lambda_H}$) the minimiser
is the simplex ETF of the free-bias claim (`mse-balanced-bias`) with
$b^* = \mathbf 1/(K(1 + \lambda_b))$, and the optimum is the free-bias one plus
$\mu/(2K)$.  Here $W = W_M \cdots W_1$, $\bar H$ holds the $K$ class means of the features (one
column per class), $\mathbf 1$ is the all-ones vector, $P = \lambda_H \prod_m \lambda_{W_m}$ is
the product of the weight decays of the features and of the layers, and
$\mathrm{thr}_M = (M-1)^{M-1}/M^{2M}$ is the collapse threshold ($\mathrm{thr}_1 = 1$).

Beyond it the features also fit the mean direction:
$W \bar H = \gamma C + \gamma_0 \frac{1}{K}\mathbf 1 \mathbf 1^T$ and
$b^* = \frac{1 - \gamma_0}{K(1 + \lambda_b)}\mathbf 1$ (continuously for $M = 1$, with a jump for
$M \ge 2$), tending to the orthogonal frame of the bias-free claim as
$\lambda_b \rightarrow \infty$; here $C = I_K - \frac{1}{K}\mathbf 1 \mathbf 1^T$ is the centring
matrix and $\gamma$, $\gamma_0$ are the gains of the centred modes and of the mean mode, each the
minimiser of the scalar problem at its ratio $\rho$ or $\rho_0$.

The split over the weighted target is not a published theorem: von Neumann's inequality, which
proves lemma 3, does not apply once the columns are weighted unequally, and a Schatten
quasi-norm ($M \ge 2$) can favour points that mix the mean direction with the others.  So this
claim is certified only where a certificate exists ($M = 1$, the convex dual); elsewhere the
best the evidence can say is `consistent`, or it finds a counterexample.

Source: this project's weight-decayed-bias variant (docs/theory/mse.md#regularised-bias) of the
balanced MSE result with bias (docs/theory/mse.md#balanced-bias) of H. Dang, T. Tran, S. Osher,
H. Tran-The, N. Ho, T. Nguyen, "Neural Collapse in Deep Linear Networks: From Balanced to
Imbalanced Data", ICML 2023, arXiv 2301.00437; $M = 1$ with a free bias: Zhou et al. 2022
(docs/theory/one-layer.md#zhou-2022).

>>> from ncverify import Problem
>>> p = Problem.build(classes=4, samples=100, depth=1, width=8, lambda_b="0.01")
>>> claim.closed_form(p).geometry
'simplex ETF'
>>> claim.closed_form(Problem.build(classes=4, samples=100, depth=1, width=8, lambda_b="1")).geometry
'simplex ETF with a mean direction'
"""

from __future__ import annotations

from fractions import Fraction

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
from ncverify.model.factorisations import balanced_layers, simplex_directions
from ncverify.model.objective import Params
from ncverify.model.problem import Problem
from ncverify.model.scalar import collapse_threshold, mp
from theorems import _balanced as bal
from theorems._balanced import DANG_2023 as D
from theorems._hypotheses import model_hypotheses


def mean_weight(problem: Problem) -> Fraction:
    """`mu = lambda_b / (1 + lambda_b)`: the loss weight left on the mean direction."""
    lam_b = problem.lambda_b
    return lam_b / (1 + lam_b)


def mean_rho(problem: Problem) -> Fraction:
    """`rho_0 = rho / mu^{M+1}`: the mean mode's scalar problem in the normalised form."""
    return bal.rho_of(problem, problem.counts[0]) / mean_weight(problem) ** (problem.depth + 1)


def mean_mode_value(problem: Problem, g: sp.Expr) -> mpmath.mpf:
    """`mu n (gamma-1)^2/(2N) + ((M+1)/2) (P n)^{1/(M+1)} gamma^q`, high precision."""
    m, n = problem.depth, problem.counts[0]
    with mpmath.workdps(50):
        gv = mp(g)
        loss = mp(mean_weight(problem)) * n * (gv - 1) ** 2 / (2 * problem.N)
        reg = (
            mpmath.mpf(m + 1)
            / 2
            * mpmath.root(mp(problem.lambda_product) * n, m + 1)
            * gv ** (mpmath.mpf(2) / (m + 1))
        )
        return loss + reg


def critical_lambda_b(problem: Problem) -> float:
    """The `lambda_b` beyond which the mean mode is alive (`inf` if it never is):
    `mu* = (rho / thr_M)^{1/(M+1)}`, `lambda_b* = mu* / (1 - mu*)`."""
    m = problem.depth
    ratio = bal.rho_of(problem, problem.counts[0]) / collapse_threshold(m)
    mu_star = float(ratio) ** (1 / (m + 1))
    return mu_star / (1 - mu_star) if mu_star < 1 else float("inf")


class MSEBalancedRegBias(Claim):
    id = "mse-balanced-regbias"
    title = "Balanced MSE with a weight-decayed bias: simplex ETF while the mean mode is off"
    source = (
        "this project's weight-decayed-bias variant (docs/theory/mse.md#regularised-bias) of the "
        f"balanced MSE result with bias of {D}"
    )
    status = "conjectured (the split over the weighted target is unproven); M = 1 certified"
    loss = "mse"
    bias = "regularised"
    certificates = ("convex-dual",)
    # the split over the weighted target is unproven at depth; one layer is convex and the
    # convex dual (exact where d >= K) decides every instance
    truth_region = TruthRegion(
        basis="certified",
        certificate="convex-dual",
        reference="one layer, decided by the convex dual (docs/theory/mse.md#regularised-bias)",
        biases=("regularised",),
        depth=(1, 1),
        wide=True,
        lambda_b=("1e-3", "10"),
    )

    def hypotheses(self, problem: Problem) -> list[str]:
        return model_hypotheses(
            problem, loss="mse", bias="regularised", balanced=True, bottleneck=1
        )

    # ---- the mathematics ----------------------------------------------------------------------
    def gains(self, problem: Problem) -> tuple[tuple[sp.Expr, Regime], tuple[sp.Expr, Regime]]:
        """`((gamma, regime), (gamma_0, regime_0))`: the centred modes' gain and the mean mode's,
        each by the threshold rule; the mean mode needs a K-th dimension (`R >= K`)."""
        n = problem.counts[0]
        centred = bal.threshold_gain(problem.depth, bal.rho_of(problem, n))
        mean = bal.threshold_gain(problem.depth, mean_rho(problem))
        if problem.bottleneck < problem.K and mean[0] != 0:
            mean = (sp.Integer(0), Regime.BOTTLENECK)
        return centred, mean

    def _modes(self, problem: Problem) -> tuple[np.ndarray, np.ndarray]:
        """Directions (K x r) and singular values of `A = W Hbar D` of the prediction."""
        (g, _), (g0, _) = self.gains(problem)
        root_n = np.sqrt(problem.counts[0])
        dirs, s = [], []
        if g != 0:
            dirs.append(simplex_directions(problem.K))
            s += [root_n * float(sp.N(g, 30))] * (problem.K - 1)
        if g0 != 0:
            dirs.append(np.full((problem.K, 1), 1 / np.sqrt(problem.K)))
            s.append(root_n * float(sp.N(g0, 30)))
        if not dirs:
            return np.zeros((problem.K, 0)), np.zeros(0)
        return np.hstack(dirs), np.asarray(s)

    def bias_value(self, problem: Problem) -> np.ndarray:
        (_, _), (g0, _) = self.gains(problem)
        scale = (1 - float(sp.N(g0, 30))) / (problem.K * (1 + float(problem.lambda_b)))
        return np.full(problem.K, scale)

    def closed_form(self, problem: Problem) -> Prediction:
        n, k = problem.counts[0], problem.K
        (g, regime), (g0, regime0) = self.gains(problem)
        mu = mean_weight(problem)
        with mpmath.workdps(50):
            value = (k - 1) * bal.mode_value(problem, n, g) + mean_mode_value(problem, g0)
        point = balanced_layers(problem, *self._pair(problem), self.bias_value(problem))
        w = point.Ws[-1]
        for layer in reversed(point.Ws[:-1]):
            w = w @ layer
        means = _class_means(problem, point.H)
        gain = g * sp.Rational(k - 1, k) + g0 / k  # (W Hbar)_kk = gamma (K-1)/K + gamma_0 / K
        crit = bal.critical_lambda(problem, n)
        class_regime = Regime.TIE if Regime.TIE in (regime, regime0) else regime  # a tie shows
        classes = tuple(
            ClassPrediction(
                n,
                class_regime,
                gain,
                float(np.linalg.norm(w[c])),
                float(np.linalg.norm(means[:, c])),
                crit,
            )
            for c in range(k)
        )
        return Prediction(
            objective=value,
            classes=classes,
            bias=tuple(float(x) for x in self.bias_value(problem)),
            unique=Regime.TIE not in (regime, regime0),
            geometry=self._geometry_name(g, g0),
            notes=self._notes(problem, regime, regime0),
            zero=g == 0 and g0 == 0,
            phase=self._phase(problem, crit),
            objective_form=(
                f"(K-1) phi(gamma) + phi_mu(gamma_0), gamma = {sp.N(g, 20)}, "
                f"gamma_0 = {sp.N(g0, 20)}, mu = {mu}"
            ),
        )

    def _notes(self, problem: Problem, regime: Regime, regime0: Regime) -> tuple[str, ...]:
        notes = []
        if Regime.TIE in (regime, regime0):
            notes.append(
                "a mode sits exactly at its collapse threshold: the minimiser is not unique"
            )
        if regime0 == Regime.BOTTLENECK:
            notes.append(
                f"the mean mode would be alive but R = {problem.bottleneck} < K leaves it no room"
            )
        lam_b_star = critical_lambda_b(problem)
        notes.append(
            (
                f"the mean mode is alive for lambda_b > {lam_b_star:.6g}"
                if np.isfinite(lam_b_star)
                else "the mean mode is collapsed for every lambda_b"
            )
            + f" here (lambda_b = {float(problem.lambda_b):.6g}, "
            f"mu = {float(mean_weight(problem)):.6g})"
        )
        return tuple(notes)

    def _phase(self, problem: Problem, crit: float) -> Phase:
        """The centred modes' boundary on the lambda axes, the mean mode's on lambda_b."""
        k, m = problem.K, problem.depth
        rho, rho0 = bal.rho_of(problem, problem.counts[0]), mean_rho(problem)
        thr, lam_b_star = collapse_threshold(m), critical_lambda_b(problem)
        return Phase(
            boundaries=(
                *bal.lambda_boundaries(
                    problem, crit, range(k), "the centred modes collapse beyond it"
                ),
                Boundary(
                    "lambda_b", lam_b_star, tuple(range(k)), "the mean mode comes alive beyond it"
                ),
            ),
            # log-distance of either mode to the threshold, in units of log lambda
            distance=min(bal.log_distance(rho, thr, m), bal.log_distance(rho0, thr, m)),
            quantities=(
                *bal.rho_quantities(rho, thr),
                Quantity(
                    "rho_mean",
                    float(rho0),
                    str(rho0),
                    "rho_0 = rho / mu^(M+1) of the mean mode, mu = lambda_b / (1 + lambda_b)",
                ),
                Quantity(
                    "critical_lambda_b",
                    lam_b_star,
                    None,
                    "the lambda_b beyond which the mean mode is alive (inf: never)",
                ),
            ),
        )

    def _pair(self, problem: Problem) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        dirs, s = self._modes(problem)
        return dirs, s, dirs

    @staticmethod
    def _geometry_name(g: sp.Expr, g0: sp.Expr) -> str:
        if g == 0:
            return "zero"
        return "simplex ETF" if g0 == 0 else "simplex ETF with a mean direction"

    def minimiser(self, problem: Problem, backend: Backend) -> Params:
        point = balanced_layers(problem, *self._pair(problem), self.bias_value(problem))
        return to_backend(point, backend)

    def default_problem(self) -> Problem:
        return Problem.build(classes=4, samples=100, depth=3, width=64, lambda_b="5e-4")

    def derivation(self) -> list[Step]:
        scalar = bal.scalar_steps("K-1 centred modes with weight 1, the mean mode with weight mu")
        return [
            scalar[0],
            Step(
                "Given A' = W Hbar, the optimal bias is a shrunk mean residual, and the loss it "
                "leaves weighs the all-ones direction u = 1/sqrt(K) by mu = lambda_b/(1+lambda_b).",
                r"b^* = \frac{\mathbf 1 - A'\mathbf 1}{K(1+\lambda_b)},\quad "
                r"\min_b L + \tfrac{\lambda_b}{2}\|b\|^2 = \tfrac{1}{2K}\big(\|(A'-I)C\|^2"
                r" + \mu\|(A'-I)u\|^2\big)",
                "sympy",
                "theorems/mse_balanced_regbias.py::_bias_identity",
                _bias_identity,
            ),
            scalar[1],
            Step(
                "Claimed, not proven: the weighted problem splits over the modes of its target "
                "as lemma 3 splits the unweighted one (von Neumann's inequality does not cover "
                "unequal column weights).  Checked against full-parameter optimisation on random "
                "small instances, and by the convex dual at M = 1.",
                r"\min_A \tfrac{1}{2N}\big(\|(A-D)C\|^2 + \mu\|(A-D)u\|^2\big) + c\sum_i"
                r"\sigma_i(A)^q \overset{?}{=} (K-1)\min_\gamma\varphi(\gamma) + "
                r"\min_{\gamma_0}\varphi_\mu(\gamma_0)",
                "test",
                "tests/test_regbias.py::test_claimed_value_matches_full_optimisation",
            ),
            *scalar[3:],
            Step(
                "The mean mode is the same scalar problem with P replaced by P / mu^{M+1}, "
                "i.e. rho_0 = rho / mu^{M+1}: collapsed while rho_0 > thr_M.",
                r"\varphi_\mu(\gamma) = \tfrac{\mu n(\gamma-1)^2}{2N} + \tfrac{M+1}{2}(Pn)^{1/(M+1)}"
                r"\gamma^q = \mu\,\varphi(\gamma)\big|_{P \to P/\mu^{M+1}}",
                "sympy",
                "theorems/mse_balanced_regbias.py::_mean_mode_identity",
                _mean_mode_identity,
            ),
            Step(
                "The balanced factorisation of A = sqrt(n) (gamma C + gamma_0 u u^T) is a simplex "
                "ETF at every layer while gamma_0 = 0; the predicted point built from it is "
                "stationary with the claimed value.",
                r"W\bar H = \gamma C + \gamma_0 \tfrac1K \mathbf 1\mathbf 1^T,\quad "
                r"b^* = \frac{1-\gamma_0}{K(1+\lambda_b)}\mathbf 1",
                "test",
                "tests/test_regbias.py::test_predicted_point_is_stationary_with_claimed_value",
            ),
        ]


def _class_means(problem: Problem, h: np.ndarray) -> np.ndarray:
    labels = np.asarray(problem.labels())
    return np.stack([h[:, labels == c].mean(axis=1) for c in range(problem.K)], axis=1)


def _sum_of_squares(m: sp.Matrix) -> sp.Expr:
    return sum((x**2 for x in m), sp.Integer(0))


def _bias_identity() -> sp.Expr:
    # K = 2 and 3, a symbolic K x K matrix A' and a symbolic lambda_b: b* is stationary (the
    # objective is strictly convex in b) and the value there is the mu-weighted loss
    lam = sp.Symbol("lambda_b", positive=True)
    mu = lam / (1 + lam)
    total = sp.Integer(0)
    for k in (2, 3):
        a = sp.Matrix(k, k, lambda i, j: sp.Symbol(f"a{i}{j}", real=True))
        bs = sp.Matrix(k, 1, lambda i, _: sp.Symbol(f"b{i}", real=True))
        ones, eye = sp.ones(k, 1), sp.eye(k)
        objective = _sum_of_squares(a + bs * ones.T - eye) / (2 * k) + lam / 2 * _sum_of_squares(bs)
        b_star = (ones - a * ones) / (k * (1 + lam))
        at_b_star = dict(zip(bs, b_star, strict=True))
        total += sum(sp.simplify(sp.diff(objective, bi).subs(at_b_star)) ** 2 for bi in bs)
        centring = eye - ones * ones.T / k
        reduced = _sum_of_squares((a - eye) * centring) + mu * _sum_of_squares(
            (a - eye) * ones / sp.sqrt(k)
        )
        total += sp.simplify(objective.subs(at_b_star) - reduced / (2 * k))
    return total


def _mean_mode_identity() -> sp.Expr:
    # mu phi(gamma) with P / mu^{M+1} in place of P is the mean mode's term, M = 1..6
    gamma, n, big_n, p, mu = sp.symbols("gamma n N P mu", positive=True)
    total = sp.Integer(0)
    for m in range(1, 7):
        q = sp.Rational(2, m + 1)

        def phi(pp: sp.Expr, q: sp.Expr = q, m: int = m) -> sp.Expr:
            return (
                n * (gamma - 1) ** 2 / (2 * big_n)
                + sp.Rational(m + 1, 2) * (pp * n) ** sp.Rational(1, m + 1) * gamma**q
            )

        lhs = mu * phi(p / mu ** (m + 1))
        rhs = (
            mu * n * (gamma - 1) ** 2 / (2 * big_n)
            + sp.Rational(m + 1, 2) * (p * n) ** sp.Rational(1, m + 1) * gamma**q
        )
        total += sp.simplify(sp.expand_power_base(sp.powsimp(lhs - rhs, force=True), force=True))
    return sp.simplify(total)


claim = MSEBalancedRegBias()
