"""Claims about what the data contributes (pretraining on altered data: C9, C13, C19, C20), lottery
tickets on a data diet (C10, C21) and critical periods (C15).

The pretraining claims run on the testbed preset with pretraining of length k* (10% of training)
unless a claim says otherwise, IMP rewound to the end of pretraining, judged at level 3 (26.2%;
level 2 with ``--quick``). The supervised reference is the lottery study of C1-C7 (the same runs).
"""
from __future__ import annotations

import pandas as pd

from ..lottery.pretrain_grid import PretrainGrid, diet_variants
from ..presets import get_preset
from ..step import Step
from ..train import TrainOptions, check_spec
from .lottery_claims import MATCH, PRESET, testbed_spec
from .registry import Context, Measurement, register_claim
from .verdict import Test

EQUIVALENT = 0.5     # points: "as good as" margin (about one standard deviation of the dense testbed over seeds)
SCORE_REPLICATES = 10   # runs the EL2N scores are averaged over (the data-diet paper: at least 10)


def _grid(ctx: Context, name: str, lengths: tuple[Step, ...] | None = None, **kwargs):
    """(grid, table, level): a pretraining grid on the testbed, trained or found in the store."""
    if name not in ctx.cache:
        spec, ks, total = testbed_spec(ctx)
        level = 2 if ctx.quick else 3
        grid = PretrainGrid(spec, steps=(Step(0, 0), *(lengths or (ks[-1],))), levels=level, replicates=ctx.replicates, preset=PRESET,
                            store=ctx.store, sparse_level=level, data_root=ctx.data_root, **kwargs)
        ctx.log(f"pretraining grid {name}: {', '.join(label for label, _ in grid.studies)}, {level} levels")
        ctx.cache[name] = (grid, grid.run(ctx.options), level)
    return ctx.cache[name]


def _acc(ctx: Context, table: pd.DataFrame, kind: str, level: int, length: Step | None = None) -> pd.Series:
    t = table[(table["kind"] == kind) & (table["level"] == level)]
    if length is not None:
        t = t[t["pretrain_iterations"] == length.it]
    return (100 * t.groupby("replicate")["test_accuracy"].mean()).reindex(range(ctx.replicates))


def _show(table: pd.DataFrame, level: int) -> pd.DataFrame:
    t = table[table["level"].isin([0, level])]
    g = t.groupby(["kind", "pretrain_steps", "level"])
    out = g.agg(density=("density", "mean"), mean=("test_accuracy", "mean"), std=("test_accuracy", "std"),
                n=("test_accuracy", "count")).reset_index()
    return pd.DataFrame({"pretraining": out["kind"], "length": out["pretrain_steps"], "level": out["level"],
                         "density %": (100 * out["density"]).round(1),
                         "test accuracy %": [f"{100 * m:.2f} ± {100 * s:.2f}" for m, s in
                                             zip(out["mean"], out["std"].fillna(0))], "n": out["n"]})


def _keys(grid: PretrainGrid) -> list[str]:
    return [grid.reference.key] + [s.key for s in grid.studies.values()]


def _command(ctx: Context, grid: PretrainGrid, level: int, flags: str, command: str = "pretrain-study") -> str:
    ks = ",".join(str(s) for s in grid.steps)
    checkpoints = ",".join(str(s) for s in grid.spec.train.checkpoints)
    return (f"rewind {command} --preset {PRESET} {flags} --steps {ks} --levels {level} "
            f"--set train.checkpoints={checkpoints} {ctx.flags()}")


def _setting(ctx: Context, grid: PretrainGrid, level: int) -> str:
    density = (1 - grid.spec.prune.fraction) ** level
    return (f"{PRESET}, pretraining {', '.join(map(str, grid.lengths))} then IMP rewound to its end, "
            f"{ctx.replicates} replicates, judged at level {level} ({100 * density:.1f}%)")


def _k(ctx: Context) -> Step:
    return testbed_spec(ctx)[1][-1]


@register_claim(
    "C9", "Pretraining on random labels gives no better rewind point",
    "Frankle, Schwab & Morcos 2020, The early phase of neural network training, Section 5 (Fig. 7)",
    "Replacing the first k iterations by training on randomly labelled data gives no better rewind point than "
    "ordinary training for k iterations; it can hurt.",
    "At the judged level, accuracy paired by replicate: IMP rewound to the end of random-label pretraining for k* "
    "minus IMP rewound to k* of ordinary training < 0. No paper number transfers.",
    "cifar_resnet_20 with `rewind pretrain-study --kinds random-labels` (GPU)", cost=11)
