"""Masks: the per-layer densities of the masks compared, and their overlap against chance
(analysis/masks.py)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .common import save_figure


def plot_masks(rows: pd.DataFrame, out: str | Path | None):
    """Left: per-layer density of each (study's criterion, rewind step) at every level, mean over
    replicates. Right: the Jaccard index of whole masks against its chance value, by what differs
    between the two masks. Returns a Plot (paths and figure)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    d = rows[(rows["metric"] == "density") & (rows["layer"] != "all")]
    layers = list(dict.fromkeys(d["layer"]))
    groups = d.groupby(["criterion", "rewind_step", "level"], sort=True)
    for i, ((criterion, k, level), grp) in enumerate(groups):
        v = grp.groupby("layer")["value"].mean().reindex(layers)
        left.plot(range(len(layers)), 100 * v.to_numpy(), "-o", ms=3, label=f"{criterion} k={k} L{level}",
                  color=plt.get_cmap("tab20")(i % 20))
    left.set_xticks(range(len(layers)), layers, rotation=70, fontsize=6)
    left.set_ylabel("weights kept (%)")
    left.set_yscale("log")
    if len(groups) <= 12:
        left.legend(fontsize=6)
    j = rows[(rows["metric"] == "jaccard") & (rows["layer"] == "all")]
    if not j.empty:
        s = j.groupby(["differs", "criterion", "other_criterion", "level"]).agg(
            jaccard=("value", "mean"), chance=("chance", "mean")).reset_index()
        labels = [f"{r.differs}: {r.criterion}" + ("" if r.criterion == r.other_criterion else f"/{r.other_criterion}")
                  + f" L{r.level}" for r in s.itertuples()]
        y = range(len(s))
        right.barh(y, s["jaccard"], color="tab:blue", label="Jaccard")
        right.scatter(s["chance"], y, color="black", marker="|", s=80, label="chance", zorder=3)
        right.set_yticks(list(y), labels, fontsize=6)
        right.set_xlabel("Jaccard index of the whole masks")
        right.legend(fontsize=7)
    return save_figure(fig, out)
