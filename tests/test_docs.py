"""The documentation site: built strictly, one page per claim, generated from the code.

One `mkdocs build --strict` into a temporary directory (module fixture), then checks on the
HTML: every claim of `ncverify list` has a page with every step of its derivation and the
verdict of its executed example (recomputed here, independently of the build); its plots are
real PNGs; every field of the JSON reports is documented; MathJax is served by the site itself
and no page loads anything from another host.  Skipped when the `docs` extra is not installed.
"""

from __future__ import annotations

import html
import importlib.util
import json
import math
import os
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

for _module in ("mkdocs", "material", "markdown_exec", "mkdocstrings_handlers.python"):
    pytest.importorskip(_module, reason="the docs extra is not installed")

from typer.testing import CliRunner  # noqa: E402

import theorems  # noqa: E402
from ncverify import Backend, verify  # noqa: E402
from ncverify.app import render  # noqa: E402
from ncverify.app.cli import app  # noqa: E402
from ncverify.claim import Claim  # noqa: E402
from ncverify.evidence.structure import Structure  # noqa: E402
from ncverify.kinds import kind_of  # noqa: E402
from ncverify.report import Counterexample  # noqa: E402

pytestmark = pytest.mark.heavy  # one strict build of the whole site (about a minute)

ROOT = Path(__file__).resolve().parents[1]


def _hooks():
    spec = importlib.util.spec_from_file_location(
        "_ncverify_docs_hooks", ROOT / "docs" / "hooks.py"
    )
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site, built here; `NCVERIFY_DOCS_SITE=DIR` checks an already built one instead."""
    if os.environ.get("NCVERIFY_DOCS_SITE"):
        return Path(os.environ["NCVERIFY_DOCS_SITE"])
    out = tmp_path_factory.mktemp("site")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", "mkdocs.yml", "-d", out],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=900,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    log = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{log}"
    assert "WARNING" not in log and "ERROR" not in log, log  # (--strict must not be quieted)
    return out


class _Text(HTMLParser):
    """The visible text of a page's article, scripts and styles left out."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self.skip = 0

    def handle_starttag(self, tag, attrs) -> None:  # noqa: ANN001
        if tag in ("script", "style"):
            self.skip += 1

    def handle_endtag(self, tag) -> None:  # noqa: ANN001
        if tag in ("script", "style") and self.skip:
            self.skip -= 1

    def handle_data(self, data: str) -> None:
        if not self.skip:
            self.parts.append(data)


def page_text(path: Path) -> str:
    source = path.read_text(encoding="utf-8")
    article = source[source.index("<article") : source.index("</article>")]
    parser = _Text()
    parser.feed(article)
    return " ".join(" ".join(parser.parts).split())


def squash(text: str) -> str:
    return " ".join(text.split())


def claim_ids() -> list[str]:
    result = CliRunner().invoke(app, ["list", "--json"])
    assert result.exit_code == 0, result.output
    return [c["id"] for c in json.loads(result.stdout)]


def test_every_claim_has_a_page_with_every_derivation_step(site: Path) -> None:
    ids = claim_ids()
    assert ids, "ncverify list shows no claim"
    registry = theorems.registry()
    for claim_id in ids:
        page = site / "claims" / claim_id / "index.html"
        assert page.is_file(), f"no page for claim {claim_id}"
        text = page_text(page)
        claim = registry[claim_id]
        assert squash(claim.title) in text
        assert squash(claim.source) in text and squash(claim.status) in text
        for i, step in enumerate(claim.derivation(), 1):
            assert f"Step {i}." in text, f"{claim_id}: step {i} missing"
            assert squash(step.text) in text, f"{claim_id}: the sentence of step {i} is missing"
            assert squash(step.formula) in text, f"{claim_id}: the formula of step {i} is missing"
            assert step.reference in text, f"{claim_id}: how step {i} is checked is missing"
            if step.check == "sympy":  # the identity was run at build time, and held
                assert f"sympy identity {step.reference} - holds (simplifies to 0)" in text


def test_formulas_are_left_for_mathjax_in_arithmatex_blocks(site: Path) -> None:
    for claim_id in claim_ids():
        source = (site / "claims" / claim_id / "index.html").read_text(encoding="utf-8")
        blocks = re.findall(r'<div class="arithmatex">\\\[(.*?)\\\]</div>', source, flags=re.S)
        formulas = [squash(html.unescape(b)) for b in blocks]
        for step in theorems.registry()[claim_id].derivation():
            assert squash(step.formula) in formulas, f"{claim_id}: {step.formula!r} not typeset"


