r"""Deep neural collapse in the ReLU deep unconstrained-feature model, and the k-subset
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

**The k-subset witnesses.**  Identify the $K = \binom{r}{k}$ classes with the $k$-subsets of
$[r]$ ($2 \le k \le r - 1$; $k = 2$ is the triangular graph, the line graph of the complete graph)
and let $B$ be the $r \times K$ incidence matrix.  With $\alpha = (k-1)/k^2$ the last
pre-activation $B^T (I_r - \alpha J) B = B^T B - (k-1) J$ has entries $|S \cap T| - (k-1)$: 1 on
the diagonal and at most 0 off it, so its ReLU is exactly $I_K$, while every earlier layer has
rank $r$.  The factors: $W_1 \bar H_1 = B$ in balanced factors (for $L \ge 3$; $\bar H_1 = B$,
$W_1 = B^T(I - \alpha J)$ at $L = 2$), $W_2, \dots, W_{L-2} = I_r$, $W_{L-1} = B^T(I - \alpha J)$,
$W_L = I_K$.  Balancing the scales gives the scalar problem $\psi_C$ with

$$C_w = \lVert B\rVert_*^2\, r^{L-3} K^2 s \;(L \ge 3), \qquad C_w = k K^3 s \;(L = 2),
\qquad s = \tfrac1k + \tfrac{(r-k)(k-1)^2}{k^2},$$

$\lVert B\rVert_*^2 = \tfrac{K}{r}\big(k + \sqrt{k(r-k)(r-1)}\big)^2$, a number $a + b\sqrt m$
that is compared with $C_{\mathrm{DNC}}$ exactly.  $\psi_C$ grows with $C$ wherever its
minimiser is positive, so a witness beats DNC at every instance where DNC is not zero iff
$C_w < C_{\mathrm{DNC}}$: never at $L = 2$ ($C_w / C_{\mathrm{DNC}} = k s \ge 1$), at $L = 3$ first
for $K = 70$ ($k = 4$, $r = 8$), at $L \ge 4$ already for $K = 6$.

>>> subset_codes(6), subset_codes(7)
([SubsetCode(r=4, k=2), SubsetCode(r=6, k=5)], [SubsetCode(r=7, k=6)])
>>> witness_wins(SubsetCode(4, 2), 4), witness_wins(SubsetCode(4, 2), 3)
(True, False)
>>> comparison(SubsetCode(8, 4), 3)
'C_w = 3430000*sqrt(7) + 13720000 = 22794927.0 < 24010000 = 70^4 = C_DNC'
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from fractions import Fraction
from itertools import combinations
from math import comb, isqrt

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


# ---- the k-subset family -------------------------------------------------------------------------
@dataclass(frozen=True)
class SubsetCode:
    """The classes as the `k`-subsets of `[r]` (`K = C(r, k)`, `2 <= k <= r - 1`); `k = 2` is the
    triangular graph.  `B` is the `r x K` element-subset incidence matrix."""

    r: int
    k: int

    @property
    def classes(self) -> int:
        return comb(self.r, self.k)

    def __str__(self) -> str:
        return f"{self.k}-subsets of [{self.r}]"


def subset_codes(k: int) -> list[SubsetCode]:
    """Every `(r, j)` with `C(r, j) = K` and `2 <= j <= r - 1` (`r <= K`, as `C(r, j) >= r`)."""
    codes = []
    for r in range(4, k + 1):
        if comb(r, 2) > k:  # every C(r, j) with 2 <= j <= r - 2 is larger still
            break
        j = 2
        while 2 * j <= r and comb(r, j) <= k:
            if comb(r, j) == k:
                codes += [SubsetCode(r, j)] + ([SubsetCode(r, r - j)] if 2 * j < r else [])
            j += 1
    return sorted(codes + ([SubsetCode(k, k - 1)] if k >= 3 else []), key=lambda c: (c.r, c.k))


def incidence(code: SubsetCode) -> np.ndarray:
    """`B`: the `r x K` incidence matrix of `[r]` against its `k`-subsets (lexicographic), in
    integers."""
    subsets = list(combinations(range(code.r), code.k))
    b = np.zeros((code.r, len(subsets)), dtype=np.int64)
    for s, members in enumerate(subsets):
        b[list(members), s] = 1
    return b


def last_preactivation(code: SubsetCode) -> np.ndarray:
    """`B^T (I - alpha J) B = B^T B - (k-1) J` at `alpha = (k-1)/k^2`, in integers: entry `(S, T)`
    is `|S cap T| - (k - 1)`, 1 on the diagonal and at most 0 off it, so its ReLU is `I_K`."""
    b = incidence(code)
    return b.T @ b - (code.k - 1)


def spread(code: SubsetCode) -> Fraction:
    """`||B^T (I - alpha J)||_F^2 / K = 1/k + (r - k)(k - 1)^2 / k^2` at `alpha = (k-1)/k^2`, the
    least `alpha` whose last ReLU is `I_K` (a row has `k` entries `1 - alpha k = 1/k` and `r - k`
    entries `-alpha k`; the norm grows with `alpha` on `[(k-1)/k^2, 1/k)`)."""
    r, k = code.r, code.k
    return Fraction(1, k) + Fraction((r - k) * (k - 1) ** 2, k * k)


@dataclass(frozen=True)
class Surd:
    """The real number `a + b sqrt(m)` (`a`, `b` rational, `b >= 0`, `m` a non-negative
    integer), compared with rationals exactly."""

    a: Fraction
    b: Fraction
    m: int

    def __lt__(self, other: Fraction) -> bool:
        gap = other - self.a  # a + b sqrt(m) < other  iff  b sqrt(m) < gap
        return gap > 0 and self.b * self.b * self.m < gap * gap

    def __gt__(self, other: Fraction) -> bool:
        gap = other - self.a  # a + b sqrt(m) > other  iff  b sqrt(m) > gap
        return gap < 0 or self.b * self.b * self.m > gap * gap

    def sympy(self) -> sp.Expr:
        return sp.Rational(self.a.numerator, self.a.denominator) + sp.Rational(
            self.b.numerator, self.b.denominator
        ) * sp.sqrt(self.m)

    def fraction(self, digits: int = 60) -> Fraction:
        """The value where it is rational, else a rational within `10^-digits` relative of it
        (for building points and ordering)."""
        root = isqrt(self.m)
        if self.b == 0 or root * root == self.m:
            return self.a + self.b * root
        return Fraction(str(sp.N(self.sympy(), digits)))

    def __str__(self) -> str:
        return str(self.sympy())


def nuclear_squared(code: SubsetCode) -> Surd:
    """`||B||_*^2 = (K/r) (k + sqrt(k (r-k) (r-1)))^2`: `B B^T = C(r-2, k-1) I + C(r-2, k-2) J`
    has the eigenvalue `k^2 K / r` on the ones vector and `k (r-k) K / (r (r-1))` on its
    complement (`r - 1` times), and the singular values of `B` are their square roots."""
    r, k, big_k = code.r, code.k, code.classes
    m = k * (r - k) * (r - 1)
    scale = Fraction(big_k, r)
    return Surd(scale * (k * k + m), scale * 2 * k, m)


# ---- the constants of the scalar problem ----------------------------------------------------------
def c_dnc(k: int, depth: int) -> Fraction:
    """`C_DNC = K^{L+1}`."""
    return Fraction(k) ** (depth + 1)


def c_witness(code: SubsetCode, depth: int, *, nonnegative: bool = False) -> Surd:
    """The witness's constant, the product of the squared norms of its unit factors (per sample
    for `H_1`) over the square of its last ReLU's output scale (1):

    - `L = 2`: `H_1 = B`, `W_1 = B^T (I - alpha J)`, `W_2 = I_K`:
      `C_w = k K * K spread * K`;
    - `L >= 3`: `W_1 H_1 = B` in balanced factors (`||H_1||^2 = ||W_1||^2 = ||B||_*`),
      `W_2, ..., W_{L-2} = I_r`, `W_{L-1} = B^T (I - alpha J)`, `W_L = I_K`:
      `C_w = ||B||_*^2 r^{L-3} * K spread * K`.  Balanced factors of `B` have entries of both
      signs; with `nonnegative` the first layer is `H_1 = B`, `W_1 = I_r` instead (the reading
      in which the features are a backbone's ReLU output): `C_w = k K r^{L-2} * K spread * K`,
      for `k = 2` the triangular graph's `K^3 r^{L-1} / 2`."""
    big_k, tail = code.classes, Fraction(code.classes) ** 2 * spread(code)
    if depth == 2 or nonnegative:
        return Surd(code.k * big_k * Fraction(code.r) ** (depth - 2) * tail, Fraction(0), 0)
    nuc = nuclear_squared(code)
    scale = Fraction(code.r) ** (depth - 3) * tail
    return Surd(nuc.a * scale, nuc.b * scale, nuc.m)


def witness_wins(code: SubsetCode, depth: int, *, nonnegative: bool = False) -> bool:
    """`C_w < C_DNC`: the witness beats DNC wherever DNC is not zero (exact comparison)."""
    c_w = c_witness(code, depth, nonnegative=nonnegative)
    return depth >= 2 and c_w < c_dnc(code.classes, depth)


def comparison(code: SubsetCode, depth: int) -> str:
    """The exact comparison of `witness_wins`, written out."""
    cw, cd = c_witness(code, depth), c_dnc(code.classes, depth)
    sign = "<" if cw < cd else ">" if cw > cd else "="
    approx = mpmath.nstr(mpmath.mpf(sp.N(cw.sympy(), 30)), 8)
    return f"C_w = {cw} = {approx} {sign} {cd} = {code.classes}^{depth + 1} = C_DNC"


def best_code(problem: Problem) -> SubsetCode | None:
    """The member of the family with the least constant that fits the widths, or None."""
    codes = [c for c in subset_codes(problem.K) if witness_fits(problem, c) is None]
    return min(codes, key=lambda c: c_witness(c, problem.depth).fraction(30), default=None)


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
def witness_fits(problem: Problem, code: SubsetCode) -> str | None:
    """Why the witness does not fit the widths of `problem` (None when it does): `H_1` and the
    first `L - 2` hidden layers need `r` coordinates, the last hidden layer `K`."""
    widths = problem.widths
    if problem.depth < 2:
        return "the witness needs at least two layers"
    if min(widths[: problem.depth - 1]) < code.r:
        return f"the witness needs r = {code.r} coordinates in d, d_1, ..., d_(L-2)"
    if widths[-1] < problem.K:
        return f"the witness needs K = {problem.K} coordinates in d_(L-1)"
    return None


def unit_shapes(code: SubsetCode, depth: int) -> list[np.ndarray]:
    """The unit factors `H_1-bar, W_1, ..., W_L` of the witness (float64), whose product through
    the ReLUs is `I_K` (see `c_witness`)."""
    b = incidence(code).astype(np.float64)
    alpha = (code.k - 1) / code.k**2
    last = b.T @ (np.eye(code.r) - alpha * np.ones((code.r, code.r)))
    if depth == 2:
        return [b, last, np.eye(code.classes)]
    u, sigma, vt = np.linalg.svd(b, full_matrices=False)  # W_1 H_1 = B, balanced
    root = np.sqrt(sigma)
    first = [root[:, None] * vt, u * root[None, :]]
    return [*first, *[np.eye(code.r)] * (depth - 3), last, np.eye(code.classes)]


def witness_point(problem: Problem, code: SubsetCode) -> Params:
    """The k-subset witness at the balanced scales of its minimiser `gamma_w` (host float64
    arrays; every sample of a class has its class's column)."""
    m, k = problem.depth, problem.K
    g = float(sp.N(gain(problem, c_witness(code, m).fraction()), 30))
    shapes = unit_shapes(code, m)
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
    hbar[: shapes[0].shape[0], :] = alphas[0] * shapes[0]
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
        """What the k-subset family says about this instance, in words."""
        codes = subset_codes(problem.K)
        if not codes:
            return [f"no k-subset witness: K = {problem.K} is not C(r, k) with 2 <= k <= r - 1"]
        best = min(codes, key=lambda c: c_witness(c, problem.depth).fraction(30))
        verdict = "beats" if witness_wins(best, problem.depth) else "does not beat"
        others = f" (the best of {len(codes)} members)" if len(codes) > 1 else ""
        return [
            f"k-subset witness, {best}{others}: {comparison(best, problem.depth)}, so it "
            f"{verdict} DNC wherever DNC is not zero"
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
        """The k-subset witness of least constant that fits, where it beats DNC."""
        code = best_code(problem)
        if code is None or not witness_wins(code, problem.depth):
            return []
        if gain(problem, c_dnc(problem.K, problem.depth)) == 0:
            return []
        info = {
            "summary": f"k-subset witness ({code}): {comparison(code, problem.depth)}",
            "r": code.r,
            "k": code.k,
            "c_witness": str(c_witness(code, problem.depth)),
            "c_dnc": str(c_dnc(problem.K, problem.depth)),
        }
        point = to_backend(witness_point(problem, code), backend)
        return [Candidate(point, f"k-subset witness ({code})", info)]

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
                "The k-subset witness (K = C(r, k)) reaches the scalar problem with C_w = "
                "||B||_*^2 r^(L-3) K^2 s (L >= 3), and psi_C grows with C: it beats DNC iff "
                "C_w < C_DNC.",
                r"C_w = \tfrac{K}{r}\big(k + \sqrt{k(r-k)(r-1)}\big)^2 r^{L-3} K^2 "
                r"\big(\tfrac1k + \tfrac{(r-k)(k-1)^2}{k^2}\big)",
                "test",
                "tests/test_dnc.py::test_the_witness_reaches_its_scalar_problem",
            ),
        ]
