"""Claims by reference: the built-in ones, installed packages' ones, and a researcher's own.

Every CLAIM argument of the command line (`show`, `derive`, `check`, `predict`, `sweep`,
`measure --claim`, `recheck --claim`) is resolved here, and nowhere else:

- **an id** (`mse-balanced-biasfree`): a built-in claim (`theorems.registry()`), else a claim
  that an installed package registers in the entry-point group `ncverify.claims`, under an entry
  point named as the claim's id (`pyproject.toml`: `[project.entry-points."ncverify.claims"]`,
  `my-claim = "my_package.my_module:claim"`; the value may also name a module with a `claim`);
- **a file** (`path/to/my_claim.py`: an argument ending in `.py`): the file is executed as a
  module of its own and its module-level `claim` is used;
- **a module and an attribute** (`my_package.my_module:claim`, importable from `sys.path`, e.g.
  with `PYTHONPATH`): the attribute, or the `claim` of a module it names.

The object must be an instance of `ncverify.claim.Claim` whose id is letters, digits, `.`, `_`
and `-` (the id names saved files); anything else is bad input (`ClaimError`, one sentence:
a missing file, an exception while importing it, no `claim`, an object of another type).

Each resolved claim carries its origin (`ncverify.io.claim_origin`), which a saved counterexample
records, so that `recheck` can tell a built-in claim, which it looks up by id, from code that it
must not import on a file's say-so.

Why built-in claims come first and are found without reading an entry point: no installed
package can shadow or break them.  A package that registers a built-in claim's id, or an id that
another package registers too, is refused (one sentence naming the distributions) wherever the
installed claims are read: `ncverify list`, `check --all`, and an id that is not built-in.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import re
import sys
import types
from importlib import metadata

import theorems
from ncverify.claim import Claim
from ncverify.io import ORIGIN_ATTRIBUTE, builtin_origin, claim_origin, module_origin
from ncverify.report import version

#: The entry-point group in which installed packages register claims.
GROUP = "ncverify.claims"
#: What a claim id may be: it names saved counterexample files, so no path separators.
CLAIM_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
#: The start of the module name a claim file is executed as (then digests of its path and
#: content: the same file, unchanged, is executed once per process).
FILE_MODULE_PREFIX = "ncverify_claim_file_"


class ClaimError(ValueError):
    """A CLAIM that names no usable claim; the message is one sentence."""


# ---- by id ----------------------------------------------------------------------------------------
def builtin() -> dict[str, Claim]:
    """The built-in claims by id, in `theorems`' order."""
    claims = theorems.registry()
    for claim in claims.values():
        _record(claim, builtin_origin(version()))
    return claims


def registry() -> dict[str, Claim]:
    """Every claim by id: the built-in ones, then those of installed packages (by name)."""
    claims = builtin()
    for entry in installed(claims):
        claims[entry.name] = from_entry_point(entry)
    return claims


def installed(builtin_ids: dict[str, Claim]) -> list[metadata.EntryPoint]:
    """The entry points of `GROUP` by name, none loaded yet.

    Raises:
        ClaimError: one registers a built-in claim's id, or two register the same id.
    """
    seen: dict[str, metadata.EntryPoint] = {}
    for entry in sorted(metadata.entry_points(group=GROUP), key=lambda e: e.name):
        if entry.name in builtin_ids:
            raise ClaimError(
                f"{_where(entry)} registers the claim id {entry.name!r}, which is a built-in "
                "claim's; rename the claim and its entry point."
            )
        if entry.name in seen:
            raise ClaimError(
                f"{_where(entry)} and {_where(seen[entry.name])} both register the claim id "
                f"{entry.name!r}; uninstall one of them."
            )
        seen[entry.name] = entry
    return list(seen.values())


def by_id(claim_id: str) -> Claim:
    """A built-in claim, else an installed package's (only its entry point is loaded)."""
    claims = builtin()
    if claim_id in claims:
        return claims[claim_id]
    entries = {e.name: e for e in installed(claims)}
    if claim_id in entries:
        return from_entry_point(entries[claim_id])
    raise ClaimError(f"unknown claim {claim_id!r}; known claims: {', '.join([*claims, *entries])}.")


def from_entry_point(entry: metadata.EntryPoint) -> Claim:
    """The claim an installed package's entry point names; its name must be the claim's id."""
    where = _where(entry)
    try:
        found = entry.load()
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - any failure of outside code
        raise ClaimError(f"cannot load {where}: {_exception(exc)}.") from None
    claim = _claim_of(found, where)
    if claim.id != entry.name:
        raise ClaimError(
            f"{where} names a claim whose id is {claim.id!r}; an entry point's name must be "
            "its claim's id."
        )
    dist = entry.dist
    origin = {
        "kind": "entry-point",
        "name": entry.name,
        "value": entry.value,
        "distribution": None if dist is None else dist.name,
        "version": None if dist is None else dist.version,
    }
    return _record(claim, origin)


# ---- a file, a module ------------------------------------------------------------------------------
def from_file(path: str) -> Claim:
    """The module-level `claim` of a Python file, executed as a module of its own.

    Why the file is read once and executed from those bytes: the sha256 recorded as its origin
    is then the digest of exactly the code that ran.
    """
    absolute = os.path.abspath(path)
    if not os.path.isfile(absolute):
        raise ClaimError(f"no such claim file: {path!r}.")
    try:
        with open(absolute, "rb") as fh:
            source = fh.read()
    except OSError as exc:
        raise ClaimError(f"cannot read the claim file {path!r}: {exc.strerror or exc}.") from None
    digest = hashlib.sha256(source).hexdigest()
    where = hashlib.sha256(absolute.encode()).hexdigest()[:8]
    name = f"{FILE_MODULE_PREFIX}{where}_{digest[:16]}"
    module = sys.modules.get(name) or _execute(name, absolute, source, path)
    claim = _claim_of(module, f"the claim file {path!r}")
    return _record(claim, {"kind": "file", "path": absolute, "sha256": digest})


