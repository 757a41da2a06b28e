"""The claim pages of the documentation site, generated from the claim modules (the app layer's
side of `docs/hooks.py`, which only adapts them to MkDocs).

One page per claim of `theorems.registry()`: the module docstring (its doctests run here), source,
status, certificates, the hypotheses (evaluated on a fixed set of instances), the worked
derivation from `derivation()` with every sympy identity run now, a verified example executed
now (`ncverify.verify` on a tiny instance; its report, verdict and JSON), and matplotlib plots
made now: NC metrics over the iterations of one optimiser run (`ncverify.app.trace`); the closed
form along every axis on which the claim draws a phase boundary (from its typed `Phase`); the
best structured candidate of the claim's own `search`, where it has one.  A claim whose example
or plot cannot be made is reported as a warning and its page says what went wrong.
"""

from __future__ import annotations

import dataclasses
import doctest
import io
import json
import logging
import math
import os
import sys
import time
import traceback
from fractions import Fraction

os.environ.setdefault("MPLBACKEND", "Agg")

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ncverify.kinds import kind_of  # noqa: E402

log = logging.getLogger("mkdocs.hooks.ncverify")


RESTARTS = 3  # random-start runs of each executed example
SEED = 0
MAX_COUNT = 8  # largest class of an example instance
MAX_WIDTH = 8
GAIN_GRID = 14  # lambdas of the gains plot (plus two beside every threshold)
CE_GRID = 8  # lambdas of the cross-entropy plot
CE_SEARCH_STARTS = 2  # random starts of the claim's search at each of them
TRACE_EVERY = 3  # NC metrics of every third iteration (and of the last)
ADMONITION = {
    "certified": "success",
    "consistent": "success",
    "refuted": "failure",
    "inconclusive": "warning",
    "not-applicable": "info",
}
_pages: dict[str, dict] = {}  # claim id -> what its page showed (verdict, timings), per build


_BOX = str.maketrans(
    {
        **dict.fromkeys("┏┳┓┡╇┩└┴┘┌┬┐├┼┤╭╮╰╯┣┫┠┨┯┷╋", "+"),
        **dict.fromkeys("━─═", "-"),
        **dict.fromkeys("┃│║", "|"),
    }
)


def ascii_boxes(text: str) -> str:
    """rich's box-drawing characters as ASCII, so that tables stay aligned in any monospace font."""
    return text.translate(_BOX)


# ---- claims -----------------------------------------------------------------------------------
def example_problem(claim):  # noqa: ANN001, ANN201
    """A tiny instance of the claim's default: the same class proportions with at most
    `MAX_COUNT` samples per class, the same depth, lambdas, loss, bias and activation, widths <=
    `MAX_WIDTH`."""
    d = claim.default_problem()
    factor = max(1.0, max(d.counts) / MAX_COUNT)
    counts = tuple(max(1, round(c / factor)) for c in d.counts)
    return d.with_(counts=counts, widths=tuple(min(w, MAX_WIDTH) for w in d.widths))


def example_settings():  # noqa: ANN201
    from ncverify import Settings

    return Settings(restarts=RESTARTS, seed=SEED)


def _decimal(x: Fraction) -> str:
    """A lambda as the CLI reads it: the shortest decimal when it is exact, else `p/q`."""
    text = repr(float(x))
    return text if Fraction(text) == x else str(x)


def command(claim, p) -> str:  # noqa: ANN001
    """The `ncverify check` command that reproduces the example."""
    lw = sorted(set(p.lambda_w))
    parts = [
        f"ncverify check {claim.id}",
        f"--counts {','.join(map(str, p.counts))}",
        f"--depth {p.depth}",
        f"--widths {','.join(map(str, p.widths))}",
        f"--lambda-w {','.join(_decimal(x) for x in (lw if len(lw) == 1 else p.lambda_w))}",
        f"--lambda-h {_decimal(p.lambda_h)}",
        f"--loss {p.loss}",
    ]
    if p.activation != "linear":
        parts.append(f"--activation {p.activation}")
    if p.lambda_b is not None:
        parts.append(f"--lambda-b {_decimal(p.lambda_b)}")
    else:
        parts.append(f"--bias {p.bias}")
    parts.append(f"--restarts {RESTARTS} --seed {SEED}")
    lines, line = [], ""
    for part in parts:  # shell continuation lines of at most ~88 characters
        if line and len(line) + len(part) > 86:
            lines.append(line)
            line = "    " + part
        else:
            line = f"{line} {part}" if line else part
    return " \\\n".join([*lines, line])


