"""Markdown tables of docs/pretrain/*.csv and docs/diet/*.csv (written by experiments/data.sh).

    .venv/bin/python experiments/data_tables.py
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from rewind.report import pretrain_summary

ROOT = Path(__file__).resolve().parent.parent / "docs"
LEVELS = {"mnist1d_mlp": (3, 6), "mnist1d_conv": (3, 6), "digits_cnn": (3, 6), "mnist1d_resnet": (3, 5)}


def cell(r, name):
    if pd.isna(r[f"minus_{name}"]):
        return "-"
    return (f"{100 * r[f'minus_{name}']:+.2f} [{100 * r[f'minus_{name}_low']:+.2f}, "
            f"{100 * r[f'minus_{name}_high']:+.2f}]")


def grid_table(csv: Path, levels) -> str:
    s = pretrain_summary(pd.read_csv(csv))
    lines = []
    for level in levels:
        part = s[s["level"] == level]
        if part.empty:
            continue
        dense = s[(s["level"] == 0) & (s["kind"] == "supervised")]["mean"].mean()
        lines += [f"\nLevel {level} ({100 * part['density'].mean():.1f}% of weights; dense {100 * dense:.2f}%), "
                  "test accuracy %, mean ± std over replicates (n), and paired differences in points with 95% "
                  "bootstrap intervals:\n",
                  "| kind | pretraining | accuracy | n | minus supervised rewinding to the same step | minus k = 0 |",
                  "|---|---|---|---|---|---|"]
        for r in part.sort_values(["kind", "pretrain_iterations"]).to_dict("records"):
            if r["kind"] == "supervised":
                sup = "(reference)"
                k0 = "(reference)" if r["pretrain_iterations"] == 0 else cell(r, "k0")
            else:
                sup, k0 = cell(r, "supervised"), cell(r, "k0")
            lines.append(f"| {r['kind']} | {r['pretrain_steps']} | {100 * r['mean']:.2f} ± {100 * r['std']:.2f} | "
                         f"{r['n']} | {sup} | {k0} |")
    return "\n".join(lines)


def main() -> None:
    out = ["# Pretraining on altered data: tables\n", "Written by `experiments/data_tables.py` from the CSVs beside "
           "this file (`experiments/data.sh` makes them). 'supervised' at length s is IMP rewound to iteration s "
           "of ordinary training (s = 0it: k = 0).\n"]
    for preset, levels in LEVELS.items():
        csv = ROOT / "pretrain" / f"{preset}.csv"
        if csv.exists():
            out += [f"\n## {preset}\n", grid_table(csv, levels)]
    crit = ROOT / "pretrain" / "critical-mnist1d_mlp.csv"
    if crit.exists():
        t = pd.read_csv(crit).groupby(["deficit", "deficit_until", "deficit_iterations"])["test_accuracy"]
        t = t.agg(["mean", "std", "count"]).reset_index().sort_values("deficit_iterations")
        out += ["\n## Critical periods (mnist1d_mlp, blur deficit)\n", "| removed at | final test accuracy % | n |",
                "|---|---|---|"]
        out += [f"| {r.deficit_until} | {100 * r.mean:.2f} ± {100 * r.std:.2f} | {r.count} |" for r in t.itertuples()]
    (ROOT / "pretrain" / "tables.md").write_text("\n".join(out) + "\n")

    out = ["# Data scores and data diets: tables\n", "Written by `experiments/data_tables.py`.\n"]
    for csv in sorted((ROOT / "diet").glob("data-diet-*.csv")):
        t = pd.read_csv(csv).groupby(["method", "keep"])["test_accuracy"].agg(["mean", "std", "count"]).reset_index()
        wide = t.assign(v=[f"{100 * m:.2f} ± {100 * s:.2f}" for m, s in zip(t["mean"], t["std"].fillna(0))])
        wide = wide.pivot(index="method", columns="keep", values="v").fillna("")
        out += [f"\n## {csv.stem} (final test accuracy %, mean ± std, 3 replicates)\n",
                "| method | " + " | ".join(f"keep {k:g}" for k in wide.columns) + " |",
                "|---|" + "---|" * len(wide.columns)]
        out += [f"| {m} | " + " | ".join(wide.loc[m]) + " |" for m in wide.index]
    for csv in sorted((ROOT / "diet").glob("diet-lottery-*.csv")):
        preset = csv.stem.removeprefix("diet-lottery-")
        out += [f"\n## Lottery on a data diet: {preset}\n", grid_table(csv, LEVELS.get(preset, (3,)))]
    (ROOT / "diet" / "tables.md").write_text("\n".join(out) + "\n")


if __name__ == "__main__":
    main()
