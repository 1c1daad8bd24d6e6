"""Instability figures: error along the path for each k, and instability against k."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .common import save_figure


def instability_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Mean and std over replicates and pairs of the instability, per (branch, level, k, split);
    ``diverged`` counts pairs with a diverged copy (NaN rows)."""
    df = table[table["metric"] == "instability"].copy()
    df["branch_params"] = df["branch_params"].fillna("")
    g = df.groupby(["branch", "branch_params", "level", "rewind_iteration", "rewind_step", "split"], dropna=False)
    out = g.agg(density=("density", "mean"), mean=("value", "mean"), std=("value", "std"), n=("value", "count"),
                diverged=("value", lambda v: int(v.isna().sum())))
    out["std"] = out["std"].fillna(0.0)
    out = out.reset_index()
    # the endpoints' accuracy (the copies' own final accuracy), averaged over copies and replicates
    ends = table[(table["metric"] == "error") & (table["alpha"].isin([0.0, 1.0]))].copy()
    ends["branch_params"] = ends["branch_params"].fillna("")
    acc = (1 - ends.groupby(["branch", "branch_params", "level", "rewind_iteration", "split"], dropna=False)["value"]
           .mean()).rename("end_accuracy").reset_index()
    out = out.merge(acc, on=["branch", "branch_params", "level", "rewind_iteration", "split"], how="left")
    return out.sort_values(["branch", "level", "rewind_iteration", "split"]).reset_index(drop=True)


def plot_instability(table: pd.DataFrame, out: str | Path, level: int | None = None) -> list[Path]:
    """Top: error along the path for each k (at ``level``, default the lowest); bottom: instability
    against k, one curve per level (and baseline); train on the left, test on the right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if table.empty:
        raise ValueError("no instability rows to plot")
    level = int(table["level"].min()) if level is None else level
    s = instability_summary(table)
    fig, axes = plt.subplots(2, 2, figsize=(10, 7))
    cmap = plt.get_cmap("viridis")
    path = table[(table["metric"] == "error") & (table["level"] == level) & (table["branch"] == "none")]
    ks = sorted(path["rewind_iteration"].unique())
    for col, split in enumerate(("train", "test")):
        ax = axes[0, col]
        for i, k in enumerate(ks):
            p = path[(path["split"] == split) & (path["rewind_iteration"] == k)]
            m = p.groupby("alpha")["value"].agg(["mean", "std"]).reset_index()
            color = cmap(i / max(1, len(ks) - 1) * 0.9)
            step = p["rewind_step"].iloc[0]
            ax.plot(m["alpha"], 100 * m["mean"], color=color, label=f"k={step}")
            ax.fill_between(m["alpha"], 100 * (m["mean"] - m["std"].fillna(0)), 100 * (m["mean"] + m["std"].fillna(0)),
                            color=color, alpha=0.15, lw=0)
        ax.set_xlabel("interpolation a")
        ax.set_ylabel(f"{split} error (%)")
        ax.set_title(f"{split}: error along the path, level {level}", fontsize=10)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
        ax = axes[1, col]
        sub = s[s["split"] == split]
        for i, ((branch, params, lv), grp) in enumerate(sub.groupby(["branch", "branch_params", "level"])):
            grp = grp.sort_values("rewind_iteration")
            x = grp["rewind_iteration"].clip(lower=1) if (grp["rewind_iteration"] > 0).any() else grp["rewind_iteration"]
            style = "-" if branch == "none" else "--"
            name = f"level {lv} ({100 * grp['density'].iloc[0]:.1f}%)" + ("" if branch == "none" else f" {branch}")
            ax.errorbar(x, 100 * grp["mean"], yerr=100 * grp["std"], ls=style, marker="o", ms=4, capsize=2, label=name)
        if (sub["rewind_iteration"] > 0).any():
            ax.set_xscale("log")
        ax.axhline(2.0, color="0.5", lw=0.8, ls=":")
        ax.set_xlabel("rewind step k (iterations; k=0 drawn at 1)")
        ax.set_ylabel(f"{split} instability (%)")
        ax.set_title(f"{split}: instability against k (dotted: 2% = stable)", fontsize=10)
        ax.legend(fontsize=7)
        ax.grid(alpha=0.3)
    return save_figure(fig, out, dpi=130)
