r"""Convex certificates for one-layer problems (`convex-dual`): rigorous weak-duality bounds.

For one layer (`M = 1`) the problem is convex in the product `Z = W H` (docs/theory/one-layer.md#one-layer-reduction).
`convex_dual` solves that convex program numerically (in closed form or by a first-order
method), and turns the solution into a **rigorous** lower bound by weak duality: the solver's
objective is never used as a bound (it can sit slightly above or below the true minimum); only
the value of a dual point whose feasibility is *proven*, evaluated in rational or interval
arithmetic, is.

## 1. The convex program

Write `s = sqrt(lambda_W lambda_H)`, `w_k = n_k / N` (the class weights) and the per-sample
losses `l_k(u) = ||u - e_k||^2 / 2` (MSE) or `l_k(u) = logsumexp(u) - t_k^T u` (CE, with the
targets `t_k = e_k`, or label smoothing, `t_k = (1 - alpha) e_k + alpha / K`; every `e_k` of
the cross-entropy steps below is `t_k` there, `exact_targets`), so that
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
`E = Q D` with `Q^T Q = I` and `D = diag(sqrt(n_k))`, `||Zbar E^T||_* = ||Zbar D||_*`, so with
`A = Zbar D` (logits `u_k = a_k / sqrt(n_k) + b`)

$$P^* = \min_{A, b}\; f(A, b) + s\|A\|_*, \qquad
  f(A, b) = \sum_k w_k\, l_k(a_k/\sqrt{n_k} + b) \;(+\tfrac{\lambda_b}{2}\|b\|^2),$$

a `K x K` program whose size does not depend on `N` (`reduction="class-means"`, the default).
The full `K x N` program (`reduction="samples"`, cvxpy only) is kept as a cross-check for small
`N`.  The bound below does not even rely on this argument: its dual point is lifted to the full
problem explicitly.

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
`theta_k = w_k (e_k - u_k)` (MSE) or `w_k (e_k - softmax(u_k))` (CE), that is
`Theta D^{-1} = -grad_A f`, and the bound equals `P^*` (strong duality).

## 4. From a numerical solution to a provably feasible dual point

1. **Solve** the class-mean program (`solve`, `method="auto"`).
   - MSE without a bias or with a free bias: in closed form.  Here
     `f(A, b) = ||A + b r^T - D||_F^2 / (2N)` with `r = (sqrt(n_k))_k`, `||r||^2 = N`.  Without a
     bias, `P^* = min_A ||A - D||^2/(2N) + s||A||_*`, whose minimiser is the proximal map of the
     nuclear norm: **singular-value thresholding** `A = SVT_{Ns}(D)`, i.e. each singular value
     `sigma` of the target replaced by `max(sigma - N s, 0)`.  With a free bias, the optimal
     `b = (D - A) r / N` leaves `||(A - D) Pi||^2/(2N)` with the orthogonal projector
     `Pi = I - r r^T / N`.  Since `||A Pi||_* <= ||A||_*` and `(A Pi - D) Pi = (A - D) Pi`, some
     minimiser has `A = A Pi`, and then `(A - D) Pi = A - Yhat` with the centred targets
     `Yhat = D Pi = (I - n 1^T / N) D`.  `SVT_{Ns}(Yhat)` minimises `||A - Yhat||^2/(2N) + s||A||_*`
     over all `A` and satisfies `A r = 0` (its row space is that of `Yhat`, orthogonal to `r`),
     so it is the minimiser; the bias is `b = (D - A) r / N = n / N`.
   - CE (any bias) and MSE with a regularised bias: **accelerated proximal gradient** (FISTA)
     in `(A, beta)`, `beta = sqrt(N) b`, with the proximal map of `s||A||_*` (SVT, `O(K^3)`).
     The step is `1/L` by backtracking, never beyond the global Lipschitz constant of `grad f`:
     the CE Hessian in the logits of class `k` is `w_k (diag p - p p^T) <= w_k / 2`, so
     `L = 1/(2N)` without a bias and `(1 + lambda_b)/N` with one (`(2 + lambda_b)/N` for MSE).
     The momentum restarts whenever the step and the momentum disagree (gradient restart,
     O'Donoghue and Candès), which gives linear convergence here.  A float estimate of the
     relative duality gap (`estimated_gap`: steps 2-6 below in float64, no rigour) is taken
     every `APG_CHECK` iterations; below `APG_HANDOVER` (or when it stalls, or after
     `APG_MAX_ITER` iterations) the point is **polished** by a matrix-free Newton-CG method on
     the factorised objective `f(W, G, b)`, `G = Hbar D` (the original objective restricted to
     class-constant features; conjugate gradients on exact Hessian-vector products, `O(K^3)`
     each, at most `POLISH_PRODUCTS` per polish; flat directions such as the rotation gauge
     `(W, G) -> (W O, O^T G)` are harmless to CG, as the gradient is orthogonal to them).  While
     the estimate stays above `TARGET_GAP`, one more round follows (up to `APG_MAX_ITER_AGAIN`
     APG iterations from the better point, and another polish); the point with the smallest
     estimated gap is kept.
   - `method="cvxpy"` solves the program with cvxpy (CLARABEL, SCS as a fallback) and polishes
     the result by Newton-CG, for cross-checks on small instances only (`K <= CVXPY_MAX_CLASSES`).
2. Form `q_k = u_k` (MSE) or `q_k = softmax(u_k)` (CE) from the logits and round them to the
   dyadic grid `2^-80`: from here on the dual point is an integer matrix over a common
   denominator, exactly.
3. CE: put each `q_k` exactly onto the simplex (the rounding residual goes to its largest
   entry; a negative entry means no bound); free bias: add `r = w - sum_k w_k q_k` to every
   `q_k` (then `sum_k w_k q_k = w`, i.e. `Theta 1 = 0`, and each column still sums to one; a
   negative entry makes the construction fail: no certificate is then returned, never a
   non-rigorous one).  MSE with a free bias: subtract `(Theta 1)/K` from every column.
   `theta_k = w_k (e_k - q_k)`.
4. Scale `Theta <- t Theta`, `t <= 1` a float, from the float64 spectral norm with a relative
   safety margin (`2^-44`, then larger ones, see `MARGINS`).  Scaling keeps `Theta 1 = 0` and,
   for CE, moves each `p_k` along the segment towards `e_k`, inside the simplex.
5. **Verify** feasibility, `||X||_2 < s` for `X = t Theta D^{-1}`, in verified floating point
   (`ncverify.evidence.certificates.verified`).  The float matrix `Xt = fl(fl(fl(theta) t) / fl(sqrt(n_k)))` (the
   entries of `Theta` correctly rounded from their exact rationals, then three IEEE operations)
   satisfies `|Xt - X| <= 5u|Xt|` elementwise (`(1+u)^3/(1-u) - 1 <= 4.01u`; every nonzero entry
   is checked to be at least `2^-1000`, so nothing underflows), hence
   `||X - Xt||_2 <= e`, `e` an upward-rounded `5u ||Xt||_F`.  With `sigma` a float not above
   `s^2 - 2 s_hi e <= (s - e)^2` (`s_hi >= s`, all in exact rationals, and `e < s` checked),
   `gram_gap_positive(sigma, Xt)` proves `||Xt||_2^2 < sigma`, so
   `||X||_2 <= ||Xt||_2 + e < s`.  `gram_gap_positive` encloses `Q^T (sigma I - Xt Xt^T) Q`
   (`Q` the float left singular vectors of `fl(Theta D^-1)`) with a-priori rounding-error bounds
   and checks strict diagonal dominance of the enclosure (Gershgorin and Sylvester's law of
   inertia; the argument is in that module).  Its rounding noise, about `K^2 u`, decides the
   margin of step 4: the first margin that passes in float64 is taken, and when that is not the
   smallest one, the check is tried once more in extended precision (`long double`, noise about
   `2^11` times smaller where available) at a margin up to `2^8` times smaller.  `check="exact"`
   instead runs the `LDL^T` pivots of the rational matrix `s^2 I - t^2 Theta D^{-2} Theta^T` (the
   test oracle, small `K` only).
6. Evaluate the bound: MSE exactly as a rational number (`O(K^2)` integer operations); CE by
   interval arithmetic (`mpmath.iv`, 200 bits) for the `K^2` logarithms.  The lower end of the
   enclosure is `bound_exact`; `bound` is that number rounded *down* to a float.

The solver and the polish only make the bound *tight*; its validity rests on steps 3-6 alone.

## 5. The feasible point

`A = W G` (the class-level product `W Hbar D`) is split by its SVD into balanced layers
(`ncverify.model.factorisations.balanced_layers`); with `d < K` it is first truncated to rank `d` and
polished again in the factorised problem of inner width `d`.  Its objective on the *original*
problem is `primal`, so `[bound, primal]` brackets the optimum and a claimed optimum above
`primal` is refuted by a concrete point.  A point with more than `MAX_POINT_ENTRIES` entries
(`d N`) is not built; `primal` is then the same objective evaluated at class level.

## 6. Size limits

The closed form costs one `K x K` SVD; the first-order method tens to a few thousand SVDs
(`O(K^3)` each, at most `APG_MAX_ITER + APG_MAX_ITER_AGAIN`), the polish at most
`2 POLISH_PRODUCTS` Hessian-vector products (`O(K^3)` each), the verification about eight
`K x K` products per margin tried (non-BLAS `long double` ones for the extended retry), the
bound `O(K^2)` exact or interval operations (`K^2` interval logarithms for CE, about 4 s at
`K = 300`); memory is `O(K^2)` plus the feasible point (`MAX_POINT_ENTRIES`).  Measured on a
shared two-core machine (one BLAS thread): the first-order path takes 0.1-6 s at `K = 100` and
3-15 s at `K = 300` (worst case at `K = 300`, every cap reached: about 3-4 min); the closed-form
path about 1 s at `K = 300` and 40 s (1.1 GB, mostly the feasible point and its evaluation) at
`K = 1000`.  Instances with more than `MAX_CLASSES` classes (first-order method) or
`MAX_CLASSES_CLOSED_FORM` (closed form) raise `ncverify.limits.StepSkipped` before any work;
`check --force` (`Settings.force`), the environment variable `NCVERIFY_FORCE_CERTIFICATE=1` or
`force=True` lift the limits.
"""