def test_each_claim_page_shows_the_verdict_of_its_example(site: Path) -> None:
    hooks = _hooks()
    for claim_id in claim_ids():
        claim = theorems.registry()[claim_id]
        problem = hooks.example_problem(claim)
        assert max(problem.counts) <= hooks.MAX_COUNT and max(problem.widths) <= hooks.MAX_WIDTH
        expected = verify(claim, problem, Backend.create(), hooks.example_settings()).verdict
        text = page_text(site / "claims" / claim_id / "index.html")
        assert f"Verdict: {expected}" in text, f"{claim_id}: verdict {expected} not shown"
        report = json.loads((site / "claims" / f"{claim_id}-report.json").read_text())
        assert report["verdict"] == expected and report["claim"] == claim_id
        index = page_text(site / "claims" / "index.html")
        assert re.search(rf"{re.escape(claim_id)} .*? {re.escape(expected)}", index)


def test_plots_are_png_images_that_the_pages_show(site: Path) -> None:
    for claim_id in claim_ids():
        claim = theorems.registry()[claim_id]
        source = (site / "claims" / claim_id / "index.html").read_text(encoding="utf-8")
        images = re.findall(r'<img[^>]*src="([^"]+)"', source)
        if kind_of(claim.loss).no_lambda_phase:  # no phase over lambda: said in words
            assert not images and "no phase over λ" in source, claim_id
            continue
        # generic: one closed-form plot per axis on which the default instance has a finite
        # phase boundary, and the search plot of a claim with a search of its own
        phase = claim.closed_form(claim.default_problem()).phase
        # the NC trace of a run, where the kind has layers to trace (else said in words)
        no_trace = kind_of(claim.loss).no_layer_trace
        expected = [] if no_trace else [f"{claim_id}-nc-trace.png"]
        assert not no_trace or no_trace in " ".join(source.split()), claim_id
        expected += [
            f"{claim_id}-gains-{axis}.png"
            for axis in ("lambda", "lambda_b")
            if any(math.isfinite(b.critical) for b in phase.on(axis))
        ]
        if type(claim).search is not Claim.search:
            expected.append(f"{claim_id}-search.png")
        # every registered claim with a phase over lambda draws it
        assert any("-gains-" in name or name.endswith("-search.png") for name in expected), claim_id
        for name in expected:
            assert any(src.endswith(name) for src in images), f"{claim_id}: {name} not shown"
            data = (site / "claims" / name).read_bytes()
            assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_every_json_report_field_is_documented(site: Path) -> None:
    documented = set(
        re.findall(
            r"<code>(\w+(?:\[\])?(?:\.\w+(?:\[\])?)*)</code>",
            (site / "json" / "index.html").read_text(encoding="utf-8"),
        )
    )
    reports = [json.loads(p.read_text()) for p in sorted((site / "claims").glob("*-report.json"))]
    assert reports
    structure = Structure(alive_classes=(0,), rank_WH=1, singular_values_WH=(1.0,))
    cex = Counterexample(1.0, 2.0, 1.0, 1e-16, "a test", structure)
    reports.append({"counterexample": cex.to_json()})
    missing = sorted({path for r in reports for path in _paths(r, "")} - documented)
    assert not missing, f"fields of the JSON report not documented in docs/json.md: {missing}"


def _paths(value, prefix: str):  # noqa: ANN001, ANN202
    if isinstance(value, dict):
        if prefix and not prefix.endswith("[]"):
            yield prefix
        for key, item in value.items():
            yield from _paths(item, f"{prefix}.{key}" if prefix else key)
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        yield prefix
        for item in value:
            yield from _paths(item, f"{prefix}[]")
    else:
        yield prefix


def test_mathjax_is_served_by_the_site_and_nothing_comes_from_elsewhere(site: Path) -> None:
    assert (site / "assets" / "mathjax" / "tex-mml-chtml.js").stat().st_size > 100_000
    fonts = list(
        (site / "assets" / "mathjax" / "output" / "chtml" / "fonts" / "woff-v2").glob("*.woff")
    )
    assert len(fonts) > 10
    remote = re.compile(r'<(?:script|link|img|iframe)[^>]+(?:src|href)="(?:https?:)?//', re.I)
    pages = list(site.rglob("*.html"))
    assert len(pages) > 10
    for page in pages:
        source = page.read_text(encoding="utf-8")
        assert not remote.search(source), f"{page.relative_to(site)} loads from another host"
    claim_page = (site / "claims" / claim_ids()[0] / "index.html").read_text(encoding="utf-8")
    assert "assets/mathjax/tex-mml-chtml.js" in claim_page
    assert "javascripts/mathjax.js" in claim_page