def claim_page(claim) -> tuple[str, dict[str, bytes]]:  # noqa: ANN001
    """The Markdown of a claim's page and the files it shows (plots, the JSON report)."""
    assets: dict[str, bytes] = {}
    info: dict = {"verdict": None, "errors": []}
    _pages[claim.id] = info
    md = [f"# {_md(claim.title)}", ""]
    md.append(
        f"`{claim.id}` · loss `{claim.loss}` · bias `{claim.bias}` · certificates: "
        + (", ".join(f"`{c}`" for c in claim.certificates) or "none")
    )
    md.append("")
    sections = (
        ("statement", _statement),
        ("source", _source),
        ("hypotheses", _hypotheses),
        ("derivation", _derivation),
        ("example", _example),
        ("trace", _trace_section),
        ("phase", _phase_section),
    )
    for name, make in sections:
        try:
            md.append(make(claim, assets, info))
        except Exception as exc:  # noqa: BLE001 - reported as a warning and on the page
            info["errors"].append(name)
            detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
            log.warning("claim %s: the %s section failed: %s", claim.id, name, detail)
            md.append(
                f'!!! failure "The {name} section could not be made"\n\n'
                f"    ```text\n{_indent(traceback.format_exc(), 4)}\n    ```\n"
            )
    return "\n".join(md), assets


def _statement(claim, assets, info) -> str:  # noqa: ANN001
    module = sys.modules[type(claim).__module__]
    doc = (module.__doc__ or "").strip()
    lines = ["## Statement", "", *_doctest_blocks(doc), ""]
    tests = [t for t in doctest.DocTestFinder().find(module) if t.name == module.__name__]
    examples = sum(len(t.examples) for t in tests)
    if examples:
        runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
        out = io.StringIO()
        for t in tests:
            runner.run(t, out=out.write)
        failed = runner.failures
        if failed:
            log.warning("claim %s: %d doctest example(s) of its docstring failed", claim.id, failed)
            lines.append(
                f'!!! failure "Doctest: {failed} of {examples} examples failed"\n\n'
                f"    ```text\n{_indent(out.getvalue(), 4)}\n    ```\n"
            )
        else:
            lines.append(
                f"*The {examples} doctest example(s) above ran when this page was built and "
                "printed what they show.*\n"
            )
    return "\n".join(lines)


def _doctest_blocks(doc: str) -> list[str]:
    """The docstring as Markdown, its `>>>` examples turned into fenced `pycon` blocks."""
    out: list[str] = []
    in_block = False
    for line in doc.splitlines():
        starts = line.lstrip().startswith(">>>")
        if starts and not in_block:
            out.append("```pycon")
            in_block = True
        elif in_block and not line.strip():
            out.append("```")
            in_block = False
        out.append(line)
    if in_block:
        out.append("```")
    return out


def _source(claim, assets, info) -> str:  # noqa: ANN001
    d = claim.default_problem()
    rows = [
        ("source", _md(claim.source)),
        ("status", _md(claim.status)),
        ("module", f"`{type(claim).__module__}`"),
        ("certificates", ", ".join(f"`{c}`" for c in claim.certificates) or "none"),
        ("default instance", f"`{_instance(d)}`"),
    ]
    if claim.thresholds_text():
        rows.append(("thresholds", _md(claim.thresholds_text())))
    lines = ["## Source and status", "", "| what | |", "| --- | --- |"]
    lines += [f"| {k} | {_cell(v)} |" for k, v in rows]
    lines.append("")
    lines.append(
        f"The same summary in a terminal: `ncverify show {claim.id}`; the derivation: "
        f"`ncverify derive {claim.id} --format text|markdown|latex --check`."
    )
    return "\n".join(lines) + "\n"