from __future__ import annotations

import os
import time
import warnings
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import array_api_compat.numpy as xp_numpy
import mpmath
import numpy as np
from threadpoolctl import threadpool_limits

from ncverify.evidence.certificates.certificate import Certificate
from ncverify.evidence.certificates.verified import (
    HAS_EXTENDED,
    U,
    exact_positive_definite,
    float_down,
    gram_gap_positive,
    next_up,
    sum_squares_up,
)
from ncverify.limits import HOW_TO_FORCE, StepSkipped
from ncverify.limits import forced as _forced_by_settings
from ncverify.model.factorisations import balanced_layers
from ncverify.model.intervals import interval_precision, round_down
from ncverify.model.losses import softmax_and_lse
from ncverify.model.objective import Objective, Params
from ncverify.model.problem import Problem

#: cvxpy solver settings (`method="cvxpy"` only), reported in its certificates.
CLARABEL_SETTINGS: dict[str, float | int] = {
    "tol_gap_abs": 1e-12,
    "tol_gap_rel": 1e-12,
    "tol_feas": 1e-12,
    "tol_ktratio": 1e-10,
    "max_iter": 500,
}
SCS_SETTINGS: dict[str, float | int] = {"eps_abs": 1e-10, "eps_rel": 1e-10, "max_iters": 200000}
#: Accelerated proximal gradient: iteration caps (first run, second run), the float gap is
#: estimated every `APG_CHECK` iterations; a run hands over to the Newton-CG polish below
#: `APG_HANDOVER`, or when the gap has not halved over `APG_STALL` estimates.
APG_MAX_ITER = 3000
APG_MAX_ITER_AGAIN = 1000
APG_CHECK = 20
APG_STALL = 30
APG_HANDOVER = 1e-8
#: Relative duality gap (float estimate) at which the numerical solution needs no more work.
TARGET_GAP = 1e-12
#: Newton-CG polish: Newton steps, and Hessian-vector products in all (per polish).
POLISH_STEPS = 40
POLISH_PRODUCTS = 3000
#: Dual points are rounded to multiples of `2^-GRID_BITS` before exact arithmetic.
GRID_BITS = 80
#: Relative safety margins tried, in order, when scaling the dual point into the spectral ball.
MARGINS: tuple[float, ...] = tuple(2.0**-e for e in (44, 41, 38, 35, 32, 28, 24, 20, 14, 10))
#: Precision (bits) of the interval evaluation of the CE bound.
INTERVAL_BITS = 200
#: Largest `N` for which the full `K x N` program (`reduction="samples"`) is offered.
SAMPLES_LIMIT = 400
#: Largest `K` for the cvxpy cross-check (its cost grows like `K^4.5` and its memory like `K^4`).
CVXPY_MAX_CLASSES = 40
#: Largest `K` certified by the first-order method (CE, MSE with a regularised bias) unless forced.
MAX_CLASSES = 300
#: Largest `K` certified through the closed form (MSE without or with a free bias) unless forced.
MAX_CLASSES_CLOSED_FORM = 1000
#: Largest feasible point built (`(d + K) N` entries: `H` and the logits); above it `primal` is
#: computed at class level.
MAX_POINT_ENTRIES = 20_000_000
#: Environment variable that lifts the size limits when set to a non-empty value other than 0.
FORCE_ENV = "NCVERIFY_FORCE_CERTIFICATE"


class ConvexUnavailable(Exception):
    """The convex program could not be solved (both solvers failed); the message says why."""


@dataclass
class ConvexSolution:
    """A numerical solution of the one-layer convex program, reduced to class means.

    `product` is `A = Zbar D` (the class-level product `W Hbar D`, `K x K`); `bias` the bias
    (None without one); `value` the objective at that point (a number to compare, never a bound).
    """

    reduction: str
    product: np.ndarray
    bias: np.ndarray | None
    value: float
    solver: str
    status: str
    settings: dict[str, float | int]
    seconds: float
    log: str = ""  # what the method did (iterations, polish), for the certificate's detail


