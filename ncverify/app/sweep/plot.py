"""The phase diagram of a sweep: per-class gains and alive classes, coloured by verdict."""

from __future__ import annotations

import itertools
import math
import os
from collections.abc import Sequence
from fractions import Fraction
from typing import Any

from ncverify.app.sweep._common import (
    ALIVE_GAIN,
    LAMBDA_OPTIONS,
    VERDICT_COLOURS,
    SweepError,
)
from ncverify.app.sweep.grid import Axis
from ncverify.app.sweep.summary import predicted_alive, run_alive
from ncverify.report import Verdict


# ---- the phase diagram --------------------------------------------------------------------------
def plot_axes(axes: Sequence[Axis]) -> list[Axis]:
    """The axes a plot shows: the varying ones; one or two are needed."""
    varying = [a for a in axes if a.varying]
    if len(varying) not in (1, 2):
        raise SweepError(
            f"--plot needs one or two varying parameters, this sweep has {len(varying)}."
        )
    return varying


def check_plot_path(path: str) -> None:
    from ncverify.paths import OutputError, check_plot_file

    try:
        check_plot_file(path)
    except OutputError as exc:
        raise SweepError(str(exc)) from None


def axis_value(record: dict[str, Any], name: str) -> float:
    return float(Fraction(record["sweep"]["point"][name]["exact"]))


def boundaries_on_axis(record: dict[str, Any], name: str) -> list[tuple[float, list[int]]]:
    """The claim's phase boundaries along the sweep axis `name` at this point, as (critical
    value, classes): read from the report's `prediction.phase.boundaries`, along the tied axis
    `lambda` where `--lambda-h tied` moves lambda_H with lambda_W."""
    phase = (record.get("prediction") or {}).get("phase") or {}
    tied = record["sweep"].get("tied", False)
    if tied and name == "lambda_h":
        return []
    axis = "lambda" if tied and name == "lambda_w" else name
    return [
        (float(b["critical"]), list(b["classes"]))
        for b in phase.get("boundaries") or []
        if b["axis"] == axis and b.get("critical") is not None and math.isfinite(b["critical"])
    ]


def plot(records: Sequence[dict[str, Any]], axes: Sequence[Axis], path: str, title: str) -> None:
    """Draw the phase diagram of `records` (grid order) to `path` (PNG, SVG or PDF)."""
    import matplotlib
    from matplotlib.figure import Figure

    shown = plot_axes(axes)
    # SVG text stays text (searchable, editable), not outlines
    with matplotlib.rc_context({"svg.fonttype": "none"}):
        fig = Figure(figsize=(10, 7.5), layout="constrained")
        if len(shown) == 1:
            _plot_1d(fig, records, shown[0], title)
        else:
            _plot_2d(fig, records, shown, title)
        # the format from the target's extension; written whole (ncverify.paths decides how)
        fmt = os.path.splitext(path)[1].lower().lstrip(".")
        from ncverify.paths import open_for_write

        with open_for_write(path, binary=True, what="plot file") as fh:
            fig.savefig(fh, dpi=130, format=fmt)


def _label(name: str) -> str:
    return {
        "lambda_w": r"$\lambda_W$",
        "lambda_h": r"$\lambda_H$",
        "lambda_b": r"$\lambda_b$",
        "depth": "depth M",
        "classes": "classes K",
        "samples": "samples per class n",
        "width": "width d",
    }.get(name, name)


def _cells(xs: Sequence[float], log: bool) -> list[tuple[float, float]]:
    """Intervals around each x (midpoints between neighbours; half a step at the ends)."""
    t = [math.log(x) if log else x for x in xs]
    if len(t) == 1:
        edges = [t[0] - 0.5, t[0] + 0.5] if not log else [t[0] - 0.1, t[0] + 0.1]
    else:
        mids = [(a + b) / 2 for a, b in itertools.pairwise(t)]
        edges = [t[0] - (mids[0] - t[0]), *mids, t[-1] + (t[-1] - mids[-1])]
    back = (lambda v: math.exp(v)) if log else (lambda v: v)
    return [(back(a), back(b)) for a, b in itertools.pairwise(edges)]


