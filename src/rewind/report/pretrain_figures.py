"""The early-phase paper's pretraining figure: accuracy of IMP subnetworks rewound to the end of
pretraining, against the pretraining length, one line per kind, supervised rewinding as the
reference."""
from __future__ import annotations

import numpy as np
import pandas as pd

from .common import save_figure


def _interval(v: np.ndarray, g: np.random.Generator, resamples: int) -> tuple[float, float]:
    if len(v) < 2:
        return float("nan"), float("nan")
    lo, hi = np.percentile(v[g.integers(0, len(v), size=(resamples, len(v)))].mean(1), [2.5, 97.5])
    return float(lo), float(hi)


def pretrain_summary(table: pd.DataFrame, resamples: int = 10_000, seed: int = 0) -> pd.DataFrame:
    """Per (kind, pretraining length, level): mean, std and n of the test accuracy over replicates;
    the paired difference (same replicate: same W_0 and data order) to supervised rewinding to the
    same iteration and to k = 0, each with a 95% percentile bootstrap interval (seeded)."""
    g = np.random.default_rng(seed)
    sup = table[table["kind"] == "supervised"]
    at = sup.set_index(["pretrain_iterations", "level", "replicate"])["test_accuracy"]
    k0 = sup[sup["pretrain_iterations"] == 0].set_index(["level", "replicate"])["test_accuracy"]
    rows = []
    for (kind, steps, it, level), grp in table.groupby(["kind", "pretrain_steps", "pretrain_iterations", "level"]):
        v = grp.set_index("replicate")["test_accuracy"].dropna()
        row = {"kind": kind, "pretrain_steps": steps, "pretrain_iterations": int(it), "level": int(level),
               "density": float(grp["density"].mean()), "mean": float(v.mean()),
               "std": float(v.std()) if len(v) > 1 else 0.0, "n": len(v)}
        for name, ref in (("supervised", lambda r: at.get((it, level, r))), ("k0", lambda r: k0.get((level, r)))):
            d = np.array([v[r] - ref(r) for r in v.index if ref(r) is not None and not np.isnan(ref(r))])
            lo, hi = _interval(d, g, resamples)
            row.update({f"minus_{name}": float(d.mean()) if len(d) else float("nan"),
                        f"minus_{name}_low": lo, f"minus_{name}_high": hi})
        rows.append(row)
    return pd.DataFrame(rows).sort_values(["level", "kind", "pretrain_iterations"]).reset_index(drop=True)


def plot_pretrain(table: pd.DataFrame, out, levels: list[int] | None = None) -> list:
    """One panel per level: test accuracy (mean, ±1 std band) against pretraining iterations
    (symmetric log axis: 0 is k = 0), a line per kind; supervised rewinding in black, k = 0 and
    the dense network as horizontal references. The axis spans the references and 3 points
    below: a mean further down (a collapse) is drawn at the bottom edge as a down-pointing
    triangle with its value written beside it."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = pretrain_summary(table, resamples=200)
    levels = levels or sorted(lv for lv in s["level"].unique() if lv > 0)
    fig, axes = plt.subplots(1, len(levels), figsize=(4.6 * len(levels) + 1.8, 3.6), squeeze=False)
    dense = s[(s["level"] == 0) & (s["kind"] == "supervised")]["mean"].mean()
    colours = plt.get_cmap("tab10")
    kinds = [k for k in sorted(s["kind"].unique()) if k != "supervised"]
    for ax, level in zip(axes[0], levels):
        part = s[s["level"] == level]
        refs = 100 * part[part["kind"] == "supervised"]["mean"]
        top = max([*refs, 100 * dense if not np.isnan(dense) else 0.0, *(100 * part["mean"])]) + 0.5
        bottom = min([*refs, 100 * dense if not np.isnan(dense) else 100.0]) - 3.0
        for i, kind in enumerate(["supervised", *kinds]):
            line = part[part["kind"] == kind].sort_values("pretrain_iterations")
            if kind != "supervised":  # every kind starts from the same k = 0 point
                k0 = part[(part["kind"] == "supervised") & (part["pretrain_iterations"] == 0)]
                line = pd.concat([k0, line])
            x, m, sd = line["pretrain_iterations"], 100 * line["mean"], 100 * line["std"]
            style = dict(color="black", lw=2.0, zorder=5) if kind == "supervised" else dict(color=colours(i), lw=1.4)
            shown = m.clip(lower=bottom)
            ax.plot(x, shown, marker="o", ms=3.5, label="supervised rewinding" if kind == "supervised" else kind,
                    **style)
            ax.fill_between(x, (m - sd).clip(lower=bottom), (m + sd).clip(lower=bottom), alpha=0.12,
                            color=style["color"], lw=0)
            for xi, mi in zip(x, m):
                if mi < bottom:
                    ax.plot([xi], [bottom], marker="v", ms=7, color=style["color"], clip_on=False)
                    ax.annotate(f"{mi:.1f}", (xi, bottom), textcoords="offset points", xytext=(5, 4), fontsize=7,
                                color=style["color"])
        k0 = part[(part["kind"] == "supervised") & (part["pretrain_iterations"] == 0)]["mean"]
        if len(k0):
            ax.axhline(100 * k0.iloc[0], color="grey", ls="--", lw=1, label="k = 0")
        if not np.isnan(dense):
            ax.axhline(100 * dense, color="grey", ls=":", lw=1, label="dense")
        lengths = sorted(part["pretrain_iterations"].unique())
        ax.set_xscale("symlog", linthresh=max(1, int(min(v for v in lengths if v > 0) if any(lengths) else 1)))
        ax.set_xticks(lengths)
        ax.set_xticklabels([f"{int(v)}" for v in lengths])
        ax.set_ylim(bottom - 0.3, top)
        ax.set_xlabel("pretraining length (iterations; 0 = k = 0)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(f"level {level}: {100 * part['density'].mean():.1f}% of weights")
        ax.grid(alpha=0.3)
    axes[0][-1].legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    return save_figure(fig, out, dpi=150)


def plot_critical(table: pd.DataFrame, out) -> list:
    """Final test accuracy (mean ± std over replicates) against the length of the deficit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 3.6))
    for kind, grp in table.groupby("deficit"):
        g = grp.groupby("deficit_iterations")["test_accuracy"].agg(["mean", "std"]).fillna(0.0).reset_index()
        x, m, sd = g["deficit_iterations"], 100 * g["mean"], 100 * g["std"]
        ax.plot(x, m, marker="o", ms=3.5, label=f"deficit: {kind}")
        ax.fill_between(x, m - sd, m + sd, alpha=0.15, lw=0)
    positive = table[table["deficit_iterations"] > 0]["deficit_iterations"]
    if len(positive):
        ax.set_xscale("symlog", linthresh=max(1, int(positive.min())))
    ax.set_xlabel("deficit removed after (iterations; 0 = none)")
    ax.set_ylabel("final test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, frameon=False)
    return save_figure(fig, out, dpi=150)