@dataclass
class DualBound:
    """A provably dual-feasible point and the rigorous lower bound it proves.

    The dual point is `t Theta` with `Theta = numer / denom` exactly (`numer[c][j]` the entry
    `j` of column `theta_c`, integers) and `t = scale`.
    """

    value: mpmath.mpf  # lower end of the enclosure of the dual objective
    numer: list[list[int]]
    denom: int
    scale: Fraction  # t in (0, 1], a float
    margin: float  # the safety margin that passed the feasibility check
    spectral_ratio: float  # float64 estimate of ||Theta D^-1||_2 / s before scaling
    check: str  # "verified-float", "verified-extended" (long double) or "exact"

    @property
    def as_float(self) -> float:
        """`value` rounded down to a float: still a lower bound."""
        return round_down(self.value)

    @property
    def theta(self) -> list[list[Fraction]]:
        """The scaled dual point `t Theta`, columns, exactly (`O(K^2)` fractions)."""
        return [[self.scale * Fraction(v, self.denom) for v in col] for col in self.numer]


# ---- the class-mean objective ------------------------------------------------------------------
def class_weights(problem: Problem) -> np.ndarray:
    return np.asarray(problem.counts, dtype=np.float64) / problem.N


def _softmax(u: np.ndarray) -> np.ndarray:
    return softmax_and_lse(np, u)[0]


def _lse(u: np.ndarray) -> np.ndarray:
    return softmax_and_lse(np, u)[1][0]


def exact_targets(problem: Problem) -> tuple[list[list[int]], int]:
    """The targets of the class-level losses as integers over a common denominator: column `c`
    is `e_c` (MSE, CE) or the smoothed `(1 - alpha) e_c + alpha / K` (label smoothing), i.e.
    `tau[c][j] / denominator` (columns as lists, like `_DualPoint`)."""
    k = problem.K
    if problem.loss != "ls":
        return [[int(j == c) for j in range(k)] for c in range(k)], 1
    alpha = problem.smoothing
    denominator = alpha.denominator * k
    off = alpha.numerator  # alpha / K = numerator / (denominator)
    own = denominator - (k - 1) * off  # (1 - alpha) + alpha / K
    return [[own if j == c else off for j in range(k)] for c in range(k)], denominator


def targets(problem: Problem) -> np.ndarray:
    """`exact_targets` in floats, as a `K x K` matrix (column `c`: the targets of class `c`)."""
    tau, denominator = exact_targets(problem)
    return np.array(tau, dtype=np.float64).T / denominator


def _cross_entropy(problem: Problem) -> bool:
    """Cross-entropy against one-hot or smoothed targets: the loss of softmax and entropies."""
    return problem.loss in ("ce", "ls")


def _s(problem: Problem) -> float:
    return float(np.sqrt(float(problem.lambda_w[0] * problem.lambda_h)))


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
        self.ce = _cross_entropy(problem)
        self.targets = targets(problem)
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
            return _lse(u) - np.sum(self.targets * u, axis=0)
        r = u - self.targets
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
        grad = (_softmax(u) if self.ce else u) - self.targets
        return grad * self.w[None, :]

    def gradient(self, x: np.ndarray) -> np.ndarray:
        w, g, b = self.split(x)
        gu = self.loss_gradient(self.logits(x))
        ga = gu / self.sqrt_n[None, :]
        gw = ga @ g.T + self.lam_w * w
        gg = w.T @ ga + self.lam_h * g
        gb = np.sum(gu, axis=1) + self.lam_b * b
        return self.join(gw, gg, gb)

    def hvp(self, x: np.ndarray, v: np.ndarray) -> np.ndarray:
        """The exact Hessian-vector product `f''(x) v`, in `O(K^2 r)` operations."""
        w, g, b = self.split(x)
        u = self.logits(x)
        gu = self.loss_gradient(u)
        ga = gu / self.sqrt_n[None, :]
        vw, vg, vb = self.split(v)
        du = (vw @ g + w @ vg) / self.sqrt_n[None, :] + vb[:, None]
        if self.ce:
            prob = _softmax(u)
            dgu = (prob * du - prob * np.sum(prob * du, axis=0, keepdims=True)) * self.w
        else:
            dgu = du * self.w[None, :]
        dga = dgu / self.sqrt_n[None, :]
        hw = dga @ g.T + ga @ vg.T + self.lam_w * vw
        hg = vw.T @ ga + w.T @ dga + self.lam_h * vg
        hb = np.sum(dgu, axis=1) + self.lam_b * vb
        return self.join(hw, hg, hb)

    def hessian(self, x: np.ndarray) -> np.ndarray:
        """The exact dense Hessian from `size` Hessian-vector products (tests, small sizes only)."""
        if self.size > 5000:
            raise ValueError("the dense Hessian is for small problems (tests) only.")
        h = np.stack([self.hvp(x, e) for e in np.eye(self.size)], axis=1)
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


def polish(
    factorised: Factorised, x: np.ndarray, max_steps: int = POLISH_STEPS
) -> tuple[np.ndarray, str]:
    """Newton-CG on `f` from `x` (matrix-free); returns the best point and a summary.

    Each Newton step solves `f'' p = -grad f` by conjugate gradients on exact Hessian-vector
    products, to a relative residual `min(1/2, sqrt(|grad f| / |grad f_0|))`, stopping early at a
    direction of non-positive curvature (then the CG iterate so far, or the steepest descent
    direction, is used); a backtracking search accepts a step that decreases `f`, or that keeps
    `f` within rounding and decreases the gradient.
    """
    with threadpool_limits(limits=1, user_api="blas"):  # small dense algebra: no thread contention
        return _newton_cg(factorised, x, max_steps)


def _newton_cg(factorised: Factorised, x: np.ndarray, max_steps: int) -> tuple[np.ndarray, str]:
    best = x
    best_f = factorised.value(x)
    grad = factorised.gradient(x)
    best_g = g0 = float(np.linalg.norm(grad))
    steps = stalls = products = 0
    for _ in range(max_steps):
        if not np.isfinite(best_g) or best_g == 0.0 or products >= POLISH_PRODUCTS:
            break
        tol = min(0.5, np.sqrt(best_g / g0)) * best_g
        p = np.zeros_like(best)
        r = -grad
        d = r.copy()
        rr = float(r @ r)
        for i in range(POLISH_PRODUCTS - products):
            hd = factorised.hvp(best, d)
            products += 1
            curv = float(d @ hd)
            if not curv > 0.0:
                if i == 0:
                    p = -grad
                break
            alpha = rr / curv
            p = p + alpha * d
            r = r - alpha * hd
            rr_new = float(r @ r)
            if np.sqrt(rr_new) <= tol:
                break
            d = r + (rr_new / rr) * d
            rr = rr_new
        accepted = False
        alpha = 1.0
        for _ in range(30):
            trial = best + alpha * p
            f_t = factorised.value(trial)
            g_trial = factorised.gradient(trial)
            g_t = float(np.linalg.norm(g_trial))
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
        best, best_f, best_g, grad = trial, f_t, g_t, g_trial
        steps += 1
        if stalls >= 3:
            break
    return best, (
        f"{steps} Newton-CG steps ({products} Hessian-vector products), "
        f"|grad f| {g0:.2e} -> {best_g:.2e}"
    )


