"""Claims about what the data contributes (C9, pretraining on altered data) and lottery tickets on a
data diet (C10), measured on the testbed preset with pretraining of length k* (10% of training),
IMP rewound to the end of pretraining, judged at level 3 (26.2%; level 2 with ``--quick``). The
supervised reference is the lottery study of C1-C7 (the same runs)."""
from __future__ import annotations

import pandas as pd

from ..lottery.pretrain import PretrainGrid, diet_variants
from .lottery_claims import MATCH, PRESET, testbed_spec
from .registry import Context, Measurement, register_claim
from .verdict import Test


def _grid(ctx: Context, name: str, **kwargs) -> tuple[PretrainGrid, pd.DataFrame, int]:
    if name not in ctx.cache:
        spec, ks, total = testbed_spec(ctx)
        level = 2 if ctx.quick else 3
        grid = PretrainGrid(spec, steps=(ks[2],), levels=level, replicates=ctx.replicates, preset=PRESET,
                            store=ctx.store, sparse_level=level, data_root=ctx.data_root, **kwargs)
        ctx.log(f"pretraining grid {name}: {', '.join(label for label, _ in grid.studies)} at {ks[2]}, "
                f"{level} levels")
        ctx.cache[name] = (grid, grid.run(ctx.options), level)
    return ctx.cache[name]


def _acc(table: pd.DataFrame, kind: str, level: int, replicates: int) -> pd.Series:
    t = table[(table["kind"] == kind) & (table["level"] == level)]
    return (100 * t.groupby("replicate")["test_accuracy"].mean()).reindex(range(replicates))


def _show(table: pd.DataFrame, level: int) -> pd.DataFrame:
    t = table[table["level"].isin([0, level])]
    g = t.groupby(["kind", "pretrain_steps", "level"])
    out = g.agg(density=("density", "mean"), mean=("test_accuracy", "mean"), std=("test_accuracy", "std"),
                n=("test_accuracy", "count")).reset_index()
    return pd.DataFrame({"pretraining": out["kind"], "length": out["pretrain_steps"], "level": out["level"],
                         "density %": (100 * out["density"]).round(1),
                         "test accuracy %": [f"{100 * m:.2f} ± {100 * s:.2f}" for m, s in
                                             zip(out["mean"], out["std"].fillna(0))], "n": out["n"]})


def _commands(ctx: Context, grid: PretrainGrid, level: int, flags: str) -> list[str]:
    ks = ",".join(str(s) for s in grid.steps)
    checkpoints = ",".join(str(s) for s in grid.spec.train.checkpoints)
    return [f"rewind pretrain-study --preset {PRESET} {flags} --steps {ks} --levels {level} "
            f"--set train.checkpoints={checkpoints} {ctx.flags()}"]


def _setting(ctx: Context, grid: PretrainGrid, level: int) -> str:
    density = (1 - grid.spec.prune.fraction) ** level
    return (f"{PRESET}, pretraining {grid.steps[0]} then IMP rewound to its end, {ctx.replicates} replicate(s), "
            f"judged at level {level} ({100 * density:.1f}%)")


@register_claim(
    "C9", "Pretraining on random labels does not help; sparse pretraining works with the IMP mask, not a random one",
    "Frankle, Schwab & Morcos 2020, The early phase of neural network training, Section 5 (Figs. 7 and 9)",
    "Replacing the first k iterations by training on randomly labelled data gives no better rewind point (it can "
    "hurt); pretraining only the IMP subnetwork gives a good rewind point, pretraining a random subnetwork of the "
    "same sparsity does not.",
    "At the judged level, accuracy paired by replicate: (a) IMP rewound to the end of random-label pretraining for k* "
    "minus IMP rewound to k* of ordinary training < 0; (b) sparse pretraining with the IMP mask (the supervised "
    "study's mask at the judged level) minus with a random mask of the same per-layer densities > 0. Both must hold.",
    "cifar_resnet_20 with `rewind pretrain-study` (GPU)")
def c9(ctx: Context) -> Measurement:
    grid, table, level = _grid(ctx, "pretrain-grid", kinds=("random-labels", "sparse"))
    sup = _acc(table, "supervised", level, ctx.replicates)
    rl = _acc(table, "random-labels", level, ctx.replicates)
    imp, rnd = (_acc(table, k, level, ctx.replicates) for k in ("sparse-imp", "sparse-random"))
    tests = [Test("random labels - supervised rewinding", rl - sup, "<", 0.0),
             Test("sparse pretraining: IMP mask - random mask", imp - rnd, ">", 0.0)]
    return Measurement(
        tests, f"random labels {(rl - sup).mean():+.2f} against supervised rewinding; IMP mask "
               f"{(imp - rnd).mean():+.2f} "
               "against a random mask (points)", _setting(ctx, grid, level), _show(table, level), [],
        [grid.reference.key] + [s.key for s in grid.studies.values()],
        _commands(ctx, grid, level, "--kinds random-labels,sparse"))


@register_claim(
    "C10", "Pretraining on a small random subset is as good a rewind point as the full data",
    "Paul, Larsen, Ganguli, Frankle & Dziugaite 2022, Lottery tickets on a data diet (NeurIPS workshop)",
    "Training the dense network's first k iterations on a small random subset of the training set (a few hundred "
    "to a few thousand CIFAR-10 examples) gives a rewind point as good as the full data.",
    f"At the judged level, accuracy paired by replicate: IMP rewound to the end of k* iterations on a random 10% "
    f"of the training set minus IMP rewound to k* of ordinary training > -{MATCH} points (as good = within the "
    "matching tolerance).",
    "cifar_resnet_20 with `rewind diet-lottery` (GPU)")
def c10(ctx: Context) -> Measurement:
    spec, _, _ = testbed_spec(ctx)
    size = max(1, spec.data.train_size // 10) if spec.data.train_size else 400
    grid, table, level = _grid(ctx, f"diet-grid-{size}", kinds=(),
                               variants=diet_variants([size], ["random"], None))
    sup = _acc(table, "supervised", level, ctx.replicates)
    sub = _acc(table, f"random-{size}", level, ctx.replicates)
    tests = [Test(f"random {size} examples - full data", sub - sup, ">", -MATCH)]
    return Measurement(
        tests, f"random subset of {size}: {(sub - sup).mean():+.2f} points against the full data",
        _setting(ctx, grid, level), _show(table, level), [],
        [grid.reference.key] + [s.key for s in grid.studies.values()],
        [f"rewind diet-lottery --preset {PRESET} --sizes {size} --orders random --steps {grid.steps[0]} "
         f"--levels {level} {ctx.flags()}"])
