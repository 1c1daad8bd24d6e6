"""Claims about pruning at initialisation (C23, C24; Frankle, Dziugaite, Roy & Carbin 2021), measured
on the testbed preset at the density of C1 (16.8%, level 4; 41% with ``--quick``) against the
testbed's IMP rewound to k*."""
from __future__ import annotations

import pandas as pd

from ..lottery.pai import prune_at
from ..step import Step
from .lottery_claims import PRESET, accuracy, setting, testbed, testbed_spec
from .registry import Context, Measurement, register_claim
from .verdict import Test

CRITERIA = ("magnitude_init", "snip", "grasp", "synflow")
NOT_HURT = 0.5      # points: "does not hurt" = the shuffled mask loses less than this (non-inferiority margin)
PAPER = ("Frankle, Dziugaite, Roy & Carbin 2021, Pruning neural networks at initialization: why are we missing the "
         "mark? (ICLR), Figs. 2-4")


def _pai(ctx: Context):
    tb = testbed(ctx)
    name = ("pai", tb.study.key, tb.level)
    if name not in ctx.cache:
        spec, _, _ = testbed_spec(ctx)
        ctx.cache[name] = prune_at(spec, list(CRITERIA), [tb.density], Step(0, 0), ctx.replicates, PRESET,
                                   ctx.store, ctx.options, shuffle=True, data_root=ctx.data_root)
    return tb, ctx.cache[name]


def _acc(ctx: Context, table: pd.DataFrame, criterion: str, variant: str) -> pd.Series:
    t = table[(table["criterion"] == criterion) & (table["variant"] == variant)]
    return (100 * t.groupby("replicate")["test_accuracy"].mean()).reindex(range(ctx.replicates))


def _rows(ctx: Context, table: pd.DataFrame, imp: pd.Series) -> pd.DataFrame:
    out = []
    for c in CRITERIA:
        pruned, shuffled = _acc(ctx, table, c, "pruned"), _acc(ctx, table, c, "shuffled")
        out.append({"criterion": c, "test accuracy %": f"{pruned.mean():.2f} ± {pruned.std():.2f}",
                    "against IMP k*": f"{(pruned - imp).mean():+.2f}",
                    "shuffled within layers %": f"{shuffled.mean():.2f} ± {shuffled.std():.2f}",
                    "shuffled - unshuffled": f"{(shuffled - pruned).mean():+.2f}"})
    return pd.DataFrame(out)


def _commands(ctx: Context, tb) -> list[str]:
    return [f"rewind prune-at --preset {PRESET} --criteria {','.join(CRITERIA)} --densities {tb.density:.6g} "
            f"--at 0it {ctx.flags()}"]


@register_claim(
    "C23", "Pruning at initialisation falls short of IMP with rewinding",
    PAPER,
    "At most densities, SNIP, GraSP, SynFlow and magnitude pruning at initialisation reach lower accuracy than IMP "
    "with rewinding (and than the dense network).",
    "Each criterion prunes the testbed at initialisation to the density of the judged level (one shot; SynFlow "
    "iterative), then trains; accuracy paired by replicate (same seeds) minus IMP rewound to k* at the same density "
    "< 0, for every criterion. All must hold. Paper's effect (ResNet-20 at about 16.8%): about -1 to -2 points.",
    "cifar_resnet_20 with `rewind prune-at` at densities 2-50% (GPU)", cost=6)
def c23(ctx: Context) -> Measurement:
    tb, table = _pai(ctx)
    imp = accuracy(ctx, tb, tb.level, tb.kstar)
    tests = [Test(f"{c} - IMP k={tb.kstar}", _acc(ctx, table, c, "pruned") - imp, "<", 0.0, effect=-1.5)
             for c in CRITERIA]
    return Measurement(
        tests, f"at {100 * tb.density:.1f}%, points against IMP k={tb.kstar}: " + ", ".join(
            f"{c} {(_acc(ctx, table, c, 'pruned') - imp).mean():+.2f}" for c in CRITERIA),
        setting(ctx, tb) + "; pruned at 0it", _rows(ctx, table, imp), [], sorted(set(table["study"])) + [tb.study.key],
        _commands(ctx, tb))


@register_claim(
    "C24", "Shuffling a pruning-at-initialisation mask within each layer does not hurt it",
    PAPER,
    "Randomly shuffling the mask that SNIP, GraSP, SynFlow or magnitude at initialisation chose, within each layer "
    "(keeping each layer's density), does not reduce accuracy: these methods choose per-layer densities, not "
    "weights. (IMP's masks are hurt by the same ablation: C2's random-pruning test.)",
    "Per criterion, accuracy paired by replicate: the mask shuffled within each layer minus the mask as chosen "
    f"> -{NOT_HURT} points (non-inferiority: it loses less than {NOT_HURT} points). All must hold. Paper's effect: "
    "about 0.",
    "cifar_resnet_20 with `rewind prune-at` (GPU)", cost=3, after=("C23",))
def c24(ctx: Context) -> Measurement:
    tb, table = _pai(ctx)
    imp = accuracy(ctx, tb, tb.level, tb.kstar)
    tests = [Test(f"{c}: shuffled - as chosen", _acc(ctx, table, c, "shuffled") - _acc(ctx, table, c, "pruned"),
                  ">", -NOT_HURT, effect=0.0) for c in CRITERIA]
    return Measurement(
        tests, "shuffled minus as chosen (points): " + ", ".join(
            f"{c} {(_acc(ctx, table, c, 'shuffled') - _acc(ctx, table, c, 'pruned')).mean():+.2f}" for c in CRITERIA),
        setting(ctx, tb) + "; pruned at 0it", _rows(ctx, table, imp), [], sorted(set(table["study"])),
        _commands(ctx, tb))
