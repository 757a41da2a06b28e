"""Benchmark of the certificates at depth (docs/theory/depth-certificates.md): the time of the
`two-class-scalar` certificate per instance, and what it saves a check.

Run by hand, never inside the test suite:

    .venv/bin/python benchmarks/certificates.py

For two classes of one sample, width 2, every decay lambda, at depths M = 2..6: the time of the
certificate alone, and the wall time of `ncverify check` (a fresh process, default settings) with
the certificate and with `--no-certificate` (which leaves the batched search and the runs to
back a `consistent`), side by side in the same run, with their ratio.  It prints the table and
writes it as Markdown to `docs/benchmarks-certificates.md` (`--output`).  The machines are
shared: compare numbers within one run (the ratios).
"""

from __future__ import annotations

import argparse
import datetime
import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ncverify.evidence.certificates.two_classes import two_class_scalar  # noqa: E402
from ncverify.model.problem import Problem  # noqa: E402

NCVERIFY = str(Path(sys.executable).with_name("ncverify"))
LAMBDAS = ("1e-4", "1e-3", "1e-2")
DEPTHS = (2, 3, 4, 5, 6)


def args_of(claim: str, depth: int, lam: str | None) -> list[str]:
    base = [claim, "--classes", "2", "--samples", "1", "--depth", str(depth), "--width", "2"]
    return base + ([] if lam is None else ["--lambda-w", lam, "--lambda-h", lam])


def check(args: list[str]) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(
        [NCVERIFY, "check", *args, "--quiet", "--json", "-"], capture_output=True, text=True
    )
    return time.perf_counter() - t0, json.loads(proc.stdout)["verdict"]


def row(claim: str, depth: int, lam: str | None) -> str:
    loss = "ce" if claim == "ce-balanced" else "max-margin"
    extra = {} if lam is None else {"lambda_w": lam, "lambda_h": lam}
    problem = Problem.build(classes=2, samples=1, depth=depth, width=2, loss=loss, **extra)
    t0 = time.perf_counter()
    cert = two_class_scalar(problem)
    alone = time.perf_counter() - t0
    with_cert, verdict = check(args_of(claim, depth, lam))
    without, other = check([*args_of(claim, depth, lam), "--no-certificate"])
    return (
        f"| `{claim}` | {depth} | {lam or '-'} | {alone:.3f} | {cert.gap:.1e} | {with_cert:.1f} "
        f"({verdict}) | {without:.1f} ({other}) | {without / with_cert:.1f}x |"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--output", default=str(ROOT / "docs" / "benchmarks-certificates.md"))
    args = parser.parse_args()
    rows = []
    for depth in DEPTHS:
        for lam in LAMBDAS:
            rows.append(row("ce-balanced", depth, lam))
            print(rows[-1], flush=True)
        rows.append(row("maxmargin-sel", depth, None))
        print(rows[-1], flush=True)
    when = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    page = [
        "# Benchmarks: certificates at depth",
        "",
        f"Measured by `benchmarks/certificates.py` on {when}, on a shared machine of 2 cores: "
        "read the ratios; absolute times will differ on yours. Run "
        "`python benchmarks/certificates.py` to rewrite this page.",
        "",
        "The `two-class-scalar` certificate ([certificates at depth](theory/depth-certificates.md))"
        " on two classes of one sample, width 2: its own time, its relative gap, and the wall "
        "time of `ncverify check` in a fresh process with it and with `--no-certificate` (the "
        "batched search and the runs then back a `consistent`).",
        "",
        "| claim | M | lambda | certificate (s) | gap | check (s) | check, no certificate (s) "
        "| ratio |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
    ]
    Path(args.output).write_text("\n".join(page) + "\n")


if __name__ == "__main__":
    main()
