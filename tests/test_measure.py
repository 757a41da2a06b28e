"""`ncverify measure` (docs/measure.md) and the effective-lambda_H fit behind it.

The trained heads here are minimisers of the model computed independently of any claim (the
optimiser over every sample's features, from random starts) or the claim's own predicted point,
saved in the documented `.npz` format with the samples shuffled; the command runs as a user runs
it, in a subprocess.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import theorems
from ncverify.backend import Backend
from ncverify.evidence.calibration import effective_lambda_h
from ncverify.evidence.optimize import multistart
from ncverify.model.objective import Objective, Params
from ncverify.model.problem import Problem
from ncverify.testing import problems

NUMPY = Backend.create("numpy")
IMBALANCED = theorems.get("mse-imbalanced-biasfree")


def ncverify(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ncverify.app.cli", *args],
        capture_output=True,
        text=True,
        check=False,
    )


def save(path: Path, problem: Problem, point: Params, seed: int = 0) -> Path:
    """`point` as a trained head: features one row per sample, samples shuffled."""
    labels = np.asarray(problem.labels())
    order = np.random.default_rng(seed).permutation(problem.N)
    arrays = {"features": np.asarray(point.H).T[order], "labels": labels[order]}
    arrays |= {f"W{m}": np.asarray(w) for m, w in enumerate(point.Ws, start=1)}
    if point.b is not None:
        arrays["b"] = np.asarray(point.b)
    np.savez(path, **arrays)
    return path


def trained(problem: Problem) -> Params:
    """The best of four full-parameterisation runs: a minimiser found without any claim."""
    runs = multistart(problem, NUMPY, restarts=4, jobs=1, parameterisation="full")
    return min(runs, key=lambda r: r.objective).point


@given(problems(loss="mse", bias="none", max_classes=4, max_depth=3, max_samples=6), st.data())
def test_at_the_claimed_minimiser_the_fit_recovers_lambda_h(problem: Problem, data) -> None:  # noqa: ANN001
    """Stationarity in H holds with the true lambda_H at a minimiser, so the least-squares fit
    returns it with a zero residual, and the layers are balanced (lemma 2)."""
    assume(not IMBALANCED.hypotheses(problem))
    pred = IMBALANCED.closed_form(problem)
    assume(not pred.zero)  # the zero point is stationary for every lambda_H
    point = IMBALANCED.minimiser(problem, NUMPY)
    fit = effective_lambda_h(Objective(problem, np), point)
    lam = float(problem.lambda_h)
    assert abs(fit.value - lam) <= 1e-8 * lam
    assert fit.residual <= 1e-8
    assert abs(fit.balance - lam) <= 1e-8 * lam


@given(problems(loss=None, bias="none", max_classes=4, max_depth=3, max_samples=5), st.data())
def test_the_fit_is_the_least_squares_lambda_h(problem: Problem, data) -> None:  # noqa: ANN001
    """At any point the fitted lambda_H minimises the relative residual of the stationarity in H
    (on the class means, in the range of P^T): moving it either way does not lower the residual,
    and lambda = 0 leaves a residual of 1, so the fitted one is at most 1."""
    seed = data.draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    point = Params(
        tuple(rng.normal(size=s) for s in problem.layer_shapes),
        rng.normal(size=(problem.widths[0], problem.N)),
    )
    fit = effective_lambda_h(Objective(problem, np), point)
    assume(np.isfinite(fit.value))
    assert 0 <= fit.residual <= 1 + 1e-12

    def residual(lam: float) -> float:
        """The same residual, written out independently, at `lam`."""
        obj = Objective(problem, np)
        _, grad = obj.loss_and_grad(point)
        y, counts = obj.Y, np.asarray(problem.counts, dtype=float)
        hbar, abar = point.H @ y.T / counts, grad.H @ y.T / counts
        prod = point.Ws[-1]
        for w in reversed(point.Ws[:-1]):
            prod = prod @ w
        projector = np.linalg.pinv(prod) @ prod  # onto the range of P^T
        weights = np.sqrt(counts)[None, :]
        return float(
            np.linalg.norm((abar + lam * projector @ hbar) * weights)
            / np.linalg.norm(abar * weights)
        )

    assert abs(residual(fit.value) - fit.residual) <= 1e-8
    step = 1e-3 * (abs(fit.value) + 1e-12)
    assert residual(fit.value + step) >= fit.residual - 1e-12
    assert residual(fit.value - step) >= fit.residual - 1e-12


@pytest.fixture(scope="module")
def gap_head(tmp_path_factory: pytest.TempPathFactory) -> tuple[Problem, Path]:
    # counts 60,30,10,10 at depth 2: the classes of 10 collapse at these lambdas
    problem = Problem.build(
        counts="60,30,10,10", depth=2, width=8, lambda_w="2e-2", lambda_h="3e-2"
    )
    return problem, save(tmp_path_factory.mktemp("heads") / "gap.npz", problem, trained(problem))


def test_measure_names_the_collapsed_classes_and_fits_lambda_h(gap_head) -> None:  # noqa: ANN001
    problem, path = gap_head
    pred = IMBALANCED.closed_form(problem)
    expected = [k for k, c in enumerate(pred.classes) if c.regime == "collapsed"]
    assert expected  # the instance is one where the theory collapses some classes
    r = ncverify(
        "measure", str(path), "--claim", IMBALANCED.id, "--lambda-w", "2e-2", "--json", "-"
    )
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["schema"] == "ncverify.measure/1" and data["lambda_h"]["source"] == "fitted"
    assert abs(data["lambda_h"]["fitted"] - 3e-2) <= 1e-6 * 3e-2
    assert data["collapsed"] == {"predicted": expected, "trained": expected}
    for c in data["classes"]:
        assert abs(c["trained_gain"] - c["predicted_gain"]) <= 1e-6
        if c["predicted_regime"] == "alive":  # the classifier points at its class mean (NC3)
            assert abs(c["predicted_angle"]) <= 1e-5 and abs(c["trained_angle"]) <= 1e-3
        else:  # a zero class mean has no direction
            assert c["predicted_angle"] is None
    assert all(row["nc1"] is None or row["nc1"] <= 1e-12 for row in data["layers"])
    # the text report says the same
    text = ncverify("measure", str(path), "--claim", IMBALANCED.id, "--lambda-w", "2e-2")
    assert text.returncode == 0 and f"predicted {expected}, trained {expected}" in text.stdout


def test_a_given_lambda_h_is_used_and_said(gap_head) -> None:  # noqa: ANN001
    _, path = gap_head
    r = ncverify(
        "measure", str(path), "--claim", IMBALANCED.id, "--lambda-w", "2e-2",
        "--lambda-h", "1e-1", "--json", "-",
    )  # fmt: skip
    data = json.loads(r.stdout)
    assert r.returncode == 0 and data["lambda_h"]["source"] == "given"
    assert data["problem"]["lambda_h_exact"] == "1/10"


def test_a_point_stationary_for_no_positive_lambda_h_gets_no_prediction(
    gap_head, tmp_path: Path
) -> None:  # noqa: ANN001
    # negating the last layer sends the logits to -Z: the loss gradient then pulls the features
    # the way a negative weight decay would, and the fit says so instead of predicting
    problem, path = gap_head
    data = dict(np.load(path))
    data["W2"] = -data["W2"]
    flipped = tmp_path / "flipped.npz"
    np.savez(flipped, **data)
    r = ncverify("measure", str(flipped), "--claim", IMBALANCED.id, "--lambda-w", "2e-2")
    assert r.returncode == 3, r.stdout + r.stderr
    assert "not positive" in r.stdout and "Traceback" not in r.stderr


def _malformed(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    rng = np.random.default_rng(0)
    good = {
        "features": rng.normal(size=(6, 3)),
        "labels": np.array([0, 1, 1, 0, 1, 0]),
        "W1": rng.normal(size=(2, 3)),
    }
    cases = {
        "not an npz": ("x.npz", None, "not a NumPy"),
        "no labels": ("a.npz", {k: v for k, v in good.items() if k != "labels"}, "'labels'"),
        "rows and labels": ("b.npz", {**good, "labels": np.array([0, 1])}, "6 feature rows"),
        "shape": ("c.npz", {**good, "W1": rng.normal(size=(2, 4))}, "W1 has 4 columns"),
        "label range": ("d.npz", {**good, "labels": np.array([0, 1, 2, 0, 1, 0])}, "0..1"),
        "empty class": ("e.npz", {**good, "labels": np.zeros(6, dtype=int)}, "class 1 has no"),
        "bias": ("f.npz", {**good, "b": np.zeros(3)}, "bias b has 3"),
        "no layers": ("g.npz", {k: v for k, v in good.items() if k != "W1"}, "no head layers"),
        "not finite": ("h.npz", {**good, "W1": np.full((2, 3), np.nan)}, "finite"),
    }
    out = {}
    for name, (file, arrays, message) in cases.items():
        path = tmp_path / file
        if arrays is None:
            path.write_text("not an archive")
        else:
            np.savez(path, **arrays)
        out[name] = (path, message)
    out["missing file"] = (tmp_path / "nope.npz", "no such file")
    return out


def test_malformed_files_get_one_sentence_and_exit_2(tmp_path: Path) -> None:
    for name, (path, message) in _malformed(tmp_path).items():
        r = ncverify("measure", str(path), "--claim", IMBALANCED.id, "--lambda-w", "1e-2")
        assert r.returncode == 2, (name, r.stdout, r.stderr)
        assert message in r.stderr and "Traceback" not in r.stderr, (name, r.stderr)
        assert len(r.stderr.strip().splitlines()) == 1, (name, r.stderr)


HAS_TORCH = importlib.util.find_spec("torch") is not None
HAS_SAFETENSORS = importlib.util.find_spec("safetensors") is not None
STATE_DICT = (
    "--features-key",
    "feats",
    "--labels-key",
    "y",
    "--layer-keys",
    "head.0.weight,head.1.weight",
)


def _as_state_dict(npz: Path) -> dict[str, np.ndarray]:
    data = dict(np.load(npz))
    return {
        "feats": data["features"],
        "y": data["labels"].astype(np.int64),
        "head.0.weight": data["W1"],
        "head.1.weight": data["W2"],
    }


def _measure_json(path: Path, *extra: str) -> dict:
    r = ncverify(
        "measure", str(path), "--claim", IMBALANCED.id, "--lambda-w", "2e-2", *extra, "--json", "-"
    )
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


@pytest.mark.skipif(not HAS_TORCH, reason="torch is not installed (the torch extra)")
def test_a_pytorch_state_dict_measures_as_the_npz_does(gap_head, tmp_path: Path) -> None:  # noqa: ANN001
    import torch

    _, npz = gap_head
    pt = tmp_path / "head.pt"
    torch.save({k: torch.from_numpy(v) for k, v in _as_state_dict(npz).items()}, pt)
    assert _measure_json(pt, *STATE_DICT)["classes"] == _measure_json(npz)["classes"]
    # without the names: the default names are missing, said in one sentence
    r = ncverify("measure", str(pt), "--claim", IMBALANCED.id, "--lambda-w", "2e-2")
    assert r.returncode == 2 and "has no array 'features'" in r.stderr


@pytest.mark.skipif(not HAS_SAFETENSORS, reason="safetensors is not installed")
def test_a_safetensors_file_measures_as_the_npz_does(gap_head, tmp_path: Path) -> None:  # noqa: ANN001
    from safetensors.numpy import save_file

    _, npz = gap_head
    st_file = tmp_path / "head.safetensors"
    save_file(_as_state_dict(npz), str(st_file))
    assert _measure_json(st_file, *STATE_DICT)["classes"] == _measure_json(npz)["classes"]


def test_measure_plots_the_gains(gap_head, tmp_path: Path) -> None:  # noqa: ANN001
    _, npz = gap_head
    png = tmp_path / "gains.png"
    r = ncverify(
        "measure", str(npz), "--claim", IMBALANCED.id, "--lambda-w", "2e-2", "--plot", str(png)
    )
    assert r.returncode == 0, r.stderr
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # an unwritable plot path is refused before anything is computed
    bad = ncverify(
        "measure", str(npz), "--claim", IMBALANCED.id, "--lambda-w", "2e-2",
        "--plot", str(tmp_path / "no" / "such" / "dir" / "g.png"),
    )  # fmt: skip
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
