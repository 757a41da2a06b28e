"""Summaries of a sweep's records: alive classes, agreement, the table and the title."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ncverify.app.sweep._common import ALIVE_GAIN
from ncverify.app.sweep.grid import Axis, decimal_text
from ncverify.model.problem import Problem


# ---- summaries ----------------------------------------------------------------------------------
def best_run(record: dict[str, Any]) -> dict[str, Any] | None:
    """The random-start run with the lowest objective, or None."""
    numerical = record.get("numerical") or {}
    runs = [r for r in numerical.get("runs") or [] if r.get("objective") is not None]
    return min(runs, key=lambda r: r["objective"]) if runs else None


def predicted_alive(record: dict[str, Any]) -> list[int] | None:
    pred = record.get("prediction")
    if pred is None or pred.get("alive") is None:
        return None
    return [k for k, a in enumerate(pred["alive"]) if a]


def run_alive(record: dict[str, Any]) -> list[int] | None:
    """The classes alive in the best random-start run: gain `(W Hbar)_kk > ALIVE_GAIN`."""
    best = record.get("sweep", {}).get("best_run")
    return None if best is None else list(best["alive"])


def agreement(record: dict[str, Any]) -> bool | None:
    """Do the claim's alive classes and the best run's alive classes agree?  None where there
    is nothing to compare.  A class whose claimed gain is positive but at most `ALIVE_GAIN` is
    below the run's resolution and left out."""
    claimed, observed = predicted_alive(record), run_alive(record)
    if claimed is None or observed is None:
        return None
    gains = record["prediction"]["gains"]
    unresolved = {k for k, g in enumerate(gains) if g is not None and 0 < g <= ALIVE_GAIN}
    return set(claimed) - unresolved == set(observed) - unresolved


def summary_rows(
    records: Sequence[dict[str, Any]], axes: Sequence[Axis]
) -> tuple[list[str], list[list[str]]]:
    """Header and rows of the summary table (one row per point, grid order)."""
    varying = [a.name for a in axes if a.varying] or [a.name for a in axes][:1]
    header = [
        *varying,
        "verdict",
        "claimed F*",
        "best run F",
        "at/worse/better",
        "alive (claim)",
        "alive (best run)",
        "agree",
        "certificate",
        "counterexample gap",
        "time (s)",
    ]
    rows = []
    for r in records:
        point = r["sweep"]["point"]
        numerical = r.get("numerical") or {}
        counts = numerical.get("counts") or {}
        pred = r.get("prediction") or {}
        ce = r.get("counterexample")
        agree = agreement(r)
        rows.append(
            [
                *(point[name]["value"] if name in point else "-" for name in varying),
                r["verdict"],
                _num(pred.get("objective")),
                _num(numerical.get("best_objective")),
                f"{counts.get('at', 0)}/{counts.get('worse', 0)}/{counts.get('better', 0)}"
                if counts
                else "-",
                _classes(predicted_alive(r)),
                _classes(run_alive(r)),
                "-" if agree is None else ("yes" if agree else "NO"),
                (r.get("certificate") or {}).get("kind", "-"),
                "-" if ce is None else _num(ce.get("gap"), 3),
                f"{(r.get('timing') or {}).get('total', 0.0):.1f}",
            ]
        )
    return header, rows


def summary_table(records: Sequence[dict[str, Any]], axes: Sequence[Axis], title: str) -> Any:
    """The summary table (rich), one row per point, verdicts coloured."""
    from rich.table import Table
    from rich.text import Text

    from ncverify.app.render import VERDICT_STYLE

    header, rows = summary_rows(records, axes)
    table = Table(title=title)
    for col in header:
        table.add_column(col)
    verdict_col = header.index("verdict")
    for row in rows:
        cells: list[Any] = list(row)
        cells[verdict_col] = Text(row[verdict_col], style=VERDICT_STYLE.get(row[verdict_col], ""))
        table.add_row(*cells)
    return table


def title(claim_id: str, problem: Problem, axes: Sequence[Axis], tied: bool) -> str:
    """A one-line description of a sweep: the claim and the parameters that do not vary."""
    varying = {a.name for a in axes if a.varying}
    parts = [f"ncverify sweep {claim_id}"]
    if not varying & {"classes", "samples"}:
        parts.append(f"counts={','.join(str(c) for c in problem.counts)}")
    elif "classes" not in varying:
        parts.append(f"K={problem.K}")
    elif "samples" not in varying:
        parts.append(f"n={problem.counts[0]}")
    if "depth" not in varying:
        parts.append(f"M={problem.depth}")
    if "width" not in varying:
        parts.append(f"d={problem.widths[0]}")
    if "lambda_w" not in varying:
        parts.append(
            f"lambda_W={','.join(decimal_text(x) for x in dict.fromkeys(problem.lambda_w))}"
        )
    if tied:
        parts.append("lambda_H=lambda_W")
    elif "lambda_h" not in varying:
        parts.append(f"lambda_H={decimal_text(problem.lambda_h)}")
    parts.append(f"loss={problem.loss} bias={problem.bias}")
    return " ".join(parts)


def _num(x: float | None, digits: int = 10) -> str:
    return "-" if x is None else f"{x:.{digits}g}"


def _classes(ks: list[int] | None) -> str:
    if ks is None:
        return "-"
    return ",".join(str(k) for k in ks) if ks else "none"
