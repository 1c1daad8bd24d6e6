"""The two-seed-set table of docs/claims.md, from two ``rewind reproduce`` output folders.

    python experiments/claims_table.py docs/reproduce repro-B > /tmp/claims-table.md
    python experiments/claims_table.py runA runD "run A" "run D"     # column titles of your own

One row per test: its mean with the rule's interval and n for each seed set, each verdict, and
whether the two verdicts agree; then one row per claim with the time it took in each run. The
reasons where a verdict differs from the paper are written by hand in docs/claims.md, after the
table, from the measurements the pages show.
"""
from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd


def _cell(row: pd.Series) -> str:
    if row["n"] < 2:
        return f"n = {int(row['n'])}: {row['verdict']}"
    low = "" if pd.isna(row["low"]) else f"{row['low']:+.2f}"
    high = "" if pd.isna(row["high"]) else f"{row['high']:+.2f}"
    return f"{row['mean']:+.2f} [{low}, {high}], n = {int(row['n'])}: **{row['verdict']}**"


def tables(first: Path, second: Path, names=("seeds 0, 1, ...", "seeds 1000, 1001, ...")) -> str:
    a, b = (pd.read_csv(p / "tests.csv") for p in (first, second))
    ca, cb = (pd.read_csv(p / "claims.csv") for p in (first, second))
    lines = [f"| claim | test | predicted | {names[0]} | {names[1]} | agree |",
             "|---|---|---|---|---|---|"]
    for (_, x), (_, y) in zip(a.iterrows(), b.iterrows()):
        assert (x["claim"], x["test"]) == (y["claim"], y["test"]), (x["claim"], x["test"], y["test"])
        sign = {"~": "within +-"}.get(x["direction"], x["direction"] + " ")
        lines.append(f"| {x['claim']} | {x['test']} | {sign}{x['threshold']:g} | {_cell(x)} | {_cell(y)} | "
                     f"{'yes' if x['verdict'] == y['verdict'] else '**no**'} |")
    short = [n.split(",")[0] for n in names]
    lines += ["", f"| claim | title | verdict ({short[0]}) | replicates | s | verdict ({short[1]}) | replicates | s |",
              "|---|---|---|---|---|---|---|---|"]
    for (_, x), (_, y) in zip(ca.iterrows(), cb.iterrows()):
        lines.append(f"| {x['claim']} | {x['title']} | {x['verdict']} | {x['replicates']} | {x['seconds']:.0f} | "
                     f"{y['verdict']} | {y['replicates']} | {y['seconds']:.0f} |")
    lines.append(f"| | total | | | {ca['seconds'].sum():.0f} | | | {cb['seconds'].sum():.0f} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    if len(sys.argv) not in (3, 5):
        sys.exit("usage: python experiments/claims_table.py FIRST_OUT SECOND_OUT [FIRST_NAME SECOND_NAME]")
    names = tuple(sys.argv[3:5]) if len(sys.argv) == 5 else ("seeds 0, 1, ...", "seeds 1000, 1001, ...")
    sys.stdout.write(tables(Path(sys.argv[1]), Path(sys.argv[2]), names))
