"""README and docs/: the tasks and families tables equal the registries, every relative link
and anchor resolves, every page is reachable from README, and README states the two set-up
commands."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from search_spaces import REGISTRY as FAMILIES
from tasks import REGISTRY as TASKS

REPO = Path(__file__).resolve().parent.parent
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")
FENCE = re.compile(r"^```.*?^```", re.S | re.M)


def prose(path: Path) -> str:
    """A page without its fenced code blocks (links there are code, not links)."""
    return FENCE.sub("", path.read_text())


def anchors(path: Path) -> set[str]:
    """The anchors GitHub gives the page's headings: lower case, punctuation dropped,
    spaces to hyphens, a repeated one numbered."""
    found, seen = set(), {}
    for heading in re.findall(r"^#{1,6} (.+)$", prose(path), re.M):
        slug = re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def table_names(page: Path, heading: str) -> list[str]:
    """The backquoted names in the first column of the table under `heading`, in order."""
    section = prose(page).split(f"\n## {heading}\n")[1].split("\n## ")[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return [name for row in rows for name in re.findall(r"`([^`]+)`", row.split("|")[1])]


def test_the_tasks_table_lists_the_task_registry():
    assert table_names(REPO / "docs" / "usage.md", "Tasks") == list(TASKS)


def test_the_families_table_lists_the_family_registry():
    assert table_names(REPO / "docs" / "usage.md", "Model families") == list(FAMILIES)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_resolves(page):
    broken = []
    for target in LINK.findall(prose(page)):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        path, _, anchor = target.partition("#")
        resolved = (page.parent / path).resolve() if path else page
        if not resolved.exists():
            broken.append(target)
        elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
            broken.append(target)
    assert not broken, f"{page.name}: {broken}"


def test_every_docs_page_is_linked_from_readme():
    linked = {
        (REPO / target.partition("#")[0]).resolve()
        for target in LINK.findall(prose(REPO / "README.md"))
    }
    assert set(PAGES[1:]) <= linked


def test_readme_states_the_two_set_up_commands():
    section = (REPO / "README.md").read_text().split("## Set up on a fresh machine\n")[1]
    block = section.split("```sh\n")[1].split("```")[0]
    commands = [line.split("#")[0].strip() for line in block.splitlines()]
    assert commands == ["make leaderboard", "make test"]
