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


def _figure(ctx, claim_id: str, fig) -> object:
    path, caption = (fig if isinstance(fig, tuple) else (fig, ""))
    return inline_svg(path, f"{claim_id}: {caption or Path(path).stem}")


def _note(r) -> str:
    m = r.measurement
    if m.note:
        return m.note
    if r.verdict == HELD:
        return ""
    if r.verdict == INCONCLUSIVE:
        return (f"Undecided at {r.replicates} replicates (the cap): the sentences below say which effects the data "
                f"exclude. The paper-scale test: {r.claim.paper_scale}.")
    return f"Not shown at this scale. The paper-scale test: {r.claim.paper_scale}."


def _tests_table(rows: pd.DataFrame) -> pd.DataFrame:
    if rows.empty:
        return rows
    out = pd.DataFrame({
        "test": rows["test"],
        "predicted": [f"within ±{t:g}" if d == "~" else f"{d} {t:g}" for d, t in zip(rows["direction"], rows["threshold"])],
        "mean": rows["mean"], "interval": [f"[{lo:+.3f}, {hi:+.3f}]" if pd.notna(lo) else "" for lo, hi in
                                           zip(rows["low"], rows["high"])],
        "n": rows["n"], "values": rows["values"], "verdict": rows["verdict"],
        "paper's effect": [("" if pd.isna(e) else f"{e:+g}") for e in rows["effect"]],
        "false held %": (100 * rows["false_held"]).round(1), "power %": (100 * rows["power"]).round(1)})
    return out


def claims_page(out: Path, results, ctx, seconds: float, tests: pd.DataFrame | None = None) -> Path:
    counts = {v: sum(r.verdict == v for r in results) for v in (HELD, NOT_HELD, INCONCLUSIVE)}
    summary = {"columns": ["claim", "what the paper says", "paper", "measured here", "n", "verdict"],
               "rows": [{"id": r.claim.id, "title": r.claim.title, "paper": short_cite(r.claim.paper),
                         "measured": r.measurement.summary, "n": r.replicates, "verdict": r.verdict} for r in results]}
    sections = []
    for r in results:
        m = r.measurement
        rows = tests[tests["claim"] == r.claim.id] if tests is not None else pd.DataFrame(
            [t.row(rates=True) for t in m.tests])
        changed = "; ".join(f"{k}: {a} -> {b}" for k, (a, b) in sorted(r.changes.items()))
        facts = [("Paper", r.claim.paper), ("The paper says", r.claim.statement), ("Measured here", m.summary),
                 ("Verdict", " ".join(t.sentence() for t in m.tests)),
                 ("Rule", r.claim.rule), ("Setting", m.setting),
                 ("Replicates", f"{r.replicates} (looks: {', '.join(f'{n} {v}' for n, v in r.trail)}); {r.seeds}")]
        if changed:
            facts.append(("Changed from the claim's setting", changed))
        facts += [("Paper scale", r.claim.paper_scale), ("Study keys", " ".join(m.studies) or "-"),
                  ("Time", f"{r.seconds:.1f} s")]
        sections.append(Section(
            r.claim.id, f"{r.claim.id}. {r.claim.title}", r.verdict, facts, _note(r),
            [_figure(ctx, r.claim.id, f) for f in m.figures],
            [html_table(_tests_table(rows), "Tests: per-replicate values, the interval of the mean at the last look's "
                                            "level, and the rule's simulated false 'held' rate and power at the "
                                            "paper's effect (at the spread measured)", "{:+.3f}")]
            + ([html_table(m.table, "Measurements")] if m.table is not None else []),
            m.commands))
    n_used = sorted({r.replicates for r in results})
    text = (f"{len(results)} claim(s): {counts[HELD]} held, {counts[NOT_HELD]} not held, {counts[INCONCLUSIVE]} "
            f"undecided at the cap (each with the bound the data give); replicates per claim: "
            f"{', '.join(map(str, n_used))} (looks at {', '.join(map(str, ctx.looks))}){' (quick)' if ctx.quick else ''}; "
            f"{seeds_text(ctx)}; {seconds / 60:.1f} min.")
    if ctx.parallel > 1:
        shared = "".join(f"; first {name}, with every worker ({t:.0f} s)" for name, t in ctx.shared_seconds.items())
        text += (f" Claims were measured {ctx.parallel} at a time, each in a process of {ctx.options.threads or 1} "
                 f"thread(s) (a claim's time is its own process's){shared}.")
    if ctx.root_label == "ROOT":
        text += " The commands name the store as ROOT (its path on the machine that ran this is not shown)."
    if ctx.overrides:
        text += " Every spec was changed by " + ", ".join(f"{k}={v}" for k, v in ctx.overrides.items()) + \
                " (each claim lists what changed in its setting)."
    return render_page(out, "rewind: the papers' claims, measured", sections,
                       lead="Each claim of the lottery-ticket and early-phase papers, measured at embedded (CPU) "
                            "scale and judged by a stated rule with known error rates.", summary=summary,
                       summary_text=text, rule=RULE)


def seeds_text(ctx) -> str:
    if ctx.seed_offset:
        return (f"seeds shifted by +{ctx.seed_offset} (seeds.init, data_order, augment, prune; replicate r uses the "
                f"preset's + {ctx.seed_offset} + r; the datasets and the altered data of pretraining unchanged)")
    return "the presets' seeds (replicate r uses the preset's + r)"
