"""A small document model for the study report, rendered as Markdown and as one self-contained HTML file.

The report is built once as a list of blocks (headings, paragraphs, tables, figures, bullet lists) and
rendered twice, so the Markdown twin and the HTML say the same thing. Figure paths are relative to the
repository root (`plots/...`): the Markdown links them relative to its own folder, the HTML embeds them as
base64 data URIs (no external file or URL is referenced, CSS is inline). The page skeletons are the Jinja2
templates templates/report.md.j2 and templates/report.html.j2 (autoescaped); their filters are here.
"""
from __future__ import annotations

import base64
import html
import io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

import jinja2
from markupsafe import Markup

from .formatting import (
    RANDOM_INIT,  # a table row's mark: its numbers came from a model without its weights
)

# Embedded PNGs larger than this are re-encoded (white background, 256-colour palette, same size):
# matplotlib charts lose nothing visible and shrink 2-3x. (Downscaling made them larger: resampling
# blurs edges into many more distinct colours, which compress worse.)
SHRINK_ABOVE_BYTES = 40_000


@dataclass
class Heading:
    text: str
    level: int = 2

    @property
    def anchor(self) -> str:
        return re.sub(r"[^a-z0-9]+", "-", self.text.lower()).strip("-")


@dataclass
class Para:
    text: str
    kind: str = ""  # "" | "note" (something was not run / not produced) | "warn" (random-init caveat)


@dataclass
class Table:
    columns: list[str]
    rows: list[list]
    marks: list[str] = field(default_factory=list)  # per row: "" or RANDOM_INIT
    caption: str = ""

    def random_init(self, row: int) -> bool:
        return row < len(self.marks) and self.marks[row] == RANDOM_INIT


@dataclass
class Figure:
    path: str  # relative to the repository root
    caption: str


@dataclass
class Bullets:
    items: list[str]


Block = Heading | Para | Table | Figure | Bullets


@dataclass
class _Section:
    heading: Heading
    blocks: list[Block]


def _sections(blocks: list[Block]) -> tuple[list[Block], list[_Section]]:
    """The blocks before the first level-2 heading, then one section per level-2 heading."""
    preamble: list[Block] = []
    sections: list[_Section] = []
    for b in blocks:
        if isinstance(b, Heading) and b.level == 2:
            sections.append(_Section(b, []))
        else:
            (sections[-1].blocks if sections else preamble).append(b)
    return preamble, sections


# ---------------------------------------------------------------- filters

_NUM = re.compile(r"^[-+−]?\d[\d,.]*( ?± ?\d[\d.]*)?( ?%)?$")


def _inline(text) -> Markup:
    """Escape, then the two pieces of Markdown inline markup the report uses: **bold** and `code`."""
    s = html.escape(str(text), quote=False)
    s = re.sub(r"`([^`]+)`", r"<code>\1</code>", s)
    return Markup(re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", s))


def _escape_attr(text) -> Markup:
    """html.escape with quotes (an attribute value); not Jinja's escape, whose entities for ' and " differ."""
    return Markup(html.escape(str(text)))


def _cell_class(value) -> str:
    """A table cell's CSS class: met / miss (a target's status), num (right-aligned number) or none."""
    s = str(value)
    return "met" if s.startswith("✓") else "miss" if s.startswith("✗") else "num" if _NUM.match(s) else ""


def _md_cell(value, random_init: bool) -> str:
    text = str(value).replace("|", "\\|").replace("\n", " ")
    return f"**{text}**" if random_init and RANDOM_INIT in text else text


PACKAGE_DATA = ("templates",)   # files this module reads beside it (fkstudy.codedeps makes them stage deps)
_ENV = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).with_name(PACKAGE_DATA[0])),
    autoescape=jinja2.select_autoescape(enabled_extensions=("html.j2",), default=False),
    trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True, undefined=jinja2.StrictUndefined)
_ENV.filters.update(inline=_inline, escape_attr=_escape_attr, cell_class=_cell_class, md_cell=_md_cell)
_ENV.tests.update(heading=lambda b: isinstance(b, Heading), para=lambda b: isinstance(b, Para),
                  table=lambda b: isinstance(b, Table), figure=lambda b: isinstance(b, Figure),
                  bullets=lambda b: isinstance(b, Bullets))


# ---------------------------------------------------------------- rendering

def to_markdown(blocks: list[Block], title: str, base: str = "..") -> str:
    """`base`: the repository root as seen from the Markdown file's folder (reports/ -> "..")."""
    return _ENV.get_template("report.md.j2").render(blocks=blocks, title=title, base=base)


def data_uri(path: str | os.PathLike) -> str:
    """The PNG as a data URI; large files re-encoded smaller (deterministic: same input, same bytes)."""
    raw = Path(path).read_bytes()
    if len(raw) > SHRINK_ABOVE_BYTES:
        from PIL import Image

        with Image.open(io.BytesIO(raw)) as im:
            im = im.convert("RGBA")
            flat = Image.new("RGB", im.size, "white")
            flat.paste(im, mask=im.getchannel("A"))
            buf = io.BytesIO()
            flat.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
                buf, "PNG", optimize=True)
        if len(buf.getvalue()) < len(raw):
            raw = buf.getvalue()
    return "data:image/png;base64," + base64.b64encode(raw).decode("ascii")


def to_html(blocks: list[Block], title: str, root: str | os.PathLike = ".") -> str:
    """One self-contained page: inline CSS, a table of contents, every figure embedded from `root`/path."""
    preamble, sections = _sections(blocks)
    return _ENV.get_template("report.html.j2").render(
        title=title, preamble=preamble, sections=sections, embed=lambda path: data_uri(Path(root) / path))