def _execute(name: str, absolute: str, source: bytes, shown: str) -> types.ModuleType:
    """Run a claim file's `source` as the module `name` (registered in `sys.modules` first, as
    an import does: dataclasses and `Claim.statement` look their module up there)."""
    module = types.ModuleType(name)
    module.__file__ = absolute
    sys.modules[name] = module
    try:
        # dont_inherit: the file's own `from __future__` imports, not this module's
        code = compile(source, absolute, "exec", dont_inherit=True)
        exec(code, module.__dict__)  # noqa: S102 - the user named this file to be run
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - any failure of outside code
        del sys.modules[name]
        raise ClaimError(f"cannot import the claim file {shown!r}: {_exception(exc)}.") from None
    return module


def from_module(reference: str) -> Claim:
    """The claim `module:attribute` names (a dotted attribute, as in an entry point's value)."""
    module_name, _, attribute = reference.partition(":")
    if not module_name or not attribute:
        raise ClaimError(
            f"{reference!r} names no claim: give a claim id, a file ending in .py, or "
            "module:attribute."
        )
    try:
        found: object = importlib.import_module(module_name)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - any failure of outside code
        raise ClaimError(
            f"cannot import the module {module_name!r} of {reference!r}: {_exception(exc)}."
        ) from None
    for part in attribute.split("."):
        if not hasattr(found, part):
            raise ClaimError(f"the module {module_name!r} has no attribute {attribute!r}.")
        found = getattr(found, part)
    claim = _claim_of(found, reference)
    if builtin().get(claim.id) is claim:  # `theorems.x:claim`: a built-in claim after all
        return claim
    return _record(claim, module_origin(module_name, attribute))


# ---- any reference ---------------------------------------------------------------------------------
def resolve(reference: str) -> Claim:
    """The claim a CLAIM argument names: a file (ending in `.py`), `module:attribute`, or an id.

    Raises:
        ClaimError: bad input, one sentence.
    """
    if reference.endswith(".py"):
        return from_file(reference)
    if ":" in reference:
        return from_module(reference)
    return by_id(reference)


def reference(claim: Claim) -> str:
    """A CLAIM argument that resolves `claim` again (in another process too: a sweep's
    workers, a point's `check` command): its id, its file's absolute path, or
    `module:attribute`."""
    return reference_of_origin(origin_of(claim), claim.id)


def reference_of_origin(origin: dict[str, object], claim_id: str) -> str:
    """The CLAIM argument that names the claim `claim_id` of `origin` (`ATTRIBUTE` where a
    claim made in a program was not found among its module's attributes)."""
    kind = origin["kind"]
    if kind == "file":
        return str(origin["path"])
    if kind == "module":
        return f"{origin['module']}:{origin['attribute'] or 'ATTRIBUTE'}"
    return claim_id


def origin_of(claim: Claim) -> dict[str, object]:
    """Where `claim` came from (`ncverify.io.claim_origin`)."""
    return claim_origin(claim)


def describe(origin: dict[str, object]) -> str:
    """An origin in words, for sentences: "the built-in claim 'x'", "the file /a/b.py", ..."""
    kind = origin.get("kind")
    if kind == "built-in":
        return f"the built-in claim (ncverify {origin['ncverify']})"
    if kind == "entry-point":
        dist = f" of {origin['distribution']} {origin['version']}" if origin["distribution"] else ""
        return f"the installed claim {origin['name']!r}{dist}"
    if kind == "file":
        return f"the claim file {origin['path']}"
    attribute = origin.get("attribute")
    return f"the claim {origin['module']}{'' if attribute is None else ':' + str(attribute)}"


# ---- helpers -----------------------------------------------------------------------------------------
def _claim_of(found: object, where: str) -> Claim:
    """`found` (or the `claim` of a module) as a claim, after checking its type and id."""
    if isinstance(found, types.ModuleType):
        if not hasattr(found, "claim"):
            raise ClaimError(f"{where} has no module-level claim.")
        found = found.claim
    if not isinstance(found, Claim):
        what = (
            f"the class {found.__name__}"
            if isinstance(found, type)
            else f"an object of type {type(found).__name__}"
        )
        raise ClaimError(f"{where} gives {what}, not an instance of ncverify.claim.Claim.")
    if not isinstance(found.id, str) or not CLAIM_ID.fullmatch(found.id):
        raise ClaimError(
            f"{where} gives a claim whose id {found.id!r} is not a claim id (letters, digits, "
            "'.', '_' and '-', not starting with a punctuation mark)."
        )
    return found


def _record(claim: Claim, origin: dict[str, object]) -> Claim:
    """`claim`, with where it came from recorded on it (`ncverify.io.ORIGIN_ATTRIBUTE`);
    `object.__setattr__` so that a frozen dataclass claim takes it too."""
    object.__setattr__(claim, ORIGIN_ATTRIBUTE, origin)
    return claim


def _where(entry: metadata.EntryPoint) -> str:
    dist = entry.dist
    of = "" if dist is None else f" of {dist.name} {dist.version}"
    return f"the entry point {entry.name!r}{of} (group {GROUP})"


def _exception(exc: BaseException) -> str:
    """An exception as one line: its type and message, no traceback."""
    message = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__
