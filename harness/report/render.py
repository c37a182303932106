"""Rendering a report: markdown, one self-contained HTML page, PNG figures, and README's block.

Everything is sorted and figures are written without timestamps, so one store always
gives byte-identical files. Every value from the store is escaped: `|`, `<` and `>`
in markdown, `html.escape` in HTML.
"""

from __future__ import annotations

import base64
import hashlib
import html
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import UserError
from harness.report.tables import Section, Table

IMAGE_CHECK = (
    'window.addEventListener("load", function () {\n'
    "  var images = Array.prototype.slice.call(document.images);\n"
    "  document.body.dataset.images = images.length;\n"
    "  document.body.dataset.imagesLoaded = images.filter(function (image) {\n"
    "    return image.complete && image.naturalWidth > 0;\n"
    "  }).length;\n"
    "});"
)
STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; padding: 0 1em;
       color: #222; }
table { border-collapse: collapse; margin: 0.8em 0; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead { background: #f0f0f0; }
td[title] { text-decoration: underline dotted #999; }
figure { margin: 1.2em 0; }
figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { color: #555; font-size: 0.9em; }
"""


@dataclass
class Document:
    """A whole report: its title, opening paragraphs and bullets, and its sections."""

    title: str
    paragraphs: list[str]
    bullets: list[str] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    captions: dict[str, str] = field(default_factory=dict)  # figure kind -> caption


@dataclass
class Written:
    leaderboard: Path
    html: Path
    figures: list[Path]


def md(value: object) -> str:
    """A store value safe inside a markdown table or heading."""
    text = " ".join(str(value).split())
    return text.replace("|", r"\|").replace("<", "&lt;").replace(">", "&gt;")


def figure_file(kind: str, task: str, key: str) -> str:
    """A figure's file name: its kind, its task (slugged: a plug-in's path), its budget."""
    slug = re.sub(r"[^A-Za-z0-9_.-]", "_", task)
    if slug != task:
        slug += "-" + hashlib.sha1(task.encode()).hexdigest()[:8]
    return f"{kind}_{slug}_{key}.png"


def _md_table(table: Table) -> list[str]:
    rows = [table.headers, ["---"] * len(table.headers), *table.rows]
    return [
        "| " + " | ".join(md(cell) if cell != "---" else cell for cell in row) + " |"
        for row in rows
    ]


def _drawn(part: Section, pngs: dict[str, bytes | None]) -> list[tuple[str, str, bytes]]:
    """A section's (file, kind, PNG) of the figures that drew something."""
    return [(name, kind, pngs[name]) for name, kind, _ in part.figures if pngs[name] is not None]


def _md_section(part: Section, level: int, pngs: dict[str, bytes | None]) -> list[str]:
    lines = ["", f"{'#' * level} {md(part.title)}"]
    for paragraph in part.paragraphs:
        lines += ["", md(paragraph)]
    for caption, table in part.tables:
        lines += ["", md(caption), "", *_md_table(table)] if caption else ["", *_md_table(table)]
    for name, kind, _ in _drawn(part, pngs)[: part.markdown_figures]:
        lines += ["", f"![{md(part.title)}: {kind}](figures/{name})"]
    for sub in part.parts:
        lines += _md_section(sub, level + 1, pngs)
    return lines


def render_markdown(doc: Document, pngs: dict[str, bytes | None]) -> str:
    lines = [f"# {md(doc.title)}"]
    for paragraph in doc.paragraphs:
        lines += ["", md(paragraph)]
    if doc.bullets:
        lines += ["", *(f"- {md(b)}" for b in doc.bullets)]
    for part in doc.sections:
        lines += _md_section(part, 2, pngs)
    return "\n".join(lines) + "\n"


def _html_table(table: Table) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in table.headers)
    rows = []
    for r, row in enumerate(table.rows):
        cells = []
        for c, value in enumerate(row):
            title = table.titles.get((r, c))
            attribute = f' title="{html.escape(title)}"' if title else ""
            text = html.escape(str(value))
            if (r, c) in table.links:
                text = f'<a href="#{html.escape(table.links[(r, c)])}">{text}</a>'
            cells.append(f"<td{attribute}>{text}</td>")
        anchor = table.anchors.get(r)
        start = f'<tr id="{html.escape(anchor)}">' if anchor else "<tr>"
        rows.append(start + "".join(cells) + "</tr>\n")
    return f"<table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n{''.join(rows)}</tbody>\n</table>"


def _html_figure(title: str, name: str, caption: str, data: bytes) -> str:
    uri = "data:image/png;base64," + base64.b64encode(data).decode()
    return (
        f'<figure><img src="{uri}" alt="{html.escape(title)}" data-file="{html.escape(name)}">'
        f"<figcaption>{html.escape(caption)}</figcaption></figure>"
    )


def _html_section(
    part: Section, level: int, captions: dict[str, str], pngs: dict[str, bytes | None]
) -> list[str]:
    out = [f"<h{level}>{html.escape(part.title)}</h{level}>"]
    out += [f"<p>{html.escape(p)}</p>" for p in part.paragraphs]
    for caption, table in part.tables:
        if caption:
            out.append(f"<p>{html.escape(caption)}</p>")
        out.append(_html_table(table))
    out += [
        _html_figure(f"{part.title}: {kind}", name, captions.get(kind, ""), data)
        for name, kind, data in _drawn(part, pngs)
    ]
    for sub in part.parts:
        out += _html_section(sub, min(level + 1, 6), captions, pngs)
    return out


def render_html(doc: Document, pngs: dict[str, bytes | None]) -> str:
    """One self-contained page: tables, and figures as data URIs; scripts limited by CSP."""
    digest = base64.b64encode(hashlib.sha256(IMAGE_CHECK.encode()).digest()).decode()
    policy = (
        f"default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
        f"script-src 'sha256-{digest}'"
    )
    title = html.escape(doc.title)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{policy}">',
        f"<title>{title}</title>",
        f"<style>{STYLE}</style>",
        "</head>",
        "<body>",
        f"<h1>{title}</h1>",
        *(f"<p>{html.escape(p)}</p>" for p in doc.paragraphs),
    ]
    if doc.bullets:
        parts.append("<ul>" + "".join(f"<li>{html.escape(b)}</li>" for b in doc.bullets) + "</ul>")
    for part in doc.sections:
        parts += _html_section(part, 2, doc.captions, pngs)
    parts += [f"<script>{IMAGE_CHECK}</script>", "</body>", "</html>"]
    return "\n".join(parts) + "\n"


def _write(path: Path, data: bytes) -> None:
    partial = path.with_name(path.name + ".partial")
    partial.write_bytes(data)
    partial.replace(path)


def named_figures(sections: list[Section]):
    """Every (file, kind, Drawing) of the sections and their subsections, in order."""
    for part in sections:
        yield from part.figures
        yield from named_figures(part.parts)


def write(
    doc: Document,
    out: Path,
    markdown_name: str = "leaderboard.md",
    progress: Callable[[str], None] = lambda line: None,
) -> Written:
    """Draw the figures of `doc` and write its markdown, index.html and figures/*.png under
    `out` (a figure that found nothing to draw is left out)."""
    from harness import figures

    named = list(named_figures(doc.sections))
    workers = figures.processes(len(named))
    progress(f"drawing {len(named)} figures in {workers} process{'es' * (workers > 1)}")
    drawn = figures.draw([d for _, _, d in named], workers)
    pngs = dict(zip([n for n, _, _ in named], drawn, strict=True))
    folder = out / "figures"
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, data in pngs.items():
        if data is not None:
            _write(folder / name, data)
            written.append(folder / name)
    for stale in sorted(set(folder.glob("*.png")) - set(written)):
        stale.unlink()
    markdown, page = out / markdown_name, out / "index.html"
    _write(markdown, render_markdown(doc, pngs).encode())
    _write(page, render_html(doc, pngs).encode())
    return Written(markdown, page, written)


# -- README ---------------------------------------------------------------------------------


def markers(block: str) -> tuple[str, str]:
    """The comments that hold README's block `block` ("leaderboard", "study")."""
    return f"<!-- {block}:start -->", f"<!-- {block}:end -->"


def has_markers(readme: Path, block: str = "leaderboard") -> bool:
    if not readme.is_file():
        return False
    text = readme.read_text(encoding="utf-8")
    start, end = markers(block)
    return start in text and end in text and text.index(start) < text.index(end)


FRONTIER = "## Frontier"
"""The leaderboard's section README shows (its matrices; the figures and the confirmations,
which follow the matrices, stay in the report)."""
CONFIRMATIONS = "Confirmations, "


def readme_block(leaderboard: str, link: str) -> str:
    """What README shows of a leaderboard: the frontier's matrices (headings one level down,
    no figures, no confirmations) and `link`, the leaderboard's path from README, beside its
    index.html."""
    lines = leaderboard.splitlines()
    title = lines[0].removeprefix("# ").removeprefix("Leaderboard: ") if lines else ""
    shown: list[str] = []
    if FRONTIER in lines:
        start = lines.index(FRONTIER)
        end = next(
            (
                i
                for i in range(start + 1, len(lines))
                if lines[i].startswith(("## ", CONFIRMATIONS))
            ),
            len(lines),
        )
        shown = ["#" + line if line.startswith("#") else line for line in lines[start:end]]
        shown = [line for line in shown if not line.startswith("![")]
    page = link.rpartition("/")[0] + "/index.html" if "/" in link else "index.html"
    shown += [
        "",
        f"Every budget's scores, costs, runs and figures (MLflow experiment {title}): "
        f"[{link}]({link}), or the same as one page, [{page}]({page}).",
    ]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(shown)).strip()


def update_readme(readme: Path, leaderboard: Path, block: str = "leaderboard") -> bool:
    """Refresh README's block between its markers (`readme_block`); True when it changed."""
    start, end = markers(block)
    if not has_markers(readme, block):
        raise UserError(
            f"'{readme}' has no '{start}' ... '{end}' markers: add them to the "
            f"README where the {block} block goes"
        )
    if not leaderboard.is_file():
        raise UserError(f"leaderboard '{leaderboard}' does not exist: run `harness report` first")
    link = Path(os.path.relpath(leaderboard.resolve(), readme.resolve().parent)).as_posix()
    text = readme.read_text(encoding="utf-8")
    head, rest = text.split(start, 1)
    shown = readme_block(leaderboard.read_text(encoding="utf-8"), link)
    new = f"{head}{start}\n{shown}\n{end}{rest.split(end, 1)[1]}"
    if new != text:
        _write(readme, new.encode())
    return new != text
