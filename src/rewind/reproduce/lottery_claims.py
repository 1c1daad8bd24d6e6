"""Claims of the lottery-ticket papers measured on the testbed preset (C1-C7).

Every claim here reads one shared lottery study on ``mnist1d_resnet`` (the testbed issue's
choice: the setting where rewinding matters at CPU scale, docs/testbed.md): IMP rewound to
k = 0, k_mid = 1% and k* = 10% of training, global pruning 36% per level, judged at level 4
(16.8% of the weights, the density of the early-phase paper's headline; level 2 = 41% with
``--quick``). The dense runs save W_k at all three k, so the instability analysis and the
pretraining claims reuse them.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd

from ..api import apply_overrides
from ..lottery import Study
from ..presets import get_preset
from ..step import Step
from ..train import TrainOptions, check_spec
from .registry import Context, Measurement, register_claim
from .verdict import HELD, INCONCLUSIVE, NOT_HELD, Test

PRESET = "mnist1d_resnet"
MATCH = 0.2      # points: "matching" = within 0.2 points of dense (PAPERS.md, the LMC paper's tolerance)
STABLE = 2.0     # points: "stable" = instability under 2% (the LMC paper)
NOISE_SCALE = 1.0


@dataclass
class Testbed:
    study: Study
    level: int
    k0: Step
    kmid: Step
    kstar: Step
    total: int

    @property
    def density(self) -> float:
        return (1 - self.study.spec.prune.fraction) ** self.level

    def where(self) -> str:
        return f"level {self.level} ({100 * self.density:.1f}% of the weights)"


def testbed_spec(ctx: Context, preset: str = PRESET):
    spec = apply_overrides(get_preset(preset).spec, ctx.overrides) if ctx.overrides else get_preset(preset).spec
    _, _, total = check_spec(spec, TrainOptions(data_root=ctx.data_root))
    ks = (Step(0, 0), Step(0, max(1, round(0.01 * total))), Step(0, max(2, round(0.10 * total))))
    return spec.replace(**{"train.checkpoints": ",".join(map(str, ks))}), ks, total


def testbed(ctx: Context) -> Testbed:
    """The shared study, trained (or found) to its judged level for every replicate."""
    if "testbed" not in ctx.cache:
        spec, ks, total = testbed_spec(ctx)
        study = Study(spec, ks, PRESET, ctx.store, ctx.data_root)
        level = 2 if ctx.quick else 4
        ctx.log(f"lottery study {study.key}: {PRESET}, rewind {','.join(map(str, ks))}, {level} levels, "
                f"{ctx.replicates} replicate(s)")
        study.run(level, replicates=ctx.replicates, options=ctx.options)
        ctx.cache["testbed"] = Testbed(study, level, *ks, total)
    return ctx.cache["testbed"]


def _branch(ctx: Context, tb: Testbed, kind: str, k: Step, params: dict | None = None) -> None:
    key = ("branch", kind, str(k), json.dumps(params or {}, sort_keys=True))
    if key not in ctx.cache:
        tb.study.branch(kind, [tb.level], params, replicates=ctx.replicates, rewinds=(k,), options=ctx.options)
        ctx.cache[key] = True


def accuracy(ctx: Context, tb: Testbed, level: int, k: Step | None = None, branch: str = "none",
             table: pd.DataFrame | None = None) -> pd.Series:
    """Final test accuracy (points) per replicate 0..R-1 (NaN where a run diverged or is missing)."""
    df = tb.study.table() if table is None else table
    df = df[(df["split"] == "test") & (df["metric"] == "accuracy") & (df["level"] == level) & (df["branch"] == branch)]
    if k is not None and level > 0:
        df = df[df["rewind_step"] == str(k)]
    return (100 * df.groupby("replicate")["value"].mean()).reindex(range(ctx.replicates))


def commands(ctx: Context, tb: Testbed, branches: list[tuple[str, Step, str]] = ()) -> list[str]:
    ks = ",".join(str(k) for k in (tb.k0, tb.kmid, tb.kstar))
    out = [f"rewind lottery --preset {PRESET} --levels {tb.level} --rewind {ks} --set train.checkpoints={ks} "
           f"{ctx.flags()}"]
    for kind, k, extra in branches:
        out.append(f"rewind branch {kind} --study {tb.study.key} --levels {tb.level} --rewind {k} "
                   f"--replicates {ctx.replicates} --root {ctx.store.root}{extra}")
    return out


def setting(ctx: Context, tb: Testbed) -> str:
    return (f"{PRESET} ({tb.total} it, global pruning {100 * tb.study.spec.prune.fraction:.0f}% per level), "
            f"{ctx.replicates} replicate(s), judged at {tb.where()}; k* = {tb.kstar}, k_mid = {tb.kmid}")


def summary_table(table: pd.DataFrame, max_level: int) -> pd.DataFrame:
    """Mean ± std (n) of final test accuracy per branch, rewind step and level (points)."""
    from ..report.lottery import format_params, lottery_summary

    s = lottery_summary(table)
    s = s[s["level"] <= max_level]
    return pd.DataFrame({
        "branch": [(b + " " + format_params(p)).strip() for b, p in zip(s["branch"], s["branch_params"])],
        "rewind": s["rewind_step"], "level": s["level"].astype(int),
        "density %": (100 * s["density"]).round(1),
        "test accuracy %": [f"{100 * m:.2f} ± {100 * sd:.2f}" for m, sd in zip(s["mean"], s["std"])],
        "n": s["n"].astype(int)})


def lottery_figure(ctx: Context, tb: Testbed, name: str, title: str) -> list:
    from ..report.lottery import plot_lottery

    paths = plot_lottery(tb.study.table(), ctx.figure_path(name), title=title)
    return [p for p in paths if p.suffix == ".svg"]


@register_claim(
    "C1", "Rewinding to k > 0 matches the dense network at lower density than k = 0",
    "Frankle, Dziugaite, Roy & Carbin 2020, Linear mode connectivity and the lottery ticket hypothesis (ICML), "
    "and Frankle, Schwab & Morcos 2020, The early phase of neural network training (ICLR), Fig. 1",
    "ResNet-20 on CIFAR-10: IMP rewound to k >= 500 iterations matches the dense network down to 16.8% of the "
    "weights remaining, while k = 0 does not.",
    "At the judged level, two tests on accuracy paired by replicate: IMP rewound to k* minus the dense network "
    f"> -{MATCH} points (matching: within {MATCH} points, the LMC paper's tolerance), and IMP rewound to k = 0 "
    f"minus the dense network < -{MATCH} points (not matching). Both must hold.",
    "cifar_resnet_20 (GPU: 62,500 iterations per run, 8.8 ms each on one H200 measured: ~0.15 h per run; "
    "20 levels x 2 rewind steps x 3 replicates is ~18 GPU-hours)")
def c1(ctx: Context) -> Measurement:
    tb = testbed(ctx)
    table = tb.study.table()
    dense = accuracy(ctx, tb, 0, table=table)
    star, zero = accuracy(ctx, tb, tb.level, tb.kstar, table=table), accuracy(ctx, tb, tb.level, tb.k0, table=table)
    tests = [Test(f"IMP k={tb.kstar} - dense", star - dense, ">", -MATCH),
             Test("IMP k=0 - dense", zero - dense, "<", -MATCH)]
    return Measurement(
        tests, f"at {100 * tb.density:.1f}%: k={tb.kstar} {star.mean() - dense.mean():+.2f}, k=0 "
               f"{zero.mean() - dense.mean():+.2f} points from dense ({dense.mean():.2f}%)",
        setting(ctx, tb), summary_table(table[table["branch"] == "none"], tb.level),
        lottery_figure(ctx, tb, "c1-lottery", f"{PRESET}: IMP with rewinding"), [tb.study.key], commands(ctx, tb))


def _baseline_claim(ctx: Context, kinds: list[tuple[str, str]]) -> Measurement:
    """Branches at k* on the judged level, each against IMP rewound to k* (paired)."""
    tb = testbed(ctx)
    for kind, _ in kinds:
        _branch(ctx, tb, kind, tb.kstar)
    table = tb.study.table()
    imp = accuracy(ctx, tb, tb.level, tb.kstar, table=table)
    tests, parts = [], []
    for kind, label in kinds:
        acc = accuracy(ctx, tb, tb.level, tb.kstar, kind, table)
        tests.append(Test(f"{label} - IMP (k={tb.kstar})", acc - imp, "<", 0.0))
        parts.append(f"{label} {acc.mean() - imp.mean():+.2f}")
    show = table[(table["level"] == tb.level) & (table["rewind_step"] == str(tb.kstar)) | (table["level"] == 0)]
    return Measurement(tests, f"at {100 * tb.density:.1f}%, points against IMP k={tb.kstar}: " + ", ".join(parts),
                       setting(ctx, tb), summary_table(show, tb.level), [], [tb.study.key],
                       commands(ctx, tb, [(kind, tb.kstar, "") for kind, _ in kinds]))


@register_claim(
    "C2", "The reinit and random-pruning baselines fall below IMP at moderate sparsity",
    "Frankle & Carbin 2019, The lottery ticket hypothesis (ICLR); Frankle et al. 2020 (LMC), Fig. 3",
    "Randomly reinitialising an IMP subnetwork, or pruning at random with the same per-layer sparsity, gives "
    "networks that fall below the dense network (and below IMP with rewinding) where IMP still matches.",
    "At the judged level, accuracy paired by replicate: reinit (the k* masks, fresh initialisation) minus IMP "
    "rewound to k* < 0, and random pruning (layerwise, the same per-layer densities, W_k*) minus IMP rewound "
    "to k* < 0. Both must hold.",
    "cifar_resnet_20 and cifar_vgg_16 (GPU)")
def c2(ctx: Context) -> Measurement:
    return _baseline_claim(ctx, [("reinit", "reinit"), ("random-prune", "random pruning")])


@register_claim(
    "C5", "Sign-preserving reinitialisation at k loses to rewinding to k",
    "Frankle, Schwab & Morcos 2020, The early phase of neural network training, Section 4 (Fig. 4)",
    "Keeping the signs of W_k but drawing new magnitudes from the initialisation distribution does not "
    "recover the accuracy of rewinding: signs are not all you need.",
    "At the judged level, accuracy paired by replicate: sign-reinit at k* minus IMP rewound to k* < 0.",
    "cifar_resnet_20 (GPU)")
def c5(ctx: Context) -> Measurement:
    return _baseline_claim(ctx, [("sign-reinit", "sign-preserving reinit")])


@register_claim(
    "C6", "Shuffling the weights within each layer at k loses to rewinding to k",
    "Frankle, Schwab & Morcos 2020, The early phase of neural network training, Section 4 (Fig. 5)",
    "Permuting the surviving weights of W_k within each layer (keeping each layer's distribution) does not "
    "recover the accuracy of rewinding: the weights are not i.i.d. draws from the layer's distribution.",
    "At the judged level, accuracy paired by replicate: shuffle-layer at k* minus IMP rewound to k* < 0.",
    "cifar_resnet_20 (GPU)")
def c6(ctx: Context) -> Measurement:
    return _baseline_claim(ctx, [("shuffle-layer", "shuffled within layers")])


@register_claim(
    "C7", "Robustness to Gaussian noise at k grows with k",
    "Frankle, Schwab & Morcos 2020, The early phase of neural network training, Section 4 (Fig. 6)",
    "Adding Gaussian noise to the rewound weights W_k hurts less the later k is: the network becomes robust "
    "to perturbation during the early phase.",
    f"At the judged level, the damage of noise (std {NOISE_SCALE:g} x each layer's initial std) at k is accuracy "
    "with noise minus without, paired by replicate; test: damage at k* minus damage at k = 0 > 0 (less damage "
    "later). Damage at k_mid is shown, not judged.",
    "cifar_resnet_20 (GPU)")
def c7(ctx: Context) -> Measurement:
    tb = testbed(ctx)
    params = {"scale": NOISE_SCALE}
    for k in (tb.k0, tb.kmid, tb.kstar):
        _branch(ctx, tb, "noise", k, params)
    table = tb.study.table()
    damage = {k: accuracy(ctx, tb, tb.level, k, "noise", table) - accuracy(ctx, tb, tb.level, k, table=table)
              for k in (tb.k0, tb.kmid, tb.kstar)}
    tests = [Test(f"damage at k={tb.kstar} - damage at k=0", damage[tb.kstar] - damage[tb.k0], ">", 0.0)]
    rows = [{"rewind": str(k), "damage (points)": f"{d.mean():+.2f} ± {d.std():.2f}",
             "per replicate": " ".join(f"{x:+.2f}" for x in d), "n": int(d.notna().sum())} for k, d in damage.items()]
    extra = f" --scale {NOISE_SCALE:g}"
    measured = "noise damage (points): " + ", ".join(f"k={k} {d.mean():+.2f}" for k, d in damage.items())
    return Measurement(tests, measured,
                       setting(ctx, tb), pd.DataFrame(rows), [], [tb.study.key],
                       commands(ctx, tb, [("noise", k, extra) for k in damage]))


# ---- instability (C3, C4) ----------------------------------------------------------------------

def instability_rows(ctx: Context, tb: Testbed) -> pd.DataFrame:
    if "instability" not in ctx.cache:
        from ..analysis import instability

        points = 3 if ctx.quick else 5
        ctx.cache["instability"] = instability(tb.study, [0, tb.level], copies=2, points=points, bn_reset=True,
                                               replicates=ctx.replicates, options=ctx.options)
        ctx.cache["instability_points"] = points
    return ctx.cache["instability"]


def instab(ctx: Context, rows: pd.DataFrame, level: int, k: Step) -> pd.Series:
    """Test-error instability (points) per replicate."""
    df = rows[(rows["metric"] == "instability") & (rows["split"] == "test") & (rows["level"] == level)
              & (rows["rewind_step"] == str(k))]
    return (100 * df.groupby("replicate")["value"].mean()).reindex(range(ctx.replicates))


def _instability_table(ctx: Context, tb: Testbed, rows: pd.DataFrame) -> pd.DataFrame:
    out = []
    for level in (0, tb.level):
        row = {"network": "dense" if level == 0 else f"IMP {tb.where()}"}
        for k in (tb.k0, tb.kmid, tb.kstar):
            v = instab(ctx, rows, level, k)
            row[f"k={k}"] = f"{v.mean():.2f} ± {v.std():.2f}"
        out.append(row)
    return pd.DataFrame(out)


def _instability_commands(ctx: Context, tb: Testbed) -> list[str]:
    ks = ",".join(str(k) for k in (tb.k0, tb.kmid, tb.kstar))
    return commands(ctx, tb) + [f"rewind instability --study {tb.study.key} --levels 0,{tb.level} --at {ks} "
                                f"--points {ctx.cache.get('instability_points', 5)} --bn-reset "
                                f"--replicates {ctx.replicates} --root {ctx.store.root}"]


@register_claim(
    "C3", "Instability falls as k grows; IMP subnetworks become stable earlier than the dense network",
    "Frankle, Dziugaite, Roy & Carbin 2020, Linear mode connectivity and the lottery ticket hypothesis, "
    "Figs. 2 and 5",
    "Dense ResNet-20 becomes stable (instability < 2%) at k ~ 2,000 iterations (3% of training); its IMP "
    "subnetworks at ~500.",
    "Instability = the largest test error on the linear path between two copies trained from W_k with "
    "different data orders, minus the mean of the ends (BatchNorm re-estimated at each point), in points. "
    "Tests, paired by replicate: dense instability at k* minus at k = 0 < 0; IMP subnetwork at the judged level "
    "minus the dense network, both at k_mid, < 0 (the subnetwork is stable earlier). Both must hold.",
    "cifar_resnet_20 and cifar_vgg_16 with rewind steps 0-2,000 it (GPU)")
def c3(ctx: Context) -> Measurement:
    from ..report.instability import plot_instability

    tb = testbed(ctx)
    rows = instability_rows(ctx, tb)
    d0, dmid, dstar = (instab(ctx, rows, 0, k) for k in (tb.k0, tb.kmid, tb.kstar))
    smid = instab(ctx, rows, tb.level, tb.kmid)
    tests = [Test(f"dense: instability at k={tb.kstar} - at k=0", dstar - d0, "<", 0.0),
             Test(f"at k={tb.kmid}: IMP subnetwork - dense", smid - dmid, "<", 0.0)]
    figs = [p for p in plot_instability(rows, ctx.figure_path("c3-instability")) if p.suffix == ".svg"]
    return Measurement(tests, f"dense {d0.mean():.1f} -> {dmid.mean():.1f} -> {dstar.mean():.1f} points at "
                              f"k = 0, {tb.kmid}, {tb.kstar}; IMP subnetwork at {tb.kmid}: {smid.mean():.1f}",
                       setting(ctx, tb), _instability_table(ctx, tb, rows), figs, [tb.study.key],
                       _instability_commands(ctx, tb))


def matching_is_stable(cells: list[tuple[str, str]]) -> str:
    """C4's rule over (matching verdict, stable verdict) per rewind step: not held when a step with
    two definite verdicts disagrees; held when none disagrees and there is at least one
    matching-and-stable and one non-matching-and-unstable step; otherwise inconclusive."""
    definite = [(m, s) for m, s in cells if INCONCLUSIVE not in (m, s)]
    if any(m != s for m, s in definite):
        return NOT_HELD
    if (HELD, HELD) in definite and (NOT_HELD, NOT_HELD) in definite:
        return HELD
    return INCONCLUSIVE


@register_claim(
    "C4", "The IMP subnetworks that match are the stable ones",
    "Frankle, Dziugaite, Roy & Carbin 2020, Linear mode connectivity and the lottery ticket hypothesis, Fig. 5",
    "IMP subnetworks are matching only when they are stable: for every network and rewind step, matching "
    "accuracy goes with instability near zero.",
    f"For each rewind step k of the judged level, two verdicts by the rule above: matching (IMP - dense > -{MATCH} "
    f"points) and stable (instability < {STABLE:g} points). Held when no k has definite verdicts that disagree "
    "(matching but unstable, or stable but not matching) and at least one k is matching-and-stable and one "
    "non-matching-and-unstable; not held when some k disagrees; otherwise inconclusive.",
    "cifar_resnet_20 at 20 levels and several k (GPU)")
def c4(ctx: Context) -> Measurement:
    tb = testbed(ctx)
    rows, table = instability_rows(ctx, tb), tb.study.table()
    dense = accuracy(ctx, tb, 0, table=table)
    tests, cells, out = [], [], []
    for k in (tb.k0, tb.kmid, tb.kstar):
        match = Test(f"k={k}: IMP - dense", accuracy(ctx, tb, tb.level, k, table=table) - dense, ">", -MATCH)
        stable = Test(f"k={k}: instability", instab(ctx, rows, tb.level, k), "<", STABLE)
        tests += [match, stable]
        cells.append((match.verdict, stable.verdict))
        out.append({"rewind": str(k), "IMP - dense (points)": f"{match.result['mean']:+.2f}",
                    "matching": match.verdict, "instability (points)": f"{stable.result['mean']:.2f}",
                    "stable": stable.verdict})
    verdict = matching_is_stable(cells)
    definite = [(m, s) for m, s in cells if INCONCLUSIVE not in (m, s)]
    agree = sum(m == s for m, s in definite)
    return Measurement(tests, f"{agree} of {len(definite)} rewind steps with definite verdicts agree "
                              f"(matching = stable); {len(cells) - len(definite)} undecided",
                       setting(ctx, tb), pd.DataFrame(out), [], [tb.study.key], _instability_commands(ctx, tb),
                       verdict=verdict)


__all__ = ["Testbed", "testbed", "testbed_spec", "accuracy"]
