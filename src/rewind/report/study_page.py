"""``rewind report --study KEY``: one self-contained page for a lottery study (with its branches and
instability analyses) or an early-phase run: figures, tables, the spec, the commands that recreate
it, versions and machine."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from ..spec import SpecError
from ..store import Store
from .html import Section, html_table, inline_svg, render_page


def _svgs(paths) -> list:
    return [inline_svg(p, Path(p).stem) for p in paths if Path(p).suffix == ".svg"]


def _pct(df: pd.DataFrame, cols) -> pd.DataFrame:
    """Fractions in ``cols`` as percents; columns that say nothing here (all empty, or a diverged
    count of 0, or the rewind iteration beside the rewind step) left out."""
    df = df.copy()
    for c in cols:
        if c in df:
            df[c] = (100 * df[c]).round(2)
    drop = [c for c in df.columns if df[c].isna().all() or (df[c].astype(str) == "").all()]
    if "diverged" in df and (df["diverged"] == 0).all():
        drop.append("diverged")
    if "rewind_step" in df and "rewind_iteration" in df:
        drop.append("rewind_iteration")
    return df.drop(columns=drop)


def _lottery_sections(study, out: Path) -> tuple[str, list[Section]]:
    from .instability import instability_summary, plot_instability
    from .lottery import lottery_summary, paired_differences, plot_lottery

    rec = study.record()
    table = study.table()
    preset = rec.get("preset")
    ks = ",".join(rec["rewind_steps"])
    base = f"rewind lottery --preset {preset}" if preset else "rewind lottery --config SPEC.toml"
    commands = [f"{base} --levels {rec['levels']} --rewind {ks} --replicates {rec['replicates']} "
                f"--root {study.store.root}"]
    for b in rec.get("branches", []):
        params = "".join(f" --{k.replace('_', '-')} {v}" for k, v in (b.get("params") or {}).items()
                         if not isinstance(v, dict))
        commands.append(f"rewind branch {b['kind']} --study {study.key} --levels {','.join(map(str, b['levels']))}"
                        f"{params} --root {study.store.root}")
    summary = _single(_pct(lottery_summary(table), ["density", "mean", "std"])) if not table.empty else pd.DataFrame()
    sparse = not table.empty and (table["level"] > 0).any()
    what = "per branch, rewind step and level" if sparse else "of the dense networks the copies start from"
    tables = [html_table(summary, f"Final test accuracy (%), mean and std over replicates, {what} (std shown as - "
                                  "for a single replicate)")]
    steps = rec["rewind_steps"]
    if len(steps) > 1 and not table.empty and table[table["level"] > 0]["replicate"].nunique() >= 2:
        for k in steps[1:]:
            d = paired_differences(table, steps[0], k)
            tables.append(html_table(_pct(d, [c for c in d.columns if c not in ("level", "n")]),
                                     f"k={k} minus k={steps[0]}, paired by replicate (points; 95% bootstrap interval)"))
    figures = _svgs(plot_lottery(table, out / "figures" / f"lottery-{study.key}")) if sparse else []
    if not sparse:  # a study of dense networks only (rewind instability --preset): no pruning to recreate
        commands = []
    title = (f"Study {study.key}: iterative magnitude pruning with rewinding" if sparse else
             f"Study {study.key}: the dense network, for its instability analysis")
    sections = [Section(f"{study.key}-lottery", title, None,
                        [("Study key", study.key), ("Preset", preset or "(a spec without a preset)"),
                         ("Rewind steps", ks), ("Levels", str(rec["levels"])), ("Replicates", str(rec["replicates"])),
                         ("Branches", ", ".join(b["kind"] for b in rec.get("branches", [])) or "none")],
                        "", figures, tables, commands)]
    inst = study.instability_table()
    if not inst.empty:
        s = instability_summary(inst)
        levels = sorted(set(int(x) for x in inst["level"]))
        at = inst.drop_duplicates("rewind_step").sort_values("rewind_iteration")["rewind_step"].dropna()
        pairs = inst[inst["metric"] == "instability"].groupby(["replicate", "level", "rewind_step", "pair"]).ngroups
        source = f"--study {study.key} --levels {','.join(map(str, levels))}" if sparse else \
            f"--preset {preset or 'PRESET'} --replicates {inst['replicate'].nunique()}"
        cmd = (f"rewind instability {source} --at {','.join(at)}"
               f"{' --bn-reset' if inst['bn_reset'].astype(bool).any() else ''} --root {study.store.root}")
        heading = f"Study {study.key}: instability (linear mode connectivity)"
        sections.append(Section(f"{study.key}-instability", heading,
                                None,
                                [("Interpolated pairs", str(pairs))],
                                "", _svgs(plot_instability(inst, out / "figures" / f"instability-{study.key}")),
                                [html_table(_single(_pct(s, ["density", "mean", "std"])),
                                            "Instability (points of error), mean and std over replicates and pairs "
                                            "(std shown as - for a single pair)")],
                                [cmd]))
    sections.append(Section(f"{study.key}-spec", f"Study {study.key}: spec", None, [], "", [], [], [],
                            json.dumps(rec["spec"], indent=1, sort_keys=True)))
    kind = "Lottery study" if sparse else "Instability of the dense network"
    return f"{kind} {study.key}" + (f" ({preset})" if preset else ""), sections


def _single(df: pd.DataFrame) -> pd.DataFrame:
    """A standard deviation over one value is not 0: shown as '-' where n < 2."""
    if "std" in df and "n" in df:
        df = df.copy()
        df["std"] = df["std"].astype(object).where(df["n"] >= 2, "-")
    return df


def _order(study) -> tuple:
    """Studies that pruned first (what a lottery report is about), then dense-only ones; by key."""
    return (0 if study.record().get("levels", 0) > 0 else 1, study.key)


def _early_sections(run, out: Path) -> tuple[str, list[Section]]:
    from ..analysis.probes import early_table, landmarks
    from .early import plot_timeline

    doc = run.spec_doc()
    spec = doc.get("spec", {})
    meta = run.meta()
    table = early_table([run])
    marks = pd.DataFrame([{"landmark": k, "value": v} for k, v in landmarks(table).items()])
    probe = spec.get("probe", {})
    preset = meta.get("preset")
    cmd = (f"rewind early --preset {preset or 'PRESET'} --schedule {probe.get('schedule')} "
           f"--until {probe.get('until')} "
           f"--rewind-point {probe.get('rewind_point')} --root {run.path.parent}")
    sections = [Section(f"{run.key}-early", f"Run {run.key}: early-phase measurements", None,
                        [("Run", run.key), ("Preset", preset or "-"), ("Probe schedule", str(probe.get("schedule")))],
                        "", _svgs(plot_timeline(table, out / "figures" / f"timeline-{run.key}")),
                        [html_table(marks, "Landmarks")], [cmd]),
                Section(f"{run.key}-spec", f"Run {run.key}: spec", None, [], "", [], [], [],
                        json.dumps(spec, indent=1, sort_keys=True))]
    return f"Early-phase run {run.key}" + (f" ({preset})" if preset else ""), sections


def study_page(key: str | None, store: Store, out: str | Path | None = None) -> Path:
    """Write the page of study (or early-phase run) ``key`` and return its path; with ``key`` None,
    one page for every lottery study in the store (``<root>/report/index.html`` by default)."""
    from ..lottery import Study

    folder = store.root / "studies"
    known = sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []
    if key is None:
        if not known:
            raise SpecError(f"--study: the store {store.root} has no lottery study yet (rewind lottery makes one)")
        dest = Path(out) if out else store.root / "report"
        sections = []
        for study in sorted((Study.load(k, store) for k in known), key=_order):
            sections += _lottery_sections(study, dest)[1]
        return render_page(dest, f"rewind: {len(known)} lottery stud{'y' if len(known) == 1 else 'ies'} in "
                                 f"{store.root}", sections, lead=f"Store {store.root}.")
    if any(k.startswith(key) for k in known):
        study = Study.load(key, store)
        dest = Path(out) if out else store.root / "report" / study.key
        title, sections = _lottery_sections(study, dest)
    else:
        runs = [r for r in store.runs() if r.key.startswith(key) and (r.path / "probes.csv").exists()] if key else []
        if len(runs) != 1:
            raise SpecError(f"--study: {'no' if not runs else 'several'} lottery study or early-phase run in "
                            f"{store.root} matches {key!r}; studies: {', '.join(known) or 'none'}")
        dest = Path(out) if out else store.root / "report" / runs[0].key
        title, sections = _early_sections(runs[0], dest)
    return render_page(dest, title, sections, lead=f"Store {store.root}.")
