r"""Any class sizes, MSE, a free last-layer bias: one scalar problem per mode of the centred target.
With class counts $n_1, \dots, n_K$ (any), $N = \sum_k n_k$, $M \ge 1$ linear layers
$W_1, \dots, W_M$ on free features, the MSE loss and a free (unpenalised) last-layer bias $b$,
every global minimiser has NC1, globally centred features ($\bar H n = 0$), the bias
$b^* = n/N$, and $W \bar H D = \sum_i t_i u_i v_i^T$, where
$\hat Y = (I_K - n \mathbf 1^T/N) D = \sum_i s_i u_i v_i^T$ is the singular value decomposition of
the centred target, $D = \operatorname{diag}(\sqrt{n_k})$ and
$t_i = \operatorname{argmin}_{t \ge 0} [(s_i - t)^2/(2N) + c\,t^q]$ with
$c = \frac{M+1}{2} P^{1/(M+1)}$, $q = 2/(M+1)$; in the gain $\gamma_i = t_i/s_i$ each mode is the
scalar problem of the bias-free claims with $\rho_i = N^{M+1} P / s_i^{2M}$ in place of
$N^{M+1} P / n_k^M$ (alive iff $\rho_i < \mathrm{thr}_M = (M-1)^{M-1}/M^{2M}$, $\rho_i < 1$ for
$M = 1$; a tie at equality for $M \ge 2$), and only the $R$ largest modes can be alive.  The
$s_i^2$ are the roots $\mu$ of the secular equation $\sum_k n_k/(n_k - \mu) = 0$ (one in each gap
between distinct counts) and every count $n_k$ shared by $m$ classes, $m - 1$ times; the mode
$u = \sqrt{n}/\sqrt{N}$ has target 0 and stays dead.  The optimal value is
$F^* = \sum_i \min_{t \ge 0} [(s_i - t)^2/(2N) + c\,t^q]$.  Here $n = (n_k)$,
$\mathbf 1$ is the all-ones vector, $P = \lambda_H \prod_m \lambda_{W_m}$ the product of the weight
decays of the features ($\lambda_H$) and of the layers ($\lambda_{W_m}$),
$W = W_M \cdots W_1$, $\bar H$ holds the class means of the features as columns, and
$R = \min(K, d, d_1, \dots, d_{M-1})$ is the bottleneck, with $d$ the feature dimension and $d_m$
the output width of layer $m$.

Collapse is per mode, not per class: the difference modes of the smallest group of equal classes
die first, and the class gain $(W \bar H)_{kk}$ mixes every mode that touches class $k$.  With
equal counts the modes are the $K - 1$ directions of the simplex and this is the claim
`mse-balanced-bias` term by term.

Source: "The Exploration of Neural Collapse under Imbalanced Data", arXiv 2411.17278 (the deep
linear unconstrained-features model with a bias under imbalanced data); docs/theory/mse.md#imbalanced-bias.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

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
from theorems._hypotheses import model_hypotheses

DIGITS = 60
gamma, mu, n, N, P, t, s = sp.symbols("gamma mu n N P t s", positive=True)


@dataclass(frozen=True)
class Mode:
    """A mode of the centred target: `s^2 = mu`, exact when rational, and its left singular
    vector `u` (high precision)."""

    mu: mpmath.mpf
    exact: Fraction | None
    u: list[mpmath.mpf]
    label: str


def _secular_roots(counts: tuple[int, ...]) -> list[mpmath.mpf]:
    """The roots of `sum_j m_j c_j / (c_j - mu) = 0`, one in each gap between distinct counts
    (the sum increases from -inf to +inf there), by bisection at DIGITS digits."""
    distinct = sorted(set(counts))
    weights = [counts.count(c) * c for c in distinct]
    roots = []
    with mpmath.workdps(DIGITS + 10):
        for lo_c, hi_c in zip(distinct, distinct[1:], strict=False):
            lo, hi = mpmath.mpf(lo_c), mpmath.mpf(hi_c)
            for _ in range(4 * (DIGITS + 10)):
                mid = (lo + hi) / 2
                if mid in (lo, hi):
                    break
                f = mpmath.fsum(w / (c - mid) for w, c in zip(weights, distinct, strict=True))
                lo, hi = (mid, hi) if f < 0 else (lo, mid)
            roots.append((lo + hi) / 2)
    return roots


def _helmert(members: list[int], k: int) -> list[list[mpmath.mpf]]:
    """`m - 1` orthonormal vectors supported on `members`, each summing to zero."""
    out = []
    for j in range(1, len(members)):
        v = [mpmath.mpf(0)] * k
        for i in members[:j]:
            v[i] = mpmath.mpf(1)
        v[members[j]] = mpmath.mpf(-j)
        norm = mpmath.sqrt(j * (j + 1))
        out.append([x / norm for x in v])
    return out


def _mode_gain(depth: int, rho: mpmath.mpf) -> mpmath.mpf:
    """The root of `gamma^{M-1} (1-gamma)^{M+1} = rho` in `((M-1)/(2M), 1)` (`rho <= thr_M`),
    by bisection in high precision; `M = 1`: `1 - sqrt(rho)`."""
    m = depth
    if m == 1:
        return 1 - mpmath.sqrt(rho)
    lo, hi = mpmath.mpf(m - 1) / (2 * m), mpmath.mpf(1)
    for _ in range(4 * (DIGITS + 10)):
        mid = (lo + hi) / 2
        if mid in (lo, hi):
            break
        f = mid ** (m - 1) * (1 - mid) ** (m + 1)
        lo, hi = (mid, hi) if f > rho else (lo, mid)
    return (lo + hi) / 2


class MSEImbalancedBias(Claim):
    id = "mse-imbalanced-bias"
    title = "Imbalanced MSE with a free bias: per-mode collapse of the centred target"
    source = (
        '"The Exploration of Neural Collapse under Imbalanced Data", arXiv 2411.17278 '
        "(deep linear UFM with a bias, imbalanced MSE)"
    )
    status = "proven (reduction checked against exact per-mode minimisation)"
    loss = "mse"
    bias = "free"
    certificates = ("convex-dual", "separable-reduction")
    truth_region = TruthRegion(
        basis="proven",
        reference="lemma 3 on the centred target (docs/theory/mse.md#imbalanced-bias); "
        "arXiv 2411.17278",
        biases=("free",),
        balanced=False,
    )
    geometry_name = "centred-target frame"

    def hypotheses(self, problem: Problem) -> list[str]:
        return model_hypotheses(problem, loss="mse", bias="free")

    def default_problem(self) -> Problem:
        return Problem.build(
            counts="200,100,50,50",
            depth=3,
            width=64,
            lambda_w="5e-4",
            lambda_h="5e-4",
            bias="free",
        )

    # ---- the mathematics, in pieces a wrong variant can replace -----------------------------
    def modes(self, problem: Problem) -> list[Mode]:
        """The `K - 1` modes of `Yhat = (I - n 1^T/N) D`, largest `s^2` first (ties: by class)."""
        counts, k = problem.counts, problem.K
        out = []
        with mpmath.workdps(DIGITS):
            for c in sorted(set(counts), reverse=True):
                members = [i for i, x in enumerate(counts) if x == c]
                for j, u in enumerate(_helmert(members, k)):
                    out.append(Mode(mpmath.mpf(c), Fraction(c), u, f"n={c} difference {j + 1}"))
            for root in _secular_roots(counts):
                x = [mpmath.mpf(c) / (c - root) for c in counts]  # (diag(n) - mu)^{-1} n
                norm = mpmath.sqrt(mpmath.fsum(v * v for v in x))
                out.append(
                    Mode(root, None, [v / norm for v in x], f"secular {mpmath.nstr(root, 8)}")
                )
        return sorted(out, key=lambda md: -md.mu)

    def centre(self, problem: Problem) -> list[mpmath.mpf]:
        """The optimal bias removes `W Hbar n / N`: `W Hbar = Gamma (I - n 1^T / N)`."""
        return [mpmath.mpf(c) / problem.N for c in problem.counts]

    def rho(self, problem: Problem, mode: Mode) -> Fraction | mpmath.mpf:
        """`rho_i = N^{M+1} P / s_i^{2M}`: exact for a rational `s_i^2`."""
        m = problem.depth
        big = Fraction(problem.N) ** (m + 1) * problem.lambda_product
        if mode.exact is not None:
            return big / mode.exact**m
        with mpmath.workdps(DIGITS):
            return bal.mp(big, DIGITS) / mode.mu**m

    def threshold(self, depth: int) -> Fraction:
        return collapse_threshold(depth)

    def gain(self, problem: Problem, mode: Mode) -> tuple[sp.Expr, Regime]:
        """The mode's gain `gamma_i = t_i / s_i` and regime, before the bottleneck."""
        m, rho = problem.depth, self.rho(problem, mode)
        if isinstance(rho, Fraction):
            return bal.threshold_gain(m, rho)
        thr = self.threshold(m)
        with mpmath.workdps(DIGITS):
            ratio = rho / bal.mp(thr, DIGITS)
            if abs(ratio - 1) < mpmath.mpf(10) ** (-DIGITS + 15) and self._at_threshold(
                problem, mode
            ):
                if m == 1:
                    return sp.Integer(0), Regime.COLLAPSED
                return sp.Rational(m - 1, m), Regime.TIE
            if ratio >= 1:
                return sp.Integer(0), Regime.COLLAPSED
            return sp.Float(_mode_gain(m, rho), DIGITS - 10), Regime.ALIVE

    def _at_threshold(self, problem: Problem, mode: Mode) -> bool:
        """Exactly `rho_i = thr_M`: `mu^M = N^{M+1} P / thr_M` and the secular equation share a
        root near `mu` (a polynomial gcd, exact)."""
        m = problem.depth
        target = Fraction(problem.N) ** (m + 1) * problem.lambda_product / self.threshold(m)
        x = sp.Symbol("x")
        distinct = sorted(set(problem.counts))
        secular = sp.Add(
            *(
                problem.counts.count(c) * c * sp.Mul(*(o - x for o in distinct if o != c))
                for c in distinct
            )
        )
        common = sp.gcd(sp.Poly(secular, x), sp.Poly(x**m - sp.Rational(target), x))
        if common.degree() < 1:
            return False
        return any(abs(complex(r) - complex(mode.mu)) < 1e-20 for r in common.nroots(n=40))

    def gains(self, problem: Problem) -> list[tuple[Mode, sp.Expr, Regime]]:
        """Per mode (largest first): the exact gain and its regime, the bottleneck applied."""
        out = []
        for i, mode in enumerate(self.modes(problem)):
            g, regime = self.gain(problem, mode)
            if i >= problem.bottleneck and g != 0:
                out.append((mode, sp.Integer(0), Regime.BOTTLENECK))
            else:
                out.append((mode, g, regime))
        return out

    def class_gains(self, problem: Problem, gains: list) -> list[mpmath.mpf]:
        """`(W Hbar)_kk` with `W Hbar = Gamma (I - n 1^T/N)`, `Gamma = sum_i gamma_i u_i u_i^T`."""
        k = problem.K
        centre = self.centre(problem)
        with mpmath.workdps(DIGITS):
            out = []
            for c in range(k):
                total = mpmath.mpf(0)
                for mode, g, _ in gains:
                    if g == 0:
                        continue
                    gv = bal.mp(g, DIGITS)
                    un = mpmath.fsum(mode.u[j] * problem.counts[j] for j in range(k))
                    total += gv * mode.u[c] * (mode.u[c] - un * centre[c] / problem.counts[c])
                out.append(total)
            return out

    def mode_term(self, problem: Problem, mode: Mode, g: sp.Expr) -> mpmath.mpf:
        """`mu (gamma-1)^2/(2N) + ((M+1)/2) (P mu)^{1/(M+1)} gamma^q` (with `mu = n` this is the
        balanced claims' per-mode value `bal.mode_value` exactly)."""
        if mode.exact is not None:
            return bal.mode_value(problem, int(mode.exact), g)
        m = problem.depth
        with mpmath.workdps(50):
            gv, pv = bal.mp(g, 50), bal.mp(problem.lambda_product, 50)
            return mode.mu * (gv - 1) ** 2 / (2 * problem.N) + mpmath.mpf(m + 1) / 2 * mpmath.root(
                pv * mode.mu, m + 1
            ) * gv ** (mpmath.mpf(2) / (m + 1))

    def critical(self, problem: Problem, mode: Mode) -> float:
        """Tied lambdas: the mode is alive iff `lambda < (thr_M mu^M / N^{M+1})^{1/(M+1)}`."""
        m = problem.depth
        thr = float(self.threshold(m))
        return (thr * float(mode.mu) ** m / problem.N ** (m + 1)) ** (1 / (m + 1))

    # ---- closed form ----------------------------------------------------------------------
    def closed_form(self, problem: Problem) -> Prediction:
        gains = self.gains(problem)
        with mpmath.workdps(50):
            value = mpmath.mpf(0)
            for mode, g, _ in gains:
                if g != 0:
                    value += self.mode_term(problem, mode, g)
                else:
                    value += mode.mu / (2 * problem.N)
        class_gains = self.class_gains(problem, gains)
        lengths = self._lengths(problem, gains)
        touch = [
            [i for i, (mode, _, _) in enumerate(gains) if abs(mode.u[c]) > 1e-30]
            for c in range(problem.K)
        ]
        classes = []
        for c in range(problem.K):
            g = class_gains[c]
            exact = sp.Integer(0) if g == 0 else sp.Float(g, 50)
            crit = max((self.critical(problem, gains[i][0]) for i in touch[c]), default=None)
            classes.append(
                ClassPrediction(
                    problem.counts[c],
                    Regime.ALIVE if g > 0 else Regime.COLLAPSED,
                    exact,
                    lengths[0][c],
                    lengths[1][c],
                    crit,
                )
            )
        regimes = [r for _, _, r in gains]
        r = problem.bottleneck
        cut_tie = (
            r < len(gains)
            and gains[r - 1][1] != 0
            and gains[r - 1][0].exact is not None
            and gains[r - 1][0].exact == gains[r][0].exact
        )
        notes = []
        if Regime.TIE in regimes:
            notes.append(
                "a mode sits exactly at its collapse threshold: the minimiser is not unique"
            )
        if Regime.BOTTLENECK in regimes:
            notes.append(f"bottleneck R = {r}: only the R largest modes can be alive")
        if cut_tie:
            notes.append("the bottleneck cuts between equal modes: the minimiser is not unique")
        zero = all(g == 0 for _, g, _ in gains)
        return Prediction(
            objective=value,
            classes=tuple(classes),
            bias=tuple(float(x) for x in self.centre(problem)),
            unique=Regime.TIE not in regimes and not cut_tie,
            geometry="zero" if zero else self.geometry_name,
            zero=zero,
            notes=tuple(notes),
            phase=self.phase(problem, gains),
            objective_form="sum_i [s_i^2 (gamma_i-1)^2/(2N) + ((M+1)/2) (P s_i^2)^{1/(M+1)} "
            "gamma_i^q], s_i^2 = " + ", ".join(mpmath.nstr(md.mu, 15) for md, _, _ in gains),
        )

    def phase(self, problem: Problem, gains: list) -> Phase:
        """One boundary per distinct mode at its critical lambda; the `s_i^2` and `rho_i`."""
        m = problem.depth
        thr = self.threshold(m)
        boundaries: list = []
        seen = set()
        for mode, _, _ in gains:
            key = mpmath.nstr(mode.mu, 30)
            if key in seen:
                continue
            seen.add(key)
            touched = [
                c
                for c in range(problem.K)
                if any(abs(md.u[c]) > 1e-30 for md, _, _ in gains if mpmath.nstr(md.mu, 30) == key)
            ]
            boundaries += bal.lambda_boundaries(
                problem,
                self.critical(problem, mode),
                touched,
                f"the mode s^2 = {mpmath.nstr(mode.mu, 8)} collapses beyond it",
            )
        rhos = [self.rho(problem, md) for md, _, _ in gains]
        with mpmath.workdps(30):
            log_thr = mpmath.log(bal.mp(thr, 30))
            distances = [
                abs(mpmath.log(bal.mp(x, 30) if isinstance(x, Fraction) else x) - log_thr) / (m + 1)
                for i, x in enumerate(rhos)
                if i < problem.bottleneck
            ]
        return Phase(
            boundaries=tuple(boundaries),
            distance=float(min(distances)) if distances else None,
            quantities=(
                Quantity(
                    "s2",
                    [float(md.mu) for md, _, _ in gains],
                    None,
                    "squared singular values of Yhat = (I - n 1^T/N) D, largest first",
                ),
                Quantity(
                    "rho",
                    [float(x) for x in rhos],
                    None,
                    "rho_i = N^(M+1) P / s_i^(2M) per mode",
                ),
                Quantity(
                    "threshold",
                    float(thr),
                    str(thr),
                    "thr_M = (M-1)^(M-1) / M^(2M): a mode is alive iff rho_i < thr_M",
                ),
            ),
        )

    def _frame(self, problem: Problem, gains: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The alive modes: `U`, `V = Yhat^T U / s` and `t = gamma s` in floats."""
        counts = np.asarray(problem.counts, dtype=np.float64)
        centre = np.array([float(x) for x in self.centre(problem)])
        yhat = (np.eye(problem.K) - np.outer(centre, np.ones(problem.K))) @ np.diag(np.sqrt(counts))
        alive = [(mode, g) for mode, g, _ in gains if g != 0]
        u = np.array([[float(x) for x in mode.u] for mode, _ in alive]).T.reshape(problem.K, -1)
        sv = np.array([float(mpmath.sqrt(mode.mu)) for mode, _ in alive])
        v = (yhat.T @ u) / sv[None, :] if alive else u
        ts = np.array([float(sp.N(g, 30)) for _, g in alive]) * sv
        return u, v, ts

    def _lengths(self, problem: Problem, gains: list) -> tuple[list[float], list[float]]:
        """`||w_k||` and `||hbar_k||` of the balanced factorisation."""
        u, v, ts = self._frame(problem, gains)
        m = problem.depth
        tau = float(problem.lambda_product) ** (1 / (m + 1)) * ts ** (2 / (m + 1))
        w_scale = np.prod([tau / float(lam) for lam in problem.lambda_w], axis=0) ** 0.5
        h_scale = (tau / float(problem.lambda_h)) ** 0.5
        lw = np.sqrt(((u * w_scale[None, :]) ** 2).sum(axis=1))
        counts = np.asarray(problem.counts, dtype=np.float64)
        lh = np.sqrt(((v * h_scale[None, :]) ** 2).sum(axis=1)) / np.sqrt(counts)
        return [float(x) for x in lw], [float(x) for x in lh]

    def minimiser(self, problem: Problem, backend: Backend) -> Params:
        u, v, ts = self._frame(problem, self.gains(problem))
        bias = np.array([float(x) for x in self.centre(problem)])
        return to_backend(balanced_layers(problem, u, ts, v, bias), backend)

    def derivation(self) -> list[Step]:
        scalar = bal.scalar_steps("K - 1 modes, mode i's with target s_i")
        return [
            Step(
                "Given A' = W Hbar, the optimal free bias is b = (I - A') n / N; the residual is "
                "(A' - I) Yhat with Yhat = (I - n 1^T/N) D, the global feature mean Hbar n / N "
                "costs regularisation and changes no loss, so it is zero and b* = n / N.",
                r"b^* = (I - W\bar H)\tfrac{n}{N},\quad \tfrac{1}{2N}\|(W\bar H - I)\hat Y\|^2,"
                r"\quad \hat Y = (I - \tfrac{n\mathbf 1^T}{N})D,\quad \bar H n = 0",
                "sympy",
                "theorems/mse_imbalanced_bias.py::_bias_identity",
                _bias_identity,
            ),
            Step(
                "The squared singular values of Yhat are the eigenvalues of diag(n) - n n^T/N: "
                "0 (eigenvector 1), each shared count with multiplicity m - 1, and the roots of "
                "the secular equation.",
                r"\hat Y\hat Y^T = \operatorname{diag}(n) - \tfrac{nn^T}{N},\quad "
                r"\sum_k \tfrac{n_k}{n_k - \mu} = 0",
                "test",
                "tests/test_imbalanced_bias.py::test_secular_roots_are_the_singular_values",
            ),
            *scalar[:3],
            Step(
                "In the gain gamma = t / s each mode is the scalar problem with rho = N^{M+1} P / "
                "s^{2M}.",
                r"\tfrac{(s-t)^2}{2N} + c\,t^q = \tfrac{s^2}{N}\Big[\tfrac{(\gamma-1)^2}{2} + "
                r"\tfrac{M+1}{2}\rho^{1/(M+1)}\gamma^q\Big],\quad \rho = \tfrac{N^{M+1}P}{s^{2M}}",
                "sympy",
                "theorems/mse_imbalanced_bias.py::_mode_identity",
                _mode_identity,
            ),
            Step(
                "A stationary gamma > 0 of a mode's problem solves a polynomial equation in "
                "rho_i = N^{M+1} P / s_i^{2M}.",
                r"\psi'(\gamma) = 0 \iff \gamma^{M-1}(1-\gamma)^{M+1} = \rho_i",
                "sympy",
                "theorems/mse_imbalanced_bias.py::_stationarity_identity",
                _stationarity_identity,
            ),
            scalar[5],
            Step(
                "The optimum so reduced agrees with independent full optimisation and with the "
                "exact per-mode certificate on imbalanced counts.",
                r"F^* = \sum_i \min_{t\ge0}\tfrac{(s_i-t)^2}{2N} + c\,t^q",
                "test",
                "tests/test_imbalanced_bias.py::test_certificate_matches_full_optimisation",
            ),
            Step(
                "With equal counts the modes are the K - 1 simplex directions and the value is the "
                "balanced claim's, term by term.",
                r"s_i^2 = n,\quad W\bar H = \gamma C",
                "test",
                "tests/test_imbalanced_bias.py::test_equal_counts_reproduce_the_balanced_claim",
            ),
        ]


# ---- sympy identities of the derivation (each must simplify to zero) ----------------------------
def _bias_identity() -> sp.Expr:
    # three classes with symbolic counts: b* = (I - A) n / N minimises the weighted loss, leaving
    # the residual (A - I) Yhat; Yhat annihilates sqrt(n) and Yhat Yhat^T = diag(n) - n n^T / N
    ns = sp.symbols("n1:4", positive=True)
    total_n = sum(ns)
    a = sp.Matrix(3, 3, sp.symbols("a1:10"))
    bvec = sp.Matrix(sp.symbols("b1:4"))
    d = sp.diag(*[sp.sqrt(x) for x in ns])
    nv = sp.Matrix(ns)
    ones = sp.ones(3, 1)
    eye = sp.eye(3)
    loss = sum((((a + bvec * ones.T - eye) * d).applyfunc(lambda e: e**2)).values()) / (2 * total_n)
    best = (eye - a) * nv / total_n
    grad = sp.Matrix([sp.diff(loss, x) for x in bvec]).subs(dict(zip(bvec, best, strict=True)))
    yhat = (eye - nv * ones.T / total_n) * d
    residual = ((a + best * ones.T - eye) * d - (a - eye) * yhat).applyfunc(sp.simplify)
    gram = (yhat * yhat.T - (sp.diag(*ns) - nv * nv.T / total_n)).applyfunc(sp.simplify)
    null = (yhat * sp.Matrix([sp.sqrt(x) for x in ns])).applyfunc(sp.simplify)
    return sp.simplify(sum(grad.applyfunc(sp.simplify)) + sum(residual) + sum(gram) + sum(null))


def _mode_identity() -> sp.Expr:
    total = sp.Integer(0)
    for m in range(1, 7):
        q = sp.Rational(2, m + 1)
        c = sp.Rational(m + 1, 2) * P ** sp.Rational(1, m + 1)
        rho = N ** (m + 1) * P / s ** (2 * m)
        lhs = (s - gamma * s) ** 2 / (2 * N) + c * (gamma * s) ** q
        rhs = (
            s**2
            / N
            * (
                (gamma - 1) ** 2 / 2
                + sp.Rational(m + 1, 2) * rho ** sp.Rational(1, m + 1) * gamma**q
            )
        )
        total += sp.simplify(
            sp.powsimp(sp.expand_power_base(sp.expand(lhs - rhs), force=True), force=True)
        )
    return sp.simplify(total)


def _stationarity_identity() -> sp.Expr:
    # psi'(gamma) = gamma^{q-1} [rho^{1/(M+1)} - (1-gamma) gamma^{1-q}], and the (M+1)-th power
    # of the bracket's second term is gamma^{M-1} (1-gamma)^{M+1}
    r = sp.Symbol("rho", positive=True)
    total = sp.Integer(0)
    for m in range(1, 8):
        q = sp.Rational(2, m + 1)
        psi = (gamma - 1) ** 2 / 2 + sp.Rational(m + 1, 2) * r ** sp.Rational(1, m + 1) * gamma**q
        total += sp.simplify(
            sp.diff(psi, gamma)
            - gamma ** (q - 1) * (r ** sp.Rational(1, m + 1) - (1 - gamma) * gamma ** (1 - q))
        )
        total += sp.simplify(
            sp.powsimp(((1 - gamma) * gamma ** (1 - q)) ** (m + 1), force=True)
            - gamma ** (m - 1) * (1 - gamma) ** (m + 1)
        )
    return sp.simplify(total)


claim = MSEImbalancedBias()
