"""`recheck` trusts nothing in the file (issue 27, "Soundness first").

Each test forges a counterexample file -- from a genuine one that the real command line saved in
this module, by editing its `meta` or its arrays, or by building a point with the library -- and
runs the installed `ncverify recheck` on it in a subprocess, with its real exit code and output.
A forgery outside the claim's hypotheses must be `not-applicable` (4) naming the unmet
hypothesis; a file whose recorded numbers or arrays contradict each other, or that is malformed,
is bad input (2, one sentence, no traceback); a genuine file keeps its true verdict (`refuted`,
1).  The properties at the end: no forgery filed under a proven claim is ever refuted, and no
corrupted file makes `recheck` fail otherwise than with one sentence.
"""

from __future__ import annotations

import io
import json
import resource
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

import theorems
from ncverify.app.recheck import RecheckError, recheck_file
from ncverify.backend import Backend
from ncverify.model.max_margin import value_at_margin_one
from ncverify.model.objective import Objective, Params
from ncverify.model.problem import Problem

NCVERIFY = str(Path(sys.executable).with_name("ncverify"))
NUMPY = Backend.create("numpy")
SCHEMA = "ncverify.counterexample/1"  # docs: the counterexample file's schema
NOT_APPLICABLE, REFUTED, BAD_INPUT = 4, 1, 2  # README: exit codes
#: Claims proven for every instance inside their hypotheses (`ncverify list`, status "proven"):
#: no point at all may refute them.
PROVEN = (
    "mse-balanced-biasfree",
    "mse-balanced-bias",
    "mse-imbalanced-biasfree",
    "mse-imbalanced-bias",
)
#: Genuine refutations, each saved by `check --save-counterexample`: the exact witness of the
#: DNC claim on a ReLU head, a structured cross-entropy point, and a max-margin code.
GENUINE = {
    "dnc": [
        "dnc-multiclass", "--classes", "6", "--samples", "1", "--depth", "4", "--width", "6",
        "--activation", "relu", "--lambda-w", "4e-3", "--lambda-h", "4e-3",
        "--restarts", "2", "--escalate", "0",
        "--search-starts", "0",  # the claim's witness refutes it; the search would take 10 s
    ],
    "ce": [
        "ce-balanced", "--classes", "4", "--samples", "3", "--depth", "3", "--width", "5",
        "--lambda-w", "5e-4", "--lambda-h", "5e-4", "--loss", "ce",
        "--restarts", "1", "--escalate", "0",
    ],
    "mm": [
        "maxmargin-sel", "--classes", "6", "--samples", "10", "--depth", "2", "--width", "6",
        "--no-optimise",
    ],
}  # fmt: skip


# ---- helpers ------------------------------------------------------------------------------------
def ncverify(*args: str, memory_limit: int | None = None) -> subprocess.CompletedProcess[str]:
    """The installed command, with its address space capped at `memory_limit` bytes if given
    (an attempt to allocate an array a header claims then fails at once)."""

    def cap() -> None:
        if memory_limit is not None:
            resource.setrlimit(resource.RLIMIT_AS, (memory_limit, memory_limit))

    return subprocess.run(
        [NCVERIFY, *args], capture_output=True, text=True, timeout=600, check=False, preexec_fn=cap
    )


def read(path: Path) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        return meta, {name: data[name] for name in data.files if name != "meta"}


def write(path: Path, meta: object, arrays: dict[str, np.ndarray]) -> Path:
    np.savez_compressed(path, meta=np.array(json.dumps(meta)), **arrays)
    return path


def arrays_of(point: Params) -> dict[str, np.ndarray]:
    out = {f"W{m}": np.asarray(w) for m, w in enumerate(point.Ws, 1)}
    out["H"] = np.asarray(point.H)
    if point.b is not None:
        out["b"] = np.asarray(point.b)
    return out