def c9(ctx: Context) -> Measurement:
    grid, table, level = _grid(ctx, "pretrain-grid", kinds=("random-labels", "sparse", "blur"))
    k = _k(ctx)
    sup, rl = _acc(ctx, table, "supervised", level, k), _acc(ctx, table, "random-labels", level)
    tests = [Test("random labels - supervised rewinding", rl - sup, "<", 0.0)]
    return Measurement(tests, f"random labels {(rl - sup).mean():+.2f} points against supervised rewinding",
                       _setting(ctx, grid, level), _show(table, level), [], _keys(grid),
                       [_command(ctx, grid, level, "--kinds random-labels,sparse,blur")])


@register_claim(
    "C13", "Sparse pretraining works with the IMP mask, not with a random mask",
    "Frankle, Schwab & Morcos 2020, The early phase of neural network training, Section 5 (Fig. 9)",
    "Pretraining only the IMP subnetwork for the first k iterations gives a good rewind point; pretraining a random "
    "subnetwork of the same sparsity does not.",
    "At the judged level, accuracy paired by replicate: IMP rewound to the end of sparse pretraining with the IMP "
    "mask (the supervised study's mask at the judged level) minus with a random mask of the same per-layer "
    "densities > 0. No paper number transfers.",
    "cifar_resnet_20 with `rewind pretrain-study --kinds sparse` (GPU)", cost=5, after=("C9",))
def c13(ctx: Context) -> Measurement:
    grid, table, level = _grid(ctx, "pretrain-grid", kinds=("random-labels", "sparse", "blur"))
    imp, rnd = _acc(ctx, table, "sparse-imp", level), _acc(ctx, table, "sparse-random", level)
    tests = [Test("sparse pretraining: IMP mask - random mask", imp - rnd, ">", 0.0)]
    return Measurement(tests, f"IMP mask {(imp - rnd).mean():+.2f} points against a random mask",
                       _setting(ctx, grid, level), _show(table, level), [], _keys(grid),
                       [_command(ctx, grid, level, "--kinds random-labels,sparse,blur")])


@register_claim(
    "C20", "Pretraining on blurred inputs helps",
    "Frankle, Schwab & Morcos 2020, The early phase of neural network training, Section 5 (Fig. 8)",
    "Pretraining on blurred images (downsampled 4x and upsampled) for the first k iterations gives a better rewind "
    "point than the initialisation.",
    "At the judged level, accuracy paired by replicate: IMP rewound to the end of k* iterations of blurred-input "
    "pretraining (average pooling by 4, nearest upsampling) minus IMP rewound to k = 0 > 0. No paper number "
    "transfers.",
    "cifar_resnet_20 with `rewind pretrain-study --kinds blur` (GPU)", cost=0, after=("C9",))
def c20(ctx: Context) -> Measurement:
    grid, table, level = _grid(ctx, "pretrain-grid", kinds=("random-labels", "sparse", "blur"))
    blur, zero = _acc(ctx, table, "blur", level), _acc(ctx, table, "supervised", level, Step(0, 0))
    sup = _acc(ctx, table, "supervised", level, _k(ctx))
    tests = [Test("blur pretraining - IMP k=0", blur - zero, ">", 0.0)]
    return Measurement(tests, f"blur {(blur - zero).mean():+.2f} points against k = 0 "
                              f"({(blur - sup).mean():+.2f} against supervised rewinding)",
                       _setting(ctx, grid, level), _show(table, level), [], _keys(grid),
                       [_command(ctx, grid, level, "--kinds random-labels,sparse,blur")])


@register_claim(
    "C19", "Self-supervised pretraining reaches a good rewind point, with more steps than supervised",
    "Frankle, Schwab & Morcos 2020, The early phase of neural network training, Section 5 (Fig. 8)",
    "Pretraining on a self-supervised task (rotation prediction) gives a rewind point better than the "
    "initialisation, but needs about an order of magnitude more steps than supervised training to match it.",
    "The 1-D analogue of rotation on MNIST-1D (`transform`: predict which of four transformations was applied), "
    "lengths k* and 4 k* (training is 10 k* long, so 10 k* cannot be tested). At the judged level, paired by "
    "replicate: (a) after 4 k* of self-supervision minus IMP rewound to k = 0 > 0 (it helps); (b) after k* of "
    "self-supervision minus supervised rewinding to k* < 0 (it needs more steps). Both must hold.",
    "cifar_resnet_20 with `rewind pretrain-study --kinds rotation` (GPU)", cost=11)
