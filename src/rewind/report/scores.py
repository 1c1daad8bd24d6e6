"""Histogram of per-example scores (averaged over replicates), one line per class."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .common import save_figure


def plot_scores(table: pd.DataFrame, out) -> list:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mean = table.groupby(["example", "label"], as_index=False)["score"].mean()
    method, at = table["method"].iloc[0], int(table["at"].iloc[0])
    fig, ax = plt.subplots(figsize=(5.6, 3.6))
    bins = np.linspace(mean["score"].min(), mean["score"].max(), 41)
    ax.hist(mean["score"], bins=bins, color="0.6", label="all examples")
    for label, grp in mean.groupby("label"):
        counts, edges = np.histogram(grp["score"], bins=bins)
        ax.step(edges[:-1], counts, where="post", lw=0.8, label=f"class {label}")
    ax.set_xlabel(f"{method} at {at}it (mean over {table['replicate'].nunique()} replicates)")
    ax.set_ylabel("examples")
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return save_figure(fig, out, dpi=150)