# ---- the class-mean program: closed form and accelerated proximal gradient ----------------------
def svt(y: np.ndarray, tau: float) -> tuple[np.ndarray, np.ndarray]:
    """Singular-value thresholding: `argmin_A ||A - Y||^2/2 + tau ||A||_*` and its singular values."""
    u, sv, vt = np.linalg.svd(y, full_matrices=False)
    sv = np.maximum(sv - tau, 0.0)
    r = int(np.count_nonzero(sv))
    return (u[:, :r] * sv[:r]) @ vt[:r, :], sv


def closed_form(problem: Problem) -> ConvexSolution:
    """The minimiser of the MSE class-mean program without a bias or with a free bias (§4.1)."""
    if problem.loss != "mse" or problem.bias not in ("none", "free"):
        raise ValueError("the closed form covers MSE without a bias or with a free bias only.")
    t0 = time.perf_counter()
    counts = np.asarray(problem.counts, dtype=np.float64)
    r = np.sqrt(counts)
    n_total = float(problem.N)
    s = _s(problem)
    target = np.diag(r)
    if problem.bias == "free":  # Yhat = (I - n 1^T / N) D
        target = target - np.outer(counts, r) / n_total
    a, sv = svt(target, n_total * s)
    bias = None
    if problem.bias == "free":
        bias = (np.diag(r) - a) @ r / n_total  # the optimal bias for this A (= n/N exactly)
    means = ClassMeans(problem)
    value = means.value(a, means.beta_of(bias)) + s * float(np.sum(sv))
    return ConvexSolution(
        reduction="class-means",
        product=a,
        bias=bias,
        value=value,
        solver="closed form (singular-value thresholding)",
        status="optimal",
        settings={"threshold": n_total * s},
        seconds=time.perf_counter() - t0,
    )


class ClassMeans:
    """The smooth part `f(A, beta)` of the class-mean program (§2), `beta = sqrt(N) b`.

    The scaling of the bias makes the global Lipschitz constant of `grad f` one number,
    `lipschitz` (§4.1).
    """

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        self.K = problem.K
        counts = np.asarray(problem.counts, dtype=np.float64)
        self.N = float(problem.N)
        self.w = counts / self.N
        self.sqrt_n = np.sqrt(counts)
        self.root_n = np.sqrt(self.N)
        self.ce = _cross_entropy(problem)
        self.has_bias = problem.bias != "none"
        self.lam_b = float(problem.lambda_b) if problem.bias == "regularised" else 0.0
        if self.ce:
            self.lipschitz = (1.0 + self.lam_b) / self.N if self.has_bias else 0.5 / self.N
        else:
            self.lipschitz = (2.0 + self.lam_b) / self.N if self.has_bias else 1.0 / self.N
        self.targets = targets(problem)  # column k: class k's targets (e_k, or smoothed)

    def beta_of(self, bias: np.ndarray | None) -> np.ndarray | None:
        return None if bias is None or not self.has_bias else np.asarray(bias) * self.root_n

    def bias_of(self, beta: np.ndarray | None) -> np.ndarray | None:
        return None if beta is None else beta / self.root_n

    def logits(self, a: np.ndarray, beta: np.ndarray | None) -> np.ndarray:
        u = a / self.sqrt_n[None, :]
        if beta is not None:
            u = u + (beta / self.root_n)[:, None]
        return u

    def value(self, a: np.ndarray, beta: np.ndarray | None) -> float:
        u = self.logits(a, beta)
        if self.ce:
            loss = float(np.sum(self.w * (_lse(u) - np.sum(self.targets * u, axis=0))))
        else:
            d = u - self.targets
            loss = 0.5 * float(np.sum(self.w * np.sum(d * d, axis=0)))
        if beta is not None and self.lam_b:
            loss += self.lam_b / (2 * self.N) * float(beta @ beta)
        return loss

    def value_and_gradient(
        self, a: np.ndarray, beta: np.ndarray | None
    ) -> tuple[float, np.ndarray, np.ndarray | None]:
        u = self.logits(a, beta)
        if self.ce:
            value = float(np.sum(self.w * (_lse(u) - np.sum(self.targets * u, axis=0))))
            g = (_softmax(u) - self.targets) * self.w[None, :]
        else:
            d = u - self.targets
            value = 0.5 * float(np.sum(self.w * np.sum(d * d, axis=0)))
            g = d * self.w[None, :]
        grad_a = g / self.sqrt_n[None, :]
        grad_beta = None
        if beta is not None:
            grad_beta = np.sum(g, axis=1) / self.root_n
            if self.lam_b:
                value += self.lam_b / (2 * self.N) * float(beta @ beta)
                grad_beta = grad_beta + self.lam_b / self.N * beta
        return value, grad_a, grad_beta


def apg(
    problem: Problem,
    start: tuple[np.ndarray, np.ndarray | None] | None = None,
    max_iter: int = APG_MAX_ITER,
    handover: float = APG_HANDOVER,
    stall: int = APG_STALL,
) -> tuple[np.ndarray, np.ndarray | None, int, float]:
    """FISTA with backtracking and gradient restart on the class-mean program (§4.1).

    Starts from `start = (A, b)` (zero by default) and stops once the float estimate of the
    relative duality gap is below `handover`, when it stalls (no halving over `stall`
    estimates), or after `max_iter` iterations.  Returns `(A, b, iterations, estimated gap)`.
    """
    means = ClassMeans(problem)
    s = _s(problem)
    k = problem.K
    l_max = means.lipschitz
    if start is None:
        a = np.zeros((k, k))
        beta = np.zeros(k) if means.has_bias else None
    else:
        a = np.array(start[0], dtype=np.float64)
        beta = means.beta_of(start[1]) if means.has_bias else None
        if means.has_bias and beta is None:
            beta = np.zeros(k)
    ya, yb = a.copy(), (None if beta is None else beta.copy())
    momentum_t = 1.0
    lip = l_max
    f_old = np.inf
    gap = best_gap = np.inf
    since_best = 0
    it = 0
    for it in range(1, max_iter + 1):
        a_new, b_new, f_new, sv, lip = _prox_step(means, ya, yb, s, max(0.8 * lip, 1e-6 * l_max))
        total = f_new + s * float(np.sum(sv))
        step_a = a_new - a
        agree = float(np.sum((ya - a_new) * step_a))
        if yb is not None:
            step_b = b_new - beta
            agree += float((yb - b_new) @ step_b)
        if agree > 0 or total > f_old:  # the momentum points uphill: restart it
            momentum_t = 1.0
        t_next = (1.0 + np.sqrt(1.0 + 4.0 * momentum_t * momentum_t)) / 2.0
        mom = (momentum_t - 1.0) / t_next
        ya = a_new + mom * step_a
        if yb is not None:
            yb = b_new + mom * step_b
        a, beta, momentum_t, f_old = a_new, b_new, t_next, total
        if it % APG_CHECK == 0:
            gap = estimated_gap(problem, means.logits(a, beta), total)
            if gap <= handover:
                break
            if gap < best_gap / 2:
                best_gap, since_best = gap, 0
            else:
                since_best += 1
                if since_best >= stall:
                    break
    gap = estimated_gap(problem, means.logits(a, beta), means.value(a, beta) + s * _nuclear(a))
    return a, means.bias_of(beta), it, gap