def test_guides_ran_their_examples(site: Path) -> None:
    guides = ("getting-started", "reports", "json", "verdicts", "adding-a-claim", "backends")
    for name in (*guides, "measure"):
        text = page_text(site / name / "index.html")
        assert "Traceback" not in text, f"{name}: an executed block failed"
    started = page_text(site / "getting-started" / "index.html")
    assert "$ ncverify check mse-balanced-biasfree" in started
    assert re.search(r"mse-balanced-biasfree (CERTIFIED|CONSISTENT|REFUTED|INCONCLUSIVE)", started)
    guide = page_text(site / "adding-a-claim" / "index.html")
    assert re.search(r"lambda= 5e-4 M=1 rho=\S+ certified", guide)
    assert re.search(r"lambda= 5e-4 M=2 rho=\S+ not-applicable", guide)
    assert "the claim holds on every drawn instance" in guide
    measured = page_text(site / "measure" / "index.html")
    assert "$ ncverify measure head.npz" in measured
    assert "collapsed classes: predicted [2, 3], trained [2, 3]" in measured


@pytest.mark.parametrize("fmt", ["text", "markdown", "latex"])
def test_derive_prints_every_step_in_each_format(fmt: str) -> None:
    for claim_id in claim_ids():
        claim = theorems.registry()[claim_id]
        result = CliRunner().invoke(app, ["derive", claim_id, "--format", fmt])
        assert result.exit_code == 0, result.output
        assert result.stdout.strip() == render.derivation(claim, fmt).strip()
        for step in claim.derivation():
            assert step.formula in result.stdout


def test_markdown_escapes_what_markdown_would_eat() -> None:
    assert render._md("lambda_k* < thr_M, $x$ [a] `c`") == (
        r"lambda\_k\* &lt; thr\_M, &#36;x&#36; \[a\] \`c\`"
    )
    assert render._tex("a_b & 50% {x} ~^") == (
        r"a\_b \& 50\% \{x\} \textasciitilde{}\textasciicircum{}"
    )


def test_every_derivation_step_names_a_test_or_identity_that_exists() -> None:
    # the claim pages say "checked by tests/x.py::test_y": that test (or sympy identity) must exist
    missing = []
    for claim in theorems.registry().values():
        for i, step in enumerate(claim.derivation(), 1):
            path, _, name = step.reference.partition("::")
            source = ROOT / path
            found = source.is_file() and re.search(
                rf"^\s*def {re.escape(name)}\(", source.read_text(encoding="utf-8"), re.M
            )
            if not found:
                missing.append(f"{claim.id} step {i}: {step.reference}")
    assert not missing, "derivation steps cite checks that do not exist: " + "; ".join(missing)


def test_nc_trace_follows_a_run_to_the_prediction() -> None:
    # the trace behind the plots: run 0 of multistart, recorded every `every` iterations
    from ncverify import Problem
    from ncverify.app.trace import nc_trace
    from ncverify.evidence.optimize import multistart

    claim = theorems.get("mse-balanced-biasfree")
    problem = Problem.build(classes=3, samples=2, depth=2, width=3)
    trace = nc_trace(claim, problem, seed=5, every=4)
    its = [p.iteration for p in trace.points]
    assert its[0] == 0 and all(i % 4 == 0 for i in its[1:-1]) and its == sorted(set(its))
    run = multistart(problem, Backend.create(), restarts=1, seed=5)[0]
    # the same run as the verifier's run 0: never past its end, and ending at its value (the
    # final line-search stalls that end a run make no callback, so the counts may differ)
    assert its[-1] <= run.iterations
    assert abs(trace.points[-1].objective - run.objective) <= 1e-12 * abs(run.objective)
    first, last = trace.points[0], trace.points[-1]
    assert first.gap > 1e-3 and abs(last.gap) <= 1e-9 * abs(trace.claimed)
    assert last.nc < 1e-4 < first.nc and last.nc1 < 1e-8


def test_nc_trace_reproduces_every_run_of_the_default_multistart() -> None:
    # one start recipe: run i >= 1 of 8 starts at run_scales' i-th scale (0.61 for i = 1), not at
    # the i-th scale given (the trace used 1.0 there and followed another run)
    from ncverify import Problem
    from ncverify.app.trace import nc_trace
    from ncverify.evidence.optimize import multistart

    claim = theorems.get("mse-balanced-biasfree")
    problem = Problem.build(classes=3, samples=2, depth=2, width=3)
    runs = multistart(problem, Backend.create(), restarts=8, seed=2)
    for index in (1, 5):
        trace = nc_trace(claim, problem, seed=2, index=index, restarts=8)
        assert trace.scale == runs[index].scale
        objective = runs[index].objective
        assert abs(trace.points[-1].objective - objective) <= 1e-12 * abs(objective)
