"""Human-readable output: rich tables for reports, claim pages and derivations in three formats."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from rich.console import Group
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from ncverify.claim import Boundary, Claim, Prediction
from ncverify.model.problem import Problem
from ncverify.report import DIGITS, GeometryEvidence, Report, Verdict

VERDICT_STYLE = {
    Verdict.CERTIFIED: "bold green",
    Verdict.CONSISTENT: "green",
    Verdict.REFUTED: "bold red",
    Verdict.INCONCLUSIVE: "yellow",
    Verdict.NOT_APPLICABLE: "cyan",
}


def _fmt(x: Any, digits: int = 6) -> str:
    if x is None:
        return "-"
    if isinstance(x, bool):
        return "yes" if x else "no"
    if isinstance(x, float):
        return f"{x:.{digits}g}"
    return str(x)


@contextlib.contextmanager
def progress(console, enabled: bool) -> Iterator:  # noqa: ANN001
    """A progress callback `(phase, done, total)`; a no-op when not on a terminal."""
    if not enabled:
        yield None
        return
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
    )
    tasks: dict[str, Any] = {}

    def update(phase: str, done: int, total: int) -> None:
        if phase not in tasks:
            tasks[phase] = bar.add_task(phase, total=total)
        bar.update(tasks[phase], completed=done)

    with bar:
        yield update


def claim_table(claims: Iterable[Claim]) -> Table:
    t = Table(title="Registered claims")
    for col in ("id", "title", "loss", "bias", "certificates", "status"):
        t.add_column(col)
    for c in claims:
        t.add_row(c.id, c.title, c.loss, c.bias, ", ".join(c.certificates) or "-", c.status)
    return t


def unicode_math(text: str) -> str:
    """`$...$` spans of LaTeX as readable Unicode for a terminal (Greek letters, sub- and
    superscripts, fractions, roots), the rest of the text unchanged."""
    import flatlatex  # here: only `show` needs it

    converter = flatlatex.converter()
    simpler = (
        (r"\tfrac", r"\frac"),
        (r"\dfrac", r"\frac"),
        (r"\ge", "≥"),
        (r"\le", "≤"),
        (r"\dots", "…"),
        (r"\ldots", "…"),
        (r"\max", "max"),
        (r"\min", "min"),
        (r"\mathbf 1", "𝟏"),
        (r"\mathbf{1}", "𝟏"),
    )

    def convert(match: re.Match[str]) -> str:
        tex = re.sub(r"\\(?:operatorname|mathrm|text|mathbf)\{([^{}]*)\}", r"\1", match.group(1))
        for a, b in simpler:
            tex = tex.replace(a, b)
        try:
            return converter.convert(tex)
        except Exception:  # noqa: BLE001 - a formula the converter does not know stays as written
            return tex

    return re.sub(r"\$\$?([^$]+)\$?\$", convert, text)


def claim_page(claim: Claim) -> Group:
    p = claim.default_problem()
    body = Text()
    body.append(unicode_math(" ".join(claim.statement().split())) + "\n\n")
    body.append("hypotheses (checked on every instance): ", style="bold")
    body.append("; ".join(claim.stated_hypotheses()) or "none")
    body.append("\n")
    body.append("source: ", style="bold")
    body.append(claim.source + "\n")
    body.append("status: ", style="bold")
    body.append(claim.status + "\n")
    body.append("certificates: ", style="bold")
    body.append((", ".join(claim.certificates) or "none") + "\n")
    body.append("default instance: ", style="bold")
    body.append(p.summary() + "\n")
    if claim.thresholds_text():
        body.append("thresholds: ", style="bold")
        body.append(claim.thresholds_text() + "\n")
    return Group(Panel(body, title=f"{claim.id}: {claim.title}"))


def derivation(claim: Claim, fmt: str, results: Sequence[bool | None] | None = None) -> str:
    """The worked derivation of `claim` as `text`, `markdown` or `latex`.

    Each step gives its sentence, its formula and how it is checked.  `results[i]`, where given,
    is the outcome of step i's sympy identity (`Step.verify_identity()`, run by the caller; `None`
    for steps that have none) and is printed beside the check.  Markdown escapes the step
    sentences (formulas go in `$$` blocks for arithmatex); LaTeX escapes everything outside math.
    """
    steps = claim.derivation()
    outcome = list(results) if results is not None else [None] * len(steps)
    lines = []
    if fmt == "markdown":
        lines.append(f"## Derivation: {_md(claim.title)}\n")
        for i, (s, ok) in enumerate(zip(steps, outcome, strict=True), 1):
            lines.append(f"**Step {i}.** {_md(s.text)}\n")
            lines.append(f"$$\n{s.formula}\n$$\n")
            how = {
                "sympy": f"sympy identity `{s.reference}`",
                "test": f"numerically on random instances, by `{s.reference}`",
                "lemma": f"cited lemma, checked by `{s.reference}`",
            }.get(s.check, f"`{s.reference}`")
            lines.append(f"*Checked:* {how}{_result(ok)}\n")
    elif fmt == "latex":
        lines.append(f"\\section*{{Derivation: {_tex(claim.title)}}}")
        lines.append("\\begin{enumerate}")
        for s, ok in zip(steps, outcome, strict=True):
            how = _tex(_how(s) + _result(ok))
            lines.append(
                f"  \\item {_tex(s.text)}\n  \\[ {s.formula} \\]\n  \\emph{{Checked: {how}}}"
            )
        lines.append("\\end{enumerate}")
    else:
        lines.append(f"Derivation: {claim.title}")
        for i, (s, ok) in enumerate(zip(steps, outcome, strict=True), 1):
            lines.append(f"\n{i}. {s.text}\n   {s.formula}\n   checked: {_how(s)}{_result(ok)}")
    return "\n".join(lines)


def _result(ok: bool | None) -> str:
    if ok is None:
        return ""
    return " - holds (simplifies to 0)" if ok else " - FAILED (does not simplify to 0)"


_MD_ENTITIES = {"<": "&lt;", ">": "&gt;", "$": "&#36;"}


def _md(text: str) -> str:
    """Escape what Markdown (or arithmatex, for `$`) would interpret in a sentence."""
    text = re.sub(r"([\\`*_\[\]#])", r"\\\1", text)
    return "".join(_MD_ENTITIES.get(ch, ch) for ch in text)


_TEX = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
}


def _tex(text: str) -> str:
    """Escape LaTeX's special characters in running text."""
    return "".join(_TEX.get(ch, ch) for ch in text)