def _prox_step(
    means: ClassMeans, ya: np.ndarray, yb: np.ndarray | None, s: float, lip: float
) -> tuple[np.ndarray, np.ndarray | None, float, np.ndarray, float]:
    """One proximal-gradient step from `(ya, yb)` with backtracking on the Lipschitz estimate
    `lip` (doubled until the quadratic upper bound holds, never above the known constant)."""
    fy, ga, gb = means.value_and_gradient(ya, yb)
    l_max = means.lipschitz
    while True:
        a_new, sv = svt(ya - ga / lip, s / lip)
        b_new = None if yb is None else yb - gb / lip
        f_new = means.value(a_new, b_new)
        da = a_new - ya
        dist = float(np.sum(da * da))
        lin = float(np.sum(ga * da))
        if yb is not None:
            db = b_new - yb
            dist += float(db @ db)
            lin += float(gb @ db)
        if lip >= l_max or f_new <= fy + lin + lip / 2 * dist + 1e-15 * abs(fy):
            return a_new, b_new, f_new, sv, lip
        lip = min(2.0 * lip, l_max)


def _nuclear(a: np.ndarray) -> float:
    return float(np.sum(np.linalg.svd(a, compute_uv=False)))


def solve(
    problem: Problem,
    reduction: str = "class-means",
    solver: str = "CLARABEL",
    method: str = "auto",
) -> ConvexSolution:
    """Solve the one-layer convex program numerically (a solution to bound, not a bound).

    Args:
        problem: a depth-1 instance (any counts, MSE or CE, any bias mode).
        reduction: `"class-means"` (the `K x K` program of §2) or `"samples"` (the full
            `K x N` program, for `N <= SAMPLES_LIMIT`, cvxpy only).
        solver: the cvxpy solver, `"CLARABEL"` (default) or `"SCS"` (the other one is tried if it
            fails); only for `method="cvxpy"`.
        method: `"auto"` (the closed form for MSE without or with a free bias, else `"apg"`),
            `"closed-form"`, `"apg"` (accelerated proximal gradient, then Newton-CG polish) or
            `"cvxpy"` (small `K` only: a cross-check).
    """
    if problem.depth != 1:
        raise ValueError("the convex program needs depth 1.")
    if reduction not in ("class-means", "samples"):
        raise ValueError(f"unknown reduction {reduction!r}.")
    if reduction == "samples" and method != "cvxpy":
        method = "cvxpy"
    if method == "auto":
        closed = problem.loss == "mse" and problem.bias in ("none", "free")
        method = "closed-form" if closed else "apg"
    if method == "closed-form":
        return closed_form(problem)
    if method == "apg":
        return _solve_apg(problem)
    if method == "cvxpy":
        return solve_cvxpy(problem, reduction, solver)
    raise ValueError(f"unknown method {method!r}.")


def _solve_apg(problem: Problem) -> ConvexSolution:
    """APG to `APG_HANDOVER`, then up to two rounds of Newton-CG polish and APG (§4.1)."""
    t0 = time.perf_counter()
    s = _s(problem)
    means = ClassMeans(problem)
    full = Factorised(problem, problem.K)
    with threadpool_limits(limits=1, user_api="blas"):
        a, bias, iters, gap = apg(problem)
        notes = [f"{iters} APG iterations (estimated gap {gap:.1e})"]
        for _ in range(2):
            if gap <= TARGET_GAP:
                break
            x, note = polish(full, full.from_product(a, bias))
            polished_gap = estimated_gap(problem, full.logits(x), full.value(x))
            notes.append(f"polish: {note} (estimated gap {polished_gap:.1e})")
            if polished_gap < gap:
                w, g, b = full.split(x)
                a, bias, gap = w @ g, (b if means.has_bias else None), polished_gap
            if gap <= TARGET_GAP:
                break
            a2, b2, iters2, gap2 = apg(
                problem, (a, bias), APG_MAX_ITER_AGAIN, handover=TARGET_GAP, stall=APG_STALL // 3
            )
            notes.append(f"{iters2} more APG iterations (estimated gap {gap2:.1e})")
            if gap2 < gap:
                a, bias, gap = a2, b2, gap2
        value = means.value(a, means.beta_of(bias)) + s * _nuclear(a)
    return ConvexSolution(
        reduction="class-means",
        product=a,
        bias=bias,
        value=value,
        solver="APG",
        status=f"{'converged' if gap <= APG_HANDOVER else 'not converged'} (estimated "
        f"relative duality gap {gap:.1e})",
        log="; ".join(notes),
        settings={
            "max_iter": APG_MAX_ITER,
            "max_iter_again": APG_MAX_ITER_AGAIN,
            "handover_gap": APG_HANDOVER,
            "target_gap": TARGET_GAP,
            "polish_products": POLISH_PRODUCTS,
        },
        seconds=time.perf_counter() - t0,
    )


def _check_cvxpy_instance(problem: Problem, reduction: str) -> None:
    if problem.depth != 1:
        raise ValueError("the convex program needs depth 1.")
    if reduction not in ("class-means", "samples"):
        raise ValueError(f"unknown reduction {reduction!r}.")
    if reduction == "samples" and problem.N > SAMPLES_LIMIT:
        raise ValueError(f"the K x N program is offered for N <= {SAMPLES_LIMIT} only.")
    if problem.K > CVXPY_MAX_CLASSES:
        raise ValueError(f"the cvxpy cross-check is offered for K <= {CVXPY_MAX_CLASSES} only.")


def solve_cvxpy(
    problem: Problem, reduction: str = "class-means", solver: str = "CLARABEL"
) -> ConvexSolution:
    """The convex program solved by cvxpy: a cross-check for small instances only."""
    import cvxpy as cp

    _check_cvxpy_instance(problem, reduction)
    k = problem.K
    counts = np.asarray(problem.counts, dtype=np.float64)
    s = _s(problem)
    if reduction == "class-means":
        cols, weights = k, counts / problem.N
        labels = np.arange(k)
    else:
        cols, weights = problem.N, np.full(problem.N, 1.0 / problem.N)
        labels = np.asarray(problem.labels())
    z = cp.Variable((k, cols))
    wanted = targets(problem)[:, labels]
    b = cp.Variable(k) if problem.bias != "none" else None
    logits = z if b is None else z + cp.reshape(b, (k, 1), order="F") @ np.ones((1, cols))
    if problem.loss == "mse":
        loss = 0.5 * cp.sum_squares((logits - wanted) @ np.diag(np.sqrt(weights)))
    else:
        picked = cp.sum(cp.multiply(logits, wanted), axis=0)
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


# ---- the float estimate of the duality gap (steps 2-6 in float64, no rigour) --------------------
def _theta_float(problem: Problem, logits: np.ndarray) -> np.ndarray | None:
    w = class_weights(problem)
    ce = _cross_entropy(problem)
    aims = targets(problem)
    q = _softmax(logits) if ce else np.array(logits, dtype=np.float64)
    if ce and problem.bias == "free":
        q = q + (aims @ w - q @ w)[:, None]
    theta = (aims - q) * w[None, :]
    if not ce and problem.bias == "free":
        theta = theta - np.mean(theta, axis=1, keepdims=True)
    if not np.all(np.isfinite(theta)) or (ce and np.any(q < 0)):
        return None
    return theta


