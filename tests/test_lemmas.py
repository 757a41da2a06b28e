"""The three lemmas every MSE proof uses (docs/theory/lemmas.md), checked on random instances.

The claims' derivations cite these tests by name:
`test_lemma1_nc1`, `test_lemma2_factorisation_bound`, `test_lemma3_separation`.
Everything here is computed directly with numpy/scipy/mpmath; the engine is used only for the
object under test (`balanced_layers` in lemma 2, `minimise_mode` in lemma 3).
"""

from __future__ import annotations

import math
from fractions import Fraction

import mpmath
import numpy as np
import scipy.optimize
from hypothesis import given
from hypothesis import strategies as st

from ncverify.backend import Backend
from ncverify.model.factorisations import balanced_layers
from ncverify.model.objective import Objective, Params
from ncverify.model.problem import Problem
from ncverify.model.scalar import minimise_mode
from ncverify.testing import problems

seeds = st.integers(0, 2**32 - 1)


def random_layers(problem: Problem, rng: np.random.Generator, scale: float) -> list[np.ndarray]:
    return [
        scale * rng.standard_normal(shape) / math.sqrt(shape[1]) for shape in problem.layer_shapes
    ]


def product(ws: list[np.ndarray] | tuple[np.ndarray, ...]) -> np.ndarray:
    out = ws[0]
    for w in ws[1:]:
        out = w @ out
    return out


def one_hot(problem: Problem) -> np.ndarray:
    return np.eye(problem.K)[:, problem.labels()]


def within_class_spread(problem: Problem, h: np.ndarray) -> float:
    """Largest distance of a sample's feature from its class mean."""
    labels = np.asarray(problem.labels())
    spread = 0.0
    for k in range(problem.K):
        cols = h[:, labels == k]
        spread = max(spread, float(np.max(np.abs(cols - cols.mean(axis=1, keepdims=True)))))
    return spread


# ---- Lemma 1: NC1 at the H-optimum -------------------------------------------------------------
@given(
    problems(
        loss=None,
        bias=None,
        max_classes=4,
        max_depth=3,
        max_width=6,
        max_samples=5,
        allow_bottleneck=True,
        min_lambda="1e-3",
        max_lambda="1",
    ).filter(lambda p: p.loss != "focal"),  # lemma 1 needs a loss convex in the logits
    seeds,
)
def test_lemma1_nc1(problem: Problem, seed: int) -> None:
    """Given random weights (and bias), `F` is strictly convex in `H` and the targets of a class
    coincide, so the unique H-minimiser has identical columns within each class."""
    rng = np.random.default_rng(seed)
    ws = random_layers(problem, rng, 1.5)
    w = product(ws)  # K x d
    b = rng.standard_normal(problem.K) if problem.bias != "none" else np.zeros(problem.K)
    y = one_hot(problem)
    if problem.loss == "ls":  # cross-entropy against the smoothed labels
        alpha = float(problem.smoothing)
        y = (1 - alpha) * y + alpha / problem.K
    n, lam = problem.N, float(problem.lambda_h)
    d = problem.widths[0]
    if problem.loss == "mse":
        # normal equations of (1/2N)||W H + b 1^T - Y||^2 + (lam/2)||H||^2, one column at a time;
        # the matrix is positive definite (eigenvalues >= lam), hence the minimiser is unique
        gram = w.T @ w / n + lam * np.eye(d)
        assert np.linalg.eigvalsh(gram).min() >= lam * (1 - 1e-12)
        h = np.linalg.solve(gram, w.T @ (y - b[:, None]) / n)
        tol = 1e-12 * max(1.0, float(np.max(np.abs(h))))
    else:
        # cross-entropy: minimise numerically from a random start with spread-out columns
        def f_and_grad(x: np.ndarray) -> tuple[float, np.ndarray]:
            hh = x.reshape(d, n)
            z = w @ hh + b[:, None]
            zmax = z.max(axis=0, keepdims=True)
            e = np.exp(z - zmax)
            s = e.sum(axis=0, keepdims=True)
            value = float(np.sum(np.log(s) + zmax) - np.sum(z * y)) / n + lam / 2 * float(
                np.sum(hh * hh)
            )
            grad = w.T @ ((e / s - y) / n) + lam * hh
            return value, grad.ravel()

        start = rng.standard_normal(d * n)
        res = scipy.optimize.minimize(
            f_and_grad,
            start,
            jac=True,
            method="L-BFGS-B",
            options={"gtol": 1e-13, "ftol": 0, "maxiter": 10000},
        )
        h = res.x.reshape(d, n)
        # strong convexity with modulus lam: ||h - h*|| <= ||grad|| / lam
        tol = 2 * float(np.linalg.norm(f_and_grad(res.x)[1])) / lam + 1e-12
        assert (
            within_class_spread(problem, start.reshape(d, n)) > 100 * tol
            or problem.counts == (1,) * problem.K
        )
    assert within_class_spread(problem, h) <= tol
    # cross-check with the engine: dF/dH vanishes there for the full objective
    obj = Objective(problem, Backend.create().xp)
    point = Params(tuple(ws), h, None if problem.bias == "none" else b)
    grad_loss, grad_reg = obj.grad_parts(point)
    g_h = grad_loss.H + grad_reg.H
    assert (
        np.linalg.norm(g_h)
        <= 1e-6 * (np.linalg.norm(grad_loss.H) + np.linalg.norm(grad_reg.H)) + 1e-12
    )