def _how(step) -> str:  # noqa: ANN001
    return {
        "sympy": f"sympy identity ({step.reference})",
        "test": f"numerically on random instances ({step.reference})",
        "lemma": f"cited lemma, checked by {step.reference}",
    }.get(step.check, step.reference)


def report(r: Report) -> Group:
    """The readable report: verdict, instance, prediction, evidence, runs, certificate,
    counterexample and notes."""
    verdict = Text(r.verdict.upper(), style=VERDICT_STYLE.get(r.verdict, "bold"))
    parts: list[Any] = [
        Text.assemble(f"{r.claim.id}  ", verdict, " (probe)" if r.probe else ""),
        Text(
            f"{r.problem.summary()}  backend={r.backend.name}/{r.backend.device_name}/"
            f"{r.backend.dtype_name}"
        ),
    ]
    if r.verdict == Verdict.CONSISTENT:  # says how much search backs it
        parts.append(Text(f"consistent: {consistent_words(r)}"))
    if r.geometry_evidence is not None:
        parts.append(Text(f"geometry: {geometry_words(r)}"))
    if r.hypotheses:
        parts.append(Text("unmet hypotheses: " + "; ".join(r.hypotheses), style="cyan"))
    if r.prediction is not None:
        parts += _prediction(r.prediction)
    if r.checks:
        parts.append(_checks(r))
    if r.search is not None:
        parts.append(Text(r.search.words()))
    if r.runs:
        parts += _runs(r)
    if r.certificate is not None:
        c = r.certificate
        parts.append(
            Text(
                f"certificate [{c.kind}] bound {c.bound:.15g}, primal "
                f"{_fmt(c.primal, 15)}, gap {_fmt(c.gap, 3)}, rigorous: "
                f"{'yes' if c.rigorous else 'no'} ({c.solver}; {c.detail})"
            )
        )
    if r.counterexample is not None:
        parts += _counterexample(r)
    if r.contradiction is not None:
        parts.append(Text(f"INTERNAL CONTRADICTION: {r.contradiction}", style="bold red"))
    parts += [Text(f"note: {note}", style="dim") for note in r.notes]
    if r.timing:
        parts.append(Text(f"time {r.timing.get('total', 0.0):.2f} s", style="dim"))
    return Group(*parts)