def _dual_value_float(problem: Problem, theta: np.ndarray) -> float:
    w = class_weights(problem)
    if _cross_entropy(problem):
        p = targets(problem) - theta / w[None, :]
        safe = np.where(p > 0, p, 1.0)
        value = float(np.sum(w * -np.sum(p * np.log(safe), axis=0)))
    else:
        value = float(np.sum(np.diag(theta) - np.sum(theta * theta, axis=0) / (2 * w)))
    if problem.bias == "regularised":
        g = np.sum(theta, axis=1)
        value -= float(g @ g) / (2 * float(problem.lambda_b))
    return value


def estimated_gap(problem: Problem, logits: np.ndarray, primal: float) -> float:
    """Float64 estimate of `(primal - dual) / |primal|` for the dual point of `logits` (no rigour)."""
    theta = _theta_float(problem, logits)
    if theta is None or not np.isfinite(primal):
        return np.inf
    sqrt_n = np.sqrt(np.asarray(problem.counts, dtype=np.float64))
    ratio = float(np.linalg.norm(theta / sqrt_n[None, :], 2)) / _s(problem)
    if ratio > 1:
        theta = theta / ratio
    dual = _dual_value_float(problem, theta)
    return (primal - dual) / max(abs(primal), 1e-300)


# ---- the rigorous bound -------------------------------------------------------------------------
def _lower(x: object) -> mpmath.mpf:
    """Lower end of an `mpmath.iv` interval as an mpf, kept at full precision."""
    with mpmath.workprec(INTERVAL_BITS):
        return mpmath.mpf(x.a)  # type: ignore[attr-defined]


def _iv_fraction(x: Fraction):  # noqa: ANN202 - an mpmath.iv interval
    iv = mpmath.iv
    return iv.mpf(x.numerator) / iv.mpf(x.denominator)


@dataclass
class _DualPoint:
    """`Theta = numer / denom` (columns); for CE also `q = probs / q_denom` (columns)."""

    numer: list[list[int]]
    denom: int
    probs: list[list[int]] | None = None
    q_denom: int = 1


def _grid_integers(a: np.ndarray) -> list[list[int]] | None:
    """`round(a * 2^GRID_BITS)` as Python integers, columns (exact: scaling by 2^k is exact);
    None if that overflows."""
    with np.errstate(over="ignore"):
        scaled = np.round(np.ldexp(np.asarray(a, dtype=np.float64), GRID_BITS))
    if not np.all(np.isfinite(scaled)):
        return None
    return [[int(v) for v in col] for col in scaled.T]


def dual_point(problem: Problem, logits: np.ndarray) -> _DualPoint | None:
    """Steps 2-3 of §4: the exact dual point of `logits`, or None when the construction fails."""
    k = problem.K
    counts = list(problem.counts)
    n_total = problem.N
    ce = _cross_entropy(problem)
    q_float = _softmax(logits) if ce else np.asarray(logits, dtype=np.float64)
    if not np.all(np.isfinite(q_float)):
        return None
    one = 1 << GRID_BITS
    q = _grid_integers(q_float)  # q[c][j] / 2^GRID_BITS
    if q is None:
        return None
    if ce:
        return _entropy_point(problem, q, one)
    numer = [[counts[c] * ((one if j == c else 0) - q[c][j]) for j in range(k)] for c in range(k)]
    denom = n_total * one
    if problem.bias == "free":  # subtract the row means: Theta 1 = 0 exactly
        rows = [sum(numer[c][j] for c in range(k)) for j in range(k)]
        numer = [[k * numer[c][j] - rows[j] for j in range(k)] for c in range(k)]
        denom *= k
    return _DualPoint(numer, denom)


def _entropy_point(problem: Problem, q: list[list[int]], one: int) -> _DualPoint | None:
    """The cross-entropy branch of `dual_point`: `q` (softmax columns over `one`) put exactly on
    the simplex, shifted for a free bias, and `theta_c = w_c (t_c - q_c)` with the targets
    `t_c = tau_c / T` (`exact_targets`); every quantity an integer over `q_denom`, which `T`
    divides."""
    k, counts, n_total = problem.K, list(problem.counts), problem.N
    tau, t_denom = exact_targets(problem)
    for col in q:  # the rounding residual goes to the largest entry: each column sums to 1
        top = max(range(k), key=col.__getitem__)
        col[top] += one - sum(col)
        if min(col) < 0:
            return None
    q = [[v * t_denom for v in col] for col in q]
    q_denom, unit = one * t_denom, one  # unit = q_denom / T
    if problem.bias == "free":  # q_c + r, r = sum_c w_c (t_c - q_c), over N q_denom
        mix = [sum(counts[c] * q[c][j] for c in range(k)) for j in range(k)]
        aim = [sum(counts[c] * tau[c][j] for c in range(k)) * one for j in range(k)]
        q = [[n_total * q[c][j] + aim[j] - mix[j] for j in range(k)] for c in range(k)]
        q_denom, unit = n_total * q_denom, n_total * one
        if any(v < 0 for col in q for v in col):
            return None
    numer = [[counts[c] * (tau[c][j] * unit - q[c][j]) for j in range(k)] for c in range(k)]
    return _DualPoint(numer, n_total * q_denom, q, q_denom)


def _s_squared(problem: Problem) -> Fraction:
    return problem.lambda_w[0] * problem.lambda_h


def _verified_feasible(
    problem: Problem, theta: np.ndarray, t: float, q: np.ndarray | None, extended: bool = False
) -> bool:
    """Step 5 of §4: proves `||t Theta D^-1||_2 < s` from the correctly rounded `theta`."""
    sqrt_n = np.sqrt(np.asarray(problem.counts, dtype=np.float64))
    with np.errstate(all="ignore"):
        x = (theta * t) / sqrt_n[None, :]
        nonzero = np.abs(x[x != 0])
        if nonzero.size and (
            float(np.min(nonzero)) < 2.0**-1000
            or float(np.min(np.abs(theta[theta != 0]) * t)) < 2.0**-1000
        ):
            return False  # keep clear of underflow, where the relative error model fails
        if not np.all(np.isfinite(x)):
            return False
        frob = next_up(np.sqrt(sum_squares_up(x)))  # >= ||Xt||_F
    e = Fraction(float(next_up(5 * U * float(frob))))  # >= ||X - Xt||_F
    s2 = _s_squared(problem)
    s_hi = Fraction(float(np.sqrt(float(s2))))
    while s_hi * s_hi < s2:
        s_hi = Fraction(float(np.nextafter(float(s_hi), np.inf)))
    if not e * e < s2:  # e < s
        return False
    sigma = float_down(s2 - 2 * s_hi * e)
    return gram_gap_positive(sigma, x, q, extended=extended)


def _exact_feasible(problem: Problem, point: _DualPoint, t: Fraction) -> bool:
    """The exact oracle: `LDL^T` pivots of `s^2 I - t^2 Theta D^-2 Theta^T` (small `K` only)."""
    k = problem.K
    theta = [[Fraction(v, point.denom) for v in col] for col in point.numer]
    counts = problem.counts
    gram = [
        [sum(theta[c][i] * theta[c][j] / counts[c] for c in range(k)) for j in range(k)]
        for i in range(k)
    ]
    s2 = _s_squared(problem)
    return exact_positive_definite(
        [[(s2 if i == j else 0) - t * t * gram[i][j] for j in range(k)] for i in range(k)]
    )


