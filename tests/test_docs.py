"""The README and docs/: every figure marked with its source is that source's number, and every link lands.

A block (a table or a paragraph) that reports measurements is preceded by ``<!-- figures: bench/results/...json
-->``; each number in it with a decimal point, or of three digits or more, must be one of the numbers of
those files (at the precision the text gives; a percentage may be a fraction's hundredfold). Labels such as
"ViT-L/14" or "1 thread" stay out of it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MARKER = re.compile(r"<!-- figures: ([^>]+?) -->\n")
# A number, but not inside a word, a path, a version or a size like 4000×3000 (labels, not figures).
NUMBER = re.compile(r"(?<![\w/.×-])(\d{1,3}(?:,\d{3})+|\d+)(\.\d+)?(?![\w/×])")


def numbers_in(value: Any) -> Iterator[float]:
    if isinstance(value, bool):
        return
    if isinstance(value, int | float):
        yield float(value)
    elif isinstance(value, dict):
        for v in value.values():
            yield from numbers_in(v)
    elif isinstance(value, list):
        for v in value:
            yield from numbers_in(v)


def marked_blocks(text: str) -> Iterator[tuple[list[str], str]]:
    for m in MARKER.finditer(text):
        rest = text[m.end() :]
        block = rest.split("\n\n", 1)[0]
        yield [p.strip() for p in m.group(1).split(",")], block


def checked_numbers(block: str) -> Iterator[tuple[str, float, int, bool]]:
    """(as written, value, decimals, is a percentage) of every number the rule checks."""
    for m in NUMBER.finditer(block):
        whole, frac = m.group(1), m.group(2) or ""
        value = float(whole.replace(",", "") + frac)
        if frac or value >= 100:
            yield m.group(0), value, len(frac) - 1 if frac else 0, block[m.end() : m.end() + 1] == "%"


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_marked_figures_come_from_their_results_files(doc: Path) -> None:
    text = doc.read_text()
    missing = []
    for sources, block in marked_blocks(text):
        known: list[float] = []
        for source in sources:
            path = ROOT / source
            assert path.exists(), f"{doc.name}: {source} does not exist"
            known += list(numbers_in(json.loads(path.read_text())))
        for written, value, decimals, percent in checked_numbers(block):
            # a percentage is written from a fraction (0.056 → 5.6%) or from a percentage
            candidates = [*known, *(k * 100 for k in known)] if percent else known
            if not any(round(k, decimals) == value or round(k) == value for k in candidates):
                missing.append(f"{written} (from {', '.join(sources)})")
    assert not missing, f"{doc.name}: figures not in their results files: {missing}"


def test_the_readme_and_docs_mark_their_measured_tables() -> None:
    marked = sum(len(list(marked_blocks(doc.read_text()))) for doc in DOCS)
    assert marked >= 4  # the architectures, the recovery, and the cost figures at least


def slug(heading: str) -> str:
    """GitHub's anchor of a heading."""
    s = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return s.replace(" ", "-")


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_lands(doc: Path) -> None:
    text = doc.read_text()
    broken = []
    for target in re.findall(r"\]\(([^)#\s]*)(#[^)\s]*)?\)", text):
        path, anchor = target
        if path.startswith(("http://", "https://", "mailto:")):
            continue
        file = (doc.parent / path).resolve() if path else doc
        if not file.exists():
            broken.append(path)
            continue
        if anchor and file.suffix == ".md":
            anchors = {slug(h) for h in re.findall(r"^#+ (.+)$", file.read_text(), re.M)}
            if anchor[1:] not in anchors:
                broken.append(f"{path}{anchor}")
    assert not broken, f"{doc.name}: broken links {broken}"


def test_the_readme_stays_short() -> None:
    assert len((ROOT / "README.md").read_text().splitlines()) <= 250