# ---- Lemma 2: the factorisation bound ----------------------------------------------------------
def regulariser(
    problem: Problem, ws: list[np.ndarray] | tuple[np.ndarray, ...], g: np.ndarray
) -> float:
    total = float(problem.lambda_h) / 2 * float(np.sum(g * g))
    for lam, w in zip(problem.lambda_w, ws, strict=True):
        total += float(lam) / 2 * float(np.sum(w * w))
    return total


def schatten_bound(problem: Problem, a: np.ndarray) -> float:
    m = problem.depth
    # rank(A) <= R exactly; the computed singular values beyond R are rounding noise of size
    # eps ||A||, which sigma^q (q < 1) would inflate to eps^q: drop them
    sv = np.linalg.svd(a, compute_uv=False)[: problem.bottleneck]
    return (
        (m + 1)
        / 2
        * float(problem.lambda_product) ** (1 / (m + 1))
        * float(np.sum(sv ** (2 / (m + 1))))
    )


@given(
    problems(
        loss="mse",
        bias="none",
        max_classes=5,
        max_depth=4,
        max_width=7,
        allow_bottleneck=True,
        min_lambda="1e-3",
        max_lambda="1",
    ),
    seeds,
    st.floats(0.1, 3.0),
)
def test_lemma2_factorisation_bound(problem: Problem, seed: int, scale: float) -> None:
    """For any factorisation `A = W_M ... W_1 G`:
    `sum_m (lambda_m/2)||W_m||^2 + (lambda_H/2)||G||^2 >= ((M+1)/2) P^{1/(M+1)} sum_i sigma_i(A)^q`,
    and the balanced factorisation built by `balanced_layers` attains it."""
    rng = np.random.default_rng(seed)
    ws = random_layers(problem, rng, scale)
    g = scale * rng.standard_normal((problem.widths[0], problem.K))
    a = product([g, *ws])
    lhs, rhs = regulariser(problem, ws, g), schatten_bound(problem, a)
    assert lhs >= rhs * (1 - 1e-12)

    # the balanced factorisation of the same A (rank <= R = bottleneck) attains the bound
    u, s, vt = np.linalg.svd(a)
    r = problem.bottleneck
    point = balanced_layers(problem, u[:, :r], s[:r], vt[:r].T)
    counts = np.asarray(problem.counts, dtype=float)
    means = point.H @ one_hot(problem).T / counts[None, :]  # class means, d x K
    assert within_class_spread(problem, point.H) <= 1e-15 * (
        1 + float(np.max(np.abs(point.H)))
    )  # NC1
    g_bal = means * np.sqrt(counts)[None, :]  # G = Hbar D
    a_bal = product([g_bal, *point.Ws])
    np.testing.assert_allclose(a_bal, a, rtol=0, atol=1e-10 * max(1.0, float(np.max(np.abs(a)))))
    lhs_bal = regulariser(problem, point.Ws, g_bal)
    assert math.isclose(lhs_bal, rhs, rel_tol=1e-10, abs_tol=1e-300)
    # ... and ||G||^2 = ||H||^2 there, so the bound is the regulariser of the full point
    assert math.isclose(
        float(np.sum(g_bal * g_bal)), float(np.sum(point.H**2)), rel_tol=1e-12, abs_tol=1e-300
    )
    # the balance equations of the lemma's equality case
    lams = [float(x) for x in problem.lambda_w]
    for m in range(problem.depth - 1):
        w_next, w_m = point.Ws[m + 1], point.Ws[m]
        np.testing.assert_allclose(
            lams[m + 1] * w_next.T @ w_next, lams[m] * w_m @ w_m.T, atol=1e-10 * (1 + lhs_bal)
        )
    w1 = point.Ws[0]
    np.testing.assert_allclose(
        lams[0] * w1.T @ w1, float(problem.lambda_h) * g_bal @ g_bal.T, atol=1e-10 * (1 + lhs_bal)
    )


