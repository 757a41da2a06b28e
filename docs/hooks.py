"""MkDocs hooks: a thin adapter between MkDocs and `ncverify.app.pages`, which generates the claim
pages from the code at build time.

- `on_config`: the "Claims" and "API reference" sections of the nav, from `theorems.registry()`
  and the package's modules; Benchmarks left out while its page does not exist.
- `on_files`: each claim's page and plots (`ncverify.app.pages.claim_page`), the claims index,
  one mkdocstrings page per public module, and MathJax copied from the `django-static-mathjax`
  package (the `docs` extra) into `assets/mathjax/`, so that the site typesets without a network.
- `ncverify_docs.cli(...)`: runs an `ncverify` command in-process for the guides' markdown-exec
  blocks and returns it with its output as a console block.
"""

from __future__ import annotations

import logging
import os
import pkgutil
import sys
import time
from importlib import metadata
from pathlib import Path

os.environ.setdefault("COLUMNS", "100")  # rich's width for the CLI output shown in the guides
os.environ.setdefault("MPLBACKEND", "Agg")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
from mkdocs.structure.files import File, Files  # noqa: E402

# the claim pages come from the app layer; MAX_COUNT, MAX_WIDTH, example_problem and
# example_settings are re-exported for the guides (`ncverify_docs.*`) and the tests
from ncverify.app.pages import (  # noqa: E402, F401
    MAX_COUNT,
    MAX_WIDTH,
    _cell,
    _pages,
    ascii_boxes,
    claim_page,
    claims_index,
    example_problem,
    example_settings,
)

log = logging.getLogger("mkdocs.hooks.ncverify")
ROOT = Path(__file__).resolve().parents[1]  # the repository
if __name__ in sys.modules:  # mkdocs registers its hooks as modules: make this one importable
    sys.modules.setdefault("ncverify_docs", sys.modules[__name__])

MATHJAX_PARTS = (
    "tex-mml-chtml.js",
    "input/tex/extensions",
    "output/chtml/fonts/woff-v2",
    "ui",
    "a11y",
    "sre",
)


# ---- helpers for the guides (markdown-exec) ---------------------------------------------------
def cli(*args: str) -> str:
    """Run `ncverify ARGS` in this process; a console block with the command, output, exit code."""
    from typer.testing import CliRunner

    from ncverify.app import cli as cli_module
    from ncverify.app.cli import app

    saved = cli_module.out.width
    cli_module.out.width = 100  # the width of the claim pages' reports: fits the page at 1280 px
    try:
        result = CliRunner().invoke(app, list(args))
    finally:
        cli_module.out.width = saved
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    shown = " ".join(_quote(a) for a in args)
    out = ascii_boxes(result.output.rstrip("\n"))
    return f"```console\n$ ncverify {shown}\n{out}\n```\n\n(exit code {result.exit_code})\n"


def _quote(arg: str) -> str:
    return arg if arg and all(c.isalnum() or c in "-_.,=/:" for c in arg) else repr(arg)


# ---- mkdocs events ----------------------------------------------------------------------------
def on_config(config):  # noqa: ANN001, ANN201
    """Fill the generated sections of the nav; drop Benchmarks while its page does not exist."""
    import theorems

    claims = theorems.registry()
    docs_dir = Path(config["docs_dir"])
    nav = []
    for item in config["nav"] or []:
        if isinstance(item, dict) and "Claims" in item:
            item = {
                "Claims": ["claims/index.md"]
                + [{c.id: f"claims/{c.id}.md"} for c in claims.values()]
            }
        elif isinstance(item, dict) and "API reference" in item:
            item = {
                "API reference": ["api/index.md"]
                + [{f"ncverify.{m}": f"api/{m}.md"} for m in api_modules()]
            }
        elif isinstance(item, dict) and "Benchmarks" in item:
            if not (docs_dir / item["Benchmarks"]).exists():
                log.info("docs/benchmarks.md does not exist yet: Benchmarks left out of the nav")
                continue
        nav.append(item)
    config["nav"] = nav
    return config


def on_files(files: Files, config) -> Files:  # noqa: ANN001
    import theorems

    _pages.clear()
    t0 = time.perf_counter()
    for claim in theorems.registry().values():
        page, assets = claim_page(claim)
        files.append(File.generated(config, f"claims/{claim.id}.md", content=page))
        for name, data in assets.items():
            files.append(File.generated(config, f"claims/{name}", content=data))
    files.append(File.generated(config, "claims/index.md", content=claims_index()))
    files.append(File.generated(config, "api/index.md", content=api_index()))
    for module in api_modules():
        files.append(File.generated(config, f"api/{module}.md", content=api_page(module)))
    for rel, path in mathjax_files():
        files.append(File.generated(config, f"assets/mathjax/{rel}", abs_src_path=str(path)))
    log.info("generated the claim pages in %.1f s", time.perf_counter() - t0)
    return files


# ---- MathJax, vendored from a PyPI package ----------------------------------------------------
def mathjax_files() -> list[tuple[str, Path]]:
    """(path under assets/mathjax, file) for the parts of MathJax 3 the site loads."""
    try:
        dist = metadata.distribution("django-static-mathjax")
    except metadata.PackageNotFoundError:
        log.warning(
            "MathJax is missing: install the docs extra (pip install -e '.[docs]'), which brings "
            "the django-static-mathjax package whose files the site serves."
        )
        return []
    root = Path(dist.locate_file("mathjax/static/mathjax"))
    es5 = root / "es5"
    out = [("LICENSE", root / "LICENSE")]
    for part in MATHJAX_PARTS:
        path = es5 / part
        if path.is_file():
            out.append((part, path))
        else:
            out.extend(
                (f.relative_to(es5).as_posix(), f) for f in sorted(path.rglob("*")) if f.is_file()
            )
    return out


# ---- API reference ----------------------------------------------------------------------------
def api_modules() -> list[str]:
    import ncverify

    # every public module, subpackages' modules included, as dotted names below `ncverify`
    return [
        m.name.removeprefix("ncverify.")
        for m in pkgutil.walk_packages(ncverify.__path__, prefix="ncverify.")
        if not any(part.startswith("_") for part in m.name.split("."))
    ]


def api_index() -> str:
    import importlib

    lines = [
        "# API reference",
        "",
        "Every public module of the `ncverify` package, documented from its docstrings "
        "(the list is made from the package when the site is built).",
        "",
        "| module | what it is |",
        "| --- | --- |",
    ]
    for name in api_modules():
        module = importlib.import_module(f"ncverify.{name}")
        first = (module.__doc__ or "").strip().split("\n\n")[0].replace("\n", " ")
        lines.append(f"| [`ncverify.{name}`]({name}.md) | {_cell(first)} |")
    return "\n".join(lines) + "\n"


def api_page(name: str) -> str:
    return f"# `ncverify.{name}`\n\n::: ncverify.{name}\n    options:\n      show_root_heading: false\n"