VARIANTS = (
    ("balanced, no bias, MSE", {"counts": "4,4,4", "bias": "none", "loss": "mse"}),
    ("imbalanced, no bias, MSE", {"counts": "6,3,2", "bias": "none", "loss": "mse"}),
    ("balanced, free bias, MSE", {"counts": "4,4,4", "bias": "free", "loss": "mse"}),
    ("imbalanced, free bias, MSE", {"counts": "6,3,2", "bias": "free", "loss": "mse"}),
    ("balanced, regularised bias, MSE", {"counts": "4,4,4", "lambda_b": "1e-3", "loss": "mse"}),
    ("balanced, no bias, cross-entropy", {"counts": "4,4,4", "bias": "none", "loss": "ce"}),
    ("balanced, free bias, cross-entropy", {"counts": "4,4,4", "bias": "free", "loss": "ce"}),
    ("imbalanced, no bias, cross-entropy", {"counts": "6,3,2", "bias": "none", "loss": "ce"}),
)


def _hypotheses(claim, assets, info) -> str:  # noqa: ANN001
    from ncverify import Problem, ProblemError

    d = claim.default_problem()
    own: dict[str, object] = {"loss": d.loss}
    own.update({"lambda_b": "1e-3"} if d.bias == "regularised" else {"bias": d.bias})
    if d.radius_w is not None:  # a normalised problem keeps its radii
        own.update(radius_w=d.radius_w, radius_h=d.radius_h)
    if d.smoothing is not None:  # label smoothing keeps its alpha
        own.update(smoothing=d.smoothing)
    if d.focusing is not None:  # focal loss keeps its gamma
        own.update(focusing=d.focusing)
    if d.temperature is not None:  # the contrastive problem keeps its temperature
        own.update(temperature=d.temperature)
    variants = list(VARIANTS) + [
        ("the claim's loss and bias, one layer (M = 1)", {"counts": "4,4,4", "depth": 1, **own}),
        ("the claim's loss and bias, width 1 < K - 1 = 2", {"counts": "4,4,4", "width": 1, **own}),
    ]
    seen: list[str] = []
    rows = []
    for label, kw in variants:
        try:
            p = Problem.build(**{"depth": 3, "width": 8, **kw})
        except ProblemError:  # no instance of this kind (a normalised problem has one layer)
            continue
        unmet = claim.hypotheses(p)
        seen += [h for h in unmet if h not in seen]
        rows.append(
            f"| {label} | `{_instance(p)}` | "
            + ("applies" if not unmet else "not applicable: " + _cell(_md("; ".join(unmet))))
            + " |"
        )
    lines = ["## Hypotheses", ""]
    if seen:
        lines.append(
            "The claim's hypotheses, in its own words (each one is unmet by some instance below):"
        )
        lines.append("")
        lines += [f"- {_md(h)}" for h in seen]
    else:
        lines.append("No instance below violates a hypothesis of the claim.")
    lines += [
        "",
        "`claim.hypotheses(problem)` evaluated on a fixed set of instances when this page was "
        "built (an empty list means the claim applies; otherwise `ncverify check` answers "
        "`not-applicable`, or with `--probe` runs the checks anyway):",
        "",
        "| instance | parameters | hypotheses |",
        "| --- | --- | --- |",
        *rows,
    ]
    return "\n".join(lines) + "\n"