#: Rows of the per-class table in a readable report (the JSON report has every class).
MAX_CLASS_ROWS = 24
#: Columns of a K x K matrix shown in a readable report: a wider one does not fit a terminal
#: (the JSON report has it whole).
MAX_MATRIX_COLUMNS = 12

#: How the claimed geometry is established, in words (`Report.geometry_evidence`).
GEOMETRY_WORDS = {
    GeometryEvidence.RUN: "a random-start run reached the prediction; E4 compared its geometry",
    GeometryEvidence.CERTIFIED_UNIQUE: "no run reached the prediction, but the certificate fixes "
    "the minimiser set and the predicted point attains the proven optimum",
    GeometryEvidence.ATTAINED: "the optimal value is proven and the predicted point attains it; "
    "that it is the only minimiser is not established",
    GeometryEvidence.NOT_UNIQUE: "the claim says the minimiser is not unique",
}


def consistent_words(r: Report) -> str:
    """What a `consistent` verdict rests on: the search that backs it, or E1 alone."""
    c, b = r.coverage, r.search
    proof = "no certificate" if r.certificate is None else "a certificate that does not settle it"
    backing = []
    if b is not None and b.starts:
        bc = b.coverage
        backing.append(
            f"{b.starts} batched-search starts in {len(bc.basins)} basins, "
            f"{bc.at_prediction} of which ({100 * bc.at_prediction_share:.0f}%) reached the "
            "prediction"
        )
    if c is not None and c.starts:
        backing.append(
            f"{c.starts} random-start runs, {c.at_prediction} of which "
            f"({100 * c.at_prediction_share:.0f}%) reached the prediction"
        )
    if not backing:
        return f"{proof}, and no search: the predicted point's own checks (E1) alone"
    return f"{proof}; backed by {' and '.join(backing)}, and none beat it"


def geometry_words(r: Report) -> str:
    """`GEOMETRY_WORDS`, and for a claim of a non-unique minimiser what its value rests on: a
    proof where certified, else a run that reached it."""
    words = GEOMETRY_WORDS[r.geometry_evidence]
    if r.geometry_evidence == GeometryEvidence.NOT_UNIQUE:
        proven = r.verdict == Verdict.CERTIFIED
        words += (
            "; the value is proven"
            if proven
            else "; a run reached the value, which no certificate proves"
        )
    return words


def _class_table(pred: Prediction) -> Table:
    t = Table(title="per class")
    for col in ("class", "count", "regime", "gain", "||w_k||", "||hbar_k||", "critical lambda"):
        t.add_column(col)
    for k, c in enumerate(pred.classes[:MAX_CLASS_ROWS]):
        t.add_row(
            str(k),
            str(c.count),
            c.regime,
            _fmt(c.gain_float, 10),
            _fmt(c.length_w),
            _fmt(c.length_h),
            _fmt(c.critical_lambda),
        )
    if len(pred.classes) > MAX_CLASS_ROWS:
        rest = len(pred.classes) - MAX_CLASS_ROWS
        t.add_row("...", f"{rest} more", "", "", "", "", "", style="dim")
    return t


def _prediction(pred: Prediction) -> list[Any]:
    parts: list[Any] = [
        Text(
            f"claimed optimum {pred.objective_float:.15g}  geometry: {pred.geometry}"
            f"{'' if pred.unique else ' (not unique)'}"
        )
    ]
    if pred.classes:  # a claim about a value and a geometry predicts nothing per class
        parts.append(_class_table(pred))
    if pred.bias is not None:
        parts.append(Text(f"bias b* = {[round(b, 10) for b in pred.bias]}"))
    for b in pred.phase.on("lambda"):  # the tied axis: the one a reader compares with first
        parts.append(Text(f"phase boundary at tied lambda {b.critical:.6g}: {_classes(b)}"))
    if pred.phase.distance is not None:
        parts.append(
            Text(f"distance to the nearest phase boundary (log lambda): {pred.phase.distance:.4g}")
        )
    parts += [Text(f"note: {note}", style="dim") for note in pred.notes]
    return parts