def point_of(arrays: dict[str, np.ndarray]) -> Params:
    depth = sum(1 for name in arrays if name.startswith("W"))
    return Params(tuple(arrays[f"W{m}"] for m in range(1, depth + 1)), arrays["H"], arrays.get("b"))


def problem_of(recorded: dict[str, Any]) -> Problem:
    return Problem.build(
        counts=recorded["counts"],
        depth=recorded["depth"],
        widths=recorded["widths"],
        lambda_w=recorded["lambda_w_exact"],
        lambda_h=recorded["lambda_h_exact"],
        lambda_b=recorded["lambda_b_exact"],
        loss=recorded["loss"],
        bias=recorded["bias"],
        activation=recorded.get("activation", "linear"),
    )


def consistent_meta(claim_id: str, problem: Problem, point: Params) -> dict[str, Any]:
    """What a careful forger writes: every number recomputed with the library for this point,
    problem and claim, so that nothing but the claim's hypotheses stands in the way (where the
    claim has no closed form for the problem, a claimed optimum one above the point's value)."""
    if problem.loss == "max-margin":
        value, bound = value_at_margin_one(problem, point), 0.0
    else:
        objective = Objective(problem, np)
        value, bound = objective.value(point), objective.error_bound(point)
    try:
        claimed = float(theorems.get(claim_id).closed_form(problem).objective)
    except Exception:  # noqa: BLE001 - outside its hypotheses a claim may have no closed form
        claimed = value + 1.0
    return {
        "schema": SCHEMA,
        "claim": claim_id,
        "problem": problem.describe(),
        "objective": value,
        "claimed": claimed,
        "gap": claimed - value,
        "error_bound": bound,
        "origin": "forged",
        "certificate": None,
    }


def flat(text: str) -> str:
    """Output without the line breaks of the terminal's width."""
    return " ".join(text.split())


