"""Every relative link of README.md and docs/*.md points to a file of the repository, and every
`#anchor` to a heading of its target (GitHub's heading ids), so no page sends a reader nowhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from markdown_it import MarkdownIt

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PARSER = MarkdownIt("commonmark").enable("table")


def _tokens(page: Path):
    """Inline child tokens of the page (links, images, text), in order."""
    for block in PARSER.parse(page.read_text()):
        yield block
        yield from block.children or ()


def heading_ids(page: Path) -> set[str]:
    """GitHub's ids of the page's headings: the text lowercased, punctuation other than `-` and
    `_` dropped, spaces made `-`; a repeated id gets `-1`, `-2`, ..."""
    ids: set[str] = set()
    blocks = PARSER.parse(page.read_text())
    for i, block in enumerate(blocks):
        if block.type != "heading_open":
            continue
        text = "".join(child.content for child in blocks[i + 1].children or ())
        slug = re.sub(r"[^\w\- ]", "", text.strip().lower()).replace(" ", "-")
        unique, n = slug, 0
        while unique in ids:
            n += 1
            unique = f"{slug}-{n}"
        ids.add(unique)
    return ids


def relative_links(page: Path) -> list[str]:
    """Targets of the page's links and images that are not URLs (no scheme)."""
    targets = []
    for token in _tokens(page):
        target = token.attrGet("href") if token.type == "link_open" else (
            token.attrGet("src") if token.type == "image" else None)
        if target and not re.match(r"^[a-z][a-z0-9+.-]*:", str(target)):
            targets.append(str(target))
    return targets


def test_the_checker_sees_links_and_headings():
    """The parser finds what the test relies on: the README links docs pages (also from a table),
    and a heading with inline code and punctuation gets GitHub's id."""
    readme = relative_links(ROOT / "README.md")
    assert "docs/action_track.md" in readme and "docs/architecture.md" in readme
    assert "policies-in-imagination-wm-rank" in heading_ids(
        ROOT / "docs" / "world_models_as_simulators.md")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path):
    broken = []
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(f"{target}: no file {resolved}")
        elif anchor and resolved.suffix == ".md" and anchor not in heading_ids(resolved):
            broken.append(f"{target}: no heading #{anchor} in {resolved.name}")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)
