"""The repository cites only what it contains: no internal document from outside it (such as a
specification kept elsewhere), and every docs page and anchor cited by code, tests or docs exists
with its anchor."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SKIP = {".git", ".venv", "site", "build", "dist", ".ruff_cache", ".hypothesis", "__pycache__"}
OUTSIDE = ("THEOREMS.md", "DESIGN.md", "shared/")
CITATION = re.compile(r"docs/([\w/-][\w/.-]*\.md)(?:#([\w-]+))?")


def _files() -> list[Path]:
    out = []
    for path in ROOT.rglob("*"):
        if any(part in SKIP or part.endswith(".egg-info") for part in path.parts):
            continue
        if path.is_file() and path.suffix in {".py", ".md", ".toml", ".yml", ".cff", ".sh", ""}:
            out.append(path)
    return out


def _anchors(page: Path) -> set[str]:
    text = page.read_text(encoding="utf-8")
    explicit = set(re.findall(r"\{#([\w-]+)\}", text))
    slugs = {
        re.sub(r"[^\w\- ]", "", h).strip().lower().replace(" ", "-")
        for h in re.findall(r"^#+\s+(.*?)\s*(?:\{#[\w-]+\})?$", text, re.M)
    }
    return explicit | slugs


def test_nothing_cites_a_document_outside_the_repository() -> None:
    this = Path(__file__).resolve()
    offenders = [
        f"{p.relative_to(ROOT)}: {word}"
        for p in _files()
        if p.resolve() != this
        for word in OUTSIDE
        if word in p.read_text(encoding="utf-8", errors="replace")
    ]
    assert not offenders, offenders


def test_every_cited_docs_page_and_anchor_exists() -> None:
    cited = 0
    for path in _files():
        for page, anchor in CITATION.findall(path.read_text(encoding="utf-8", errors="replace")):
            target = ROOT / "docs" / page
            assert target.exists(), f"{path.relative_to(ROOT)} cites docs/{page}"
            if anchor:
                assert anchor in _anchors(target), f"{path.relative_to(ROOT)} cites #{anchor}"
            cited += 1
    assert cited >= 10  # the claims and the engine cite the theory pages
