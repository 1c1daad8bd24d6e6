"""The early-phase timeline: accuracy, loss, gradient norm, distances and sign changes against
iteration (log axis), mean and spread over replicates."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .common import save_figure


def plot_timeline(table: pd.DataFrame, out: str | Path, layer: str = "all") -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if table.empty:
        raise ValueError("no probe rows to plot")
    df = table.copy()
    df["x"] = df["step"].clip(lower=1)
    panels = [
        ("accuracy (%)", [("accuracy", "train", None), ("accuracy", "test", None)], 100),
        ("loss", [("loss", "train", None), ("loss", "test", None)], 1),
        ("gradient norm (batch)", [("grad_norm", "train", layer)], 1),
        ("L2 distance", [("dist_init", "weights", layer), ("dist_rewind", "weights", layer),
                         ("dist_final", "weights", layer)], 1),
        ("cosine similarity", [("cos_init", "weights", layer), ("cos_rewind", "weights", layer),
                               ("cos_final", "weights", layer)], 1),
        ("signs differing (%)", [("sign_diff_init", "weights", layer), ("sign_diff_final", "weights", layer)], 100),
    ]
    fig, axes = plt.subplots(2, 3, figsize=(13, 7))
    for ax, (title, series, scale) in zip(axes.flat, panels):
        for metric, split, lay in series:
            sel = (df["metric"] == metric) & (df["split"] == split)
            sel &= df["layer"].isna() if lay is None else (df["layer"] == lay)
            g = df[sel].groupby("x")["value"].agg(["mean", "min", "max"]).reset_index()
            if g.empty:
                continue
            label = f"{metric} ({split})" if split in ("train", "test") and lay is None else metric
            ax.plot(g["x"], scale * g["mean"], label=label)
            ax.fill_between(g["x"], scale * g["min"], scale * g["max"], alpha=0.2, lw=0)
        ax.set_xscale("log")
        ax.set_xlabel("iteration (0 drawn at 1)")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    n = df["run"].nunique() if "run" in df else 1
    fig.suptitle(f"Early phase ({layer} prunable weights; mean and range over {n} run{'s' if n > 1 else ''})", fontsize=11)
    return save_figure(fig, out, dpi=130)


def plot_linear(rows: pd.DataFrame, out: str | Path) -> list[Path]:
    """Network against the linear model: loss, error (train and test) and output distance."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    df = rows.copy()
    df["x"] = df["step"].clip(lower=1)
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for ax, metric, scale, title in ((axes[0], "loss", 1, "loss"), (axes[1], "error", 100, "error (%)")):
        for model, ls in (("network", "-"), ("linear", "--")):
            for split, color in (("train", "C0"), ("test", "C1")):
                g = df[(df.metric == metric) & (df.model == model) & (df.split == split)].groupby("x")["value"].mean()
                ax.plot(g.index, scale * g.values, ls=ls, color=color, label=f"{model} ({split})")
        ax.set_title(title, fontsize=10)
    ax = axes[2]
    for split, color in (("train", "C0"), ("test", "C1")):
        d = df[(df.metric == "output_distance") & (df.split == split)].groupby("x")["value"].mean()
        norm = df[(df.metric == "output_norm") & (df.split == split)].groupby("x")["value"].mean()
        ax.plot(d.index, d.values, color=color, label=f"||f - g|| / sqrt(n) ({split})")
        ax.plot(norm.index, norm.values, color=color, ls=":", label=f"||f|| / sqrt(n) ({split})")
    ax.set_title("output distance (logits)", fontsize=10)
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("iteration (0 drawn at 1)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Network (solid) against a linear model on standardised inputs (dashed)", fontsize=11)
    return save_figure(fig, out, dpi=130)