def _derivation(claim, assets, info) -> str:  # noqa: ANN001
    from ncverify.app import render

    steps = claim.derivation()
    t0 = time.perf_counter()
    results = [s.verify_identity() if s.check == "sympy" else None for s in steps]
    elapsed = time.perf_counter() - t0
    failed = [i + 1 for i, ok in enumerate(results) if ok is False]
    for i in failed:
        log.warning("claim %s: the sympy identity of derivation step %d fails", claim.id, i)
    kinds = {k: sum(s.check == k for s in steps) for k in ("sympy", "test", "lemma")}
    body = render.derivation(claim, "markdown", results).split("\n", 1)[1]
    lines = [
        "## Worked derivation",
        "",
        f"{len(steps)} steps: {kinds['sympy']} checked by a sympy identity, {kinds['test']} "
        f"numerically on random instances by a named test, {kinds['lemma']} citing a lemma that a "
        f"named test checks. Every sympy identity was simplified when this page was built "
        f"({elapsed:.1f} s): " + ("**all hold**." if not failed else f"**steps {failed} FAIL**."),
        "",
        body,
    ]
    return "\n".join(lines) + "\n"


def _example(claim, assets, info) -> str:  # noqa: ANN001
    from rich.console import Console

    from ncverify import Backend, verify
    from ncverify.app import render

    p = example_problem(claim)
    t0 = time.perf_counter()
    report = verify(claim, p, Backend.create(), example_settings())
    info["elapsed"] = time.perf_counter() - t0
    info["verdict"] = report.verdict
    info["problem"] = p
    console = Console(record=True, width=100, file=io.StringIO(), color_system=None)
    console.print(render.report(report))
    text = ascii_boxes(console.export_text().rstrip())
    data = report.to_json()
    data["timing"] = {
        k: [round(t, 3) for t in v] if isinstance(v, list) else round(v, 3)
        for k, v in data["timing"].items()
    }
    assets[f"{claim.id}-report.json"] = (
        json.dumps(data, indent=2, allow_nan=False) + "\n"
    ).encode()
    kind = ADMONITION.get(report.verdict, "note")
    return "\n".join(
        [
            "## Verified example",
            "",
            f"Executed when this page was built, on a tiny instance of the claim's default (same "
            f"class proportions, depth, lambdas, loss and bias; at most {MAX_COUNT} samples per "
            f"class and width at most {MAX_WIDTH}), with {RESTARTS} random-start runs:",
            "",
            f"```console\n$ {command(claim, p)}\n```",
            "",
            f'!!! {kind} "Verdict: {report.verdict}"',
            "",
            f"    {_verdict_sentence(report)}",
            "",
            f"```text\n{text}\n```",
            "",
            f"The JSON report of this run (schema `ncverify.report/4`, see [the JSON report]"
            f"(../json.md)): [{claim.id}-report.json]({claim.id}-report.json).",
            "",
        ]
    )


def _verdict_sentence(report) -> str:  # noqa: ANN001
    counts = report.outcome_counts()
    passed = sum(c.passed is True for c in report.checks)
    return (
        f"{passed} of {len(report.checks)} checks passed; {len(report.runs)} random-start runs: "
        f"{counts['at-prediction']} reached the prediction, {counts['worse']} ended worse, "
        f"{counts['better']} better; certificate: "
        + (report.certificate.kind if report.certificate is not None else "none")
        + "."
    )


