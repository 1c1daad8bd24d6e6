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
    replicates (``resamples`` draws from a seeded generator, the same draws for every quantity); and
    each rewind step's gap to the same replicates' dense accuracy, with its interval.
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
        reps = grp.index.get_level_values("replicate")
        base = dense.reindex(reps).to_numpy()
        n = len(grp)
        draws = g.integers(0, n, size=(resamples, n)) if n >= 2 else None

        def interval(v):
            if draws is None:
                return float("nan"), float("nan")
            lo, hi = np.percentile(v[draws].mean(1), [2.5, 97.5])
            return float(lo), float(hi)

        d, gap_a, gap_b = (grp[b] - grp[a]).to_numpy(), grp[a].to_numpy() - base, grp[b].to_numpy() - base
        (lo, hi), (ga_lo, ga_hi), (gb_lo, gb_hi) = interval(d), interval(gap_a), interval(gap_b)
        mean = (lambda v: float(v.mean()) if n else float("nan"))
        rows.append({"level": int(level), "density": float(dens[level]), "n": n, "dense": mean(base),
                     f"mean_{a}": mean(grp[a].to_numpy()), f"mean_{b}": mean(grp[b].to_numpy()),
                     f"gap_{a}": mean(gap_a), f"gap_{a}_low": ga_lo, f"gap_{a}_high": ga_hi,
                     f"gap_{b}": mean(gap_b), f"gap_{b}_low": gb_lo, f"gap_{b}_high": gb_hi,
                     "difference": mean(d), "ci_low": lo, "ci_high": hi})
    return pd.DataFrame(rows)


def format_params(branch_params: str | None) -> str:
    """'{"scale": 0.5}' -> 'scale=0.5'."""
    import json

    params = json.loads(branch_params) if branch_params else {}
    return " ".join(f"{k}={v}" for k, v in sorted(params.items()))


def _label(row) -> str:
    text = format_params(row.branch_params)
    return f"{row.branch}{' ' + text if text else ''}, k={row.rewind_step}"


def plot_lottery(table: pd.DataFrame, out: str | Path, split: str = "test", title: str | None = None,
                 baseline_rewind: str | None = None) -> list[Path]:
    """Accuracy against weights remaining, drawn as in the early-phase paper's Figure 1: one mean line
    per rewind step k with a band of +-1 std over replicates, the dense network's mean +- std as a
    horizontal band, and each baseline once (for the masks of ``baseline_rewind``, default the
    latest rewind step it was run for), dashed. The legend sits outside the axes. Writes
    ``out``.png and ``out``.svg; returns the paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = lottery_summary(table, split)
    if s.empty:
        raise ValueError("no finished lottery runs to plot")
    s["pct"] = 100.0 * s["density"]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    dense = s[s["level"] == 0]
    dense_point = None
    if not dense.empty:
        dense_point = dense.iloc[0]
        m, sd = dense_point["mean"], dense_point["std"]
        ax.axhspan(100 * (m - sd), 100 * (m + sd), color="0.88", zorder=0, lw=0)
        ax.axhline(100 * m, color="0.45", lw=1.0, ls=":", zorder=1, label=f"dense {100 * m:.1f} ± {100 * sd:.1f}%")
    sparse = s[s["level"] > 0]
    ours = sparse[sparse["branch"] == "none"]
    rewinds = sorted(ours["rewind_iteration"].unique())
    cmap = plt.get_cmap("viridis")
    color = {k: cmap(0.85 * i / max(1, len(rewinds) - 1)) for i, k in enumerate(rewinds)}

    def draw(grp, label, c, ls, marker):
        grp = grp.sort_values("level")
        x, y, e = grp["pct"].astype(float), 100 * grp["mean"].astype(float), 100 * grp["std"].astype(float)
        ax.plot(x, y, ls=ls, marker=marker, ms=3.5, color=c, label=label, zorder=3)
        ax.fill_between(x, y - e, y + e, color=c, alpha=0.18, lw=0, zorder=2)

    for k, grp in ours.groupby("rewind_iteration"):
        if dense_point is not None:
            grp = pd.concat([dense_point.to_frame().T, grp])
        draw(grp, f"IMP, rewind to k={grp.iloc[-1].rewind_step}", color[k], "-", "o")
    greys = iter(["0.3", "0.55", "0.15", "0.7"])
    for (branch, params), grp in sparse[sparse["branch"] != "none"].groupby(["branch", "branch_params"]):
        steps = grp.drop_duplicates("rewind_iteration").sort_values("rewind_iteration")
        pick = steps[steps["rewind_step"] == baseline_rewind] if baseline_rewind else steps.tail(1)
        if pick.empty:
            continue
        row = pick.iloc[0]
        text = format_params(params)
        label = f"{branch}{' ' + text if text else ''} (masks of k={row.rewind_step})"
        draw(grp[grp["rewind_iteration"] == row.rewind_iteration], label, next(greys, "0.4"), "--",
             {"reinit": "x", "random-prune": "s"}.get(branch, "^"))
    ax.set_xscale("log")
    ax.invert_xaxis()
    ax.set_xlabel("weights remaining (%)")
    ax.set_ylabel(f"{split} accuracy (%)")
    ticks = sorted(s["pct"].unique(), reverse=True)
    ax.set_xticks(ticks[:: max(1, len(ticks) // 8)])
    ax.get_xaxis().set_major_formatter(matplotlib.ticker.FormatStrFormatter("%.3g"))
    ax.minorticks_off()
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    n = int(s["n"].min())
    spread = f"{n} replicate{'s' if n > 1 else ''}" if n == int(s["n"].max()) else f"{n}-{int(s['n'].max())} replicates"
    ax.set_title(title or f"IMP with rewinding: mean, band ± 1 std over {spread}", fontsize=10)
    return save_figure(fig, out, dpi=150)
