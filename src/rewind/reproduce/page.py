"""The claims report: a summary table, then one section per claim."""
from __future__ import annotations

import re
from pathlib import Path

import pandas as pd

from ..report.html import Section, html_table, inline_svg, render_page
from .verdict import HELD, INCONCLUSIVE, NOT_HELD, RULE


def short_cite(paper: str) -> str:
    """'Frankle, Schwab & Morcos 2020, The early phase ..., Section 4 (Fig. 4)' -> 'Frankle et al. 2020,
    Section 4 (Fig. 4)': first author, year, and the figure, section or table the claim comes from."""
    m = re.match(r"\s*([^\s,&]+)([^\d]*?)(\d{4})", paper)
    if not m:
        return paper
    between = m.group(2).strip()
    who = m.group(1) + (" et al." if "," in between else f" {between}" if between.startswith("&") else "")
    where = re.search(r"((?:Fig|Figs|Section|Table)\.?\s[^,;]*)$", paper)
    return f"{who} {m.group(3)}" + (f", {where.group(1)}" if where else "")


def claims_page(out: Path, results, ctx, seconds: float) -> Path:
    counts = {v: sum(r.verdict == v for r in results) for v in (HELD, NOT_HELD, INCONCLUSIVE)}
    summary = {"columns": ["claim", "what the paper says", "paper", "measured here", "verdict"],
               "rows": [{"id": r.claim.id, "title": r.claim.title, "paper": short_cite(r.claim.paper),
                         "measured": r.measurement.summary, "verdict": r.verdict} for r in results]}
    sections = []
    for r in results:
        m = r.measurement
        tests = pd.DataFrame([t.row() for t in m.tests]) if m.tests else pd.DataFrame()
        if not tests.empty:
            tests = tests[["test", "direction", "threshold", "units", "mean", "low", "high", "n", "values", "verdict"]]
        note = m.note
        if r.verdict != HELD and not note:
            note = (f"Not shown at this scale ({r.verdict}). The paper-scale test: {r.claim.paper_scale}.")
        facts = [("Paper", r.claim.paper), ("The paper says", r.claim.statement), ("Measured here", m.summary),
                 ("Rule", r.claim.rule), ("Setting", m.setting), ("Paper scale", r.claim.paper_scale),
                 ("Study keys", " ".join(m.studies) or "-"), ("Time", f"{r.seconds:.1f} s")]
        sections.append(Section(
            r.claim.id, f"{r.claim.id}. {r.claim.title}", r.verdict, facts, note,
            [inline_svg(p, f"{r.claim.id}: {Path(p).stem}") for p in m.figures],
            [html_table(tests, "Tests (per-replicate values; interval: 95% bootstrap of the mean)", "{:+.3f}")]
            + ([html_table(m.table, "Measurements")] if m.table is not None else []),
            m.commands))
    text = (f"{len(results)} claim(s): {counts[HELD]} held, {counts[NOT_HELD]} not held, {counts[INCONCLUSIVE]} "
            f"inconclusive; {ctx.replicates} replicate(s){' (quick)' if ctx.quick else ''}; store {ctx.store.root}; "
            f"{seconds:.0f} s.")
    if ctx.overrides:
        text += " Every spec was changed by " + ", ".join(f"{k}={v}" for k, v in ctx.overrides.items()) + \
                ": these are not the claims' settings."
    return render_page(out, "rewind: the papers' claims, measured", sections,
                       lead="Each claim of the lottery-ticket and early-phase papers, measured at embedded (CPU) "
                            "scale and judged by a stated rule.", summary=summary, summary_text=text, rule=RULE)