def _trace_section(claim, assets, info) -> str:  # noqa: ANN001
    from ncverify.app.trace import nc_trace

    kind = kind_of(claim.loss)
    if kind.no_layer_trace is not None:
        return (
            "## NC metrics over the optimiser's iterations\n\n"
            f"There are no per-layer NC metrics to trace for {kind.description}: "
            f"{kind.no_layer_trace}.\n"
        )
    p = info.get("problem") or example_problem(claim)
    t0 = time.perf_counter()
    tr = nc_trace(claim, p, seed=SEED, index=0, restarts=RESTARTS, every=TRACE_EVERY)
    elapsed = time.perf_counter() - t0
    it = np.array([pt.iteration for pt in tr.points], dtype=float)
    scale = max(abs(tr.claimed), 1e-300)
    fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=110)
    series = (
        ("|F - F*| / |F*|", [abs(pt.gap) / scale for pt in tr.points]),
        ("NC1 (layer 1)", tr.column("nc1")),
        ("largest NC2/NC3 distance", tr.column("nc")),
        ("largest relative error", tr.column("rel")),
    )
    for label, values in series:
        y = np.array([np.nan if v is None else max(float(v), 1e-17) for v in values])
        if np.isfinite(y).any():
            ax.semilogy(it, y, label=label, lw=1.6)
    ax.set_xlabel("L-BFGS iteration")
    ax.set_ylabel("value (log scale)")
    ax.set_title(f"{claim.id}: run 0 from a random start (scale {tr.scale})", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    assets[f"{claim.id}-nc-trace.png"] = _png(fig)
    last = tr.points[-1]
    fmt = lambda v: "undefined" if v is None else f"{v:.3g}"  # noqa: E731
    return "\n".join(
        [
            "## NC metrics over the optimiser's iterations",
            "",
            f"![NC metrics of {claim.id} over L-BFGS iterations]({claim.id}-nc-trace.png)",
            "",
            f"Run 0 of the example above (seed {tr.seed}, start scale {tr.scale}), traced by "
            f"`ncverify.app.trace.nc_trace` ({elapsed:.1f} s): at the start, every {TRACE_EVERY} iterations and at the end, the objective gap to the "
            f"claimed optimum and the metrics of `ncverify.evidence.metrics` against the claim's predicted "
            f"point. After {last.iteration} iterations ({tr.message}): relative gap "
            f"{abs(last.gap) / scale:.3g}{' (below the claimed optimum)' if last.gap < 0 else ''}, "
            f"NC1 {fmt(last.nc1)}, largest NC2/NC3 distance {fmt(last.nc)}, largest relative "
            f"error {fmt(last.rel)}.",
            "",
        ]
    )


def _phase_section(claim, assets, info) -> str:  # noqa: ANN001
    """Generic: the closed form along every axis on which the claim draws a phase boundary for
    its default instance, the boundaries' quantities, and the claim's own search, if it has one."""
    from ncverify import Claim

    d = claim.default_problem()
    kind = kind_of(claim.loss)
    if kind.no_lambda_phase is not None:
        return (
            "## The closed form against λ\n\n"
            f"There is no phase over λ for {kind.description}: {kind.no_lambda_phase}. "
            "See the statement and the example above.\n"
        )
    base = claim.closed_form(d)
    parts = [
        _gains_section(claim, assets, d, axis, base)
        for axis in PHASE_AXES
        if any(math.isfinite(b.critical) for b in base.phase.on(axis))
    ]
    if base.phase.quantities:
        parts.append(_quantities_section(base.phase))
    if type(claim).search is not Claim.search:
        parts.append(_search_section(claim, assets, d))
    return "\n".join(parts)


#: The axes of the closed-form plots, with how an instance moves along them and their labels.
PHASE_AXES = {
    "lambda": "λ (every λ_W and λ_H tied to it)",
    "lambda_b": "λ_b (bias weight decay)",
}


def _along(d, axis: str, value: str):  # noqa: ANN001, ANN202
    """The instance `d` with the parameter of `axis` set to `value` (exact decimal)."""
    from dataclasses import replace

    if axis == "lambda":
        return _tied(d, value)
    return replace(d, **{axis: Fraction(value)})


def _tied(d, lam: str):  # noqa: ANN001, ANN202
    """The default `d` with every lambda_W and lambda_H set to `lam`."""
    from ncverify.model.problem import exact

    value = exact(lam, "lambda")
    return d.with_(lambda_w=(value,) * d.depth, lambda_h=value)


def _axis_value(d, axis: str) -> float:  # noqa: ANN001
    return float(d.lambda_h if axis == "lambda" else getattr(d, axis))


def _gains_section(claim, assets, d, axis: str, base) -> str:  # noqa: ANN001
    """Per-class gains (and the bias, where there is one) of the closed form along `axis`, with
    the claim's boundaries on it, and verdicts either side of the nearest boundary."""
    bounds = [b for b in base.phase.on(axis) if math.isfinite(b.critical)]
    crit = sorted({b.critical for b in bounds})
    grid = set(np.geomspace(min(crit) / 10, max(crit) * 10, GAIN_GRID).tolist())
    grid.add(_axis_value(d, axis))
    for c in crit:  # resolve each jump
        grid |= {c * (1 - 1e-3), c * (1 + 1e-3)}
    t0 = time.perf_counter()
    xs, gains, biases = [], [], []
    for x in sorted(grid):
        pred = claim.closed_form(_along(d, axis, f"{x:.6g}"))
        xs.append(float(Fraction(f"{x:.6g}")))
        gains.append([c.gain_float for c in pred.classes])
        biases.append(None if pred.bias is None else pred.bias[0])
    elapsed = time.perf_counter() - t0
    fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=110)
    _draw_gains(ax, d, xs, np.array(gains), biases, bounds, _axis_value(d, axis))
    ax.set_xlabel(PHASE_AXES[axis])
    ax.set_ylabel("class gain γ_k = (W H̄)_kk")
    _closed_form_axes(ax, claim, d, "center left")
    name = f"{claim.id}-gains-{axis}.png"
    assets[name] = _png(fig)
    return "\n".join(
        [
            f"## The closed form against {PHASE_AXES[axis].split(' ')[0]}",
            "",
            f"![Per-class gains of {claim.id} against {axis}]({name})",
            "",
            f"`closed_form` of the default instance (counts {list(d.counts)}, depth {d.depth}) "
            f"at {len(xs)} values, two of them on either side of every boundary ({elapsed:.1f} s). "
            "Dashed lines: the phase boundaries the claim reports on this axis, "
            + "; ".join(f"{b.critical:.4g} (classes {list(b.classes)} {b.change})" for b in bounds)
            + ".",
            "",
            _verdicts_across(claim, axis),
        ]
    )


