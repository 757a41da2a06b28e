"""Record the observations the theory pages state: each is one `ncverify check` command and the
verdict it gave, written to `docs/theory/observations.json`, from which the pages render their
"observed" sentences at build time, and which `tests/test_observations.py` re-runs (under the
heavy marker): a page can then say no more than a check says, and the suite fails when the
engine and a page disagree.

    python scripts/record_observations.py            # re-runs every command, rewrites the file
    python scripts/record_observations.py --section focal-depth   # that section's only
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "theory" / "observations.json"
NCVERIFY = str(Path(sys.executable).with_name("ncverify"))


def check_args(
    claim: str, k: int, n: int, depth: int, width: int, *extra: str, lam: str | None = None
) -> tuple[str, ...]:
    """The arguments of `ncverify check` for `claim` at `K = k`, `n` samples a class, `depth`
    layers of `width`, every weight decay `lam` (the claim's default where None), then `extra`."""
    args = [claim, "--classes", str(k), "--samples", str(n), "--depth", str(depth)]
    args += ["--width", str(width)]
    if lam is not None:
        args += ["--lambda-w", lam, "--lambda-h", lam]
    return (*args, *extra)


#: (page section, what it shows, the arguments of `ncverify check`)
OBSERVATIONS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    *(
        (
            "ce-observed",
            f"K = {k}, M = 2, n = 100, every decay {lam}",
            check_args("ce-balanced", k, 100, 2, 10, lam=lam),
        )
        for k, lams in ((4, ("1e-4", "1e-3", "2e-3", "1e-2", "5e-2")), (5, ("3e-5", "1e-3")))
        for lam in lams
    ),
    *(
        ("maxmargin-odd", f"K = {k}, M = {m}, n = 10", check_args("maxmargin-sel", k, 10, m, k))
        for k, m in ((7, 2), (5, 3))
    ),
    *(
        (
            "dnc-beyond-the-map",
            f"K = {k}, L = 3, n = 1, width {k}, every decay 1e-3{extra_words}",
            check_args("dnc-multiclass", k, 1, 3, k, "--activation", "relu", *extra, lam="1e-3"),
        )
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
            check_args("ls-balanced", k, 1, m, k, "--smoothing", alpha, lam=lam),
        )
        for k, m, lam, alpha in (
            (6, 2, "1e-4", "0.01"),
            (6, 2, "1e-4", "0.1"),
            (4, 3, "1e-4", "0.01"),
            (4, 3, "1e-4", "0.1"),
            (8, 3, "1e-3", "0.01"),
        )
    ),
    *(
        (
            "focal-depth",
            f"K = {k}, M = {m}, n = {n}, width {k}, every decay {lam}, gamma = {gamma}",
            check_args("focal-balanced", k, n, m, k, "--focusing", gamma, lam=lam),
        )
        for k, m, n, lam, gamma in (
            (6, 1, 3, "1e-4", "2"),
            (8, 1, 3, "1e-4", "2"),
            (6, 2, 1, "1e-4", "1"),
            (6, 2, 1, "1e-4", "2"),
            (4, 3, 1, "1e-4", "1"),
            (4, 3, 1, "1e-4", "2"),
            (6, 2, 1, "1e-3", "2"),
            (8, 3, 1, "1e-3", "2"),
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


def main(argv: list[str]) -> int:
    """Every observation, or with `--section NAME` that section's alone (the others kept as
    recorded)."""
    only = argv[argv.index("--section") + 1] if "--section" in argv else None
    kept = json.loads(OUT.read_text()) if only is not None else []
    by_command = {tuple(o["command"]): o for o in kept}
    records = []
    for section, what, args in OBSERVATIONS:
        if only is not None and section != only and args in by_command:
            records.append(by_command[args])
            continue
        outcome = run(args)
        records.append({"section": section, "instance": what, "command": list(args), **outcome})
        print(f"{section:20} {what:50} {outcome['verdict']}")
    OUT.write_text(json.dumps(records, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
