"""`Problem`: validation with one sentence per violation, exact parsing, derived quantities,
and the `ncverify.testing.problems` strategy honouring its filters."""

from __future__ import annotations

import dataclasses
import math
import re
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ncverify.model.problem import Problem, ProblemError, exact
from ncverify.testing import lambdas, problems

# Every kind of bad input of issue 2, acceptance 4 (and a few more malformed lists), with a word
# the one-sentence message must contain so that it names the problem.
BAD_INPUTS: dict[str, tuple[dict[str, object], str]] = {
    "one class": ({"counts": "10"}, "K"),
    "K = 1 from classes": ({"classes": 1, "samples": 10}, "K"),
    "K = 0 from classes": ({"classes": 0, "samples": 10}, "K"),
    "zero count": ({"counts": "10,0,10"}, "count"),
    "negative count": ({"counts": "10,-3,10"}, "count"),
    "negative samples": ({"classes": 3, "samples": -1}, "count"),
    "negative lambda_W": ({"counts": "5,5", "lambda_w": "-1e-3"}, "lambda_W"),
    "zero lambda_W": ({"counts": "5,5", "lambda_w": "0"}, "lambda_W"),
    "NaN lambda_H": ({"counts": "5,5", "lambda_h": "nan"}, "lambda_H"),
    "NaN float lambda_H": ({"counts": "5,5", "lambda_h": float("nan")}, "lambda_H"),
    "infinite lambda_W": ({"counts": "5,5", "lambda_w": "inf"}, "lambda_W"),
    "infinite float lambda_W": ({"counts": "5,5", "lambda_w": math.inf}, "lambda_W"),
    "zero lambda_b": ({"counts": "5,5", "lambda_b": "0"}, "lambda_b"),
    "word lambda": ({"counts": "5,5", "lambda_h": "small"}, "lambda_H"),
    "one bad layer lambda": ({"counts": "5,5", "depth": 2, "lambda_w": "1e-3,-1e-3"}, "lambda_W"),
    "depth 0": ({"counts": "5,5", "depth": 0}, "depth"),
    "negative depth": ({"counts": "5,5", "depth": -2}, "depth"),
    "fractional depth": ({"counts": "5,5", "depth": "2.5"}, "depth"),
    "width 0": ({"counts": "5,5", "width": 0}, "width"),
    "one width 0": ({"counts": "5,5", "depth": 3, "widths": "4,0,4"}, "width"),
    "too few widths": ({"counts": "5,5", "depth": 3, "widths": "4,4"}, "width"),
    "too many layer lambdas": (
        {"counts": "5,5", "depth": 2, "lambda_w": "1e-3,1e-3,1e-3"},
        "lambda",
    ),
    "empty entry": ({"counts": "10,,10"}, "counts"),
    "trailing comma": ({"counts": "10,10,"}, "counts"),
    "letter in list": ({"counts": "10,a,10"}, "counts"),
    "decimal count": ({"counts": "10,2.5"}, "counts"),
    "empty lambda list entry": (
        {"counts": "5,5", "depth": 2, "lambda_w": "1e-3,,1e-3"},
        "lambda_W",
    ),
    "bad widths list": ({"counts": "5,5", "depth": 2, "widths": "4;4"}, "widths"),
    "unknown loss": ({"counts": "5,5", "loss": "hinge"}, "loss"),
    "unknown bias": ({"counts": "5,5", "bias": "learned"}, "bias"),
    "counts and classes": ({"counts": "5,5", "classes": 2}, "counts"),
}


def is_one_sentence(message: str) -> bool:
    """One line, ending with a full stop, with no second sentence starting inside it."""
    text = message.strip()
    return (
        "\n" not in text
        and text.endswith(".")
        and re.search(r"[.!?]\s+[A-Z][a-z]", text[:-1]) is None
        and "Traceback" not in text
    )


@pytest.mark.parametrize("name", sorted(BAD_INPUTS))
def test_bad_input_raises_one_sentence(name: str) -> None:
    kwargs, word = BAD_INPUTS[name]
    with pytest.raises(ProblemError) as info:
        Problem.build(**kwargs)
    message = str(info.value)
    assert is_one_sentence(message), message
    assert word.lower() in message.lower(), message