def dual_bound(problem: Problem, logits: np.ndarray, check: str = "verified") -> DualBound | None:
    """The rigorous lower bound of §3-4 from class-mean logits `U` (`K x K`, bias included).

    Any logits give a valid bound (the construction makes the dual point feasible, and proves
    it); logits near the optimum give a tight one.  `check` is `"verified"` (verified floating
    point, the default) or `"exact"` (rational `LDL^T`, small `K` only).  Returns None when no
    feasible dual point could be built (non-finite logits, a negative probability after the
    free-bias correction, or no margin passing the feasibility proof): then there is no bound.
    """
    if check not in ("verified", "exact"):
        raise ValueError(f"unknown check {check!r}.")
    point = dual_point(problem, logits)
    if point is None or point.denom.bit_length() > 900:  # entries of Theta stay far from underflow
        return None
    theta_f = np.array(
        [[v / point.denom for v in col] for col in point.numer]
    ).T  # correctly rounded
    sqrt_n = np.sqrt(np.asarray(problem.counts, dtype=np.float64))
    scaled = theta_f / sqrt_n[None, :]
    if not np.all(np.isfinite(scaled)):
        return None
    with threadpool_limits(limits=1, user_api="blas"):
        left, sv, _ = np.linalg.svd(scaled)
    ratio = float(sv[0]) / _s(problem) if sv.size else 0.0

    def scale(margin: float) -> float:
        return min(1.0, (1.0 - margin) / ratio) if ratio > 0 else 1.0

    def feasible(margin: float, extended: bool = False) -> bool:
        if check == "exact":
            return _exact_feasible(problem, point, Fraction(scale(margin)))
        with threadpool_limits(limits=1, user_api="blas"):
            return _verified_feasible(problem, theta_f, scale(margin), left, extended)

    margin = next((m for m in MARGINS if feasible(m)), None)
    if margin is None:
        return None
    how = "verified-float" if check == "verified" else "exact"
    if check == "verified" and HAS_EXTENDED and margin > MARGINS[0]:
        # float64 rounding noise forced a larger margin: one try in extended precision (noise
        # about 2^11 times smaller) at a margin 2^8 times smaller, if the list has one
        smaller = [m for m in MARGINS if margin * 2.0**-8 <= m < margin]
        if smaller and feasible(smaller[0], extended=True):
            margin, how = smaller[0], "verified-extended"
    t = Fraction(scale(margin))
    value = _bound_value(problem, point, t)
    if value is None:
        return None
    return DualBound(
        value=value,
        numer=point.numer,
        denom=point.denom,
        scale=t,
        margin=margin,
        spectral_ratio=ratio,
        check=how,
    )


def _bound_value(problem: Problem, point: _DualPoint, t: Fraction) -> mpmath.mpf | None:
    """Step 6 of §4: the lower end of an enclosure of the dual objective at `t Theta`."""
    k = problem.K
    counts = problem.counts
    numer, denom = point.numer, point.denom
    exact_part = Fraction(0)
    if problem.bias != "none":
        row = [sum(numer[c][j] for c in range(k)) for j in range(k)]  # (Theta 1) * denom
        if problem.bias == "free" and any(row):
            return None
        if problem.bias == "regularised":
            exact_part -= (
                t * t * Fraction(sum(v * v for v in row), denom * denom) / (2 * problem.lambda_b)
            )
    if problem.loss == "mse":
        diag = sum(numer[c][c] for c in range(k))
        # sum_c ||theta_c||^2 / (2 w_c) = sum_c N ||numer_c||^2 / (2 n_c denom^2)
        squares = sum(
            Fraction(problem.N * sum(v * v for v in numer[c]), 2 * counts[c]) for c in range(k)
        )
        exact_part += t * Fraction(diag, denom) - t * t * squares / (denom * denom)
        with mpmath.workprec(INTERVAL_BITS), interval_precision(INTERVAL_BITS):
            return _lower(_iv_fraction(exact_part))
    # CE: p_c = (1 - t) t_c + t q_c = a_c / (2^e q_denom) with integers a_c >= 0 summing to it
    # (the targets t_c = tau_c / T: e_c, or smoothed)
    assert point.probs is not None
    t_num, t_den = t.numerator, t.denominator  # t_den a power of two
    whole = t_den * point.q_denom
    tau, t_denom = exact_targets(problem)
    gap = (t_den - t_num) * (point.q_denom // t_denom)
    with mpmath.workprec(INTERVAL_BITS), interval_precision(INTERVAL_BITS) as iv:
        weighted = iv.mpf(0)  # sum_c n_c sum_j a_cj log a_cj
        for c in range(k):
            col = point.probs[c]
            inner = iv.mpf(0)
            for j in range(k):
                a = t_num * col[j] + gap * tau[c][j]
                if a < 0:
                    return None
                if a > 0:
                    av = iv.mpf(a)
                    inner += av * iv.log(av)
            weighted += counts[c] * inner
        # sum_c w_c H(p_c) = log(whole) - weighted / (N whole), as sum_j a_cj = whole
        entropy = iv.log(iv.mpf(whole)) - weighted / (iv.mpf(problem.N) * iv.mpf(whole))
        return _lower(entropy + _iv_fraction(exact_part))


# ---- the certificate ----------------------------------------------------------------------------
def primal_point(problem: Problem, product: np.ndarray, bias: np.ndarray | None) -> Params:
    """Balanced layers of the original problem whose class-level product is `product`."""
    u, sv, vt = np.linalg.svd(product)
    top = float(sv[0]) if sv.size else 0.0
    r = int(np.sum(sv > 1e-13 * max(top, 1e-300))) if top > 0 else 0
    r = min(r, problem.bottleneck)
    return balanced_layers(problem, u[:, :r], sv[:r], vt[:r, :].T, bias)


def forced() -> bool:
    """Whether the size limits are lifted: `check --force` (`Settings.force`, through
    `ncverify.limits.forced`) or the environment variable `NCVERIFY_FORCE_CERTIFICATE`."""
    return _forced_by_settings() or os.environ.get(FORCE_ENV, "").strip() not in ("", "0")


def size_limit(problem: Problem, method: str = "auto") -> int | None:
    """The class limit that applies to `problem` (None for the cvxpy cross-check)."""
    if method == "cvxpy":
        return None
    closed = problem.loss == "mse" and problem.bias in ("none", "free")
    if method == "auto":
        method = "closed-form" if closed else "apg"
    return MAX_CLASSES_CLOSED_FORM if method == "closed-form" else MAX_CLASSES


def _check_size(problem: Problem, method: str, force: bool | None) -> None:
    limit = size_limit(problem, method)
    if limit is None or problem.K <= limit or (force if force is not None else forced()):
        return
    how = "closed form" if limit == MAX_CLASSES_CLOSED_FORM else "first-order method"
    raise StepSkipped(
        f"the convex-dual certificate is skipped: K = {problem.K} classes exceeds its limit of "
        f"{limit} for the {how}, whose every step costs O(K^3) operations; {HOW_TO_FORCE} "
        f"(or set {FORCE_ENV}=1)"
    )


def convex_dual(
    problem: Problem,
    reduction: str = "class-means",
    solver: str = "CLARABEL",
    method: str = "auto",
    check: str = "verified",
    force: bool | None = None,
) -> Certificate | None:
    """The `convex-dual` certificate of a depth-1 instance.

    Solves the convex program (§1-2, §4.1), builds a provably dual-feasible point and proves
    `F >= bound` for every point of the original problem (§3-4), and builds a feasible point of
    the original problem from the solution (§5).  `exact` is True when `d >= K` (the program is
    no relaxation, so `[bound, primal]` brackets the optimum).

    Args:
        problem: the instance.
        reduction, solver: as in `solve` (`reduction="samples"` implies cvxpy).
        method: as in `solve`: `"auto"` (default), `"closed-form"`, `"apg"` or `"cvxpy"`.
        check: the feasibility proof, `"verified"` (float, default) or `"exact"` (rational).
        force: lift the size limits (default: `forced()`, i.e. `check --force` or the
            `NCVERIFY_FORCE_CERTIFICATE` variable).

    Returns None where it does not apply or cannot prove anything: depth `M > 1`, no solution,
    or no provably feasible dual point (so the verifier tries the next certificate kind); every
    certificate it does return is rigorous.

    Raises:
        StepSkipped: `K` above the size limit of §6 (before any work).
    """

    if problem.depth != 1:
        return None
    if reduction == "samples":
        method = "cvxpy"
    _check_size(problem, method, force)
    with threadpool_limits(limits=1, user_api="blas"):  # small dense algebra: no contention
        return _convex_dual(problem, reduction, solver, method, check)


def _convex_dual(
    problem: Problem, reduction: str, solver: str, method: str, check: str
) -> Certificate | None:
    try:
        sol = solve(problem, reduction=reduction, solver=solver, method=method)
    except ConvexUnavailable:
        return None
    product, bias, logits, polish_note = _polished(problem, sol)
    bound = dual_bound(problem, logits, check=check)
    if bound is None:  # no provably feasible dual point: no rigorous bound to offer
        return None
    exact = problem.widths[0] >= problem.K
    notes: list[str] = []
    if not exact:
        notes.append(
            f"width d = {problem.widths[0]} < K = {problem.K}: the convex program drops the rank "
            "constraint, so its bound is a lower bound on the optimum that need not be attained"
        )
        product, bias = _within_the_bottleneck(problem, product, bias)
    point, primal, primal_error = _primal(problem, product, bias, notes)
    lower = bound.as_float
    detail = _detail(problem, sol, bound, polish_note)
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
        # MSE without a bias or with a regularised one: the program is strongly convex in
        # (A, b) (the logits determine A, and b is penalised), so A = W Hbar D is unique, and
        # balanced factors fix every layer's Gram matrices (lemma 2's equality case).  A free
        # bias can trade a rank-one direction of A for b: uniqueness is not claimed there.
        unique=exact and problem.loss == "mse" and problem.bias != "free",
        point=point,
        primal_error=primal_error,
        notes=notes,
    )


