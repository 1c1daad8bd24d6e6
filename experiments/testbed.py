"""The testbed search (issue #12): where, at CPU scale, does IMP rewound to k = 0 fail while
rewinding to k > 0 matches, and when does the dense network become stable?

    .venv/bin/python experiments/testbed.py search [--only NAME,...] [--shard I/N]
    .venv/bin/python experiments/testbed.py imp NAME --kstar 200it [--replicates 5] [--levels 7]
    .venv/bin/python experiments/testbed.py report        # docs/testbed/tables.md from the CSVs

Every run goes through rewind's store (``--root``, default runs/testbed): rerunning a command
trains nothing that is already there, and a killed search resumes where it stopped. Results are
appended to docs/testbed/*.csv, one row per setting (search) or per level and rewind step (imp).

Search protocol, per setting (one replicate, seeds 0): train the dense network for T iterations
(saving W_k at k = 0, 0.5%, 1%, 2%, 5% and 10% of T); from each W_k train two copies on different
data orders to T; interpolate each pair at 5 points (alpha = 0, .25, .5, .75, 1) with BatchNorm
statistics re-estimated at each point from 20 training batches; instability = the largest test
error on the path minus the mean of the two ends' test errors.
"""
from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import pandas as pd

import rewind
from rewind.analysis import instability
from rewind.lottery import Study
from rewind.step import Step
from rewind.store import Store
from rewind.train import TrainOptions

DOCS = Path(__file__).resolve().parent.parent / "docs" / "testbed"
FRACTIONS = (0.0, 0.005, 0.01, 0.02, 0.05, 0.10)
T = 2000


def base(data: str = "mnist1d") -> dict:
    common = {"model.name": "resnet", "model.depth": 8, "model.widths": "8", "train.optimizer": "sgd",
              "train.momentum": 0.9, "train.weight_decay": 5e-4, "train.steps": f"{T}it",
              "train.milestones": f"{T // 2}it,{3 * T // 4}it", "train.eval_every": "0it", "train.warmup": "0it",
              "prune.fraction": 0.2, "prune.strategy": "global"}
    if data == "digits":
        return {**common, "data.name": "digits", "data.batch_size": 64}
    return {**common, "data.name": "mnist1d", "data.batch_size": 128, "data.train_size": 20000,
            "data.test_size": 4000}


def settings() -> dict[str, dict]:
    """The searched settings, by name. Axes: learning rate, warmup, depth, width, batch size, data."""
    out: dict[str, dict] = {}
    lrs = (0.02, 0.05, 0.1, 0.2, 0.4, 0.8)
    for n in (4000, 20000):
        for lr in lrs:
            out[f"d8w8-n{n // 1000}k-lr{lr:g}"] = {**base(), "data.train_size": n, "train.lr": lr}
    for lr in (0.1, 0.2, 0.4, 0.8):
        out[f"d14w8-lr{lr:g}"] = {**base(), "model.depth": 14, "train.lr": lr}
    for lr in (0.4, 0.8):  # depth 20 costs 2.5x depth 8 per step: only the large learning rates
        out[f"d20w8-lr{lr:g}"] = {**base(), "model.depth": 20, "train.lr": lr}
    for lr in (0.1, 0.2, 0.4, 0.8):
        out[f"d8w16-lr{lr:g}"] = {**base(), "model.widths": "16", "train.lr": lr}
        out[f"d8w8-b64-lr{lr:g}"] = {**base(), "data.batch_size": 64, "train.lr": lr}
        out[f"d8w8-lr{lr:g}-warm"] = {**base(), "train.lr": lr, "train.warmup": "200it"}
        out[f"d14w8-lr{lr:g}-warm"] = {**base(), "model.depth": 14, "train.lr": lr, "train.warmup": "200it"}
    for lr in (0.05, 0.1, 0.2, 0.4):
        out[f"digits-d8w8-lr{lr:g}"] = {**base("digits"), "train.lr": lr}
    for lr in (0.2, 0.4):
        out[f"digits-d8w8-lr{lr:g}-warm"] = {**base("digits"), "train.lr": lr, "train.warmup": "200it"}
    return out


def rewind_steps() -> tuple[Step, ...]:
    return tuple(Step(0, round(f * T)) for f in FRACTIONS)


def append(path: Path, row: dict) -> None:
    new = not path.exists()
    with open(path, "a", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(row))
        if new:
            w.writeheader()
        w.writerow(row)


def done_names(path: Path) -> set[str]:
    if not path.exists():
        return set()
    with open(path) as fh:
        return {r["setting"] for r in csv.DictReader(fh)}