def prediction_page(
    claim: Claim, problem: Problem, pred: Prediction | None, unmet: Sequence[str]
) -> Group:
    """`ncverify predict`: the claim's closed form for one instance, to 30 digits."""
    import mpmath

    parts: list[Any] = [Text(f"{claim.id}: {claim.title}", style="bold"), Text(problem.summary())]
    if pred is None:
        parts.append(Text("not applicable: " + "; ".join(unmet), style="cyan"))
        return Group(*parts)
    parts.append(
        Text(
            f"optimum F* = {mpmath.nstr(pred.objective, DIGITS)}"
            + (
                f"  (rigorous enclosure [{mpmath.nstr(pred.objective_enclosure[0], 20)}, "
                f"{mpmath.nstr(pred.objective_enclosure[1], 20)}])"
                if pred.objective_enclosure is not None
                else ""
            )
        )
    )
    parts.append(Text(f"closed form: {pred.objective_form}", style="dim"))
    parts.append(
        Text(
            f"geometry: {pred.geometry}; the minimiser is "
            + ("unique (up to rotations of the hidden bases)" if pred.unique else "not unique")
        )
    )
    parts += [p for p in _prediction(pred)[1:] if not str(p).startswith("phase boundary")]
    if pred.phase.boundaries:
        t = Table(title="phase boundaries (along one parameter, the others as given)")
        for col in ("axis", "critical value", "classes", "what changes"):
            t.add_column(col)
        for b in pred.phase.boundaries:
            axis = "lambda (all tied)" if b.axis == "lambda" else b.axis
            t.add_row(axis, _fmt(b.critical, 6), class_list(b.classes), b.change)
        parts.append(t)
    return Group(*parts)


def _checks(r: Report) -> Table:
    t = Table(title="evidence")
    for col in ("check", "passed", "value", "tolerance", "detail"):
        t.add_column(col)
    for c in r.checks:
        style = {True: "green", False: "red", None: "yellow"}[c.passed]
        t.add_row(
            c.name,
            Text({True: "yes", False: "NO", None: "skipped"}[c.passed], style=style),
            _fmt(c.value, 3),
            _fmt(c.tolerance, 3),
            Text(c.detail),  # not markup: a detail may say "[bound, primal]"
        )
    return t


def _runs(r: Report) -> list[Text]:
    counts = r.outcome_counts()
    parts = [
        Text(
            f"optimiser: {len(r.runs)} random-start runs ({r.runs_method}): "
            f"{counts['at-prediction']} at the prediction, {counts['worse']} in worse local minima "
            f"or saddles, {counts['better']} better, {counts['failed']} failed; best "
            f"{_fmt(r.best_objective, 15)}"
        )
    ]
    if r.coverage is not None:
        parts.append(Text(f"coverage: {r.coverage.words()}"))
    shapes: dict[str, int] = {}
    for w in (run for run in r.runs if run.outcome == "worse" and run.structure):
        alive = list(w.structure.alive_classes)  # how many worse runs end with each structure
        key = f"{alive}, rank(W Hbar) {w.structure.rank_WH}" if alive else "none (zero)"
        shapes[key] = shapes.get(key, 0) + 1
    if shapes:
        ends = "; ".join(f"{k} ({v} run{'' if v == 1 else 's'})" for k, v in sorted(shapes.items()))
        parts.append(Text(f"  worse runs end with alive classes {ends}", style="dim"))
    return parts