def _polished(problem: Problem, sol: ConvexSolution) -> tuple[Any, Any, Any, str]:
    """The solution's product, bias and logits, polished by Newton where a cvxpy solver gave it
    (kept only if the estimated duality gap shrinks), with what the polish did."""
    means = ClassMeans(problem)
    logits = means.logits(sol.product, means.beta_of(sol.bias))
    product, bias = sol.product, (sol.bias if problem.bias != "none" else None)
    if sol.solver not in ("CLARABEL", "SCS"):
        return product, bias, logits, ""
    full = Factorised(problem, problem.K)
    x0 = full.from_product(sol.product, sol.bias)
    x, note = polish(full, x0)
    if estimated_gap(problem, full.logits(x), full.value(x)) < estimated_gap(
        problem, logits, sol.value
    ):
        w, g, b = full.split(x)
        return w @ g, (b if problem.bias != "none" else None), full.logits(x), note
    return product, bias, logits, note + " (not kept: no better than the solver's point)"


def _within_the_bottleneck(problem: Problem, product: Any, bias: Any) -> tuple[Any, Any]:
    """With d < K, a product of rank above the bottleneck truncated and polished at rank R."""
    top = float(np.abs(product).max()) if product.size else 0.0
    if np.linalg.matrix_rank(product, tol=1e-13 * max(top, 1e-300)) <= problem.bottleneck:
        return product, bias
    narrow = Factorised(problem, problem.bottleneck)
    xn, _ = polish(narrow, narrow.from_product(product, bias))
    wn, gn, bn = narrow.split(xn)
    return wn @ gn, (bn if problem.bias != "none" else None)


def _primal(
    problem: Problem, product: Any, bias: Any, notes: list[str]
) -> tuple[Params | None, float, float]:
    """A feasible point of the original problem and its objective with its error bound; above
    `MAX_POINT_ENTRIES` no point, the same objective at class level."""
    entries = (problem.widths[0] + problem.K) * problem.N
    if entries <= MAX_POINT_ENTRIES:
        point = primal_point(problem, product, bias)
        objective = Objective(problem, xp_numpy)
        return point, objective.value(point), objective.error_bound(point)
    narrow = Factorised(problem, min(problem.bottleneck, problem.K))
    notes.append(
        f"no feasible point built ((d + K) N = {entries} entries > {MAX_POINT_ENTRIES}); "
        "primal evaluated at class level"
    )
    return None, narrow.value(narrow.from_product(product, bias)), 0.0


def _detail(problem: Problem, sol: ConvexSolution, bound: DualBound, polish_note: str) -> str:
    """What the certificate computed, in words."""
    columns = problem.K if sol.reduction == "class-means" else problem.N
    how = {
        "APG": "accelerated proximal gradient with singular-value thresholding (FISTA, "
        "backtracking, gradient restart) and a Newton-CG polish",
        "closed form (singular-value thresholding)": "closed form (singular-value thresholding "
        "of the " + ("centred " if problem.bias == "free" else "") + "targets)",
    }.get(sol.solver, f"cvxpy/{sol.solver}")
    feasibility = {
        "verified-float": "verified float64 arithmetic (Gershgorin enclosure of "
        "Q^T (s^2 I - X X^T) Q)",
        "verified-extended": "verified extended-precision arithmetic (Gershgorin enclosure of "
        "Q^T (s^2 I - X X^T) Q in long double)",
    }.get(bound.check, "exact rational arithmetic")
    return (
        f"{sol.reduction} program ({problem.K} x {columns}) solved by {how} (status "
        f"{sol.status}, objective {sol.value:.16g}"
        + (f"; {sol.log}" if sol.log else "")
        + (f"; polish: {polish_note}" if polish_note else "")
        + f"); dual point from the loss gradient, ||Theta D^-1|| / s = "
        f"{bound.spectral_ratio:.17g} before scaling, scaled by t = {float(bound.scale):.17g} "
        f"(margin {bound.margin:.1e}), feasibility proven in {feasibility}, bound "
        + (
            f"evaluated by {INTERVAL_BITS}-bit interval arithmetic"
            if _cross_entropy(problem)
            else "exact (rational)"
        )
    )