def _draw_gains(
    ax, d, xs: list[float], g: np.ndarray, biases: list, bounds: list, here: float
) -> None:  # noqa: ANN001
    """The gains of each group of classes with identical curves, the bias, the boundaries (with
    their values; the details are in the text below the plot) and the default instance."""
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    groups: dict[tuple, list[int]] = {}  # classes with identical curves share one line
    for k in range(g.shape[1]):
        groups.setdefault(tuple(np.round(g[:, k], 12)), []).append(k)
    for i, ks in enumerate(groups.values()):
        counts = sorted({d.counts[k] for k in ks})
        ax.semilogx(
            xs,
            g[:, ks[0]],
            "o-",
            ms=3,
            color=colours[i % len(colours)],
            label=f"classes {ks} (n = {', '.join(map(str, counts))})",
        )
    if any(b is not None for b in biases):
        ax.semilogx(
            xs,
            [np.nan if b is None else b for b in biases],
            "s:",
            ms=3,
            color="grey",
            label="bias b*_k",
        )
    colour_of = {k: colours[i % len(colours)] for i, ks in enumerate(groups.values()) for k in ks}
    for i, b in enumerate(bounds):  # details in the text below the plot: keep the plot readable
        colour = colour_of.get(b.classes[0], "black") if b.classes else "black"
        ax.axvline(b.critical, color=colour, ls="--", lw=1)
        ax.annotate(
            f"{b.critical:.3g}",
            (b.critical, 0.04 + 0.1 * (i % 4)),
            rotation=90,
            fontsize=7,
            ha="right",
            color=colour,
        )
    ax.axvline(here, color="grey", ls=":", lw=1, label=f"default instance ({here:g})")