# ---- Lemma 3: separation ------------------------------------------------------------------------
def reduced_objective(problem: Problem, a: np.ndarray) -> float:
    """`||A - D||^2/(2N) + c sum_i sigma_i(A)^q`, `D = diag(sqrt(n_k))`, `c = ((M+1)/2) P^{1/(M+1)}`."""
    d = np.diag(np.sqrt(np.asarray(problem.counts, dtype=float)))
    return float(np.sum((a - d) ** 2)) / (2 * problem.N) + schatten_bound(problem, a)


def per_mode_sum(problem: Problem) -> tuple[mpmath.mpf, list[float]]:
    """`sum_k min_{s >= 0} (s - sqrt(n_k))^2/(2N) + c s^q` over the R largest classes, plus
    `n_k/(2N)` for the rest (a rank-R matrix has only R non-zero singular values).

    With `s = sqrt(n) gamma` each term is `(n/N) psi_rho(gamma)`, `rho = N^{M+1} P / n^M`, whose
    exact global minimum is `minimise_mode`.  Returns the sum and the optimal `s` per class."""
    m, n_total = problem.depth, problem.N
    order = sorted(range(problem.K), key=lambda k: -problem.counts[k])
    total, s = mpmath.mpf(0), [0.0] * problem.K
    with mpmath.workdps(40):
        for rank, k in enumerate(order):
            n = problem.counts[k]
            if rank < problem.bottleneck:
                rho = Fraction(n_total) ** (m + 1) * problem.lambda_product / Fraction(n) ** m
                mode = minimise_mode(m, rho)
                total += mpmath.mpf(n) / n_total * mode.value
                s[k] = math.sqrt(n) * mode.gamma_float
            else:
                total += mpmath.mpf(n) / (2 * n_total)
    return total, s


lemma3_problems = problems(
    loss="mse",
    bias="none",
    max_classes=4,
    max_depth=4,
    max_width=5,
    max_samples=8,
    allow_bottleneck=True,
    min_lambda="1e-2",
    max_lambda="1",
)


def reduced_objectives(problem: Problem, a: np.ndarray) -> np.ndarray:
    """`reduced_objective` of a stack of matrices `a` (B x K x K), rank <= R each."""
    m = problem.depth
    d = np.diag(np.sqrt(np.asarray(problem.counts, dtype=float)))
    sv = np.linalg.svd(a, compute_uv=False)[:, : problem.bottleneck]
    c = (m + 1) / 2 * float(problem.lambda_product) ** (1 / (m + 1))
    return np.sum((a - d) ** 2, axis=(1, 2)) / (2 * problem.N) + c * np.sum(
        sv ** (2 / (m + 1)), axis=1
    )


def random_orthogonal(rng: np.random.Generator, k: int, size: int) -> np.ndarray:
    q, r = np.linalg.qr(rng.standard_normal((size, k, k)))
    return q * np.sign(np.diagonal(r, axis1=1, axis2=2))[:, None, :]