def search(args) -> None:
    out = DOCS / "search.csv"
    names = list(settings())
    if args.only:
        names = [n for n in names if n in args.only.split(",")]
    if args.shard:
        i, n = map(int, args.shard.split("/"))
        names = names[i::n]
    store, opts = Store(args.root), TrainOptions(quiet=True)
    for name in names:
        if name in done_names(out):
            continue
        over = settings()[name]
        spec = rewind.Spec().replace(**over)
        started = time.time()
        study = Study(spec, rewind_steps(), f"testbed:{name}", store)
        dense = study.dense_runs(1, opts)[0].summary()["final"]
        table = instability(study, [0], copies=2, points=5, bn_reset=True, options=opts)
        inst = table[(table["metric"] == "instability") & (table["split"] == "test")]
        by_k = dict(zip(inst["rewind_iteration"].astype(int), inst["value"]))
        row = {"setting": name, "data": over["data.name"], "train_size": over.get("data.train_size", 1438),
               "depth": over["model.depth"], "width": over["model.widths"], "batch": over["data.batch_size"],
               "lr": over["train.lr"], "warmup": over["train.warmup"], "iterations": T,
               "dense_test_acc": round(dense["test_accuracy"], 4), "dense_train_acc": round(dense["train_accuracy"], 4)}
        for f, k in zip(FRACTIONS, rewind_steps()):
            row[f"instab_{f * 100:g}pct"] = round(float(by_k.get(k.it, float("nan"))), 4)
        row["seconds"] = round(time.time() - started, 1)
        append(out, row)
        print(" ".join(f"{k}={v}" for k, v in row.items()), flush=True)


def imp_study(name: str, kstar: Step, store: Store) -> tuple[Study, Study]:
    """(IMP study at k = 0 and k*, dense study at every searched k) sharing their dense runs: the IMP
    study's spec saves W_k at every searched k, so both studies' dense networks are the same runs."""
    over = settings()[name] if name in settings() else None
    spec = rewind.get_preset(name).spec if over is None else rewind.Spec().replace(**over)
    ks = tuple(sorted(set(rewind_steps()) | {kstar}, key=lambda s: s.it))
    spec = spec.replace(**{"train.checkpoints": ",".join(map(str, ks))})
    return (Study(spec, (Step(0, 0), kstar), f"testbed:{name}", store),
            Study(spec, ks, f"testbed:{name}", store))


def imp(args) -> None:
    """IMP at k = 0 and k*, the reinit baseline (masks of k*), dense instability at every searched k,
    and the IMP subnetworks' instability at ``--sparse-levels``, all with ``--replicates``."""
    from rewind.report import instability_summary, lottery_summary, paired_differences

    store, opts = Store(args.root), TrainOptions(quiet=True)
    kstar = Step.parse(args.kstar)
    study, dense_study = imp_study(args.name, kstar, store)
    started = time.time()
    study.run(args.levels, replicates=args.replicates, options=opts)
    study.branch("reinit", list(range(1, args.levels + 1)), replicates=args.replicates, rewinds=(kstar,),
                 options=opts)
    table = study.table()
    tag = args.name
    lottery_summary(table).to_csv(DOCS / f"imp-{tag}.csv", index=False)
    paired_differences(table, "0it", str(kstar)).to_csv(DOCS / f"imp-{tag}-paired.csv", index=False)
    print(f"IMP done in {time.time() - started:.0f} s", flush=True)
    dense = instability(dense_study, [0], copies=2, points=5, bn_reset=True, replicates=args.replicates, options=opts)
    levels = [int(x) for x in args.sparse_levels.split(",") if x]
    sparse = instability(study, levels, copies=2, points=5, bn_reset=True, replicates=args.replicates,
                         options=opts) if levels else dense.iloc[0:0]
    inst = pd.concat([dense, sparse], ignore_index=True)
    instability_summary(inst).to_csv(DOCS / f"instability-{tag}.csv", index=False)
    print(f"all done in {time.time() - started:.0f} s", flush=True)