def _verdicts_across(claim, axis: str) -> str:  # noqa: ANN001
    """`verify` on the small example instance either side of its nearest boundary on `axis`."""
    from ncverify import Backend, verify

    small = example_problem(claim)
    bounds = [b.critical for b in claim.closed_form(small).phase.on(axis)]
    bounds = [c for c in bounds if math.isfinite(c)]
    if not bounds:
        return ""
    here = _axis_value(small, axis)
    nearest = min(bounds, key=lambda c: abs(math.log(c / here)))
    be, settings = Backend.create(), example_settings()
    t0 = time.perf_counter()
    rows = []
    for x in (nearest / 4, nearest * 4):
        r = verify(claim, _along(small, axis, f"{x:.3g}"), be, settings)
        best = "-" if r.best_objective is None else f"{r.best_objective:.10g}"
        rows.append(
            f"| {x:.3g} | {r.prediction.geometry} | {float(r.prediction.objective):.10g} | "
            f"{best} | {r.verdict} |"
        )
    return "\n".join(
        [
            f"`verify` on the small example instance (counts {list(small.counts)}, depth "
            f"{small.depth}, widths {list(small.widths)}; {settings.restarts} runs; "
            f"{time.perf_counter() - t0:.1f} s) either side of its boundary at {nearest:.4g}:",
            "",
            "| value | claimed geometry | claimed optimum | best run | verdict |",
            "| --- | --- | --- | --- | --- |",
            *rows,
            "",
        ]
    )


def _quantities_section(phase) -> str:  # noqa: ANN001
    """The claim's named quantities of the default instance, with what each means."""

    def value(q) -> str:  # noqa: ANN001
        v = q.exact if q.exact is not None else q.value
        return _cell(_md(str(v)))

    lines = [
        "## Phase quantities of the default instance",
        "",
        "The report's `prediction.phase.quantities`, as the claim defines them:",
        "",
        "| name | value | meaning |",
        "| --- | --- | --- |",
    ]
    lines += [f"| `{q.name}` | {value(q)} | {_cell(_md(q.meaning))} |" for q in phase.quantities]
    lines.append("")
    return "\n".join(lines)


def _closed_form_axes(ax, claim, d, legend: str) -> None:  # noqa: ANN001
    """Gains live in [0, 1]; title, grid and legend of the closed-form plots."""
    ax.set_ylim(-0.03, 1.03)
    ax.set_title(f"{claim.id}: counts {list(d.counts)}, M = {d.depth} (closed form)", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc=legend)


def _etf_and_best(claim, p, be, settings, own_search: bool) -> tuple:  # noqa: ANN001
    """(lambda, the claimed optimum, the best candidate of the claim's search or None)."""
    from ncverify.model.objective import Objective

    etf = float(claim.closed_form(p).objective)
    obj = Objective(p, be.xp, dtype=be.dtype, device=be.device)
    best = None
    for cand in claim.search(p, be, settings.search_budget()) if own_search else []:
        value, err = obj.value(cand.point), obj.error_bound(cand.point)
        if best is None or value < best[0]:
            best = (value, err, cand.origin)
    return float(p.lambda_h), etf, best


