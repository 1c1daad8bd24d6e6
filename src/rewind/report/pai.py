"""Pruning at a step with a criterion: test accuracy against density, one line per criterion, its
mask shuffled within layers dashed (lottery/pai.py)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .common import save_figure


def plot_pai(table: pd.DataFrame, out: str | Path | None, imp: pd.DataFrame | None = None):
    """``table``: lottery.pai.prune_at's rows; ``imp``: optional rows (density, test_accuracy, label)
    of IMP studies at the same densities, drawn in black. Returns a Plot (paths and figure)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    cmap = plt.get_cmap("tab10")
    for i, (criterion, grp) in enumerate(table.groupby("criterion", sort=True)):
        for variant, style in (("pruned", "-"), ("shuffled", "--"), ("reinit", ":")):
            g = grp[grp["variant"] == variant].groupby("density")["test_accuracy"].agg(["mean", "std"]).reset_index()
            if g.empty:
                continue
            ax.errorbar(100 * g["density"], 100 * g["mean"], yerr=100 * g["std"].fillna(0), fmt=style + "o",
                        color=cmap(i % 10), ms=3, capsize=2, label=f"{criterion}" + ("" if variant == "pruned"
                                                                                   else f" ({variant})"))
    if imp is not None and not imp.empty:
        for j, (label, grp) in enumerate(imp.groupby("label", sort=True)):
            g = grp.groupby("density")["test_accuracy"].agg(["mean", "std"]).reset_index()
            ax.errorbar(100 * g["density"], 100 * g["mean"], yerr=100 * g["std"].fillna(0), fmt="-s",
                        color=("black", "grey")[j % 2], ms=3, capsize=2, label=label)
    ax.set_xscale("log")
    ticks = sorted(set(100 * table["density"]))
    ax.set_xticks(ticks, [f"{t:.3g}" for t in ticks])
    ax.minorticks_off()
    ax.invert_xaxis()
    ax.set_xlabel("weights remaining (%)")
    ax.set_ylabel("test accuracy (%)")
    ax.legend(fontsize=7, ncol=2)
    ax.grid(alpha=0.3)
    return save_figure(fig, out)