def test_direct_construction_is_validated_too() -> None:
    good = Problem.build(counts="3,3", depth=2, width=4, lambda_w="1e-3", lambda_h="1e-3")
    for changes in (
        {"counts": (3,)},
        {"counts": (3, 0)},
        {"depth": 0, "widths": (), "lambda_w": ()},
        {"widths": (4, 0)},
        {"widths": (4,)},
        {"lambda_w": (Fraction(1, 1000), Fraction(-1, 1000))},
        {"lambda_h": Fraction(0)},
        {"bias": "regularised"},  # without lambda_b
        {"lambda_b": Fraction(1, 10)},  # with no bias to regularise
    ):
        with pytest.raises(ProblemError) as info:
            good.with_(**changes)
        assert is_one_sentence(str(info.value)), str(info.value)


def test_problem_is_immutable_and_hashable() -> None:
    p = Problem.build(counts="3,4", depth=1, width=2)
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.depth = 2  # type: ignore[misc]
    assert hash(p) == hash(Problem.build(counts=[3, 4], depth=1, width=2))


# ---- exact parsing -----------------------------------------------------------------------------
def test_decimal_strings_are_exact() -> None:
    assert exact("5e-4", "lambda") == Fraction(1, 2000)
    assert exact("0.1", "lambda") == Fraction(1, 10)
    assert exact("1/3", "lambda") == Fraction(1, 3)
    assert exact(" 2.5E-3 ", "lambda") == Fraction(1, 400)


def test_floats_are_read_through_their_repr() -> None:
    # 5e-4 and 0.1 are not binary fractions; the shortest repr is what the user typed
    assert exact(5e-4, "lambda") == Fraction(1, 2000)
    assert exact(0.1, "lambda") == Fraction(1, 10)
    assert exact(0.1, "lambda") != Fraction(0.1)


@given(st.integers(1, 10**6), st.integers(0, 30))
def test_scientific_notation_is_exact(mantissa: int, exponent: int) -> None:
    assert exact(f"{mantissa}e-{exponent}", "lambda") == Fraction(mantissa, 10**exponent)


@given(st.floats(min_value=1e-300, max_value=1e300, allow_nan=False, allow_infinity=False))
def test_float_parsing_round_trips(x: float) -> None:
    # the rational is the decimal shown by repr, and converting back gives the same float
    value = exact(x, "lambda")
    assert value == Fraction(repr(x))
    assert float(value) == x


@given(st.fractions(min_value=Fraction(1, 10**9), max_value=10**6))
def test_fraction_strings_round_trip(f: Fraction) -> None:
    assert exact(str(f), "lambda") == f
    assert exact(f, "lambda") == f
    with pytest.raises(ProblemError):
        exact(str(-f), "lambda")  # the same number negated is rejected


def test_lambda_forms_in_build() -> None:
    p = Problem.build(counts="4,4", depth=3, width=5, lambda_w="1e-3,2e-3,3e-3", lambda_h=0.5)
    assert p.lambda_w == (Fraction(1, 1000), Fraction(1, 500), Fraction(3, 1000))
    assert p.lambda_h == Fraction(1, 2)
    q = Problem.build(counts="4,4", depth=3, width=5, lambda_w="1e-3", lambda_h="1e-3")
    assert q.lambda_w == (Fraction(1, 1000),) * 3  # one value means every layer
    r = Problem.build(counts="4,4", depth=1, width=5, lambda_b="1e-2")
    assert (r.bias, r.lambda_b) == ("regularised", Fraction(1, 100))  # lambda_b implies it


# ---- derived quantities ------------------------------------------------------------------------
def test_classes_and_samples_equal_counts() -> None:
    a = Problem.build(classes=3, samples=7, depth=2, width=4)
    b = Problem.build(counts="7,7,7", depth=2, width=4)
    assert a == b