def markdown(df: pd.DataFrame, floats: str = "{:.2f}") -> str:
    cols = list(df.columns)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for row in df.itertuples(index=False):
        cells = [floats.format(v) if isinstance(v, float) else str(v) for v in row]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def report(args) -> None:
    """docs/testbed/tables.md from the CSVs: the search table (accuracies and instabilities in
    points, sorted as searched) and, per IMP setting, accuracy by density and the paired differences."""
    parts = ["# Testbed tables (generated by `experiments/testbed.py report`; do not edit)\n"]
    search_csv = DOCS / "search.csv"
    if search_csv.exists():
        df = pd.read_csv(search_csv)
        order = {n: i for i, n in enumerate(settings())}
        df = df.sort_values("setting", key=lambda c: c.map(order).fillna(1e9))
        cols = ["dense_test_acc"] + [c for c in df.columns if c.startswith("instab_")]
        for c in cols:
            df[c] = 100 * df[c]
        show = df[["setting", "data", "train_size", "depth", "width", "batch", "lr", "warmup", *cols, "seconds"]]
        show = show.rename(columns={"dense_test_acc": "dense acc %", "train_size": "n train",
                                    **{c: c.replace("instab_", "instab@").replace("pct", "%") for c in cols[1:]}})
        parts += [f"## Search: {len(df)} settings, one replicate each (instability in points of test error)\n",
                  markdown(show), ""]
    for path in sorted(DOCS.glob("imp-*-paired.csv")):
        tag = path.name[4:-len("-paired.csv")]
        summary = pd.read_csv(DOCS / f"imp-{tag}.csv")
        summary["rewind_step"] = summary["rewind_step"].fillna("-")
        summary["acc %"] = (100 * summary["mean"]).map("{:.2f}".format) + " ± " + (100 * summary["std"]).map("{:.2f}".format)
        dense = summary[summary["level"] == 0].iloc[0]
        sparse = summary[summary["level"] > 0].copy()
        sparse["column"] = sparse["branch"].replace({"none": "IMP"}) + " k=" + sparse["rewind_step"]
        wide = sparse.pivot_table(index=["level", "density"], columns="column", values="acc %",
                                  aggfunc="first").reset_index()
        wide.columns.name = None
        wide["density"] = (100 * wide["density"]).map("{:.1f}%".format)
        wide.insert(2, "dense", dense["acc %"])
        paired = pd.read_csv(path)
        for c in paired.columns:
            if c not in ("level", "n"):
                paired[c] = 100 * paired[c]
        paired["density"] = paired["density"].map("{:.1f}%".format)
        parts += [f"## IMP: {tag}\n", "Test accuracy (%), mean ± std over replicates:\n", markdown(wide), "",
                  "Paired difference k* - k=0 (points), 95% bootstrap interval over replicates; gaps are "
                  "to the same replicates' dense accuracy:\n", markdown(paired), ""]
        inst_csv = DOCS / f"instability-{tag}.csv"
        if inst_csv.exists():
            inst = pd.read_csv(inst_csv)
            inst = inst[inst["split"] == "test"]
            inst["instability (points)"] = (100 * inst["mean"]).map("{:.2f}".format) + " ± " + \
                (100 * inst["std"]).map("{:.2f}".format)
            inst["density"] = (100 * inst["density"]).map("{:.1f}".format)
            parts += ["Instability (test error barrier, 2 copies, BatchNorm re-estimated), mean ± std over "
                      "replicates:\n", markdown(inst[["level", "density", "rewind_step", "instability (points)", "n"]]), ""]
    (DOCS / "tables.md").write_text("\n".join(parts) + "\n")
    print(f"wrote {DOCS / 'tables.md'}")


def figure(args) -> None:
    """docs/testbed/lottery-<preset>.svg from the IMP summary CSV: test accuracy against weights
    remaining, one mean line with a +-1 std band per rewind step, the dense network as a band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    for path in sorted(DOCS.glob("imp-*.csv")):
        if path.stem.endswith("-paired"):
            continue
        t = pd.read_csv(path)
        t = t[t["branch"] == "none"]
        dense = t[t["level"] == 0].iloc[0]
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.axhspan(100 * (dense["mean"] - dense["std"]), 100 * (dense["mean"] + dense["std"]), color="grey",
                   alpha=0.25, label=f"dense ({int(dense['n'])} replicates)")
        for i, (k, g) in enumerate(t[t["level"] > 0].groupby("rewind_iteration")):
            g = g.sort_values("density", ascending=False)
            x, m, sd = 100 * g["density"], 100 * g["mean"], 100 * g["std"]
            ax.plot(x, m, "-o", ms=3, color=("tab:red", "tab:blue", "tab:green")[i % 3], label=f"k = {g['rewind_step'].iloc[0]}")
            ax.fill_between(x, m - sd, m + sd, color=("tab:red", "tab:blue", "tab:green")[i % 3], alpha=0.2)
        ax.set_xscale("log")
        ax.invert_xaxis()
        ticks = sorted(set((100 * t["density"]).round(1)))
        ax.set_xticks(ticks, [f"{v:g}" for v in ticks])
        ax.minorticks_off()
        ax.set_xlabel("weights remaining (%)")
        ax.set_ylabel("test accuracy (%)")
        ax.set_title(path.stem.removeprefix("imp-"), fontsize=9)
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        fig.tight_layout()
        out = DOCS / f"lottery-{path.stem.removeprefix('imp-')}.svg"
        fig.savefig(out)
        plt.close(fig)
        print(f"wrote {out}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("search")
    s.add_argument("--only", default="")
    s.add_argument("--shard", default="", help="I/N: every N-th setting from the I-th (parallel processes)")
    s.add_argument("--root", default="runs/testbed")
    i = sub.add_parser("imp")
    i.add_argument("name", help="a searched setting or a preset")
    i.add_argument("--kstar", required=True, help="the rewind step k* compared with k = 0, e.g. 40it")
    i.add_argument("--levels", type=int, default=7, help="IMP levels (36%% per level: 7 levels = 4.4%% density)")
    i.add_argument("--replicates", type=int, default=5)
    i.add_argument("--sparse-levels", default="4,6", help="levels whose subnetworks' instability is measured")
    i.add_argument("--root", default="runs/testbed")
    sub.add_parser("report")
    sub.add_parser("figure", help="docs/testbed/lottery-*.svg from the IMP summaries")
    args = ap.parse_args(argv)
    DOCS.mkdir(parents=True, exist_ok=True)
    {"search": search, "imp": imp, "report": report, "figure": figure}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
