"""Benchmark of the certificates at depth for three and four classes,
`gram-branch-and-bound` and `frame-branch-and-bound` (docs/theory/depth-certificates.md#gram):
their time, boxes and proven gap per instance, and how they grow with the number of classes.

Run by hand, never inside the test suite:

    .venv/bin/python benchmarks/gram_certificate.py

Three classes of one sample (cross-entropy at three decays, the max-margin problem) at depths 2
and 3 with a budget that lets the search finish, and four classes of the max-margin problem at
depth 2 with growing budgets, by both kinds: the certificate alone, in this process, one instance after the
other.  It prints the table and writes it as Markdown to `docs/benchmarks-gram.md` (`--output`).
The machines are shared: the times are of one run on 2 cores, the gaps are what was proven.
"""

from __future__ import annotations

import argparse
import datetime
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ncverify.evidence.certificates.frame import frame_branch_and_bound  # noqa: E402
from ncverify.evidence.certificates.gram import gram_branch_and_bound  # noqa: E402
from ncverify.model.problem import Problem  # noqa: E402

KINDS = {"gram": gram_branch_and_bound, "frame": frame_branch_and_bound}
#: (kind, classes, depth, loss, lambda, box budget)
CASES = [
    *(("gram", 3, 2, "ce", lam, 40_000) for lam in ("1e-4", "1e-3", "1e-2")),
    ("gram", 3, 2, "max-margin", "1e-3", 40_000),
    *(("gram", 3, 3, "ce", lam, 40_000) for lam in ("1e-4", "1e-3")),
    ("gram", 3, 3, "max-margin", "1e-3", 40_000),
    *(("gram", 4, 2, "max-margin", "1e-3", boxes) for boxes in (250, 1000)),
    *(("frame", 4, 2, "max-margin", "1e-3", boxes) for boxes in (2500, 10_000, 45_000)),
]


def row(kind: str, k: int, depth: int, loss: str, lam: str, boxes: int) -> str:
    problem = Problem.build(
        classes=k, samples=1, depth=depth, width=k, lambda_w=lam, lambda_h=lam, loss=loss
    )
    t0 = time.perf_counter()
    cert = KINDS[kind](problem, boxes=boxes)
    seconds = time.perf_counter() - t0
    assert cert is not None
    return (
        f"| {kind} | {k} | {depth} | {loss} | {lam} | {boxes} | {cert.boxes} | {cert.status} | "
        f"{cert.bound:.12g} | {cert.primal:.12g} | {cert.gap:.1e} | {seconds:.1f} |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", default=str(ROOT / "docs" / "benchmarks-gram.md"))
    args = parser.parse_args()
    rows = []
    for case in CASES:
        rows.append(row(*case))
        print(rows[-1], flush=True)
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    page = [
        "# Benchmarks: the certificates at depth for three and four classes",
        "",
        f"Measured by `benchmarks/gram_certificate.py` on {when}, on a shared machine of 2 "
        "cores: the times are of one run and will differ on yours; the bounds and gaps are "
        "proven. Run `python benchmarks/gram_certificate.py` to rewrite this page.",
        "",
        "The `gram-branch-and-bound` certificate ([certificates at depth]"
        "(theory/depth-certificates.md#gram)) and, for four classes, `frame-branch-and-bound` "
        "([the frame branch and bound](theory/depth-certificates.md#frame)), each alone, one "
        "sample per class, width K: the kind, the budget "
        "of boxes, the boxes split, whether every box was settled (`optimal`) or the budget ran "
        "out (`budget`), the proven lower bound, the value of the point found, their relative "
        "gap and the time. A check compares a certificate with the claim at a relative "
        "tolerance of 1e-10.",
        "",
        "| kind | K | M | loss | lambda | budget | boxes | status | bound | point | gap | time (s) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]
    Path(args.output).write_text("\n".join(page))


if __name__ == "__main__":
    main()