def bad_input(proc: subprocess.CompletedProcess[str], *words: str) -> None:
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == BAD_INPUT, (proc.returncode, proc.stdout, proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout and "REFUTED" not in proc.stdout
    for word in words:
        assert word.lower() in lines[0].lower(), (word, lines[0])


def not_applicable(path: Path, unmet: list[str]) -> None:
    assert unmet, "the forgery must violate a hypothesis of the claim it is filed under"
    proc = ncverify("recheck", str(path))
    assert proc.returncode == NOT_APPLICABLE, (proc.returncode, proc.stdout, proc.stderr)
    assert "NOT-APPLICABLE" in proc.stdout and "REFUTED" not in proc.stdout
    for hypothesis in unmet:
        assert flat(hypothesis) in flat(proc.stdout), (hypothesis, proc.stdout)
    proc = ncverify("recheck", str(path), "--json")
    assert proc.returncode == NOT_APPLICABLE, proc.stderr
    result = json.loads(proc.stdout)
    assert result["verdict"] == "not-applicable" and set(unmet) <= set(result["hypotheses"])


@pytest.fixture(scope="module")
def genuine(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One genuine refutation of each kind, saved by the real command line."""
    saved = {}
    for kind, args in GENUINE.items():
        directory = tmp_path_factory.mktemp(kind)
        proc = ncverify("check", *args, "--quiet", "--save-counterexample", str(directory))
        assert proc.returncode == REFUTED, proc.stdout + proc.stderr
        (saved[kind],) = directory.glob("*.npz")
    return saved


def forge(genuine_path: Path, target: Path, edit_meta=None, edit_arrays=None) -> Path:  # noqa: ANN001
    meta, arrays = read(genuine_path)
    if edit_meta is not None:
        edit_meta(meta)
    if edit_arrays is not None:
        edit_arrays(arrays)
    return write(target, meta, arrays)


# ---- (j) a genuine file keeps its verdict -----------------------------------------------------------
@pytest.mark.parametrize("kind", list(GENUINE))
def test_a_genuine_file_is_still_refuted(genuine: dict[str, Path], kind: str) -> None:
    proc = ncverify("recheck", str(genuine[kind]))
    assert proc.returncode == REFUTED and "REFUTED" in proc.stdout, proc.stdout + proc.stderr
    proc = ncverify("recheck", str(genuine[kind]), "--json")
    assert proc.returncode == REFUTED and json.loads(proc.stdout)["verdict"] == "refuted"


# ---- (a)-(c) outside the claim's hypotheses: not applicable ----------------------------------------
def test_a_free_bias_minimiser_under_the_bias_free_claim_is_not_applicable(tmp_path: Path) -> None:
    problem = Problem.build(
        classes=3, samples=4, depth=2, width=4, lambda_w="1e-2", lambda_h="1e-2", bias="free"
    )
    point = theorems.get("mse-balanced-bias").minimiser(problem, NUMPY).map(np.asarray)
    meta = consistent_meta("mse-balanced-biasfree", problem, point)
    assert meta["objective"] < meta["claimed"] - meta["error_bound"]  # it would "beat" the claim
    path = write(tmp_path / "forged.npz", meta, arrays_of(point))
    not_applicable(path, theorems.get("mse-balanced-biasfree").hypotheses(problem))


def test_an_mse_point_under_the_cross_entropy_claim_is_not_applicable(tmp_path: Path) -> None:
    problem = Problem.build(
        classes=4, samples=3, depth=2, width=4, lambda_w="1e-2", lambda_h="1e-2"
    )
    point = theorems.get("mse-balanced-biasfree").minimiser(problem, NUMPY).map(np.asarray)
    meta = consistent_meta("ce-balanced", problem, point)
    assert meta["objective"] < meta["claimed"] - meta["error_bound"]
    path = write(tmp_path / "forged.npz", meta, arrays_of(point))
    not_applicable(path, theorems.get("ce-balanced").hypotheses(problem))


@pytest.mark.parametrize("claim_id", ["mse-balanced-biasfree", "maxmargin-sel"])
def test_a_cross_entropy_file_under_another_claim_is_not_applicable(
    genuine: dict[str, Path], tmp_path: Path, claim_id: str
) -> None:
    path = forge(genuine["ce"], tmp_path / "forged.npz", lambda m: m.update(claim=claim_id))
    problem = problem_of(read(path)[0]["problem"])
    not_applicable(path, theorems.get(claim_id).hypotheses(problem))


def test_a_cross_entropy_file_made_imbalanced_is_not_applicable(
    genuine: dict[str, Path], tmp_path: Path
) -> None:
    """The same samples split unequally between the classes (same shapes), every number that
    depends on the point recomputed honestly: `ce-balanced` no longer applies."""
    meta, arrays = read(genuine["ce"])
    counts = list(meta["problem"]["counts"])
    counts[0], counts[1] = counts[0] + 1, counts[1] - 1
    problem = problem_of({**meta["problem"], "counts": counts})
    objective = Objective(problem, np)
    point = point_of(arrays)
    meta.update(
        problem=problem.describe(),
        objective=objective.value(point),
        error_bound=objective.error_bound(point),
    )
    path = write(tmp_path / "forged.npz", meta, arrays)
    not_applicable(path, theorems.get("ce-balanced").hypotheses(problem))


# ---- (d), (e) a file that disagrees with itself -------------------------------------------------------
def _set(path: str, value: object):  # noqa: ANN202
    """An edit of `meta` at a dotted path (`certificate.gap`)."""

    def edit(meta: dict[str, Any]) -> None:
        *parents, last = path.split(".")
        node = meta
        for key in parents:
            node = node[key]
        node[last] = value

    return edit


@pytest.mark.parametrize(
    ("kind", "field", "value"),
    [
        ("ce", "objective", 0.001),
        ("dnc", "objective", 0.001),
        ("mm", "objective", 0.001),
        ("ce", "gap", 5.0),
        ("dnc", "gap", 5.0),
        ("mm", "gap", 5.0),
        ("ce", "claimed", 0.5),
        ("ce", "error_bound", 0.25),
        ("mm", "error_bound", 0.25),
        ("ce", "certificate.gap", 0.75),
        ("dnc", "certificate.objective_digits", "0.0125"),
        ("ce", "problem.K", 5),
        ("ce", "problem.lambda_h", 0.125),
    ],
)
def test_a_recorded_number_that_its_recomputation_contradicts_is_bad_input(
    genuine: dict[str, Path], tmp_path: Path, kind: str, field: str, value: object
) -> None:
    path = forge(genuine[kind], tmp_path / "forged.npz", _set(field, value))
    bad_input(ncverify("recheck", str(path)), field, str(value))


def test_the_objective_and_gap_edited_together_are_still_caught(
    genuine: dict[str, Path], tmp_path: Path
) -> None:
    """The brief's forgery: objective 0.001 and gap 5.0 at once; the objective is named."""

    def edit(meta: dict[str, Any]) -> None:
        meta.update(objective=0.001, gap=5.0)

    bad_input(ncverify("recheck", str(forge(genuine["ce"], tmp_path / "f.npz", edit))), "objective")


# ---- malformed meta -------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("field", "value", "word"),
    [
        ("objective", "0.011", "objective"),
        ("error_bound", -1.0, "error_bound"),
        ("claim", 7, "claim"),
        ("claim", "no-such-claim", "unknown claim"),
        ("certificate", [1, 2], "certificate"),
        ("problem.depth", -3, "depth"),
        ("problem.counts", "3,3,3,3", "counts"),
        ("problem.lambda_h_exact", 0.0005, "lambda_h_exact"),
        ("problem.widths", [10**7, 10**7, 10**7], "limit"),
        ("schema", "ncverify.counterexample/0", "schema"),
    ],
)
def test_a_malformed_meta_is_bad_input(
    genuine: dict[str, Path], tmp_path: Path, field: str, value: object, word: str
) -> None:
    path = forge(genuine["ce"], tmp_path / "forged.npz", _set(field, value))
    bad_input(ncverify("recheck", str(path)), word)


@pytest.mark.parametrize("meta", [[1, 2, 3], "text", {"schema": SCHEMA}], ids=str)
def test_a_meta_that_is_not_the_expected_object_is_bad_input(
    genuine: dict[str, Path], tmp_path: Path, meta: object
) -> None:
    _, arrays = read(genuine["ce"])
    bad_input(ncverify("recheck", str(write(tmp_path / "forged.npz", meta, arrays))))


# ---- (f)-(h) arrays ----------------------------------------------------------------------------------------
def _nan_in_w1(arrays: dict[str, np.ndarray]) -> None:
    arrays["W1"] = arrays["W1"].copy()
    arrays["W1"][0, 0] = np.nan


def _inf_in_h(arrays: dict[str, np.ndarray]) -> None:
    arrays["H"] = arrays["H"].copy()
    arrays["H"][-1, -1] = np.inf


def _one_column_less(arrays: dict[str, np.ndarray]) -> None:
    arrays["H"] = arrays["H"][:, :-1]


def _narrower_w2(arrays: dict[str, np.ndarray]) -> None:
    arrays["W2"] = np.ascontiguousarray(arrays["W2"][:, :-1])


def _extra_layer(arrays: dict[str, np.ndarray]) -> None:
    arrays["W9"] = arrays["W1"]


def _missing_layer(arrays: dict[str, np.ndarray]) -> None:
    del arrays["W2"]


def _float32(arrays: dict[str, np.ndarray]) -> None:
    arrays["W1"] = arrays["W1"].astype(np.float32)


def _integers(arrays: dict[str, np.ndarray]) -> None:
    arrays["H"] = np.round(arrays["H"] * 1000).astype(np.int64)


def _complex(arrays: dict[str, np.ndarray]) -> None:
    arrays["W1"] = arrays["W1"].astype(np.complex128)


@pytest.mark.parametrize(
    ("edit", "word"),
    [
        (_nan_in_w1, "not finite"),
        (_inf_in_h, "not finite"),
        (_one_column_less, "shape"),
        (_narrower_w2, "shape"),
        (_extra_layer, "W9"),
        (_missing_layer, "W2"),
        (_float32, "float64"),
        (_integers, "float64"),
        (_complex, "float64"),
    ],
    ids=lambda x: getattr(x, "__name__", x),
)
def test_a_bad_array_is_bad_input(
    genuine: dict[str, Path],
    tmp_path: Path,
    edit,
    word: str,  # noqa: ANN001
) -> None:
    path = forge(genuine["ce"], tmp_path / "forged.npz", edit_arrays=edit)
    bad_input(ncverify("recheck", str(path)), word)


def test_an_object_array_is_bad_input(genuine: dict[str, Path], tmp_path: Path) -> None:
    meta, arrays = read(genuine["ce"])
    arrays["W1"] = np.array([{"a": 1}], dtype=object)
    path = tmp_path / "forged.npz"
    np.savez_compressed(path, meta=np.array(json.dumps(meta)), **arrays)  # pickled
    bad_input(ncverify("recheck", str(path)), "W1")


# ---- (i) sizes are bounded before anything is allocated -------------------------------------------------
HUGE = (2**20, 2**20)  # 8 TiB of float64
CAP = 2**31  # the address space of the rechecking process in these tests: 2 GiB


def _replace_member(source: Path, target: Path, name: str, content: bytes) -> Path:
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(target, "w") as dst:
        for info in src.infolist():
            dst.writestr(info.filename, content if info.filename == name else src.read(info))
    return target


def _header_only(shape: tuple[int, ...], dtype: str = "<f8") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": dtype, "fortran_order": False, "shape": shape}
    )
    return buf.getvalue() + bytes(64)


