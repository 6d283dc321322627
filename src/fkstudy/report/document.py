"""A small document model for the study report, rendered as Markdown and as one self-contained HTML file.

The report is built once as a list of blocks (headings, paragraphs, tables, figures, bullet lists) and
rendered twice, so the Markdown twin and the HTML say the same thing. Figure paths are relative to the
repository root (`plots/...`): the Markdown links them relative to its own folder, the HTML embeds them as
base64 data URIs (no external file or URL is referenced, CSS is inline).
"""
from __future__ import annotations

import base64
import html
import io as _io
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

# Marks a table row whose numbers came from a model without its pretrained weights.
RANDOM_INIT = "random-init"
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


@dataclass
class Figure:
    path: str  # relative to the repository root
    caption: str


@dataclass
class Bullets:
    items: list[str]


Block = Heading | Para | Table | Figure | Bullets


# ---------------------------------------------------------------- Markdown

def to_markdown(blocks: list[Block], title: str, base: str = "..") -> str:
    """`base`: the repository root as seen from the Markdown file's folder (reports/ -> "..")."""
    out = [f"# {title}", ""]
    for b in blocks:
        if isinstance(b, Heading):
            out += ["#" * b.level + " " + b.text, ""]
        elif isinstance(b, Para):
            out += [("> " + b.text) if b.kind else b.text, ""]
        elif isinstance(b, Bullets):
            out += [f"- {item}" for item in b.items] + [""]
        elif isinstance(b, Figure):
            out += [f"![{b.caption}]({base}/{b.path})", "", f"*{b.caption}*", ""]
        elif isinstance(b, Table):
            out += [_md_table(b), ""]
    return "\n".join(out)


def _md_cell(value, random_init: bool) -> str:
    text = str(value).replace("|", "\\|").replace("\n", " ")
    return f"**{text}**" if random_init and RANDOM_INIT in text else text


def _md_table(t: Table) -> str:
    lines = ([f"*{t.caption}*", ""] if t.caption else []) + [
        "| " + " | ".join(t.columns) + " |", "|" + "---|" * len(t.columns)]
    for i, row in enumerate(t.rows):
        rnd = i < len(t.marks) and t.marks[i] == RANDOM_INIT
        lines.append("| " + " | ".join(_md_cell(v, rnd) for v in row) + " |")
    return "\n".join(lines)


# ---------------------------------------------------------------- HTML

_CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,"DejaVu Sans",Arial,sans-serif;margin:0;color:#222;background:#fafafa}
main{max-width:1180px;margin:0 auto;padding:24px 32px 64px;background:#fff}
h1{font-size:1.9em;margin:0.2em 0 0.4em}h2{border-bottom:2px solid #4c72b0;padding-bottom:4px;margin-top:2.2em}
h3{margin-top:1.6em;color:#333}p{line-height:1.5}
nav.toc{background:#f0f3f8;border:1px solid #d8dee9;padding:8px 18px;margin:12px 0 24px}
nav.toc ul{margin:6px 0;padding-left:8px;list-style:none;columns:2}nav.toc a{color:#2b4f8a;text-decoration:none}
table{border-collapse:collapse;margin:12px 0 18px;font-size:0.88em}
caption{caption-side:top;text-align:left;font-style:italic;padding-bottom:4px;color:#444;white-space:nowrap}
th,td{border:1px solid #d0d0d0;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#eef1f6}td.num{text-align:right;font-variant-numeric:tabular-nums}
tr.random-init td{background:#fdecea;color:#6b2b26}
td.met{color:#1e7b34;font-weight:600}td.miss{color:#b3261e;font-weight:600}
figure{margin:14px 0 22px}figure img{max-width:100%;height:auto;border:1px solid #e2e2e2}
figcaption{font-size:0.85em;color:#555;margin-top:4px}
p.note{background:#f4f4f4;border-left:4px solid #999;padding:6px 10px;color:#444}
p.warn{background:#fdecea;border-left:4px solid #c44e52;padding:6px 10px}
code{background:#f2f2f2;padding:0 3px;border-radius:3px;font-size:0.92em}
"""
_NUM = re.compile(r"^[-+−]?\d[\d,.]*( ?± ?\d[\d.]*)?( ?%| s)?$")


def _inline(text: str) -> str:
    """Escape, then the two pieces of Markdown inline markup the report uses: **bold** and `code`."""
    s = html.escape(str(text), quote=False)
    s = re.sub(r"`([^`]+)`", r"<code>\1</code>", s)
    return re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", s)


def data_uri(path: str | os.PathLike) -> str:
    """The PNG as a data URI; large files re-encoded smaller (deterministic: same input, same bytes)."""
    raw = Path(path).read_bytes()
    if len(raw) > SHRINK_ABOVE_BYTES:
        from PIL import Image

        with Image.open(_io.BytesIO(raw)) as im:
            im = im.convert("RGBA")
            flat = Image.new("RGB", im.size, "white")
            flat.paste(im, mask=im.getchannel("A"))
            buf = _io.BytesIO()
            flat.quantize(256, method=Image.Quantize.MEDIANCUT, dither=Image.Dither.NONE).save(
                buf, "PNG", optimize=True)
        if len(buf.getvalue()) < len(raw):
            raw = buf.getvalue()
    return "data:image/png;base64," + base64.b64encode(raw).decode("ascii")


def _html_table(t: Table) -> str:
    out = ["<table>"]
    if t.caption:
        out.append(f"<caption>{_inline(t.caption)}</caption>")
    out.append("<thead><tr>" + "".join(f"<th>{_inline(c)}</th>" for c in t.columns) + "</tr></thead><tbody>")
    for i, row in enumerate(t.rows):
        cls = ' class="random-init"' if i < len(t.marks) and t.marks[i] == RANDOM_INIT else ""
        cells = []
        for v in row:
            s = str(v)
            c = ("met" if s.startswith("✓") else "miss" if s.startswith("✗")
                 else "num" if _NUM.match(s) else "")
            cells.append(f"<td{f' class={chr(34)}{c}{chr(34)}' if c else ''}>{_inline(s)}</td>")
        out.append(f"<tr{cls}>" + "".join(cells) + "</tr>")
    return "\n".join(out + ["</tbody></table>"])


def to_html(blocks: list[Block], title: str, root: str | os.PathLike = ".") -> str:
    """One self-contained page: inline CSS, a table of contents, every figure embedded from `root`/path."""
    root = Path(root)
    toc = [b for b in blocks if isinstance(b, Heading) and b.level == 2]
    body, open_section = [], False
    for b in blocks:
        if isinstance(b, Heading):
            if b.level == 2:
                body.append(("</section>\n" if open_section else "") + f'<section id="{b.anchor}">')
                open_section = True
            body.append(f'<h{b.level} id="{b.anchor}">{_inline(b.text)}</h{b.level}>')
        elif isinstance(b, Para):
            body.append(f'<p class="{b.kind}">{_inline(b.text)}</p>' if b.kind else f"<p>{_inline(b.text)}</p>")
        elif isinstance(b, Bullets):
            body.append("<ul>" + "".join(f"<li>{_inline(i)}</li>" for i in b.items) + "</ul>")
        elif isinstance(b, Figure):
            alt = html.escape(b.caption)
            body.append(f'<figure><img src="{data_uri(root / b.path)}" alt="{alt}">'
                        f"<figcaption>{_inline(b.caption)} <code>{html.escape(b.path)}</code></figcaption></figure>")
        elif isinstance(b, Table):
            body.append(_html_table(b))
    if open_section:
        body.append("</section>")
    nav = ('<nav class="toc"><strong>Contents</strong><ul>'
           + "".join(f'<li><a href="#{h.anchor}">{_inline(h.text)}</a></li>' for h in toc) + "</ul></nav>")
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
            f"<title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head>\n<body><main>\n<h1>{_inline(title)}</h1>\n{nav}\n"
            + "\n".join(body) + "\n</main></body></html>\n")