@given(problems(loss=None, bias=None, allow_bottleneck=True, max_depth=4))
def test_derived_quantities(problem: Problem) -> None:
    k, m = problem.K, problem.depth
    assert problem.N == sum(problem.counts) == len(problem.labels())
    assert [problem.labels().count(c) for c in range(k)] == list(problem.counts)
    assert problem.labels() == sorted(problem.labels())  # samples ordered class by class
    assert problem.bottleneck == min(k, *problem.widths)
    shapes = problem.layer_shapes
    assert len(shapes) == m and shapes[-1][0] == k and shapes[0][1] == problem.widths[0]
    for (rows, _), (_, cols) in zip(shapes[:-1], shapes[1:], strict=True):
        assert rows == cols  # consecutive layers chain
    expected_p = problem.lambda_h * math.prod(problem.lambda_w)
    assert problem.lambda_product == expected_p
    n_bias = 0 if problem.bias == "none" else k
    assert (
        problem.n_parameters
        == sum(r * c for r, c in shapes) + problem.widths[0] * problem.N + n_bias
    )
    described = problem.describe()
    # the exact rationals in the description parse back to the same problem
    assert [Fraction(x) for x in described["lambda_w_exact"]] == list(problem.lambda_w)
    assert Fraction(described["lambda_h_exact"]) == problem.lambda_h
    rebuilt = Problem.build(
        counts=described["counts"],
        depth=described["depth"],
        widths=described["widths"],
        lambda_w=described["lambda_w_exact"],
        lambda_h=described["lambda_h_exact"],
        lambda_b=described["lambda_b_exact"],
        loss=described["loss"],
        bias=described["bias"],
        smoothing=described["smoothing_exact"],
        focusing=described["focusing_exact"],
    )
    assert rebuilt == problem


# ---- the strategies of ncverify.testing honour their filters -----------------------------------
@given(
    problems(
        loss="mse",
        bias="free",
        balanced=True,
        min_classes=3,
        max_classes=4,
        max_depth=2,
        max_width=6,
        max_samples=5,
        min_lambda="1e-3",
        max_lambda="1e-2",
    )
)
def test_problems_strategy_balanced_filters(problem: Problem) -> None:
    assert problem.loss == "mse" and problem.bias == "free" and problem.lambda_b is None
    assert problem.balanced and 3 <= problem.K <= 4 and 1 <= problem.depth <= 2
    assert all(problem.K <= w <= 6 for w in problem.widths)  # no bottleneck: R = K
    assert problem.bottleneck == problem.K
    assert 1 <= problem.counts[0] <= 5
    lams = (*problem.lambda_w, problem.lambda_h)
    assert all(isinstance(x, Fraction) and Fraction(1, 1000) <= x <= Fraction(1, 100) for x in lams)


@given(problems(balanced=False, bias="regularised", allow_bottleneck=True, tied_lambdas=True))
def test_problems_strategy_unbalanced_filters(problem: Problem) -> None:
    assert not problem.balanced
    assert problem.bias == "regularised" and problem.lambda_b is not None
    assert len({*problem.lambda_w, problem.lambda_h}) == 1  # tied
    assert all(1 <= w <= 8 for w in problem.widths)


@given(lambdas("3e-5", "2e-1"))
def test_lambdas_strategy_range(x: Fraction) -> None:
    assert Fraction(3, 10**5) <= x <= Fraction(1, 5)
    # a two-significant-digit decimal: x * 10^k is an integer below 100 for some k
    k = 0
    while (x * 10**k).denominator != 1:
        k += 1
    assert (x * 10**k) < 100 or x in (Fraction(3, 10**5), Fraction(1, 5))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"max_width": 2, "min_classes": 3},  # no bottleneck needs every width >= K
        {"min_classes": 1},
        {"balanced": False, "min_samples": 4, "max_samples": 4},
        {"min_lambda": "1e-2", "max_lambda": "1e-3"},
        {"loss": "hinge"},
        {"bias": "learned"},
    ],
)
def test_problems_strategy_rejects_impossible_filters(kwargs: dict[str, object]) -> None:
    from hypothesis.errors import InvalidArgument

    with pytest.raises(InvalidArgument):
        problems(**kwargs)


@given(lambdas("1/300", "1/300"))
def test_lambdas_strategy_single_value(x: Fraction) -> None:
    assert x == Fraction(1, 300)
