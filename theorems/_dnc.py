r"""Deep neural collapse in the ReLU deep unconstrained-feature model, and the triangular-graph
witnesses against it (docs/theory/dnc.md).

The model: free features $H_1$ ($d \times N$), $H_{l+1} = \mathrm{relu}(W_l H_l)$ for
$l < L$, logits $W_L H_L$, MSE against one-hot labels, weight decay on every factor.  *DNC* is
the configuration in which, at every layer, the features of a class collapse to their class mean
and the class means form an orthogonal frame.

**The DNC value.**  Over all DNC configurations the best value is that of the linear deep model
with $M = L$ layers at its orthogonal-frame optimum: a ReLU that clips negative pre-activations
leaves the next layer's features, and the minimal-norm linear map between two orthogonal frames
is never longer than a weight that reaches the clipped ones (docs/theory/dnc.md#the-dnc-value).
The value is therefore the scalar problem

$$\psi_C(\gamma) = \tfrac12 (\gamma - 1)^2 + \tfrac{L+1}{2} (n P C)^{1/(L+1)} \gamma^q,
\qquad C_{\mathrm{DNC}} = K^{L+1},$$

with $P$ the product of all $L + 1$ weight decays and $q = 2/(L+1)$.

**The witness.**  For $K = r(r-1)/2$ classes, identify the classes with the edges of the
complete graph on $r$ vertices and let $B$ be its $r \times K$ vertex-edge incidence matrix.
With $H_1 \propto B$, $W_1, \dots, W_{L-2} \propto I_r$, $W_{L-1} \propto B^T (I_r - J/4)$ and
$W_L \propto I_K$, the last pre-activation is $B^T (I_r - J/4) B = 2I + A - J$ ($A$ the
adjacency of the line graph): 1 on the diagonal, 0 for edges that share a vertex, $-1$ for edges
that do not; its ReLU is exactly $I_K$, while every earlier layer has rank $r$.  Balancing the
scales gives the same scalar problem with

$$C_w = \tfrac12 K^3 r^{L-1}, \qquad \frac{C_w}{C_{\mathrm{DNC}}} = \frac{2^{L-3} r}{(r-1)^{L-2}},$$

and $\psi_C$ grows with $C$ wherever its minimiser is positive, so the witness beats DNC at every
instance where DNC is not zero iff $C_w < C_{\mathrm{DNC}}$: iff $L \ge 4$ and $r \ge 4$
($K = 6, 10, 15, \dots$), never at $L \le 3$ and never for $K = 3$.

>>> triangular_r(6), triangular_r(7), triangular_r(10)
(4, None, 5)
>>> witness_wins(4, 4), witness_wins(4, 3), witness_wins(3, 8)
(True, False, False)
>>> comparison(4, 4)
'C_w = 6^3 * 4^3 / 2 = 6912 < 7776 = 6^5 = C_DNC'
"""

from __future__ import annotations

from dataclasses import replace
from fractions import Fraction

import mpmath
import numpy as np
import sympy as sp

from ncverify.backend import Backend
from ncverify.claim import Candidate, Claim, Prediction, SearchBudget, Step, to_backend
from ncverify.model.intervals import interval_precision
from ncverify.model.objective import Params
from ncverify.model.problem import Problem
from theorems import _balanced as bal
from theorems._hypotheses import model_hypotheses

#: The two papers the DNC claims come from.
SUKENIK_2023 = (
    'Súkeník, Mondelli, Lampert, "Deep Neural Collapse Is Provably Optimal for the Deep '
    'Unconstrained Features Model", NeurIPS 2023, arXiv 2305.13165'
)
SUKENIK_2024 = (
    'Súkeník, Lampert, Mondelli, "Neural Collapse versus Low-rank Bias: Is Deep Neural Collapse '
    'Really Optimal?", NeurIPS 2024, arXiv 2405.14468'
)

#: The half-width of the bracket around the gain in which the enclosure of the DNC value is
#: evaluated: far above the 2^-160 bracket of `_balanced.alive_root` and its 50 printed digits.
GAIN_RADIUS = mpmath.mpf("1e-40")