def _counterexample(r: Report) -> list[Any]:
    ce = r.counterexample
    parts: list[Any] = [
        Text(
            f"COUNTEREXAMPLE from {ce.origin}: objective {ce.objective:.15g} < claimed "
            f"{ce.claimed:.15g} (gap {ce.gap:.3e} > error bound {ce.error_bound:.3e}); "
            f"alive classes {class_list(ce.structure.alive_classes)}, rank(W Hbar) "
            f"{ce.structure.rank_WH}" + (f"; saved to {ce.path}" if ce.path else ""),
            style="red",
        )
    ]
    if ce.certificate is not None:
        parts.append(counterexample_certificate(ce.certificate.to_json()))
    return parts


def _classes(b: Boundary) -> str:
    return f"class(es) {class_list(b.classes)}: {b.change}"


def _elided(items: Sequence[str]) -> str:
    """Up to `MAX_CLASS_ROWS` items, then how many more (the JSON has every one)."""
    rest = len(items) - MAX_CLASS_ROWS
    shown = ", ".join(items[:MAX_CLASS_ROWS])
    return shown if rest <= 0 else f"{shown}, ... ({rest} more)"


def class_list(classes: Sequence[int]) -> str:
    """Class indices for a reader: all of them up to `MAX_CLASS_ROWS`, else the first ones and
    how many more (the JSON has every one)."""
    return _elided([str(k) for k in classes])


def summary_table(reports: list[Report]) -> Table:
    t = Table(title="ncverify check --all")
    for col in (
        "claim",
        "instance",
        "verdict",
        "optimum",
        "best run",
        "at/worse/better",
        "E3",
        "s",
    ):
        t.add_column(col, no_wrap=col in ("claim", "verdict"))
    for r in reports:
        p = r.problem
        counts = r.outcome_counts()
        sizes = f"{p.counts[0]}x{p.K}" if p.balanced else ",".join(map(str, p.counts))
        bias = (
            f" lambda_b={float(p.lambda_b):g}"
            if p.bias == "regularised"
            else {"none": "", "free": " free bias"}[p.bias]
        )
        t.add_row(
            r.claim.id,
            f"n={sizes} M={p.depth} d={p.widths[0]} {p.loss}{bias}",
            Text(r.verdict, style=VERDICT_STYLE.get(r.verdict, "")),
            _fmt(r.prediction.objective_float if r.prediction else None, 8),
            _fmt(r.best_objective, 8),
            f"{counts['at-prediction']}/{counts['worse']}/{counts['better']}",
            r.certificate.kind if r.certificate is not None else "-",
            f"{r.timing.get('total', 0.0):.1f}",
        )
    return t


def counterexample_certificate(cert: dict[str, Any]) -> Group:
    """The high-precision certificate of a counterexample and the structure of the point."""
    st = cert.get("structure") or {}
    sv = _elided([_fmt(float(x), 6) for x in st.get("logit_singular_values", [])])
    lines = [
        Text(
            f"  certificate: {'CERTIFIED' if cert['certified'] else 'not certified'} - gap "
            f"{cert['gap']:.6e} vs proven bound {cert['bound']:.3e}; F(point) = "
            f"{cert['objective_digits']}, claimed optimum {cert['claimed_digits']}"
            f"{'' if cert['claimed_rigorous'] else ' (not an enclosure)'}; {cert['method']}",
            style="red" if cert["certified"] else "yellow",
        ),
        Text(f"  structure: logits of rank {st.get('logit_rank')}, singular values [{sv}]"),
    ]
    gram = st.get("class_mean_gram")
    if gram and len(gram) > MAX_MATRIX_COLUMNS:
        lines.append(
            Text(f"  class-mean Gram matrix ({len(gram)} x {len(gram)}): in the JSON report")
        )
    elif gram:
        t = Table(title="class-mean Gram matrix Hbar^T Hbar (layer 1)")
        for k in range(len(gram)):
            t.add_column(str(k))
        for row in gram:
            t.add_row(*(_fmt(float(x), 4) for x in row))
        lines.append(t)
    return Group(*lines)


def recheck(result: dict) -> Group:
    verdict = Text(result["verdict"].upper(), style=VERDICT_STYLE.get(result["verdict"], "bold"))
    parts: list[Any] = [
        Text.assemble(f"recheck {result['claim']}: ", verdict),
        Text(result["detail"]),
    ]
    if result.get("certificate"):
        parts.append(counterexample_certificate(result["certificate"]))
    return Group(*parts)