def _class_colours(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10"]
    return [cmap(k % 10) for k in range(n)]


def _verdict_legend(ax: Any, verdicts: Sequence[str]) -> list[Any]:
    from matplotlib.patches import Patch

    return [
        Patch(facecolor=VERDICT_COLOURS.get(v, "#000000"), alpha=0.35, label=v)
        for v in VERDICT_COLOURS
        if v in verdicts
    ]


def _plot_1d(fig: Any, records: Sequence[dict[str, Any]], axis: Axis, title: str) -> None:
    """Two panels over one varying parameter: per-class gains (claimed and best run) and which
    classes are alive, each cell coloured by its verdict."""
    from matplotlib.lines import Line2D

    ax_gain, ax_alive = fig.subplots(2, 1, sharex=True, height_ratios=[3, 2])
    xs = [axis_value(r, axis.name) for r in records]
    verdicts = [r["verdict"] for r in records]
    cells = _cells(xs, axis.log)
    for ax in (ax_gain, ax_alive):
        for (a, b), v in zip(cells, verdicts, strict=True):
            ax.axvspan(a, b, color=VERDICT_COLOURS.get(v, "#000000"), alpha=0.25, lw=0)
        if axis.log:
            ax.set_xscale("log")
            _decimal_ticks(ax)
        ax.set_xlim(cells[0][0], cells[-1][1])
    n_classes = max(
        (len((r.get("prediction") or {}).get("gains") or []) for r in records), default=0
    )
    colours = _class_colours(max(n_classes, 1))
    _gain_panel(ax_gain, records, xs, n_classes, colours)
    outside = _draw_thresholds(ax_gain, records, axis, colours, cells, label=True)
    _draw_thresholds(ax_alive, records, axis, colours, cells, label=False)
    fig.suptitle(title, fontsize=9)
    handles, labels = ax_gain.get_legend_handles_labels()
    extra = _verdict_legend(ax_gain, verdicts) + [
        Line2D([], [], ls="", label=f"critical $\\lambda^*$ outside the sweep: {text}")
        for text in outside
    ]
    ax_gain.legend(
        handles + extra,
        labels + [h.get_label() for h in extra],
        fontsize=7,
        loc="upper left",
        bbox_to_anchor=(1.0, 1.0),
    )
    _alive_panel(ax_alive, records, xs, n_classes, colours)
    ax_alive.set_xlabel(_label(axis.name) + (" (= $\\lambda_H$)" if _tied(records) else ""))


def _gain_panel(
    ax: Any, records: Sequence[dict[str, Any]], xs: list[float], n_classes: int, colours: list
) -> None:
    """Per class, `(W Hbar)_kk` at the claimed point (a line while the class is alive, none
    across a jump to 0) and at the best random-start run (x): the same quantity for every
    claim.  Collapsed classes sit at 0; each class is drawn a little lower than the one before
    (a fraction of the axis) so that they do not hide each other there."""
    import numpy as np

    run_values: list[float] = []
    for k in range(n_classes):
        lift = -0.012 * k  # visual offset only, for points at gain 0
        pts = [
            (x, v[k]) for x, r in zip(xs, records, strict=True) if len(v := claimed_diagonal(r)) > k
        ]
        if pts:
            px = np.array([x for x, _ in pts])
            py = np.array([g for _, g in pts], dtype=float)
            counts = {r["problem"]["counts"][k] for r in records if k < len(r["problem"]["counts"])}
            label = f"class {k}" + (f" (n={counts.pop()})" if len(counts) == 1 else "")
            ax.plot(px, np.where(py > ALIVE_GAIN, py, np.nan), "-", color=colours[k], lw=1.5)
            ax.plot(
                px, np.where(py > ALIVE_GAIN, py, lift), "o", color=colours[k], ms=4, label=label
            )
        runs = [
            (x, r["sweep"]["best_run"]["gains"][k])
            for x, r in zip(xs, records, strict=True)
            if (r["sweep"].get("best_run") or {}).get("gains") is not None
            and k < len(r["sweep"]["best_run"]["gains"])
        ]
        if runs:
            ax.plot(*zip(*runs, strict=True), "x", color=colours[k], ms=7, mew=1.5)
            run_values += [g for _, g in runs if g is not None]
    if run_values:
        ax.plot([], [], "x", color="k", ms=7, mew=1.5, label="best random-start run")
    cx = [x for x, r in zip(xs, records, strict=True) if r.get("counterexample")]
    if cx:
        top = max([1.0, *run_values, *(g for r in records for g in claimed_diagonal(r))])
        ax.plot(
            cx,
            [1.04 * top] * len(cx),
            "*",
            color=VERDICT_COLOURS[Verdict.REFUTED],
            ms=12,
            mec="k",
            ls="",
            label="certified counterexample",
        )
    ax.set_ylabel(r"$(W\bar H)_{kk}$: claimed point (o), best run (x)")


def _alive_panel(
    ax: Any, records: Sequence[dict[str, Any]], xs: list[float], n_classes: int, colours: list
) -> None:
    """Claimed alive (filled) or collapsed (hollow); a black dot where the best run is alive,
    a red cross where the two disagree."""
    from matplotlib.lines import Line2D

    for x, r in zip(xs, records, strict=True):
        claimed = set(predicted_alive(r) or [])
        observed = run_alive(r)
        for k in range(len(r["problem"]["counts"])):
            c = colours[k % len(colours)]
            if r.get("prediction") is not None:
                ax.plot([x], [k], "o", ms=10, mec=c, mfc=c if k in claimed else "none", mew=1.5)
            if observed is not None and k in observed:
                ax.plot([x], [k], "k.", ms=5)
            if observed is not None and (k in observed) != (k in claimed):
                ax.plot([x], [k], "x", color="red", ms=12, mew=2)
    ax.set_yticks(range(n_classes))
    ax.set_ylim(-0.6, n_classes - 0.4)
    ax.invert_yaxis()
    ax.set_ylabel("class")
    marker = {"ls": "", "ms": 8}
    ax.legend(
        handles=[
            Line2D([], [], marker="o", mfc="grey", mec="grey", label="alive (claim)", **marker),
            Line2D([], [], marker="o", mfc="none", mec="grey", label="collapsed (claim)", **marker),
            Line2D(
                [],
                [],
                marker=".",
                ls="",
                color="k",
                label=f"alive in the best run ($(W\\bar H)_{{kk}} > {ALIVE_GAIN:g}$)",
            ),
            Line2D([], [], marker="x", ls="", color="red", label="claim and best run disagree"),
        ],
        fontsize=7,
        loc="upper left",
        bbox_to_anchor=(1.0, 1.0),
    )


def claimed_diagonal(record: dict[str, Any]) -> list[float]:
    """`(W Hbar)_kk` at the claimed point (from the report's Gram matrices; the claimed gains
    where the report has none; empty without a prediction)."""
    pred = record.get("prediction") or {}
    wh = (pred.get("gram") or {}).get("WH")
    if wh:
        return [float(wh[k][k]) for k in range(len(wh))]
    return [float(g) for g in pred.get("gains") or [] if g is not None]


def _tied(records: Sequence[dict[str, Any]]) -> bool:
    return bool(records) and all(r["sweep"].get("tied") for r in records)


def _draw_thresholds(
    ax: Any,
    records: Sequence[dict[str, Any]],
    axis: Axis,
    colours: list[Any],
    cells: list[tuple[float, float]],
    label: bool,
) -> list[str]:
    """Vertical lines at each class's claimed critical lambda along a lambda axis (one line per
    distinct value: equal classes share it); returns the ones outside the sweep, as text."""
    if axis.name not in LAMBDA_OPTIONS or not records:
        return []
    drawn: dict[float, list[int]] = {}
    for r in records:
        for x, classes in boundaries_on_axis(r, axis.name):
            key = float(f"{x:.12g}")
            drawn.setdefault(key, [])
            drawn[key] += [k for k in classes if k not in drawn[key]]
    outside = []
    for x, ks in sorted(drawn.items()):
        name = ",".join(str(k) for k in ks)
        if not (cells[0][0] <= x <= cells[-1][1]):
            outside.append(f"class {name} ({x:.3g})")
            continue
        ax.axvline(
            x,
            color=colours[ks[0] % len(colours)],
            ls="--",
            lw=1.2,
            label=f"claimed critical $\\lambda^*$, class {name} ({x:.3g})" if label else None,
        )
    return outside


def _plot_2d(fig: Any, records: Sequence[dict[str, Any]], shown: list[Axis], title: str) -> None:
    from matplotlib.colors import to_rgba

    # x: a lambda axis where there is one, so thresholds are vertical marks
    lam = [a for a in shown if a.name in LAMBDA_OPTIONS]
    x_axis = lam[0] if lam else shown[0]
    y_axis = next(a for a in shown if a is not x_axis)
    xs = [c.exact for c in x_axis.values]
    ys = [c.exact for c in y_axis.values]
    ax = fig.subplots()
    image = [[to_rgba("white") for _ in xs] for _ in ys]
    colours = _class_colours(10)
    for r in records:
        point = r["sweep"]["point"]
        i = ys.index(Fraction(point[y_axis.name]["exact"]))
        j = xs.index(Fraction(point[x_axis.name]["exact"]))
        image[i][j] = to_rgba(VERDICT_COLOURS.get(r["verdict"], "#000000"), 0.55)
        claimed, observed = predicted_alive(r), run_alive(r)
        text = f"{_count(claimed)}|{_count(observed)}"
        if r.get("counterexample"):
            text += "\n×"
        ax.text(j, i, text, ha="center", va="center", fontsize=7)
        vals = [float(c) for c in xs]
        for x, classes in boundaries_on_axis(r, x_axis.name):
            if not (min(vals) <= x <= max(vals)):
                continue
            pos = _fractional_index(vals, x, x_axis.log)
            ax.plot([pos, pos], [i - 0.45, i + 0.45], color=colours[classes[0] % 10], lw=2)
    ax.imshow(image, aspect="auto", origin="lower", interpolation="nearest")
    ax.set_xticks(range(len(xs)), [c.text for c in x_axis.values], rotation=60, fontsize=7)
    ax.set_yticks(range(len(ys)), [c.text for c in y_axis.values], fontsize=7)
    ax.set_xlabel(_label(x_axis.name) + (" (= $\\lambda_H$)" if _tied(records) else ""))
    ax.set_ylabel(_label(y_axis.name))
    ax.set_title(
        title + "\ncell: classes alive (claim | best run); × certified counterexample; "
        "coloured ticks: claimed critical $\\lambda^*$ per class",
        fontsize=9,
    )
    patches = _verdict_legend(ax, [r["verdict"] for r in records])
    if patches:
        ax.legend(handles=patches, fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0))


def _count(ks: list[int] | None) -> str:
    return "-" if ks is None else str(len(ks))


def _fractional_index(values: Sequence[float], x: float, log: bool) -> float:
    t = [math.log(v) if log else v for v in values]
    tx = math.log(x) if log else x
    for i, (a, b) in enumerate(itertools.pairwise(t)):
        if a <= tx <= b:
            return i + (tx - a) / (b - a) if b != a else float(i)
    return 0.0 if tx < t[0] else float(len(t) - 1)


def _decimal_ticks(ax: Any) -> None:
    """Log-axis ticks written the way the grid's values are (`0.001`, `0.01`), never a mix of
    `1e-3` and `0.01`; minor ticks unlabelled."""
    import numpy as np
    from matplotlib.ticker import FuncFormatter, NullFormatter

    ax.xaxis.set_major_formatter(
        FuncFormatter(lambda v, _: np.format_float_positional(v, trim="-"))
    )
    ax.xaxis.set_minor_formatter(NullFormatter())