def test_a_genuine_file_rechecks_within_the_cap(genuine: dict[str, Path]) -> None:
    """The cap of the next tests leaves room for a genuine recheck: their refusals are not
    merely a process that could not start."""
    proc = ncverify("recheck", str(genuine["ce"]), memory_limit=CAP)
    assert proc.returncode == REFUTED, proc.stderr


def test_a_header_claiming_an_enormous_array_is_refused_unallocated(
    genuine: dict[str, Path], tmp_path: Path
) -> None:
    path = _replace_member(genuine["ce"], tmp_path / "forged.npz", "W1.npy", _header_only(HUGE))
    bad_input(ncverify("recheck", str(path), memory_limit=CAP), "W1", "shape")


def test_an_enormous_saved_problem_is_refused_unallocated(
    genuine: dict[str, Path], tmp_path: Path
) -> None:
    """The problem and the header agree on 8 TiB: the size of the problem is refused."""
    meta, _ = read(genuine["ce"])
    meta["problem"]["widths"] = [HUGE[0]] * meta["problem"]["depth"]
    source = write(tmp_path / "meta.npz", meta, read(genuine["ce"])[1])
    path = _replace_member(source, tmp_path / "forged.npz", "W1.npy", _header_only(HUGE))
    bad_input(ncverify("recheck", str(path), memory_limit=CAP), "limit")


