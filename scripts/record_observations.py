"""Record the observations the theory pages state: each is one `ncverify check` command and the
verdict it gave, written to `docs/theory/observations.json`, from which the pages render their
"observed" sentences at build time, and which `tests/test_observations.py` re-runs (under the
heavy marker): a page can then say no more than a check says, and the suite fails when the
engine and a page disagree.

    python scripts/record_observations.py            # re-runs every command, rewrites the file
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "theory" / "observations.json"
NCVERIFY = str(Path(sys.executable).with_name("ncverify"))

#: (page section, what it shows, the arguments of `ncverify check`)
OBSERVATIONS: tuple[tuple[str, str, tuple[str, ...]], ...] = tuple(
    (
        "ce-observed",
        f"K = {k}, M = 2, n = 100, every decay {lam}",
        (
            "ce-balanced",
            "--classes",
            str(k),
            "--samples",
            "100",
            "--depth",
            "2",
            "--width",
            "10",
            "--lambda-w",
            lam,
            "--lambda-h",
            lam,
        ),
    )  # fmt: skip
    for k, lams in ((4, ("1e-4", "1e-3", "2e-3", "1e-2", "5e-2")), (5, ("3e-5", "1e-3")))
    for lam in lams
) + (
    *(
        (
            "maxmargin-odd",
            f"K = {k}, M = {m}, n = 10",
            (
                "maxmargin-sel",
                "--classes",
                str(k),
                "--samples",
                "10",
                "--depth",
                str(m),
                "--width",
                str(k),
            ),
        )  # fmt: skip
        for k, m in ((7, 2), (5, 3))
    ),
    *(
        (
            "dnc-beyond-the-map",
            f"K = {k}, L = 3, n = 1, width {k}, every decay 1e-3{extra_words}",
            (
                "dnc-multiclass",
                "--classes",
                str(k),
                "--samples",
                "1",
                "--depth",
                "3",
                "--width",
                str(k),
                "--activation",
                "relu",
                "--lambda-w",
                "1e-3",
                "--lambda-h",
                "1e-3",
                *extra,
            ),
        )  # fmt: skip
        for k, extra, extra_words in (
            (20, (), ""),
            (70, (), ", the claim's k-subset witnesses included"),
            (12, ("--no-claim-candidates",), ", the claim-agnostic search alone"),
            (16, ("--no-claim-candidates",), ", the claim-agnostic search alone"),
        )
    ),
    *(
        (
            "ls-depth",
            f"K = {k}, M = {m}, n = 1, width {k}, every decay {lam}, alpha = {alpha}",
            (
                "ls-balanced",
                "--classes",
                str(k),
                "--samples",
                "1",
                "--depth",
                str(m),
                "--width",
                str(k),
                "--lambda-w",
                lam,
                "--lambda-h",
                lam,
                "--smoothing",
                alpha,
            ),
        )  # fmt: skip
        for k, m, lam, alpha in (
            (6, 2, "1e-4", "0.01"),
            (6, 2, "1e-4", "0.1"),
            (4, 3, "1e-4", "0.01"),
            (4, 3, "1e-4", "0.1"),
            (8, 3, "1e-3", "0.01"),
        )
    ),
)


def run(args: tuple[str, ...]) -> dict[str, object]:
    """The check as a user runs it; its verdict and where a counterexample came from."""
    proc = subprocess.run(
        [NCVERIFY, "check", *args, "--quiet", "--json", "-"],
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    report = json.loads(proc.stdout)
    found = report.get("counterexample")
    return {
        "verdict": report["verdict"],
        "origin": None if found is None else found["origin"],
        "exit_code": proc.returncode,
    }


def main() -> int:
    records = []
    for section, what, args in OBSERVATIONS:
        outcome = run(args)
        records.append({"section": section, "instance": what, "command": list(args), **outcome})
        print(f"{section:20} {what:50} {outcome['verdict']}")
    OUT.write_text(json.dumps(records, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