# ---- the triangular graph -------------------------------------------------------------------------
def triangular_r(k: int) -> int | None:
    """`r` with `K = r(r-1)/2` and `r >= 3`, or None when `K` is not such a number."""
    r = 3
    while r * (r - 1) // 2 < k:
        r += 1
    return r if r * (r - 1) // 2 == k else None


def incidence(r: int) -> np.ndarray:
    """The `r x K` vertex-edge incidence matrix of the complete graph on `r` vertices (integers;
    edges in lexicographic order)."""
    edges = [(i, j) for i in range(r) for j in range(i + 1, r)]
    b = np.zeros((r, len(edges)), dtype=np.int64)
    for e, (i, j) in enumerate(edges):
        b[i, e] = b[j, e] = 1
    return b


def last_preactivation(r: int) -> np.ndarray:
    """`B^T (I_r - J/4) B` in integers (`= 2I + A - J`); its ReLU is `I_K`."""
    b = incidence(r)
    return (4 * b.T @ b - (b.T @ np.ones((r, r), dtype=np.int64) @ b)) // 4


# ---- the constants of the scalar problem ----------------------------------------------------------
def c_dnc(k: int, depth: int) -> Fraction:
    """`C_DNC = K^{L+1}`."""
    return Fraction(k) ** (depth + 1)


def c_witness(r: int, depth: int) -> Fraction:
    """`C_w = K^3 r^{L-1} / 2` with `K = r(r-1)/2`."""
    k = r * (r - 1) // 2
    return Fraction(k**3 * r ** (depth - 1), 2)


