r"""Two classes at any depth: the optimum of the balanced cross-entropy problem and of the
max-margin problem, proven by a chain of inequalities that ends in a scalar problem
(docs/theory/depth-certificates.md).

With $K = 2$, class-mean logits $Z$ (column $k$: the logits of class $k$), margins
$a = z_{00} - z_{10}$ and $b = z_{11} - z_{01}$, $q = 2/(M+1)$ and $c = (nP)^{1/(M+1)}$, every
point of the deep linear problem with cross-entropy has

$$F \;\ge\; \tfrac12\big(f(a) + f(b)\big) + \tfrac{M+1}{2}\, c\, S_q(Z)
\;\ge\; \tfrac12\big(f(a) + f(b)\big) + \kappa\, s^q \;\ge\; f(s) + \kappa\, s^q = \varphi(s),$$

with $f(t) = \log(1 + e^{-t})$, $\kappa = \tfrac{M+1}{2} c$ and
$s = \sqrt{(a^2 + b^2)/2}$:

1. cross-entropy is convex in the logits and $\lVert H\rVert_F^2 \ge n \lVert \bar H\rVert_F^2$,
   so the class means do no worse than the samples (lemma 1, docs/theory/lemmas.md);
2. the factorisation lemma: the least regulariser of $M + 1$ factors with product $Z$ is
   $\tfrac{M+1}{2} c\, S_q(Z)$ (lemma 2);
3. $S_q(Z) = \sum_i \sigma_i^q \ge (\sum_i \sigma_i^2)^{q/2} = \lVert Z\rVert_F^q$ for $q \le 2$,
   and $\lVert Z\rVert_F \ge \lVert CZ\rVert_F$ ($C = I - J/2$ centres each column), with
   $\lVert CZ\rVert_F^2 = (a^2 + b^2)/2 = s^2$;
4. $f$ is convex and decreasing, and $(a + b)/2 \le s$: $\tfrac12(f(a) + f(b)) \ge
   f(\tfrac{a+b}2) \ge f(s)$.  A bias adds $\beta$ to one margin and $-\beta$ to the other,
   which leaves their mean alone, and its penalty is not negative.

So $\min_{s \ge 0} \varphi(s)$ is a lower bound, and the simplex ETF scaled to the minimiser
attains it: the bound is the optimum.  Label smoothing's loss of a margin is
$f_\alpha(t) = f(t) + \alpha t/2$, convex but not decreasing, so step 4 goes instead through the
mean margin $\bar m = (a + b)/2$, with $|\bar m| \le s$: $F \ge f_\alpha(\bar m) + \kappa s^q
\ge f_\alpha(\bar m) + \kappa |\bar m|^q$, which is $\varphi_\alpha(\bar m)$ for $\bar m \ge 0$
and at least $f_\alpha(0) = \varphi_\alpha(0)$ for $\bar m < 0$ ($f_\alpha$ decreases on
$t \le 0$, as $f' \le -1/2$ there and $\alpha < 1$).  It is enclosed by branch and bound on $s$ in interval
arithmetic (`scalar_minimum`).  For the max-margin problem (no bias, counts $n_0, n_1$), the
margins are at least 1, so $S_q(ZD) \ge \lVert CZD\rVert_F^q = ((n_0 a^2 + n_1 b^2)/2)^{q/2}
\ge ((n_0 + n_1)/2)^{q/2}$, which the simplex-encoded labels attain.

>>> from ncverify.model.problem import Problem
>>> cert = two_class_scalar(Problem.build(classes=2, samples=1, depth=2, width=2,
...     lambda_w="1e-3", lambda_h="1e-3", loss="ce"))
>>> cert.kind, cert.exact, cert.gap < 1e-15
('two-class-scalar', True, True)
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import mpmath

from ncverify.evidence.certificates.certificate import Certificate
from ncverify.model.intervals import ends, interval_precision, round_down
from ncverify.model.problem import Loss, Problem

#: Bits of the interval arithmetic.
BITS = 160
#: The branch and bound stops refining a box once its lower bound is this close (relative) to
#: the best value found.
TARGET_GAP = mpmath.mpf("1e-25")
#: Boxes examined at most: the bound stays rigorous when it stops early, only looser.
MAX_BOXES = 20_000


@dataclass(frozen=True)
class ScalarMinimum:
    """A rigorous enclosure `[lower, upper]` of `min_{s >= 0} f(s) + kappa s^q`, where it is
    attained (approximately) and how many boxes proved it."""

    lower: mpmath.mpf
    upper: mpmath.mpf
    argmin: float
    boxes: int


def two_class_scalar(problem: Problem) -> Certificate | None:
    """The `two-class-scalar` certificate kind: two classes, balanced cross-entropy or label
    smoothing (any bias mode) or the max-margin problem (no bias), any depth; None elsewhere."""
    if problem.K != 2:
        return None
    if problem.loss in (Loss.CE, Loss.LS) and problem.balanced:
        return _cross_entropy(problem)
    if problem.loss == Loss.MAX_MARGIN and problem.bias == "none":
        return _max_margin(problem)
    return None


def penalty_constant(problem: Problem, iv: Any) -> Any:
    """`kappa = ((M+1)/2) (n P)^{1/(M+1)}` as an interval (`n = 1` for the max-margin problem,
    whose counts enter through `D`).  Written out here rather than taken from
    `ncverify.model.max_margin.factor_constant`, which `maxmargin-sel`'s closed form uses: the
    certificate shares no code with the value it is compared with."""
    m1 = problem.depth + 1
    n = problem.counts[0] if problem.loss.penalised else 1
    p = n * problem.lambda_product
    return iv.mpf(m1) / 2 * iv.exp(iv.log(iv.mpf(p.numerator) / iv.mpf(p.denominator)) / m1)


def _linear(problem: Problem, iv: Any) -> Any:
    """Label smoothing's cost of a margin, `alpha / 2` at two classes (0 for cross-entropy):
    its loss of a margin `t` is `log(1 + e^-t) + alpha t / 2`."""
    alpha = problem.smoothing if problem.loss == Loss.LS else None
    return iv.mpf(0) if alpha is None else iv.mpf(alpha.numerator) / iv.mpf(2 * alpha.denominator)


def _cross_entropy(problem: Problem) -> Certificate:
    t0 = time.perf_counter()
    q = mpmath.mpf(2) / (problem.depth + 1)
    with interval_precision(BITS) as iv:
        kappa = penalty_constant(problem, iv)
        linear = _linear(problem, iv)
        found = scalar_minimum(kappa, iv.mpf(2) / (problem.depth + 1), linear)
    return Certificate(
        kind="two-class-scalar",
        bound=round_down(found.lower),
        primal=float(found.upper),
        gap=float((found.upper - found.lower) / found.upper),
        solver="interval branch and bound (mpmath.iv); scipy only proposes the minimiser",
        status="optimal",
        rigorous=True,
        detail=(
            f"F >= min_s log(1 + e^-s) + a s + kappa s^q (q = {float(q):.6g}, "
            f"a = {float(linear.mid):.6g}, Jensen over the two margins), enclosed by "
            f"{found.boxes} boxes; attained by the simplex ETF at "
            f"s = {found.argmin:.12g} ({time.perf_counter() - t0:.2f} s)"
        ),
        bound_exact=found.lower,
        exact=True,  # no relaxation: the bound is attained, [bound, primal] brackets the optimum
        unique=False,
    )


def _max_margin(problem: Problem) -> Certificate:
    n0, n1 = problem.counts
    with interval_precision(BITS) as iv:
        q = iv.mpf(2) / (problem.depth + 1)
        value = penalty_constant(problem, iv) * iv.exp(q / 2 * iv.log(iv.mpf(n0 + n1) / 2))
        lower, upper = ends(value)
    return Certificate(
        kind="two-class-scalar",
        bound=round_down(lower),
        primal=float(upper),
        gap=float((upper - lower) / upper),
        solver="exact inequalities, enclosed in interval arithmetic",
        status="optimal",
        rigorous=True,
        detail=(
            "S_q(Z D) >= ||C Z D||_F^q >= ((n_0 + n_1)/2)^(q/2) for margins >= 1, attained by "
            "the simplex-encoded labels"
        ),
        bound_exact=lower,
        exact=True,
        unique=False,
    )


# ---- the scalar problem ---------------------------------------------------------------------------
def scalar_minimum(kappa: Any, q: Any, linear: Any = None) -> ScalarMinimum:
    """A rigorous enclosure of `min_{s >= 0} phi(s)`, `phi(s) = log(1 + e^-s) + a s +
    kappa s^q` (`kappa > 0`, `0 < q <= 1`, `a = linear >= 0`, 0 by default; intervals of the
    current `mpmath.iv` context).

    For `s > S = (log 2 / kappa)^{1/q}`, `phi(s) > kappa s^q > log 2 = phi(0)`, so the minimum
    lies in `[0, S]`.  A box `[lo, hi]` has two lower bounds, whichever is larger: the monotone
    one `f(hi) + a lo + kappa lo^q` (`f(s) = log(1 + e^-s)` decreasing, `a s` and `s^q`
    increasing) and the mean-value one `phi(m) - |phi'([lo, hi])| (hi - lo)/2`, with
    `phi' = f' + a + kappa q s^{q-1}`, `f'` increasing and `s^{q-1}` decreasing; a box is
    discarded when its lower bound exceeds the least value found, and split until its bound is
    within `TARGET_GAP` of it."""
    iv = mpmath.iv
    with mpmath.workprec(iv.prec):  # box ends and comparisons as exact as the intervals
        return _branch_and_bound(kappa, q, iv.mpf(0) if linear is None else linear, iv)


def _branch_and_bound(kappa: Any, q: Any, linear: Any, iv: Any) -> ScalarMinimum:
    """`scalar_minimum`'s search; every end taken from an interval is converted exactly
    (`ends`), never rounded to the working precision."""

    def low(x: Any) -> mpmath.mpf:
        return ends(x)[0]

    def high(x: Any) -> mpmath.mpf:
        return ends(x)[1]

    def power(s: mpmath.mpf) -> Any:
        return iv.exp(q * iv.log(iv.mpf(s))) if s > 0 else iv.mpf(0)

    def phi(s: mpmath.mpf) -> Any:
        return iv.log(1 + iv.exp(-iv.mpf(s))) + linear * iv.mpf(s) + kappa * power(s)

    def steepest(lo: mpmath.mpf, hi: mpmath.mpf) -> Any:  # max |phi'| on [lo, hi], lo > 0
        f_lo, f_hi = (linear - 1 / (1 + iv.exp(iv.mpf(s))) for s in (lo, hi))  # f' increases
        g_lo, g_hi = (kappa * q * iv.exp((q - 1) * iv.log(iv.mpf(s))) for s in (lo, hi))
        return iv.mpf(max(-low(f_lo + g_hi), high(f_hi + g_lo)))  # s^(q-1) decreases

    def lower_bound(lo: mpmath.mpf, hi: mpmath.mpf) -> mpmath.mpf:
        monotone = low(iv.log(1 + iv.exp(-iv.mpf(hi))) + linear * iv.mpf(lo) + kappa * power(lo))
        if lo == 0:
            return monotone
        mid = (lo + hi) / 2
        half = iv.mpf(hi) - iv.mpf(mid)  # the mean-value form about mid, rigorous
        return max(monotone, low(phi(mid) - steepest(lo, hi) * half))

    s_max = high(iv.exp(iv.log(iv.log(2) / kappa) / q))
    proposed = _proposed_minimiser(float(kappa.mid), float(q.mid), float(linear.mid), float(s_max))
    best_s = max(proposed, 0.0)
    upper = high(phi(mpmath.mpf(best_s)))
    if high(phi(mpmath.mpf(0))) < upper:
        upper, best_s = high(phi(mpmath.mpf(0))), 0.0
    stack = [(mpmath.mpf(0), s_max)]
    kept = mpmath.inf
    boxes = 0
    while stack:
        lo, hi = stack.pop()
        boxes += 1
        lb = lower_bound(lo, hi)
        if lb > upper:
            continue
        mid = (lo + hi) / 2
        if high(phi(mid)) < upper:
            upper, best_s = high(phi(mid)), float(mid)
        if upper - lb <= TARGET_GAP * abs(upper) or boxes >= MAX_BOXES:
            kept = min(kept, lb)
            continue
        stack += [(lo, mid), (mid, hi)]
    # every box was split, discarded (its bound above a value found, so above the minimum) or
    # kept: the least bound of the kept ones is below the minimum
    return ScalarMinimum(kept, upper, best_s, boxes)


def _proposed_minimiser(kappa: float, q: float, linear: float, s_max: float) -> float:
    """Where a float minimisation of `phi` on `(0, S]` ends: only a proposal, which seeds the
    upper bound of the branch and bound (scipy is imported here: a check that needs no
    certificate at depth starts without it)."""
    from scipy.optimize import minimize_scalar

    res = minimize_scalar(
        lambda s: math.log1p(math.exp(-s)) + linear * s + kappa * s**q,
        bounds=(1e-12, max(s_max, 1e-9)),
        method="bounded",
        options={"xatol": 1e-12},
    )
    return float(res.x)