def c19(ctx: Context) -> Measurement:
    k = _k(ctx)
    long = Step(0, 4 * k.it)
    grid, table, level = _grid(ctx, "transform-grid", (k, long), kinds=("transform",))
    zero = _acc(ctx, table, "supervised", level, Step(0, 0))
    sup = _acc(ctx, table, "supervised", level, k)
    short, longer = _acc(ctx, table, "transform", level, k), _acc(ctx, table, "transform", level, long)
    tests = [Test(f"self-supervised {long} - IMP k=0", longer - zero, ">", 0.0),
             Test(f"self-supervised {k} - supervised {k}", short - sup, "<", 0.0)]
    return Measurement(tests, f"self-supervised {long}: {(longer - zero).mean():+.2f} against k = 0; {k}: "
                              f"{(short - sup).mean():+.2f} against supervised rewinding to {k}",
                       _setting(ctx, grid, level), _show(table, level), [], _keys(grid),
                       [_command(ctx, grid, level, "--kinds transform")])


@register_claim(
    "C10", "Pretraining on a small random subset is as good a rewind point as the full data",
    "Paul, Larsen, Ganguli, Frankle & Dziugaite 2022, Lottery tickets on a data diet (NeurIPS workshop)",
    "Training the dense network's first k iterations on a small random subset of the training set (a few hundred "
    "to a few thousand CIFAR-10 examples) gives a rewind point as good as the full data.",
    f"At the judged level, accuracy paired by replicate: IMP rewound to the end of k* iterations on a random 10% "
    f"of the training set minus IMP rewound to k* of ordinary training, judged as an equivalence: within "
    f"+-{EQUIVALENT} points (about one standard deviation of the dense testbed over seeds; the matching tolerance "
    f"{MATCH} is below what 10 replicates can resolve). Paper's effect: about 0.",
    "cifar_resnet_20 with `rewind diet-lottery` (GPU)", cost=1)
