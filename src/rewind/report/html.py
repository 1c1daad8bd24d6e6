"""Self-contained HTML pages: figures inline as SVG, tables, commands, versions; no network access.

One Jinja2 template (``templates/page.html.j2``, autoescaped) renders both the claims report of
``rewind reproduce`` and the page of one study (``rewind report --study``).
"""
from __future__ import annotations

import datetime as _dt
import os
import platform
import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

TEMPLATES = Path(__file__).parent / "templates"


@dataclass
class Figure:
    svg: str          # the <svg> element (markup)
    caption: str = ""


@dataclass
class Table:
    html: str         # a <table> element (markup)
    caption: str = ""


@dataclass
class Section:
    id: str
    heading: str
    verdict: str | None = None
    facts: list[tuple[str, str]] = field(default_factory=list)
    note: str = ""
    figures: list[Figure] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)
    commands: list[str] = field(default_factory=list)
    pre: str = ""


def inline_svg(path: str | Path, caption: str = "") -> Figure:
    """An SVG file as an element to place in the page: the XML prologue, DOCTYPE and metadata removed, ids
    made unique to this figure (so that two figures' clip paths and glyphs cannot collide)."""
    text = Path(path).read_text(encoding="utf-8")
    text = re.sub(r"<\?xml[^>]*\?>\s*", "", text)
    text = re.sub(r"<!DOCTYPE[^>]*>\s*", "", text, flags=re.S)
    text = re.sub(r"\s*<metadata>.*?</metadata>", "", text, flags=re.S)  # creator, date: not part of the figure
    prefix = re.sub(r"[^A-Za-z0-9_-]", "-", Path(path).stem) + "-"
    ids = set(re.findall(r'\bid="([^"]+)"', text))
    for i in sorted(ids, key=len, reverse=True):
        text = text.replace(f'id="{i}"', f'id="{prefix}{i}"').replace(f'#{i})', f'#{prefix}{i})')
        text = text.replace(f'href="#{i}"', f'href="#{prefix}{i}"')
    return Figure(text.strip(), caption)


def html_table(df: pd.DataFrame, caption: str = "", float_format: str = "{:.4g}") -> Table:
    """A DataFrame as an escaped HTML table (numbers right-aligned)."""
    if df is None or df.empty:
        return Table("<p><em>(no rows)</em></p>", caption)
    shown = df.copy()
    for c in shown.columns:
        if pd.api.types.is_float_dtype(shown[c]):
            shown[c] = shown[c].map(lambda v: "" if pd.isna(v) else float_format.format(v))
    html = shown.to_html(index=False, escape=True, border=0, classes="data", na_rep="")
    return Table(html, caption)


def environment() -> dict[str, str]:
    """Versions and machine, for the page's footer."""
    import numpy
    import torch

    from .. import __version__
    info = {"rewind": __version__, "python": platform.python_version(), "torch": torch.__version__,
            "numpy": numpy.__version__, "pandas": pd.__version__,
            "machine": f"{platform.system()} {platform.machine()}, {_cpus()} CPU core(s) usable"
                       + (f", CUDA {torch.cuda.get_device_name(0)}" if torch.cuda.is_available() else ""),
            "torch threads": str(torch.get_num_threads()),
            "written": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}
    return info


def _cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def render_page(out: str | Path, title: str, sections: list[Section], *, lead: str = "", summary: dict | None = None,
                summary_text: str = "", rule: str = "", env: dict | None = None) -> Path:
    """Write ``out`` (a file, or a folder that receives index.html); returns the file written."""
    import jinja2
    from markupsafe import Markup

    out = Path(out)
    if out.suffix.lower() != ".html":
        out = out / "index.html"
    jenv = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    for s in sections:
        s.figures = [Figure(Markup(f.svg), f.caption) for f in s.figures]
        s.tables = [Table(Markup(t.html), t.caption) for t in s.tables]
    html = jenv.get_template("page.html.j2").render(
        title=title, lead=lead, sections=sections, summary=summary, summary_text=summary_text, rule=rule,
        env=env or environment())
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(html, encoding="utf-8")
    os.replace(tmp, out)
    return out