def test_a_meta_header_claiming_an_enormous_string_is_refused(
    genuine: dict[str, Path], tmp_path: Path
) -> None:
    path = _replace_member(
        genuine["ce"], tmp_path / "forged.npz", "meta.npy", _header_only((), "<U1000000000")
    )
    bad_input(ncverify("recheck", str(path), memory_limit=CAP), "meta")


def test_a_member_with_trailing_or_missing_data_is_refused(
    genuine: dict[str, Path], tmp_path: Path
) -> None:
    with zipfile.ZipFile(genuine["ce"]) as z:
        w1 = z.read("W1.npy")
    for i, content in enumerate((w1 + bytes(8), w1[:-8])):
        path = _replace_member(genuine["ce"], tmp_path / f"forged{i}.npz", "W1.npy", content)
        bad_input(ncverify("recheck", str(path)), "W1")


# ---- properties -------------------------------------------------------------------------------------------
def _source(name: str, genuine: dict[str, Path]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    if name in genuine:
        return read(genuine[name])
    problem = Problem.build(
        classes=3, samples=4, depth=2, width=4, lambda_w="1e-2", lambda_h="1e-2", bias="free"
    )
    point = theorems.get("mse-balanced-bias").minimiser(problem, NUMPY).map(np.asarray)
    return consistent_meta("mse-balanced-biasfree", problem, point), arrays_of(point)


@example(
    source="free-bias",
    claim_id="mse-balanced-biasfree",
    fit=False,
    scale=1.0,
    edit=None,
    factor=1.0,
)
@example(
    source="dnc", claim_id="mse-balanced-biasfree", fit=False, scale=1.0, edit=None, factor=1.0
)
@example(
    source="ce", claim_id="mse-imbalanced-biasfree", fit=False, scale=1.0, edit=None, factor=1.0
)
@example(
    source="dnc", claim_id="mse-imbalanced-bias", fit=True, scale=1.0, edit="objective", factor=0.5
)
@given(
    source=st.sampled_from(["dnc", "ce", "mm", "free-bias"]),
    claim_id=st.sampled_from(PROVEN),
    fit=st.booleans(),
    scale=st.floats(0.25, 4.0),
    edit=st.sampled_from([None, "objective", "claimed", "gap", "error_bound"]),
    factor=st.sampled_from([0.0, 0.5, 0.999, 1.001, 2.0]),
)
def test_no_forgery_under_a_proven_claim_is_ever_refuted(
    genuine: dict[str, Path],
    tmp_path_factory: pytest.TempPathFactory,
    source: str,
    claim_id: str,
    fit: bool,
    scale: float,
    edit: str | None,
    factor: float,
) -> None:
    """Any point of a valid problem filed under a claim proven true -- its features rescaled, the
    problem fitted to the claim's hypotheses where the shapes allow, every number recomputed
    honestly, then perhaps one of them edited -- can never be a refutation."""
    meta, arrays = _source(source, genuine)
    claim = theorems.get(claim_id)
    recorded = dict(meta["problem"])
    arrays["H"] = arrays["H"] * scale
    if fit:
        recorded.update(loss="mse", activation="linear", bias=claim.bias, lambda_b_exact=None)
        k, n = len(recorded["counts"]), sum(recorded["counts"])
        if n % k == 0:
            recorded["counts"] = [n // k] * k
        if claim.bias == "none":
            arrays.pop("b", None)
        else:
            arrays.setdefault("b", np.linspace(-0.5, 0.5, k))
    problem = problem_of(recorded)
    point = point_of(arrays)
    meta = consistent_meta(claim_id, problem, point)
    if edit is not None:
        meta[edit] *= factor
    path = write(tmp_path_factory.mktemp("forged") / "forged.npz", meta, arrays)
    try:
        result = recheck_file(str(path))
    except RecheckError:
        return
    assert result["verdict"] != "refuted", (source, claim_id, fit, edit, result["detail"])


@given(position=st.floats(0.0, 1.0), byte=st.integers(0, 255))
def test_a_corrupted_file_is_never_an_internal_error(
    genuine: dict[str, Path], tmp_path_factory: pytest.TempPathFactory, position: float, byte: int
) -> None:
    """One byte of a genuine file changed anywhere: `recheck` refuses it in one sentence or
    (a byte that nothing reads, such as a timestamp) rechecks it; it never fails otherwise."""
    data = bytearray(genuine["ce"].read_bytes())
    data[min(int(position * len(data)), len(data) - 1)] = byte
    path = tmp_path_factory.mktemp("corrupt") / "corrupt.npz"
    path.write_bytes(bytes(data))
    try:
        result = recheck_file(str(path))
    except RecheckError as exc:
        assert str(exc).endswith(".") and "\n" not in str(exc)
        return
    assert result["verdict"] in ("refuted", "inconclusive", "not-applicable")