@given(lemma3_problems, seeds)
def test_lemma3_separation(problem: Problem, seed: int) -> None:
    """The reduced problem `min_A ||A - D||^2/(2N) + c sum_i sigma_i(A)^q` (rank A <= R) separates
    into one scalar problem per singular value: the per-mode sum of exact minima is attained by
    the diagonal A built from them and is a lower bound for every other A tried — random A,
    A with the optimal singular values but misaligned singular vectors (von Neumann's part of the
    argument), aligned A with other singular values (the scalar part), and small perturbations."""
    bound, s = per_mode_sum(problem)
    bound_f = float(bound)
    a_star = np.diag(s)
    assert np.linalg.matrix_rank(a_star) <= problem.bottleneck
    assert math.isclose(reduced_objective(problem, a_star), bound_f, rel_tol=1e-12)

    rng = np.random.default_rng(seed)
    k, r, batch = problem.K, problem.bottleneck, 200
    sqrt_n = np.sqrt(np.asarray(problem.counts, dtype=float))

    def rank_r(a: np.ndarray) -> np.ndarray:
        u, sv, vt = np.linalg.svd(a)
        sv[:, r:] = 0.0
        return u @ (sv[:, :, None] * vt)

    s_star = np.sort(np.asarray(s))[::-1]
    u, v = random_orthogonal(rng, k, batch), random_orthogonal(rng, k, batch)
    s_rand = rng.uniform(0, 1.5, size=(batch, k)) * np.sort(sqrt_n)[::-1]
    s_rand[:, r:] = 0.0
    families = {
        "random": rank_r(
            rng.standard_normal((batch, k, k)) * rng.uniform(0.1, 3.0, size=(batch, 1, 1))
        ),
        "misaligned": u @ (s_star[None, :, None] * np.swapaxes(v, 1, 2)),
        "aligned, other singular values": np.stack([np.diag(x) for x in s_rand]),
        "near the optimum": rank_r(a_star[None] + 1e-3 * rng.standard_normal((batch, k, k))),
        "right singular values, wrong pairing": rank_r(
            np.stack([np.diag(sqrt_n)[:, rng.permutation(k)] for _ in range(batch)])
        ),
    }
    for name, stack in families.items():
        values = reduced_objectives(problem, stack)
        assert np.min(values) >= bound_f * (1 - 1e-12), name


@given(
    problems(
        loss="mse",
        bias="none",
        max_classes=4,
        max_depth=1,
        max_width=4,
        max_samples=8,
        min_lambda="1e-2",
        max_lambda="1",
    )
)
def test_lemma3_one_layer_direct_minimisation(problem: Problem) -> None:
    """For M = 1 the reduced problem is convex (q = 1: a nuclear norm), so a convex solver finds
    its minimum directly over all K x K matrices; it equals the per-mode sum."""
    import cvxpy as cp

    bound, _ = per_mode_sum(problem)
    k = problem.K
    a = cp.Variable((k, k))
    d = np.diag(np.sqrt(np.asarray(problem.counts, dtype=float)))
    c = float(problem.lambda_product) ** 0.5  # (M+1)/2 P^{1/(M+1)} with M = 1
    value = cp.Problem(
        cp.Minimize(cp.sum_squares(a - d) / (2 * problem.N) + c * cp.normNuc(a))
    ).solve(solver=cp.CLARABEL, tol_gap_abs=1e-10, tol_gap_rel=1e-10, tol_feas=1e-10)
    # the interior-point solver's value is accurate to its tolerances only; the exact value at
    # its point is a feasible value and may not go below the bound
    assert math.isclose(value, float(bound), rel_tol=1e-7, abs_tol=1e-12)
    assert reduced_objective(problem, a.value) >= float(bound) * (1 - 1e-12)


@given(lemma3_problems, seeds, st.floats(0.2, 2.0))
def test_lemma3_full_objective_never_below_per_mode_sum(
    problem: Problem, seed: int, scale: float
) -> None:
    """Lemmas 1-3 together: random points of the full problem (within-class spread, any
    factorisation) never go below the per-mode sum, and the balanced point built from the
    per-mode minimisers has exactly that value."""
    bound, s = per_mode_sum(problem)
    obj = Objective(problem, Backend.create().xp)
    rng = np.random.default_rng(seed)
    for _ in range(5):
        ws = tuple(random_layers(problem, rng, scale))
        h = scale * rng.standard_normal((problem.widths[0], problem.N))
        p = Params(ws, h)
        assert obj.value(p) >= float(bound) - obj.error_bound(p)
    alive = [k for k in range(problem.K) if s[k] > 0]
    e = np.eye(problem.K)[:, alive]
    point = balanced_layers(problem, e, np.asarray([s[k] for k in alive]), e)
    assert abs(obj.value(point) - float(bound)) <= obj.error_bound(point) + 1e-12 * float(bound)
