r"""Convex certificates for one-layer problems (`convex-dual`): rigorous weak-duality bounds.

For one layer (`M = 1`) the problem is convex in the product `Z = W H` (THEOREMS.md §3.5).
`convex_dual` solves that convex program with cvxpy, polishes the solution, and turns it into a
**rigorous** lower bound by weak duality: the solver's reported objective is never used as a
bound (it can sit slightly above or below the true minimum); only the value of an exactly
dual-feasible point, evaluated in rational or interval arithmetic, is.

## 1. The convex program

Write `s = sqrt(lambda_W lambda_H)`, `w_k = n_k / N` (the class weights) and the per-sample
losses `l_k(u) = ||u - e_k||^2 / 2` (MSE) or `l_k(u) = logsumexp(u) - u_k` (CE), so that
`L(Z + b 1^T) = (1/N) sum_i l_{y_i}(z_i + b)`.  For any factorisation `Z = W H`,

$$\tfrac{\lambda_W}{2}\|W\|_F^2 + \tfrac{\lambda_H}{2}\|H\|_F^2 \ge
  \sqrt{\lambda_W\lambda_H}\,\|W\|_F\|H\|_F \ge s\,\|WH\|_*,$$

with equality for the balanced factors of an SVD of `Z` when `d >= rank Z`.  Hence, for every
width `d`,

$$F(W, H, b) \ge P^* = \min_{Z, b}\; L(Z + b\mathbf 1^T) + s\|Z\|_* \;(+\tfrac{\lambda_b}{2}\|b\|^2),$$

with equality of the optima when `d >= K` (a `K x N` matrix has rank at most `K`, so the rank
constraint `rank Z <= d` never binds).  When `d < K` the program drops that constraint: it is a
*relaxation*, its value is only a lower bound on the optimum, and the certificate says so
(`exact = False`).

## 2. The class-mean reduction (rigorous by symmetry)

The program is convex and invariant under every permutation of the samples *within* a class
(the nuclear norm does not see column permutations; the loss only sees labels).  Averaging any
solution over that finite group does not increase the objective (Jensen), and the average has
class-constant columns `Z = Zbar E^T` (`E` the `N x K` class-indicator matrix).  Since
`E = Q D` with `Q^T Q = I` and `D = diag(sqrt(n_k))`, `||Zbar E^T||_* = ||Zbar D||_*`, so

$$P^* = \min_{\bar Z, b}\; \sum_k w_k\, l_k(\bar z_k + b) + s\|\bar Z D\|_* \;(+\tfrac{\lambda_b}{2}\|b\|^2),$$

a `K x K` program whose size does not depend on `N` (`reduction="class-means"`, the default).
The full `K x N` program (`reduction="samples"`) is kept as a cross-check for small `N`.  The
bound below does not even rely on this argument: its dual point is lifted to the full problem
explicitly.

## 3. Weak duality

Take any `Theta` in `R^{K x K}` (columns `theta_k`) and lift it to `Gamma = Theta D^{-2} E^T`
(column `i` is `theta_{y_i} / n_{y_i}`).  Then `Gamma Gamma^T = Theta D^{-2} Theta^T`, so

$$\|\Gamma\|_2 \le s \iff s^2 I - \Theta D^{-2}\Theta^T \succeq 0,$$

and then `s ||Z||_* >= <Gamma, Z>` for every `Z`.  With `u_i = z_i + b`,

$$F \ge \sum_i \Big[\tfrac1N l_{y_i}(u_i) + \big\langle \tfrac{\theta_{y_i}}{n_{y_i}}, u_i\big\rangle\Big]
   - \langle \Theta\mathbf 1, b\rangle + \tfrac{\lambda_b}{2}\|b\|^2
 \ge \sum_k -w_k\, l_k^*\!\big(-\theta_k / w_k\big) - \beta(\Theta\mathbf 1),$$

minimising each bracket by the convex conjugate `l_k^*` and the bias terms in closed form:
`beta(g) = 0` without a bias; with a free bias `beta = 0` if `Theta 1 = 0` (else the bound is
`-infinity`, so `Theta 1 = 0` is a constraint); with a regularised bias `beta(g) = ||g||^2 / (2 lambda_b)`.
The conjugates in closed form:

- MSE: `l_k^*(v) = ||v||^2/2 + v_k`, so the term is `theta_kk - ||theta_k||^2 / (2 w_k)`;
- CE: `l_k^*(v) = sum_j p_j log p_j` with `p = v + e_k` when `p` lies in the probability simplex
  (`+infinity` otherwise), so the domain is `p_k = e_k - theta_k / w_k` in the simplex and the
  term is `w_k H(p_k)`, `H(p) = -sum_j p_j log p_j` (with `0 log 0 = 0`).

At an optimum the KKT conditions give `theta_k = -w_k grad l_k(u_k)`, i.e.
`theta_k = w_k (e_k - u_k)` (MSE) or `w_k (e_k - softmax(u_k))` (CE), and the bound equals
`P^*` (strong duality).

## 4. From a numerical solution to an exactly feasible dual point

1. Solve the class-mean program (CLARABEL with gap and feasibility tolerances `1e-12`; SCS as a
   fallback), then **polish**: Newton's method on the factorised class-mean objective
   `f(W, G, b)`, `G = Hbar D` in `R^{K x K}`, which is the original objective restricted to
   class-constant features (exact Hessian from Hessian-vector products; directions of tiny
   curvature, such as the rotation gauge `(W, G) -> (W O, O^T G)`, are left out of the step).
2. Form `q_k = u_k` (MSE) or `q_k = softmax(u_k)` (CE) from the polished logits, round them to
   the dyadic grid `2^-80` and continue in exact rational arithmetic.
3. CE: normalise each `q_k` exactly onto the simplex; free bias: add `r = w - sum_k w_k q_k` to
   every `q_k` (then `sum_k w_k q_k = w`, i.e. `Theta 1 = 0`, and each column still sums to one;
   a negative entry makes the construction fail: no certificate is then returned, never a
   non-rigorous one).
   MSE with a free bias: subtract `(Theta 1)/K` from every column.  `theta_k = w_k (e_k - q_k)`.
4. Scale `Theta <- t Theta`, `t <= 1`, from the float64 spectral norm with a relative safety
   margin (`2^-46`, then larger).  Scaling keeps `Theta 1 = 0` and, for CE, moves each `p_k`
   along the segment towards `e_k`, inside the simplex.
5. **Verify** feasibility exactly: the `LDL^T` pivots of the rational matrix
   `s^2 I - t^2 Theta D^{-2} Theta^T` are all positive (`s^2 = lambda_W lambda_H` is rational).
6. Evaluate the bound: MSE exactly as a rational number; CE by interval arithmetic
   (`mpmath.iv`, 200 bits) for the logarithms.  The lower end of the enclosure is
   `bound_exact`; `bound` is that number rounded *down* to a float.

The solver and the polish only make the bound *tight*; its validity rests on steps 3-6 alone.

## 5. The feasible point

`A = W G` (the class-level product `W Hbar D`) is split by its SVD into balanced layers
(`ncverify.geometry.balanced_layers`); with `d < K` it is first truncated to rank `d` and
polished again in the factorised problem of inner width `d`.  Its objective on the *original*
problem is `primal`, so `[bound, primal]` brackets the optimum and a claimed optimum above
`primal` is refuted by a concrete point.
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING

import array_api_compat.numpy as xp_numpy
import mpmath
import numpy as np
from threadpoolctl import threadpool_limits

from .geometry import balanced_layers
from .objective import Objective, Params
from .problem import Problem

if TYPE_CHECKING:
    from .certify import Certificate

#: Solver settings, reported in every certificate.
CLARABEL_SETTINGS: dict[str, float | int] = {
    "tol_gap_abs": 1e-12,
    "tol_gap_rel": 1e-12,
    "tol_feas": 1e-12,
    "tol_ktratio": 1e-10,
    "max_iter": 500,
}
SCS_SETTINGS: dict[str, float | int] = {"eps_abs": 1e-10, "eps_rel": 1e-10, "max_iters": 200000}
#: Dual points are rounded to multiples of `2^-GRID_BITS` before exact arithmetic.
GRID_BITS = 80
#: Relative safety margins tried, in order, when scaling the dual point into the spectral ball.
MARGINS: tuple[float, ...] = (2.0**-46, 2.0**-40, 2.0**-30, 2.0**-20, 2.0**-10)
#: Precision (bits) of the interval evaluation of the CE bound.
INTERVAL_BITS = 200
#: Largest `N` for which the full `K x N` program (`reduction="samples"`) is offered.
SAMPLES_LIMIT = 400


class ConvexUnavailable(Exception):
    """The convex program could not be solved (both solvers failed); the message says why."""


@dataclass
class ConvexSolution:
    """A numerical solution of the one-layer convex program, reduced to class means.

    `product` is `A = Zbar D` (the class-level product `W Hbar D`, `K x K`); `bias` the bias
    (None without one); `value` the solver's objective (a number to compare, never a bound).
    """

    reduction: str
    product: np.ndarray
    bias: np.ndarray | None
    value: float
    solver: str
    status: str
    settings: dict[str, float | int]
    seconds: float


@dataclass
class DualBound:
    """An exactly dual-feasible point and the rigorous lower bound it proves."""

    value: mpmath.mpf  # lower end of the enclosure of the dual objective
    theta: list[list[Fraction]] = field(repr=False)  # columns theta_k, exact
    scale: Fraction  # t in (0, 1]
    margin: float  # the safety margin that passed the exact check
    spectral_ratio: float  # float64 estimate of ||Theta D^-1||_2 / s before scaling

    @property
    def as_float(self) -> float:
        """`value` rounded down to a float: still a lower bound."""
        return round_down(self.value)


# ---- the class-mean objective ------------------------------------------------------------------
def class_weights(problem: Problem) -> np.ndarray:
    return np.asarray(problem.counts, dtype=np.float64) / problem.N


def _softmax(u: np.ndarray) -> np.ndarray:
    e = np.exp(u - np.max(u, axis=0, keepdims=True))
    return e / np.sum(e, axis=0, keepdims=True)


def _lse(u: np.ndarray) -> np.ndarray:
    m = np.max(u, axis=0)
    return np.log(np.sum(np.exp(u - m[None, :]), axis=0)) + m


class Factorised:
    """The original objective restricted to class-constant features, in `(W, G, b)`.

    `W` is `K x r`, `G = Hbar D` is `r x K` and the logits of class `k` are
    `u_k = (W G)_k / sqrt(n_k) + b`:

    $$f = \\sum_k w_k l_k(u_k) + \\tfrac{\\lambda_W}{2}\\|W\\|^2 + \\tfrac{\\lambda_H}{2}\\|G\\|^2
        (+\\tfrac{\\lambda_b}{2}\\|b\\|^2).$$
    """

    def __init__(self, problem: Problem, rank: int) -> None:
        self.problem = problem
        self.K = problem.K
        self.r = rank
        self.w = class_weights(problem)
        self.sqrt_n = np.sqrt(np.asarray(problem.counts, dtype=np.float64))
        self.lam_w = float(problem.lambda_w[0])
        self.lam_h = float(problem.lambda_h)
        self.lam_b = 0.0 if problem.lambda_b is None else float(problem.lambda_b)
        self.has_bias = problem.bias != "none"
        self.ce = problem.loss == "ce"
        self.size = 2 * self.K * rank + (self.K if self.has_bias else 0)

    def split(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        k, r = self.K, self.r
        w = x[: k * r].reshape(k, r)
        g = x[k * r : 2 * k * r].reshape(r, k)
        b = x[2 * k * r :] if self.has_bias else np.zeros(k)
        return w, g, b

    def join(self, w: np.ndarray, g: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        parts = [w.ravel(), g.ravel()]
        if self.has_bias:
            parts.append(np.zeros(self.K) if b is None else np.asarray(b, dtype=np.float64))
        return np.concatenate(parts)

    def logits(self, x: np.ndarray) -> np.ndarray:
        w, g, b = self.split(x)
        return (w @ g) / self.sqrt_n[None, :] + b[:, None]

    def loss_terms(self, u: np.ndarray) -> np.ndarray:
        """`l_k(u_k)` for every class."""
        if self.ce:
            return _lse(u) - np.diag(u)
        r = u - np.eye(self.K)
        return 0.5 * np.sum(r * r, axis=0)

    def value(self, x: np.ndarray) -> float:
        w, g, b = self.split(x)
        u = self.logits(x)
        reg = self.lam_w / 2 * np.sum(w * w) + self.lam_h / 2 * np.sum(g * g)
        if self.has_bias:
            reg += self.lam_b / 2 * np.sum(b * b)
        return float(np.sum(self.w * self.loss_terms(u)) + reg)

    def loss_gradient(self, u: np.ndarray) -> np.ndarray:
        """`dL/dU`: column k is `w_k grad l_k(u_k)`."""
        grad = (_softmax(u) if self.ce else u) - np.eye(self.K)
        return grad * self.w[None, :]

    def gradient(self, x: np.ndarray) -> np.ndarray:
        w, g, b = self.split(x)
        gu = self.loss_gradient(self.logits(x))
        ga = gu / self.sqrt_n[None, :]
        gw = ga @ g.T + self.lam_w * w
        gg = w.T @ ga + self.lam_h * g
        gb = np.sum(gu, axis=1) + self.lam_b * b
        return self.join(gw, gg, gb)

    def hessian(self, x: np.ndarray) -> np.ndarray:
        """The exact Hessian, column by column from Hessian-vector products."""
        w, g, b = self.split(x)
        u = self.logits(x)
        gu = self.loss_gradient(u)
        ga = gu / self.sqrt_n[None, :]
        prob = _softmax(u) if self.ce else None
        cols = []
        for j in range(self.size):
            e = np.zeros(self.size)
            e[j] = 1.0
            vw, vg, vb = self.split(e)
            du = (vw @ g + w @ vg) / self.sqrt_n[None, :] + vb[:, None]
            if prob is None:
                dgu = du * self.w[None, :]
            else:
                dgu = (prob * du - prob * np.sum(prob * du, axis=0, keepdims=True)) * self.w
            dga = dgu / self.sqrt_n[None, :]
            hw = dga @ g.T + ga @ vg.T + self.lam_w * vw
            hg = vw.T @ ga + w.T @ dga + self.lam_h * vg
            hb = np.sum(dgu, axis=1) + self.lam_b * vb
            cols.append(self.join(hw, hg, hb))
        h = np.stack(cols, axis=1)
        return (h + h.T) / 2

    def from_product(self, a: np.ndarray, b: np.ndarray | None) -> np.ndarray:
        """Balanced factors of the best rank-`r` approximation of `A`."""
        u, sv, vt = np.linalg.svd(a)
        sv = sv[: self.r]
        s = np.sqrt(self.lam_w * self.lam_h)
        w = np.zeros((self.K, self.r))
        g = np.zeros((self.r, self.K))
        m = sv.size
        w[:, :m] = u[:, :m] * np.sqrt(s * sv / self.lam_w)[None, :]
        g[:m, :] = np.sqrt(s * sv / self.lam_h)[:, None] * vt[:m, :]
        return self.join(w, g, b)


def polish(factorised: Factorised, x: np.ndarray, max_steps: int = 40) -> tuple[np.ndarray, str]:
    """Newton's method on `f` from `x`; returns the best point by gradient norm and a summary.

    The step uses the eigen-decomposition of the exact Hessian, with curvatures of modulus below
    `1e-12` of the largest dropped (the rotation gauge and other flat directions) and negative
    ones replaced by their modulus; a backtracking search accepts a step that decreases `f`, or
    that keeps `f` within rounding and decreases the gradient.
    """
    with threadpool_limits(limits=1, user_api="blas"):  # small dense algebra: no thread contention
        return _newton(factorised, x, max_steps)


def _newton(factorised: Factorised, x: np.ndarray, max_steps: int) -> tuple[np.ndarray, str]:
    f0 = factorised.value(x)
    g0 = np.linalg.norm(factorised.gradient(x))
    best, best_f, best_g = x, f0, g0
    steps = stalls = 0
    for _ in range(max_steps):
        grad = factorised.gradient(best)
        if not np.isfinite(best_g) or best_g == 0.0:
            break
        vals, vecs = np.linalg.eigh(factorised.hessian(best))
        top = float(np.max(np.abs(vals))) if vals.size else 0.0
        keep = np.abs(vals) > 1e-12 * max(top, 1e-300)
        coef = (vecs[:, keep].T @ grad) / np.abs(vals[keep])
        step = -(vecs[:, keep] @ coef)
        accepted = False
        alpha = 1.0
        for _ in range(30):
            trial = best + alpha * step
            f_t = factorised.value(trial)
            g_t = float(np.linalg.norm(factorised.gradient(trial)))
            slack = 4 * np.finfo(float).eps * max(abs(best_f), 1.0)
            if np.isfinite(f_t) and (
                f_t < best_f - slack or (f_t <= best_f + slack and g_t < best_g)
            ):
                accepted = True
                break
            alpha /= 2
        if not accepted:
            break
        # at the rounding level Newton no longer halves |grad f|: stop after three such steps
        stalls = stalls + 1 if g_t > best_g / 2 else 0
        best, best_f, best_g = trial, f_t, g_t
        steps += 1
        if stalls >= 3:
            break
    return best, f"{steps} Newton steps, |grad f| {g0:.2e} -> {best_g:.2e}"


# ---- the programs (cvxpy) -----------------------------------------------------------------------
def solve(
    problem: Problem, reduction: str = "class-means", solver: str = "CLARABEL"
) -> ConvexSolution:
    """Solve the one-layer convex program numerically (a solution to polish, not a bound).

    Args:
        problem: a depth-1 instance (any counts, MSE or CE, any bias mode).
        reduction: `"class-means"` (the `K x K` program of §2) or `"samples"` (the full
            `K x N` program, for `N <= SAMPLES_LIMIT`).
        solver: `"CLARABEL"` (default) or `"SCS"`; the other one is tried if it fails.
    """
    import cvxpy as cp

    if problem.depth != 1:
        raise ValueError("the convex program needs depth 1.")
    if reduction not in ("class-means", "samples"):
        raise ValueError(f"unknown reduction {reduction!r}.")
    if reduction == "samples" and problem.N > SAMPLES_LIMIT:
        raise ValueError(f"the K x N program is offered for N <= {SAMPLES_LIMIT} only.")
    k = problem.K
    counts = np.asarray(problem.counts, dtype=np.float64)
    s = float(np.sqrt(float(problem.lambda_w[0] * problem.lambda_h)))
    if reduction == "class-means":
        cols, weights = k, counts / problem.N
        labels = np.arange(k)
    else:
        cols, weights = problem.N, np.full(problem.N, 1.0 / problem.N)
        labels = np.asarray(problem.labels())
    z = cp.Variable((k, cols))
    targets = np.eye(k)[:, labels]
    b = cp.Variable(k) if problem.bias != "none" else None
    logits = z if b is None else z + cp.reshape(b, (k, 1), order="F") @ np.ones((1, cols))
    if problem.loss == "mse":
        loss = 0.5 * cp.sum_squares((logits - targets) @ np.diag(np.sqrt(weights)))
    else:
        picked = cp.sum(cp.multiply(logits, targets), axis=0)
        loss = cp.sum(cp.multiply(weights, cp.log_sum_exp(logits, axis=0) - picked))
    scaled = z @ np.diag(np.sqrt(counts)) if reduction == "class-means" else z
    objective = loss + s * cp.normNuc(scaled)
    if b is not None and problem.bias == "regularised":
        objective = objective + float(problem.lambda_b) / 2 * cp.sum_squares(b)
    program = cp.Problem(cp.Minimize(objective))
    order = [solver] + [o for o in ("CLARABEL", "SCS") if o != solver]
    failures = []
    for name in order:
        settings = CLARABEL_SETTINGS if name == "CLARABEL" else SCS_SETTINGS
        t0 = time.perf_counter()
        try:
            with warnings.catch_warnings():  # an inaccurate status is reported, not warned
                warnings.simplefilter("ignore", UserWarning)
                program.solve(solver=name, **settings)
        except cp.error.SolverError as exc:
            failures.append(f"{name}: {exc}")
            continue
        if program.status not in ("optimal", "optimal_inaccurate") or z.value is None:
            failures.append(f"{name}: status {program.status}")
            continue
        zbar = np.asarray(z.value, dtype=np.float64)
        if reduction == "samples":  # class means of the sample logits
            zbar = np.stack([zbar[:, labels == c].mean(axis=1) for c in range(k)], axis=1)
        return ConvexSolution(
            reduction=reduction,
            product=zbar * np.sqrt(counts)[None, :],
            bias=None if b is None else np.asarray(b.value, dtype=np.float64),
            value=float(program.value),
            solver=name,
            status=program.status,
            settings=dict(settings),
            seconds=time.perf_counter() - t0,
        )
    raise ConvexUnavailable("; ".join(failures))


# ---- the rigorous bound -------------------------------------------------------------------------
def round_down(x: mpmath.mpf) -> float:
    """The largest float not above `x`."""
    f = float(x)
    if mpmath.mpf(f) > x:
        f = float(np.nextafter(f, -np.inf))
    return f


def _grid(x: float) -> Fraction:
    scale = 2**GRID_BITS
    return Fraction(round(float(x) * scale), scale)


def _positive_definite(m: list[list[Fraction]]) -> bool:
    """Exact test: every pivot of the `LDL^T` elimination of symmetric `m` is positive."""
    a = [row[:] for row in m]
    n = len(a)
    for i in range(n):
        pivot = a[i][i]
        if pivot <= 0:
            return False
        for j in range(i + 1, n):
            factor = a[j][i] / pivot
            if factor:
                for c in range(i + 1, n):
                    a[j][c] -= factor * a[i][c]
    return True


def _lower(x: object) -> mpmath.mpf:
    """Lower end of an `mpmath.iv` interval as an mpf, kept at full precision."""
    with mpmath.workprec(INTERVAL_BITS):
        return mpmath.mpf(x.a)  # type: ignore[attr-defined]


def _iv_fraction(x: Fraction):  # noqa: ANN202 - an mpmath.iv interval
    iv = mpmath.iv
    return iv.mpf(x.numerator) / iv.mpf(x.denominator)


def dual_bound(problem: Problem, logits: np.ndarray) -> DualBound | None:
    """The rigorous lower bound of §3-4 from class-mean logits `U` (`K x K`, bias included).

    Any logits give a valid bound (the construction makes the dual point feasible, and checks
    it exactly); logits near the optimum give a tight one.  Returns None when no feasible dual
    point could be built (non-finite logits, a negative probability after the free-bias
    correction, or no margin passing the exact spectral check): then there is no bound.
    """
    k = problem.K
    counts = [Fraction(n) for n in problem.counts]
    weights = [n / problem.N for n in counts]
    ce = problem.loss == "ce"
    q_float = _softmax(logits) if ce else logits
    if not np.all(np.isfinite(q_float)):
        return None
    q = [[_grid(q_float[j, c]) for j in range(k)] for c in range(k)]  # q[c] = column c
    if ce:
        for c in range(k):
            total = sum(q[c])
            q[c] = [v / total for v in q[c]]
        if problem.bias == "free":
            mix = [sum(weights[c] * q[c][j] for c in range(k)) for j in range(k)]
            r = [weights[j] - mix[j] for j in range(k)]
            q[:] = [[q[c][j] + r[j] for j in range(k)] for c in range(k)]
        if any(v < 0 for col in q for v in col):
            return None
    theta = [[weights[c] * ((1 if j == c else 0) - q[c][j]) for j in range(k)] for c in range(k)]
    if not ce and problem.bias == "free":
        row = [sum(theta[c][j] for c in range(k)) / k for j in range(k)]
        theta = [[theta[c][j] - row[j] for j in range(k)] for c in range(k)]
    s2 = problem.lambda_w[0] * problem.lambda_h
    theta_f = np.array([[float(v) for v in col] for col in theta]).T  # K x K, columns theta_k
    ratio = float(np.linalg.norm(theta_f / np.sqrt(np.asarray(problem.counts))[None, :], 2))
    ratio /= float(np.sqrt(float(s2)))
    # M = Theta D^-2 Theta^T, exactly
    gram = [
        [sum(theta[c][i] * theta[c][j] / counts[c] for c in range(k)) for j in range(k)]
        for i in range(k)
    ]
    for margin in MARGINS:
        t = Fraction(min(1.0, (1.0 - margin) / ratio)) if ratio > 0 else Fraction(1)
        test = [[(s2 if i == j else 0) - t * t * gram[i][j] for j in range(k)] for i in range(k)]
        if _positive_definite(test):
            break
    else:
        return None
    scaled = [[t * v for v in col] for col in theta]
    with mpmath.workprec(INTERVAL_BITS):
        iv = mpmath.iv
        saved, iv.prec = iv.prec, INTERVAL_BITS
        try:
            if ce:
                total = iv.mpf(0)
                for c in range(k):
                    probs = [(1 if j == c else 0) - scaled[c][j] / weights[c] for j in range(k)]
                    entropy = iv.mpf(0)
                    for p in probs:
                        if p < 0:
                            return None
                        if p > 0:
                            pv = _iv_fraction(p)
                            entropy -= pv * iv.log(pv)
                    total += _iv_fraction(weights[c]) * entropy
                exact_part = Fraction(0)
            else:
                total = iv.mpf(0)
                exact_part = sum(
                    scaled[c][c] - sum(v * v for v in scaled[c]) / (2 * weights[c])
                    for c in range(k)
                )
            if problem.bias == "regularised":
                g = [sum(scaled[c][j] for c in range(k)) for j in range(k)]
                exact_part -= sum(v * v for v in g) / (2 * problem.lambda_b)
            elif problem.bias == "free":
                g = [sum(scaled[c][j] for c in range(k)) for j in range(k)]
                if any(v != 0 for v in g):
                    return None
            enclosure = total + _iv_fraction(exact_part)
            value = _lower(enclosure)
        finally:
            iv.prec = saved
    return DualBound(value, scaled, t, margin, ratio)


# ---- the certificate ----------------------------------------------------------------------------
def primal_point(problem: Problem, product: np.ndarray, bias: np.ndarray | None) -> Params:
    """Balanced layers of the original problem whose class-level product is `product`."""
    u, sv, vt = np.linalg.svd(product)
    top = float(sv[0]) if sv.size else 0.0
    r = int(np.sum(sv > 1e-13 * max(top, 1e-300))) if top > 0 else 0
    r = min(r, problem.bottleneck)
    return balanced_layers(problem, u[:, :r], sv[:r], vt[:r, :].T, bias)


def convex_dual(
    problem: Problem, reduction: str = "class-means", solver: str = "CLARABEL"
) -> Certificate | None:
    """The `convex-dual` certificate of a depth-1 instance.

    Solves the convex program (§1-2), polishes it, builds an exactly dual-feasible point and
    proves `F >= bound` for every point of the original problem (§3-4), and builds a feasible
    point of the original problem from the solution (§5).  `exact` is True when `d >= K` (the
    program is no relaxation, so `[bound, primal]` brackets the optimum).

    Returns None where it does not apply or cannot prove anything: depth `M > 1`, both solvers
    failing, or no exactly feasible dual point (so the verifier tries the next certificate kind);
    every certificate it does return is rigorous.
    """
    from .certify import Certificate

    if problem.depth != 1:
        return None
    try:
        sol = solve(problem, reduction=reduction, solver=solver)
    except ConvexUnavailable:
        return None
    full = Factorised(problem, problem.K)
    x0 = full.from_product(sol.product, sol.bias)
    x, polish_note = polish(full, x0)
    f0 = full.value(x0)
    if not full.value(x) <= f0 + 4 * np.finfo(float).eps * max(abs(f0), 1.0):  # never a worse point
        x, polish_note = x0, polish_note + " (rejected: not better than the solver's point)"
    bound = dual_bound(problem, full.logits(x))
    if bound is None:  # try the unpolished solution's dual point
        bound = dual_bound(problem, full.logits(x0))
    if bound is None:  # no exactly feasible dual point: no rigorous bound to offer
        return None
    w, g, b = full.split(x)
    product, bias = w @ g, (b if problem.bias != "none" else None)
    exact = problem.widths[0] >= problem.K
    notes = []
    if not exact:
        notes.append(
            f"width d = {problem.widths[0]} < K = {problem.K}: the convex program drops the rank "
            "constraint, so its bound is a lower bound on the optimum that need not be attained"
        )
        top = float(np.abs(product).max()) if product.size else 0.0
        if np.linalg.matrix_rank(product, tol=1e-13 * max(top, 1e-300)) > problem.bottleneck:
            narrow = Factorised(problem, problem.bottleneck)
            xn, _ = polish(narrow, narrow.from_product(product, bias))
            wn, gn, bn = narrow.split(xn)
            product, bias = wn @ gn, (bn if problem.bias != "none" else None)
    point = primal_point(problem, product, bias)
    objective = Objective(problem, xp_numpy)
    primal = objective.value(point)
    lower = bound.as_float
    columns = problem.K if sol.reduction == "class-means" else problem.N
    detail = (
        f"{sol.reduction} program ({problem.K} x {columns}) solved by {sol.solver} (status "
        f"{sol.status}, objective {sol.value:.16g}, settings {sol.settings}); polish: "
        f"{polish_note}; dual point from the loss gradient, ||Theta D^-1|| / s = "
        f"{bound.spectral_ratio:.17g} before scaling, scaled by t = {float(bound.scale):.17g} "
        f"(margin {bound.margin:.1e}), feasibility checked in exact rational arithmetic, bound "
        + (
            "evaluated by 200-bit interval arithmetic"
            if problem.loss == "ce"
            else "exact (rational)"
        )
    )
    return Certificate(
        kind="convex-dual",
        bound=lower,
        primal=primal,
        gap=abs(primal - lower) / max(abs(lower), 1e-300),
        solver=sol.solver,
        status=sol.status,
        rigorous=True,
        detail=detail,
        bound_exact=bound.value,
        exact=exact,
        point=point,
        primal_error=objective.error_bound(point),
        notes=notes,
    )