def c10(ctx: Context) -> Measurement:
    spec, _, _ = testbed_spec(ctx)
    size = max(1, spec.data.train_size // 10) if spec.data.train_size else 400
    grid, table, level = _grid(ctx, f"diet-grid-{size}", kinds=(), variants=diet_variants([size], ["random"], None))
    sup = _acc(ctx, table, "supervised", level, _k(ctx))
    sub = _acc(ctx, table, f"random-{size}", level)
    tests = [Test(f"random {size} examples - full data", sub - sup, "~", EQUIVALENT, effect=0.0)]
    return Measurement(
        tests, f"random subset of {size}: {(sub - sup).mean():+.2f} points against the full data",
        _setting(ctx, grid, level), _show(table, level), [], _keys(grid),
        [f"rewind diet-lottery --preset {PRESET} --sizes {size} --orders random --steps {grid.steps[0]} "
         f"--levels {level} {ctx.flags()}"])


@register_claim(
    "C21", "Pretraining on the easiest examples reaches a good rewind point in fewer steps",
    "Paul, Larsen, Ganguli, Frankle & Dziugaite 2022, Lottery tickets on a data diet (NeurIPS workshop)",
    "Pretraining only on the easiest examples (lowest EL2N) finds a good rewind point in fewer steps than "
    "pretraining on a random subset of the same size.",
    f"EL2N at 10% of training averaged over {SCORE_REPLICATES} runs; pretraining for a quarter of k* on the 10% "
    "easiest examples or on a random 10%, IMP rewound to its end; at the judged level, accuracy paired by "
    "replicate: easiest minus random > 0. No paper number transfers.",
    "cifar_resnet_20 with `rewind diet-lottery --orders easiest,random` (GPU)", cost=13)
def c21(ctx: Context) -> Measurement:
    from ..analysis.diet import default_at
    from ..analysis.scores import ScoreSet

    spec, ks, total = testbed_spec(ctx)
    _, ipe, _ = check_spec(spec, TrainOptions(data_root=ctx.data_root))
    size = max(1, spec.data.train_size // 10) if spec.data.train_size else 400
    short = Step(0, max(1, ks[-1].it // 4))
    name = f"easiest-grid-{size}-{short}"
    if name not in ctx.cache:
        scores = ScoreSet(spec, "el2n", default_at("el2n", spec, ipe, total), _score_replicates(ctx), PRESET,
                          ctx.store, ctx.data_root)
        scores.compute(ctx.options)
        ctx.cache["el2n-key"] = scores.key
    key = ctx.cache["el2n-key"]
    grid, table, level = _grid(ctx, name, (short,), kinds=(),
                               variants=diet_variants([size], ["easiest", "random"], key))
    easy, rnd = _acc(ctx, table, f"easiest-{size}", level), _acc(ctx, table, f"random-{size}", level)
    sup = _acc(ctx, table, "supervised", level, short)
    tests = [Test(f"easiest {size} - random {size}, pretraining {short}", easy - rnd, ">", 0.0)]
    return Measurement(
        tests, f"after {short}: easiest {(easy - rnd).mean():+.2f} points against a random subset "
               f"({(easy - sup).mean():+.2f} against the full data)",
        _setting(ctx, grid, level) + f"; EL2N scores {key}", _show(table, level), [], _keys(grid),
        [f"rewind diet-lottery --preset {PRESET} --sizes {size} --orders easiest,random --steps {short} "
         f"--levels {level} --score-replicates {_score_replicates(ctx)} {ctx.flags()}"])


def _score_replicates(ctx: Context) -> int:
    return 3 if ctx.quick else SCORE_REPLICATES


CRITICAL_PRESET = "mnist1d_mlp"


@register_claim(
    "C15", "Critical periods: a deficit early in training does lasting harm",
    "Achille, Rovere & Soatto 2019, Critical learning periods in deep networks (ICLR), Fig. 1",
    "Training on blurred inputs for the first part of training and then on clean data leaves a permanent loss of "
    "accuracy, which grows with the length of the deficit, although the network then sees clean data.",
    "mnist1d_mlp (4,000 it) trained on blurred inputs (average pooling by 4, nearest upsampling) for its first "
    "20% (800 it) then clean, against no deficit, paired by replicate: final test accuracy difference < 0. The "
    "length of training is fixed, so the deficit also leaves fewer clean iterations (Achille et al. train a fixed "
    "number of epochs after it): the table shows a 1% deficit beside it. No paper number transfers.",
    "cifar_resnet_20 or All-CNN on CIFAR-10 with `rewind critical-period --deficit blur` (GPU)", cost=0.2)
def c15(ctx: Context) -> Measurement:
    from ..analysis.critical import critical_periods

    spec = ctx.spec(get_preset(CRITICAL_PRESET).spec)
    _, _, total = check_spec(spec, TrainOptions(data_root=ctx.data_root))
    untils = [Step(0, 0), Step(0, total // 100), Step(0, total // 5)]
    table = critical_periods(spec, "blur", untils, ctx.replicates, CRITICAL_PRESET, ctx.store, ctx.options)

    def acc(u: Step) -> pd.Series:
        t = table[table["deficit_iterations"] == u.it]
        return (100 * t.groupby("replicate")["test_accuracy"].mean()).reindex(range(ctx.replicates))

    none, short, long = (acc(u) for u in untils)
    tests = [Test(f"deficit for {untils[2]} - none", long - none, "<", 0.0)]
    rows = [{"deficit until": str(u), "test accuracy %": f"{acc(u).mean():.2f} ± {acc(u).std():.2f}",
             "against none": f"{(acc(u) - none).mean():+.2f}"} for u in untils]
    return Measurement(
        tests, f"deficit for {untils[2]}: {(long - none).mean():+.2f} points; for {untils[1]}: "
               f"{(short - none).mean():+.2f}",
        f"{CRITICAL_PRESET} ({total} it), blur by 4, {ctx.replicates} replicates", pd.DataFrame(rows), [],
        sorted(set(table["run"])),
        [f"rewind critical-period --preset {CRITICAL_PRESET} --deficit blur --until "
         f"{','.join(map(str, untils))} --replicates {ctx.replicates} --root {ctx.root_label}{ctx.set_flags()}"])
