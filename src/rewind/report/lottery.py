"""Figure 1 of the early-phase paper: accuracy against weights remaining, one curve per rewind step."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .common import save_figure


def lottery_summary(table: pd.DataFrame, split: str = "test", metric: str = "accuracy") -> pd.DataFrame:
    """Mean and std over replicates of the final metric, per (branch, rewind step, level); ``n``
    counts the members that finished, ``diverged`` those that diverged (NaN rows, see Study.table)."""
    df = table[(table["split"] == split) & (table["metric"] == metric)].copy()
    df["rewind_step"] = df["rewind_step"].fillna("-")
    df["rewind_iteration"] = df["rewind_iteration"].fillna(-1)
    df["branch_params"] = df["branch_params"].fillna("")
    g = df.groupby(["branch", "branch_params", "rewind_iteration", "rewind_step", "level"], dropna=False)
    out = g.agg(density=("density", "mean"), mean=("value", "mean"), std=("value", "std"), n=("value", "count"),
                diverged=("value", lambda v: int(v.isna().sum())))
    out["std"] = out["std"].fillna(0.0)
    return out.reset_index().sort_values(["branch", "branch_params", "rewind_iteration", "level"]).reset_index(drop=True)


def paired_differences(table: pd.DataFrame, a: str, b: str, split: str = "test", metric: str = "accuracy",
                       branch: str = "none", resamples: int = 10_000, seed: int = 0) -> pd.DataFrame:
    """Per level: mean over replicates of (accuracy with rewind step ``b``) - (with ``a``), paired by
    replicate (same dense network, same seeds), with a 95% percentile bootstrap interval over
    replicates (``resamples`` draws from a seeded generator) and the dense accuracy for reference.
    ``a`` and ``b`` are rewind steps as the table writes them ('0it', '100it')."""
    import numpy as np

    df = table[(table["split"] == split) & (table["metric"] == metric)]
    dense = df[df["level"] == 0].groupby("replicate")["value"].mean()
    sub = df[(df["branch"] == branch) & (df["level"] > 0)]
    wide = sub.pivot_table(index=["level", "replicate"], columns="rewind_step", values="value", aggfunc="mean")
    dens = sub.groupby("level")["density"].mean()
    if a not in wide.columns or b not in wide.columns:
        raise ValueError(f"rewind steps {a} and {b} must both be in the study; it has {', '.join(map(str, wide.columns))}")
    g = np.random.default_rng(seed)
    rows = []
    for level, grp in wide.groupby(level="level"):
        grp = grp.dropna(subset=[a, b])
        d = (grp[b] - grp[a]).to_numpy()
        reps = grp.index.get_level_values("replicate")
        n = len(d)
        lo = hi = float("nan")
        if n >= 2:
            means = d[g.integers(0, n, size=(resamples, n))].mean(1)
            lo, hi = np.percentile(means, [2.5, 97.5])
        dense_mean = float(dense.reindex(reps).mean()) if n else float("nan")
        rows.append({"level": int(level), "density": float(dens[level]), "n": n,
                     f"mean_{a}": float(grp[a].mean()), f"mean_{b}": float(grp[b].mean()),
                     "dense": dense_mean,
                     f"gap_{a}": float((grp[a] - dense.reindex(reps).to_numpy()).mean()),
                     f"gap_{b}": float((grp[b] - dense.reindex(reps).to_numpy()).mean()),
                     "difference": float(d.mean()) if n else float("nan"), "ci_low": float(lo), "ci_high": float(hi)})
    return pd.DataFrame(rows)


def format_params(branch_params: str | None) -> str:
    """'{"scale": 0.5}' -> 'scale=0.5'."""
    import json

    params = json.loads(branch_params) if branch_params else {}
    return " ".join(f"{k}={v}" for k, v in sorted(params.items()))


def _label(row) -> str:
    text = format_params(row.branch_params)
    return f"{row.branch}{' ' + text if text else ''}, k={row.rewind_step}"


def plot_lottery(table: pd.DataFrame, out: str | Path, split: str = "test", title: str | None = None) -> list[Path]:
    """Write ``out``.png and ``out``.svg; returns the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = lottery_summary(table, split)
    if s.empty:
        raise ValueError("no finished lottery runs to plot")
    s["pct"] = 100.0 * s["density"]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    dense = s[s["level"] == 0]
    if not dense.empty:
        m, sd = dense["mean"].mean(), dense["std"].max()
        ax.axhspan(100 * (m - sd), 100 * (m + sd), color="0.85", zorder=0, label=f"dense ({100 * m:.1f}%)")
        ax.axhline(100 * m, color="0.5", lw=0.8, zorder=0)
    cmap = plt.get_cmap("viridis")
    rewinds = sorted(s.loc[s["level"] > 0, "rewind_iteration"].unique())
    color = {k: cmap(i / max(1, len(rewinds) - 1) * 0.9) for i, k in enumerate(rewinds)}
    dense_point = dense.iloc[0] if not dense.empty else None
    for (branch, params, k), grp in s[s["level"] > 0].groupby(["branch", "branch_params", "rewind_iteration"]):
        grp = grp.sort_values("level")
        if dense_point is not None and branch == "none":
            grp = pd.concat([dense_point.to_frame().T.assign(rewind_step=grp.iloc[0].rewind_step), grp])
        style = "-" if branch == "none" else "--"
        marker = "o" if branch == "none" else {"reinit": "x", "random-prune": "s"}.get(branch, "^")
        row = grp.iloc[-1]
        label = f"rewind k={row.rewind_step}" if branch == "none" else _label(row)
        ax.errorbar(grp["pct"].astype(float), 100 * grp["mean"].astype(float), yerr=100 * grp["std"].astype(float),
                    ls=style, marker=marker, ms=4, capsize=2, color=color.get(k, "k"), label=label)
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.set_xlabel("weights remaining (%)")
    ax.set_ylabel(f"{split} accuracy (%)")
    ticks = sorted(s["pct"].unique(), reverse=True)
    ax.set_xticks(ticks[:: max(1, len(ticks) // 8)])
    ax.get_xaxis().set_major_formatter(matplotlib.ticker.FormatStrFormatter("%.3g"))
    ax.minorticks_off()
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    n = int(s["n"].max())
    ax.set_title(title or f"IMP with rewinding (mean ± std over {n} replicate{'s' if n > 1 else ''})", fontsize=10)
    return save_figure(fig, out, dpi=150)