def witness_wins(r: int, depth: int) -> bool:
    """`C_w < C_DNC`: the witness beats DNC wherever DNC is not zero (exact comparison)."""
    return depth >= 2 and c_witness(r, depth) < c_dnc(r * (r - 1) // 2, depth)


def comparison(r: int, depth: int) -> str:
    """The integer comparison of `witness_wins`, written out."""
    k, cw, cd = r * (r - 1) // 2, c_witness(r, depth), c_dnc(r * (r - 1) // 2, depth)
    sign = "<" if cw < cd else ">=" if cw > cd else "="
    return f"C_w = {k}^3 * {r}^{depth - 1} / 2 = {cw} {sign} {cd} = {k}^{depth + 1} = C_DNC"


# ---- values ---------------------------------------------------------------------------------------
def rho(problem: Problem, c: Fraction) -> Fraction:
    """`rho = n P C`: the scalar problem `psi_C` has its alive root where
    `gamma^{L-1} (1 - gamma)^{L+1} = rho` (the threshold rule of the linear model)."""
    return Fraction(problem.counts[0]) * problem.lambda_product * c


def gain(problem: Problem, c: Fraction) -> sp.Expr:
    """The minimiser of `psi_C` (0 where the zero solution wins, or ties)."""
    return bal.threshold_gain(problem.depth, rho(problem, c))[0]


def psi_enclosure(problem: Problem, c: Fraction, g: sp.Expr) -> tuple[mpmath.mpf, mpmath.mpf]:
    """A rigorous enclosure of `min psi_C` in interval arithmetic: `psi_C` over a bracket of
    radius `GAIN_RADIUS` around the gain `g` (which contains the exact minimiser), or exactly
    `1/2` when the minimiser is zero."""
    if g == 0:
        return mpmath.mpf(1) / 2, mpmath.mpf(1) / 2
    m1 = problem.depth + 1
    npc = Fraction(problem.counts[0]) * problem.lambda_product * c
    with interval_precision(200) as iv, mpmath.workdps(60):
        mid = mpmath.mpf(sp.N(g, 55))
        gv = iv.mpf([mid - GAIN_RADIUS, mid + GAIN_RADIUS])
        root = iv.exp(iv.log(iv.mpf(npc.numerator) / iv.mpf(npc.denominator)) / m1)
        value = (gv - 1) ** 2 / 2 + iv.mpf(m1) / 2 * root * iv.exp(iv.log(gv) * 2 / m1)
        return mpmath.mpf(value.a), mpmath.mpf(value.b)


# ---- the witness point ----------------------------------------------------------------------------
def witness_fits(problem: Problem, r: int) -> str | None:
    """Why the witness does not fit the widths of `problem` (None when it does): `H_1` and the
    first `L - 2` hidden layers need `r` coordinates, the last hidden layer `K`."""
    widths = problem.widths
    if problem.depth < 2:
        return "the witness needs at least two layers"
    if min(widths[: problem.depth - 1]) < r:
        return f"the witness needs r = {r} coordinates in d, d_1, ..., d_(L-2)"
    if widths[-1] < problem.K:
        return f"the witness needs K = {problem.K} coordinates in d_(L-1)"
    return None


def witness_point(problem: Problem, r: int) -> Params:
    """The triangular-graph witness at the balanced scales of its minimiser `gamma_w` (host
    float64 arrays; every sample of a class has its class's column)."""
    m, k = problem.depth, problem.K
    g = float(sp.N(gain(problem, c_witness(r, m)), 30))
    b = incidence(r).astype(np.float64)
    shapes = [b * 1.0]  # the unit shapes of H_1-bar, W_1, ..., W_L
    shapes += [np.eye(r)] * (m - 2)
    shapes.append(b.T @ (np.eye(r) - np.ones((r, r)) / 4))
    shapes.append(np.eye(k))
    lambdas = [problem.lambda_h, *problem.lambda_w]
    norms = [float(problem.counts[0]) * float(np.sum(shapes[0] ** 2))]
    norms += [float(np.sum(s**2)) for s in shapes[1:]]
    # each factor carries lambda_l s_l alpha_l^2 = t, the product of the alphas is gamma
    t = float(np.prod([float(lam) * s for lam, s in zip(lambdas, norms, strict=True)])) ** (
        1 / (m + 1)
    ) * g ** (2 / (m + 1))
    alphas = [
        (t / (float(lam) * s)) ** 0.5 if g > 0 else 0.0
        for lam, s in zip(lambdas, norms, strict=True)
    ]
    widths = (*problem.widths, k)
    hbar = np.zeros((widths[0], k))
    hbar[:r, :] = alphas[0] * shapes[0]
    ws = []
    for layer in range(m):
        w = np.zeros((widths[layer + 1], widths[layer]))
        block = alphas[layer + 1] * shapes[layer + 1]
        w[: block.shape[0], : block.shape[1]] = block
        ws.append(w)
    return Params(tuple(ws), hbar[:, problem.labels()], None)


# ---- the claims -----------------------------------------------------------------------------------
DEPTH = "the head must have at least two layers (a ReLU between them)"


def widths_hypothesis(problem: Problem) -> list[str]:
    """DNC needs `K` orthogonal class means at every layer: every width at least `K`."""
    if problem.bottleneck < problem.K:
        return ["every width must be at least K (DNC has K orthogonal class means at every layer)"]
    return []


class DeepNeuralCollapse(Claim):
    """What the two DNC claims share: the DNC value, its enclosure, the DNC point, the steps."""

    loss = "mse"
    bias = "none"
    certificates: tuple[str, ...] = ()
    geometry_name = "deep neural collapse (an orthogonal frame at every layer)"

    #: the numbers of classes the claim is about, `(least, most)` (`most` None: no bound)
    classes: tuple[int, int | None] = (2, None)
    classes_rule = ""  # the hypothesis on K in words

    def hypotheses(self, problem: Problem) -> list[str]:
        unmet = model_hypotheses(problem, loss="mse", bias="none", balanced=True, activation="relu")
        least, most = self.classes
        if problem.K < least or (most is not None and problem.K > most):
            unmet.append(self.classes_rule)
        if problem.depth < 2:
            unmet.append(DEPTH)
        return unmet + widths_hypothesis(problem)

    def closed_form(self, problem: Problem) -> Prediction:
        c = c_dnc(problem.K, problem.depth)
        g = gain(problem, c)
        pred = bal.frame_prediction(
            problem,
            gain=bal.threshold_gain(problem.depth, rho(problem, c)),
            modes=problem.K,
            share=sp.Integer(1),
            bias=None,
            geometry=self.geometry_name,
        )
        notes = list(pred.notes)
        if g != 0:
            notes.append(
                "not unique at layer 1: the features H_1 are free, and any positive semidefinite "
                "pre-activation W_1 Hbar_1 with the DNC diagonal and non-positive off-diagonal "
                "(e.g. a simplex ETF of H_1) has the same ReLU and costs the same "
                "(docs/theory/dnc.md#the-dnc-value)"
            )
        notes += self.witness_notes(problem)
        return replace(
            pred,
            unique=False if g != 0 else pred.unique,
            notes=tuple(notes),
            objective_enclosure=psi_enclosure(problem, c, g),
            objective_form=f"psi_C(gamma), C = K^(L+1) = {c}, gamma = {sp.N(g, 20)}",
        )

    def witness_notes(self, problem: Problem) -> list[str]:
        """What the triangular-graph family says about this instance, in words."""
        r = triangular_r(problem.K)
        if r is None:
            return [
                f"no triangular-graph witness: K = {problem.K} is not r(r-1)/2 "
                "(only the random-start runs can refute DNC here)"
            ]
        verdict = "beats" if witness_wins(r, problem.depth) else "does not beat"
        return [
            f"triangular-graph witness (r = {r}): {comparison(r, problem.depth)}, so it {verdict} "
            "DNC wherever DNC is not zero"
        ]

    def minimiser(self, problem: Problem, backend: Backend) -> Params:
        c = c_dnc(problem.K, problem.depth)
        return bal.frame_minimiser(
            problem,
            backend,
            gain=bal.threshold_gain(problem.depth, rho(problem, c)),
            modes=problem.K,
            frame=lambda p, r: (np.eye(p.K)[:, :r], np.eye(p.K)[:, :r]),
            bias=None,
        )

    def search(self, problem: Problem, backend: Backend, budget: SearchBudget) -> list[Candidate]:
        """The triangular-graph witness, where `K = r(r-1)/2`, it fits and it beats DNC."""
        r = triangular_r(problem.K)
        if r is None or witness_fits(problem, r) is not None:
            return []
        if (
            not witness_wins(r, problem.depth)
            or gain(problem, c_dnc(problem.K, problem.depth)) == 0
        ):
            return []
        info = {
            "summary": f"triangular-graph witness (r = {r}): {comparison(r, problem.depth)}",
            "r": r,
            "c_witness": str(c_witness(r, problem.depth)),
            "c_dnc": str(c_dnc(problem.K, problem.depth)),
        }
        point = to_backend(witness_point(problem, r), backend)
        return [Candidate(point, f"triangular-graph witness (r = {r})", info)]

    def default_problem(self) -> Problem:
        """`K` classes of `n = 2` samples, `L = 4`, width `max(4, K)`, every lambda `4e-3` (the
        weight decay of the 2024 paper's synthetic experiments)."""
        return Problem.build(
            classes=self.default_classes,
            samples=2,
            depth=4,
            width=max(4, self.default_classes),
            lambda_w="4e-3",
            lambda_h="4e-3",
            loss="mse",
            bias="none",
            activation="relu",
        )

    default_classes = 2

    def derivation(self) -> list[Step]:
        return [
            *bal.scalar_steps("K modes, each with target sqrt(n), L + 1 factors"),
            Step(
                "No DNC configuration beats the nonnegative orthogonal frame: where the features "
                "of a layer are an orthogonal frame, the minimal-norm linear map to the next "
                "layer's (clipped) features is no longer than a weight that reaches them, and the "
                "first layer costs at least the trace of its pre-activation.",
                r"\lVert W_l\rVert_F \ge \lVert H_{l+1} \bar H_l^{+}\rVert_F,\quad "
                r"\lVert W_1\rVert_F^2 + \lVert \bar H_1\rVert_F^2 \ge 2 \lVert W_1 \bar H_1\rVert_* \ge 2 \operatorname{tr}(W_1 \bar H_1)",
                "test",
                "tests/test_dnc.py::test_clipped_pre_activations_never_beat_the_dnc_value",
            ),
            Step(
                "The triangular-graph witness reaches the scalar problem with C_w = K^3 r^(L-1)/2, "
                "and psi_C grows with C: it beats DNC iff C_w < C_DNC.",
                r"\frac{C_w}{C_{\mathrm{DNC}}} = \frac{2^{L-3} r}{(r-1)^{L-2}}",
                "test",
                "tests/test_dnc.py::test_the_witness_reaches_its_scalar_problem",
            ),
        ]
