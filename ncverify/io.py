"""Files: the self-contained counterexample file that `ncverify recheck` re-evaluates.

A counterexample file is a compressed `.npz`: the arrays `W1..WM`, `H` (and `b`) as float64, and a
`meta` JSON string (schema `ncverify.counterexample/2`) with the claim id and where the claim
came from (`claim_origin`), the problem (lambdas as exact rationals), the objective, the claimed
optimum, the gap and its proven error bound, and the high-precision certificate.
`load_counterexample` trusts none of it: it checks the format, the types and the sizes before
reading any array, and `recheck` recomputes every number.  Files of schema `/1`, from before the
origin was recorded, are still read: their claim is a built-in one.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import zipfile
import zlib
from collections.abc import Callable
from typing import IO, TYPE_CHECKING, Any, NamedTuple

import numpy as np
from numpy.lib import format as npy_format

from ncverify.model.objective import Params
from ncverify.model.problem import Problem, ProblemError
from ncverify.report import COUNTEREXAMPLE_SCHEMA, clean, version

if TYPE_CHECKING:  # pragma: no cover
    from ncverify.backend import Backend
    from ncverify.claim import Claim
    from ncverify.report import Report


class CounterexampleFileError(ValueError):
    """A file that is not a readable counterexample file; the message is one sentence."""


def save_counterexample(directory: str, report: Report, backend: Backend) -> str:
    """Write the report's counterexample as a self-contained `.npz`; returns its path (the
    report is a value: `ncverify.verify.verify` records the path in the copy it returns).  The
    name is the claim id and a digest of the metadata."""
    ce = report.counterexample
    assert ce is not None and ce.point is not None
    os.makedirs(directory, exist_ok=True)
    arrays = {f"W{m}": backend.to_numpy(w).astype(np.float64) for m, w in enumerate(ce.point.Ws, 1)}
    arrays["H"] = backend.to_numpy(ce.point.H).astype(np.float64)
    if ce.point.b is not None:
        arrays["b"] = backend.to_numpy(ce.point.b).astype(np.float64)
    meta = {
        "schema": COUNTEREXAMPLE_SCHEMA,
        "ncverify": version(),
        "claim": report.claim.id,
        "claim_origin": claim_origin(report.claim),
        "problem": report.problem.describe(),
        "objective": ce.objective,
        "claimed": ce.claimed,
        "gap": ce.gap,
        "error_bound": ce.error_bound,
        "origin": ce.origin,
        # informational: `recheck` recomputes everything
        "certificate": None if ce.certificate is None else ce.certificate.to_json(),
    }
    digest = hashlib.sha256(json.dumps(clean(meta), sort_keys=True).encode()).hexdigest()[:12]
    path = os.path.join(directory, f"{report.claim.id}-{digest}.npz")
    from ncverify.paths import open_for_write

    # whole or not at all: an interrupted save leaves no truncated archive for `recheck` to trip on
    with open_for_write(path, binary=True, what="counterexample file") as fh:
        np.savez_compressed(fh, meta=np.array(json.dumps(clean(meta))), **arrays)
    return path


# ---- where a claim came from ---------------------------------------------------------------------
#: The attribute in which `ncverify.app.claims` records, on a claim object it resolved, where the
#: claim came from (`claim_origin` reads it).  A saved file records it so that `recheck` knows
#: whether the claim is a built-in one, which it may look up by id, or code that it must not
#: import on a file's say-so.
ORIGIN_ATTRIBUTE = "ncverify_origin"


def claim_origin(claim: Claim) -> dict[str, Any]:
    """Where `claim` came from, as a counterexample file's `claim_origin` records it.

    What `ncverify.app.claims` recorded when it resolved the claim; for a claim made in a
    program (`verify(MyClaim(), ...)`), a built-in one's where its class is defined in
    `theorems`, else the module of its class, with its file and the file's sha256.
    """
    recorded = getattr(claim, ORIGIN_ATTRIBUTE, None)
    if isinstance(recorded, dict):
        return dict(recorded)
    module = type(claim).__module__
    if module.partition(".")[0] == "theorems":
        return builtin_origin(version())
    namespace = vars(sys.modules[module]) if module in sys.modules else {}
    attribute = next((name for name, value in namespace.items() if value is claim), None)
    return module_origin(module, attribute)


def builtin_origin(ncverify: str) -> dict[str, Any]:
    """The origin of a built-in claim (whose registered id is the file's `claim`): the version
    of ncverify that had it."""
    return {"kind": "built-in", "ncverify": ncverify}


def module_origin(module: str, attribute: str | None) -> dict[str, Any]:
    """The origin of a claim taken from an importable module (`module:attribute`): the module's
    file, where it has one, and the file's sha256, which `recheck --claim` compares."""
    path = getattr(sys.modules.get(module), "__file__", None)
    return {
        "kind": "module",
        "module": module,
        "attribute": attribute,
        "path": path,
        "sha256": None if path is None else file_sha256(path),
    }


def file_sha256(path: str) -> str | None:
    """The sha256 of a file's content in hex; None where it cannot be read."""
    try:
        with open(path, "rb") as fh:
            return hashlib.sha256(fh.read()).hexdigest()
    except OSError:
        return None


# ---- reading: nothing in the file is trusted ---------------------------------------------------
#: The most bytes of arrays that `load_counterexample` allocates.  A point must fit in memory to
#: be rechecked at all, and a member's header can claim any shape: the saved problem's arrays are
#: sized, and every header is read, before a single array is.
MAX_POINT_BYTES = 2**30
#: The longest `meta` member in bytes (numpy stores the JSON text as UCS-4, four bytes a
#: character).  A genuine one is a few kB plus the certificate's three `K x K` matrices.
MAX_META_BYTES = 2**28


class _Field(NamedTuple):
    """What one JSON field must be: a test of its value, the same in words, and whether a file
    may leave it out (fields that older files lack, or that are for readers only)."""

    test: Callable[[object], bool]
    what: str
    required: bool = True


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_finite(x: object) -> bool:
    if isinstance(x, bool) or not isinstance(x, int | float):
        return False
    try:
        return math.isfinite(float(x))
    except OverflowError:  # an integer beyond float64
        return False


def _is_str(x: object) -> bool:
    return isinstance(x, str)


def _list_of(test: Callable[[object], bool]) -> Callable[[object], bool]:
    return lambda x: isinstance(x, list) and all(test(v) for v in x)


def _or_none(test: Callable[[object], bool]) -> Callable[[object], bool]:
    return lambda x: x is None or test(x)


def _is_sha256(x: object) -> bool:
    return isinstance(x, str) and len(x) == 64 and all(c in "0123456789abcdef" for c in x)


#: The fields of `meta["claim_origin"]` (`claim_origin`) by its `kind`: a built-in claim; a claim
#: of an installed package (an entry point of the group `ncverify.claims`); a claim file; a claim
#: in an importable module (`module:attribute`).
ORIGIN_FIELDS: dict[str, dict[str, _Field]] = {
    "built-in": {"ncverify": _Field(_is_str, "a string")},
    "entry-point": {
        "name": _Field(_is_str, "an entry point's name (a string)"),
        "value": _Field(_is_str, "an entry point's value (a string)"),
        "distribution": _Field(_or_none(_is_str), "a string or null"),
        "version": _Field(_or_none(_is_str), "a string or null"),
    },
    "file": {
        "path": _Field(_is_str, "a path (a string)"),
        "sha256": _Field(_is_sha256, "a sha256 (64 lowercase hex digits)"),
    },
    "module": {
        "module": _Field(_is_str, "a module's name (a string)"),
        "attribute": _Field(_or_none(_is_str), "a string or null"),
        "path": _Field(_or_none(_is_str), "a path (a string) or null"),
        "sha256": _Field(_or_none(_is_sha256), "a sha256 (64 lowercase hex digits) or null"),
    },
}
#: The fields of `meta` (`save_counterexample`), with their JSON types.
META_FIELDS: dict[str, _Field] = {
    "claim": _Field(_is_str, "a claim id (a string)"),
    "problem": _Field(lambda x: isinstance(x, dict), "an object"),
    "objective": _Field(_is_finite, "a finite number"),
    "claimed": _Field(_is_finite, "a finite number"),
    "gap": _Field(_is_finite, "a finite number"),
    "error_bound": _Field(lambda x: _is_finite(x) and x >= 0, "a finite number >= 0"),
    "ncverify": _Field(_is_str, "a string", required=False),
    "origin": _Field(_is_str, "a string", required=False),
    "certificate": _Field(_or_none(lambda x: isinstance(x, dict)), "an object or null", False),
    # required in the current schema, absent from `/1` (`_parse_meta`)
    "claim_origin": _Field(
        lambda x: isinstance(x, dict) and x.get("kind") in ORIGIN_FIELDS,
        f"an object whose kind is one of {', '.join(ORIGIN_FIELDS)}",
        required=False,
    ),
}
#: The schemas `load_counterexample` reads: the current one, and `/1`, from before a file recorded
#: its claim's origin (its claim is a built-in one: only built-in claims could be checked then).
READABLE_SCHEMAS = (COUNTEREXAMPLE_SCHEMA, "ncverify.counterexample/1")
#: The fields of `meta["problem"]` (`Problem.describe`): the exact ones the problem is rebuilt
#: from, then the derived ones, which `recheck` compares with the rebuilt problem's.
PROBLEM_FIELDS: dict[str, _Field] = {
    "counts": _Field(_list_of(_is_int), "a list of integers"),
    "depth": _Field(_is_int, "an integer"),
    "widths": _Field(_list_of(_is_int), "a list of integers"),
    "lambda_w_exact": _Field(_list_of(_is_str), "a list of exact rationals (strings)"),
    "lambda_h_exact": _Field(_is_str, "an exact rational (a string)"),
    "lambda_b_exact": _Field(_or_none(_is_str), "an exact rational (a string) or null"),
    "loss": _Field(_is_str, "a string"),
    "bias": _Field(_is_str, "a string"),
    "activation": _Field(_is_str, "a string", required=False),  # files from before it existed
    "K": _Field(_is_int, "an integer", required=False),
    "N": _Field(_is_int, "an integer", required=False),
    "bottleneck": _Field(_is_int, "an integer", required=False),
    "lambda_w": _Field(_list_of(_is_finite), "a list of finite numbers", required=False),
    "lambda_h": _Field(_is_finite, "a finite number", required=False),
    "lambda_b": _Field(_or_none(_is_finite), "a finite number or null", required=False),
    # files from before the normalised problem have no radii (theirs are none)
    "radius_w_exact": _Field(_or_none(_is_str), "an exact rational or null", required=False),
    "radius_h_exact": _Field(_or_none(_is_str), "an exact rational or null", required=False),
    "radius_w": _Field(_or_none(_is_finite), "a finite number or null", required=False),
    "radius_h": _Field(_or_none(_is_finite), "a finite number or null", required=False),
    # files from before label smoothing have no smoothing (theirs is none)
    "smoothing_exact": _Field(_or_none(_is_str), "an exact rational or null", required=False),
    "smoothing": _Field(_or_none(_is_finite), "a finite number or null", required=False),
    # files from before focal loss have no focusing (theirs is none)
    "focusing_exact": _Field(_or_none(_is_str), "an exact rational or null", required=False),
    "focusing": _Field(_or_none(_is_finite), "a finite number or null", required=False),
    # files from before the contrastive problem have no temperature (theirs is none)
    "temperature_exact": _Field(_or_none(_is_str), "an exact rational or null", required=False),
    "temperature": _Field(_or_none(_is_finite), "a finite number or null", required=False),
}


def load_counterexample(path: str) -> tuple[dict[str, Any], Params]:
    """The metadata and the point of a counterexample file, every part checked before it is used.

    The one reader of the format.  In order: the archive's listing; the `meta` member's header
    (one string of bounded size), its JSON and the type of every field; the saved problem
    (`Problem.build`'s validation) and the size of its arrays; then the header of every array
    member against the shape the problem gives it and float64 -- all before any array is read,
    so that neither a header claiming a huge array nor a zip bomb is ever allocated -- and last
    the arrays themselves, which must be finite.  Whether the recorded *numbers* agree with the
    point is `recheck`'s question, not this one's.

    Raises:
        CounterexampleFileError: anything else (one sentence naming the file and the fault).
    """
    if not os.path.exists(path):
        raise CounterexampleFileError(f"no such file: {path!r}.")
    try:
        with zipfile.ZipFile(path) as archive:
            return _read_archive(path, archive)
    except CounterexampleFileError:
        raise
    except (
        OSError,
        EOFError,
        ValueError,
        RuntimeError,
        NotImplementedError,
        zlib.error,
        zipfile.BadZipFile,
    ):  # not a zip, a corrupt or truncated member, an encrypted one, a bad CRC
        raise CounterexampleFileError(f"{path!r} is not an ncverify counterexample file.") from None


def saved_problem(meta: dict[str, Any]) -> Problem:
    """The problem a counterexample was saved for, rebuilt from the exact fields of a `meta`
    that `load_counterexample` returned (so validated: only the problem's own rules can fail)."""
    p = meta["problem"]
    try:
        return Problem.build(
            counts=p["counts"],
            depth=p["depth"],
            widths=p["widths"],
            lambda_w=p["lambda_w_exact"],
            lambda_h=p["lambda_h_exact"],
            lambda_b=p["lambda_b_exact"],
            loss=p["loss"],
            bias=p["bias"],
            activation=p.get("activation", "linear"),
            radius_w=p.get("radius_w_exact"),
            radius_h=p.get("radius_h_exact"),
            smoothing=p.get("smoothing_exact"),
            focusing=p.get("focusing_exact"),
            temperature=p.get("temperature_exact"),
        )
    except ProblemError as exc:
        raise CounterexampleFileError(f"the saved problem is invalid: {exc}") from None


def point_bytes(problem: Problem) -> int:
    """Bytes of a full float64 point of `problem`: `W_1..W_M`, `H` (`d x N`) and `b`."""
    entries = sum(a * b for a, b in problem.layer_shapes) + problem.widths[0] * problem.N
    return 8 * (entries + (problem.K if problem.bias != "none" else 0))


def _read_archive(path: str, archive: zipfile.ZipFile) -> tuple[dict[str, Any], Params]:
    members = _members(path, archive)
    if "meta" not in members:
        raise CounterexampleFileError(f"{path!r} is not an ncverify counterexample file.")
    meta = _parse_meta(path, _read_member(path, archive, members["meta"], "meta", None))
    problem = saved_problem(meta)
    size = point_bytes(problem)
    if size > MAX_POINT_BYTES:
        raise CounterexampleFileError(
            f"{path!r}: the point of its saved problem takes {min(size, 10**300):.3g} bytes of float64 "
            f"arrays, above the limit of {MAX_POINT_BYTES:.3g} bytes that recheck loads."
        )
    shapes = _array_shapes(problem)
    extra = sorted(set(members) - {"meta"} - set(shapes))
    if extra:
        raise CounterexampleFileError(
            f"{path!r} holds an array {extra[0]!r} that its saved problem does not have."
        )
    for name in shapes:
        if name not in members:
            raise CounterexampleFileError(
                f"{path!r} lacks the array {name!r} that its saved problem needs."
            )
    for name, shape in shapes.items():  # every header first: nothing is allocated yet
        with archive.open(members[name]) as fp:
            _check_header(path, name, shape, _read_header(fp))
    arrays = {
        name: _read_member(path, archive, members[name], name, shape)
        for name, shape in shapes.items()
    }
    for name, a in arrays.items():
        if not np.all(np.isfinite(a)):
            raise CounterexampleFileError(
                f"{path!r}: its array {name!r} holds a value that is not finite (NaN or infinity)."
            )
    ws = tuple(arrays[f"W{m}"] for m in range(1, len(problem.layer_shapes) + 1))
    return meta, Params(ws, arrays["H"], arrays.get("b"))


def _members(path: str, archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """The archive's members by array name (`W1.npy` is `W1`); anything but `.npy` members,
    each once, is not a counterexample file."""
    members: dict[str, zipfile.ZipInfo] = {}
    for info in archive.infolist():
        name = info.filename.removesuffix(".npy")
        if name == info.filename or name in members:
            raise CounterexampleFileError(
                f"{path!r} holds {info.filename!r}, which no counterexample file has (one .npy "
                "member per array, each once)."
            )
        members[name] = info
    return members


def _array_shapes(problem: Problem) -> dict[str, tuple[int, ...]]:
    """The arrays of a point of `problem` and their shapes, in the order they are read."""
    shapes: dict[str, tuple[int, ...]] = {
        f"W{m}": shape for m, shape in enumerate(problem.layer_shapes, 1)
    }
    shapes["H"] = (problem.widths[0], problem.N)
    if problem.bias != "none":
        shapes["b"] = (problem.K,)
    return shapes


def _read_header(fp: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype]:
    """`(shape, fortran_order, dtype)` of a `.npy` stream, reading only its header (numpy
    bounds the header's length)."""
    version = npy_format.read_magic(fp)
    if version == (1, 0):
        return npy_format.read_array_header_1_0(fp)
    if version == (2, 0):
        return npy_format.read_array_header_2_0(fp)
    raise ValueError(f"unsupported .npy version {version}")


def _check_header(
    path: str,
    name: str,
    shape: tuple[int, ...] | None,
    header: tuple[tuple[int, ...], bool, np.dtype],
) -> None:
    """An array member must be float64 of `shape`; `meta` (`shape` None) one string of at most
    `MAX_META_BYTES`.  Object arrays are refused here, before numpy's pickle check."""
    got, _, dtype = header
    if shape is None:
        if dtype.kind != "U" or got != ():
            raise CounterexampleFileError(
                f"{path!r}: its meta member is {dtype} of shape {got}, not one JSON string."
            )
        if dtype.itemsize > MAX_META_BYTES:
            raise CounterexampleFileError(
                f"{path!r}: its meta member takes {dtype.itemsize:.3g} bytes, above the limit "
                f"of {MAX_META_BYTES:.3g}."
            )
        return
    if dtype.kind != "f" or dtype.itemsize != 8:
        raise CounterexampleFileError(
            f"{path!r}: its array {name!r} has dtype {dtype}, not float64 (the file's format)."
        )
    if got != shape:
        raise CounterexampleFileError(
            f"{path!r}: its array {name!r} has shape {got}, but its saved problem needs {shape}."
        )


def _read_member(
    path: str,
    archive: zipfile.ZipFile,
    info: zipfile.ZipInfo,
    name: str,
    shape: tuple[int, ...] | None,
) -> np.ndarray:
    """One member, its header checked again (`_check_header`) before exactly the bytes it
    declares are read; trailing bytes are refused, and reading to the end checks the CRC."""
    with archive.open(info) as fp:
        got, fortran, dtype = header = _read_header(fp)
        _check_header(path, name, shape, header)
        count = math.prod(got)
        data = fp.read(count * dtype.itemsize)
        if len(data) != count * dtype.itemsize or fp.read(1):
            raise CounterexampleFileError(
                f"{path!r}: its member {name!r} does not hold exactly the data its header declares."
            )
    flat = np.frombuffer(data, dtype=dtype, count=count)
    if shape is None:
        return flat
    return flat.reshape(got, order="F" if fortran else "C").astype(np.float64)


def _parse_meta(path: str, member: np.ndarray) -> dict[str, Any]:
    """The JSON object of the `meta` member, its schema and the type of every field checked."""
    try:
        meta = json.loads(str(member[0]))
    except (ValueError, RecursionError):  # not JSON; an integer too long; nesting too deep
        raise CounterexampleFileError(f"{path!r}: its meta is not valid JSON.") from None
    if not isinstance(meta, dict):
        raise CounterexampleFileError(f"{path!r}: its meta is not a JSON object.")
    if meta.get("schema") not in READABLE_SCHEMAS:
        raise CounterexampleFileError(
            f"{path!r} has schema {_shown(meta.get('schema'))}, expected {COUNTEREXAMPLE_SCHEMA!r} "
            f"(or {READABLE_SCHEMAS[1]!r})."
        )
    _check_fields(path, meta, META_FIELDS, "")
    _check_fields(path, meta["problem"], PROBLEM_FIELDS, "problem.")
    _check_origin(path, meta)
    return meta


def _check_origin(path: str, meta: dict[str, Any]) -> None:
    """`claim_origin`: required in the current schema, and then exactly the fields of its kind;
    a `/1` file has none and is read as a built-in claim's, the only kind there was (`meta`
    gains that origin).  Which claim it is stays the file's `claim` alone: `recheck` compares
    the id of a claim named again with it, and imports nothing that the origin names."""
    origin = meta.get("claim_origin")
    if meta["schema"] != COUNTEREXAMPLE_SCHEMA:
        if origin is not None:
            raise CounterexampleFileError(
                f"{path!r}: its meta field claim_origin is not part of schema {meta['schema']!r}."
            )
        meta["claim_origin"] = builtin_origin(meta.get("ncverify", "unknown"))
        return
    if origin is None:
        raise CounterexampleFileError(f"{path!r}: its meta lacks the field claim_origin.")
    fields = ORIGIN_FIELDS[origin["kind"]]
    _check_fields(path, origin, fields, "claim_origin.")
    extra = sorted(set(origin) - set(fields) - {"kind"})
    if extra:
        raise CounterexampleFileError(
            f"{path!r}: its meta field claim_origin has a field {extra[0]!r} that an origin of "
            f"kind {origin['kind']!r} does not have."
        )


def _check_fields(path: str, obj: dict[str, Any], fields: dict[str, _Field], prefix: str) -> None:
    for key, field in fields.items():
        if key not in obj:
            if field.required:
                raise CounterexampleFileError(f"{path!r}: its meta lacks the field {prefix}{key}.")
            continue
        if not field.test(obj[key]):
            raise CounterexampleFileError(
                f"{path!r}: its meta field {prefix}{key} must be {field.what}, not "
                f"{_shown(obj[key])}."
            )


def _shown(value: object) -> str:
    """A value as a sentence shows it: its repr, cut short."""
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
