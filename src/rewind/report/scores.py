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


def plot_diet(table: pd.DataFrame, out) -> list:
    """Final test accuracy (mean ± std) against the fraction of training data kept, a line per
    method; the full data as a horizontal reference."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.4, 3.6))
    full = table[table["method"] == "full"]["test_accuracy"]
    for method, grp in table[table["method"] != "full"].groupby("method"):
        g = grp.groupby("keep")["test_accuracy"].agg(["mean", "std"]).fillna(0.0).reset_index()
        ax.errorbar(100 * g["keep"], 100 * g["mean"], yerr=100 * g["std"], marker="o", ms=3.5, capsize=2,
                    label=method)
    if len(full):
        ax.axhline(100 * full.mean(), color="grey", ls=":", lw=1, label="full data")
    ax.set_xlabel("training data kept (%)")
    ax.set_ylabel("final test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    return save_figure(fig, out, dpi=150)


def plot_example_lmc(per_k: pd.DataFrame, out) -> list:
    """The connected share (one line per threshold) and IMP's accuracy against k (twin axes)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.6, 3.6))
    for t, g in per_k.groupby("threshold"):
        ax.plot(g["rewind_iteration"], 100 * g["fraction"], marker="o", ms=3.5, label=f"connected (< {t:g} nats)")
    ax.set_xlabel("k (iterations)")
    ax.set_ylabel("training examples connected (%)")
    acc = per_k.drop_duplicates("rewind_iteration")
    twin = ax.twinx()
    twin.plot(acc["rewind_iteration"], 100 * acc["imp_accuracy"], color="black", lw=2, marker="s", ms=3.5,
              label="IMP test accuracy")
    twin.set_ylabel("IMP test accuracy (%)")
    positive = per_k[per_k["rewind_iteration"] > 0]["rewind_iteration"]
    if len(positive):
        ax.set_xscale("symlog", linthresh=max(1, int(positive.min())))
    lines = ax.get_legend_handles_labels()
    lines2 = twin.get_legend_handles_labels()
    ax.legend(lines[0] + lines2[0], lines[1] + lines2[1], fontsize=7, frameon=False, loc="lower right")
    ax.grid(alpha=0.3)
    return save_figure(fig, out, dpi=150)