def _search_section(claim, assets, d) -> str:  # noqa: ANN001
    """The claimed optimum against the best candidate of the claim's own search, over lambda."""
    from ncverify import Backend, Claim

    be = Backend.create()
    settings = dataclasses.replace(example_settings(), restarts=CE_SEARCH_STARTS)
    lam0 = float(d.lambda_h)
    grid = np.geomspace(lam0 / 5, lam0 * 100, CE_GRID)
    own_search = type(claim).search is not Claim.search
    t0 = time.perf_counter()
    rows = [_etf_and_best(claim, _tied(d, f"{lam:.6g}"), be, settings, own_search) for lam in grid]
    elapsed = time.perf_counter() - t0
    lams = [r[0] for r in rows]
    fig, (ax, ax2) = plt.subplots(2, 1, figsize=(7.5, 6), dpi=110, sharex=True)
    ax.semilogx(lams, [r[1] for r in rows], "o-", ms=3, label="claimed optimum (closed form)")
    found = [(r[0], r[2][0]) for r in rows if r[2] is not None]
    if found:
        ax.semilogx(*zip(*found, strict=True), "s--", ms=3, label="best candidate of the search")
        rel = [(r[0], (r[2][0] - r[1]) / abs(r[1])) for r in rows if r[2] is not None]
        ax2.semilogx(*zip(*rel, strict=True), "s-", ms=3, color="C1")
        fails = [r[0] for r in rows if r[2] is not None and r[2][0] < r[1] - r[2][1]]
        for lam in fails:
            ax2.axvspan(lam / 1.15, lam * 1.15, color="C3", alpha=0.15)
    ax2.axhline(0, color="grey", lw=1)
    ax.axvline(lam0, color="grey", ls=":", lw=1, label=f"default λ = {lam0:g}")
    ax.set_ylabel("objective F")
    ax2.set_ylabel("(candidate − claimed) / |claimed|")
    ax2.set_xlabel("λ (every λ_W and λ_H tied to it)")
    ax.set_title(f"{claim.id}: counts {list(d.counts)}, M = {d.depth}", fontsize=10)
    ax.legend(fontsize=8)
    for a in (ax, ax2):
        a.grid(True, which="both", alpha=0.3)
    assets[f"{claim.id}-search.png"] = _png(fig)
    note = _search_note(rows, own_search, bool(found))
    geometry = claim.closed_form(d).geometry
    return "\n".join(
        [
            "## The claimed optimum against the claim's own search",
            "",
            f"![The claimed optimum of {claim.id} against the best structured candidate]"
            f"({claim.id}-search.png)",
            "",
            f"At {len(rows)} tied lambdas on the default instance (counts {list(d.counts)}, depth "
            f"{d.depth}): the claimed optimum (`closed_form`, the {geometry}) and the lowest "
            "objective among "
            f"the structured candidates of the claim's own `search` ({CE_SEARCH_STARTS} random "
            f"starts, seed {SEED}; each candidate evaluated on the full objective; {elapsed:.1f} s). "
            f"{note}",
            "",
        ]
    )


def _search_note(rows: list, own_search: bool, found: bool) -> str:
    """What the search plot shows, in words."""
    fails = [r for r in rows if r[2] is not None and r[2][0] < r[1] - r[2][1]]
    if not own_search:
        return (
            "This claim has no `search` of its own yet, so only the claimed optimum is drawn; the "
            "verifier's random-start runs are its only search for counterexamples."
        )
    if not found:
        return "The claim's `search` proposed no candidate at these lambdas."
    if fails:
        return (
            f"The claimed optimum is beaten (by more than the candidate's evaluation-error bound; "
            f"shaded) at "
            f"λ = {', '.join(f'{r[0]:.3g}' for r in fails)}: there the claim fails."
        )
    return "No candidate beat the claimed optimum at these lambdas."


def claims_index() -> str:
    import theorems

    lines = [
        "# Claims",
        "",
        "Every claim registered in `theorems/` (`ncverify list`), with the verdict of the example "
        "executed on its page when this site was built.",
        "",
        "| claim | title | status | example verdict |",
        "| --- | --- | --- | --- |",
    ]
    for c in theorems.registry().values():
        verdict = (_pages.get(c.id) or {}).get("verdict") or "not run"
        lines.append(
            f"| [`{c.id}`]({c.id}.md) | {_cell(_md(c.title))} | {_cell(_md(c.status))} | "
            f"**{verdict}** |"
        )
    return "\n".join(lines) + "\n"


# ---- small helpers ----------------------------------------------------------------------------
def _instance(p) -> str:  # noqa: ANN001
    lam = ",".join(_decimal(x) for x in sorted(set(p.lambda_w)))
    text = (
        f"counts={list(p.counts)} M={p.depth} widths={list(p.widths)} λ_W={lam} "
        f"λ_H={_decimal(p.lambda_h)} loss={p.loss} bias={p.bias}"
    )
    return text + (f" λ_b={_decimal(p.lambda_b)}" if p.lambda_b is not None else "")


def _png(fig) -> bytes:  # noqa: ANN001
    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png", metadata={"Software": None})
    plt.close(fig)
    return buf.getvalue()


def _md(text: str) -> str:
    from ncverify.app.render import _md as escape

    return escape(text)


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _indent(text: str, n: int) -> str:
    pad = " " * n
    return "\n".join(pad + line if line else "" for line in text.splitlines())
