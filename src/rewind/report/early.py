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


def _mpl():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_hu(rows: pd.DataFrame, out: str | Path, threshold: float = 0.1) -> list[Path]:
    """Hu et al.'s figure: the discrepancy ||f - f_lin|| / ||f|| (train, test), both models' test
    error, and the NTK's movement, against steps on a log scale (mean over replicates)."""
    plt = _mpl()
    df = rows[rows.step > 0]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for split, color in (("train", "C0"), ("test", "C1")):
        g = df[(df.metric == "discrepancy") & (df.split == split)].groupby("step")["value"].mean()
        axes[0].plot(g.index, g.values, color=color, label=split)
    axes[0].axhline(threshold, color="grey", ls=":", lw=1, label=f"threshold {threshold:g}")
    axes[0].set_title("||f_t - f_lin,t|| / ||f_t||", fontsize=10)
    for model, ls in (("network", "-"), ("linear", "--")):
        for metric, color in (("error", "C2"), ("loss", "C3")):
            g = df[(df.metric == metric) & (df.model == model) & (df.split == "test")].groupby("step")["value"].mean()
            axes[1].plot(g.index, 100 * g.values if metric == "error" else g.values, color=color, ls=ls,
                         label=f"{model} test {'error (%)' if metric == 'error' else 'loss'}")
    axes[1].set_yscale("log")
    axes[1].set_title("test error (%) and loss: network solid, linear dashed", fontsize=10)
    g = df[df.metric == "ntk_distance"].groupby("step")["value"].mean()
    axes[2].plot(g.index, g.values, marker="o", ms=3, color="C4")
    axes[2].set_title("||Theta_t - Theta_0||_F / ||Theta_0||_F", fontsize=10)
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("iteration")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.suptitle("The network against its linear model (affine approximation of its NTK at initialisation)",
                 fontsize=11)
    return save_figure(fig, out, dpi=130)


def plot_departure(table: pd.DataFrame, out: str | Path, curves: pd.DataFrame) -> list[Path]:
    """Discrepancy curves per width and learning rate, and against width and learning rate the
    turning point (the step of the smallest train discrepancy; mean and range over replicates) and
    the departure step where there is one (open triangles)."""
    plt = _mpl()
    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    train = curves[(curves.metric == "discrepancy") & (curves.split == "train") & (curves.step > 0)]
    keys = sorted(train.groupby(["width", "lr"], dropna=False).groups)
    cmap = plt.get_cmap("viridis")
    for i, (w, lr) in enumerate(keys):
        g = train[(train.width.fillna(0) == (0 if pd.isna(w) else w)) & (train.lr == lr)].groupby("step")["value"].mean()
        axes[0].plot(g.index, g.values, color=cmap(i / max(len(keys) - 1, 1)), label=f"m={w} lr={lr:g}", lw=1)
    axes[0].set_xscale("log")
    axes[0].set_title("train discrepancy ||f - f_lin|| / ||f||", fontsize=10)
    axes[0].legend(fontsize=6, ncol=2)
    t = table.copy()
    t["dep"] = t.departure_train.astype(float)
    t = t.assign(dep=t.dep.where(t.dep > 0))   # 0 (never within) and > T (still within) are not drawn
    for ax, x, other in ((axes[1], "width", "lr"), (axes[2], "lr", "width")):
        for j, (val, part) in enumerate(t.groupby(other, dropna=False)):
            color = f"C{j}"
            g = part.groupby(x)["discrepancy_min_step"]
            ax.errorbar(g.mean().index, g.mean().values, yerr=[g.mean() - g.min(), g.max() - g.mean()], color=color,
                        marker="o", capsize=3, label=f"turning point, {other}={val:g}" if pd.notna(val) else other)
            dep = part.dropna(subset=["dep"])
            if len(dep):
                ax.scatter(dep[x], dep["dep"], marker="^", facecolors="white", edgecolors=color, zorder=3,
                           label=f"departure, {other}={val:g}" if pd.notna(val) else "departure")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(x)
        ax.set_ylabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    axes[1].set_title("minimum discrepancy (turning point) and departure\nagainst width", fontsize=10)
    axes[2].set_title("... against learning rate", fontsize=10)
    fig.tight_layout()
    return save_figure(fig, out, dpi=130)
