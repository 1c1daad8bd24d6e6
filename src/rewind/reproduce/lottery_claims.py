"""Claims of the lottery-ticket papers measured on the testbed preset (C1-C7, C14, C22).

Every claim here reads one shared lottery study on ``mnist1d_resnet`` (the testbed issue's
choice: the setting where rewinding matters at CPU scale, docs/testbed.md): IMP rewound to
k = 0, k_mid = 20 it and k* = 200 it (0, 1 and 10% of training), global pruning 36% per level,
judged at level 4 (16.8% of the weights, the density of the early-phase paper's headline; with
``--quick``: level 2 = 41%, and a schedule a quarter as long: 500 it). The dense runs save W_k
on a finer grid (0, 0.5, 1, 2.5 and 10% of training) for the dense network's instability, and
the pretraining claims reuse them.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..lottery import Study
from ..presets import get_preset
from ..step import Step
from ..train import TrainOptions, check_spec
from .registry import Context, Measurement, register_claim, register_shared
from .verdict import HELD, INCONCLUSIVE, NOT_HELD, Test

PRESET = "mnist1d_resnet"
MATCH = 0.2      # points: "matching" = within 0.2 points of dense (PAPERS.md, the LMC paper's tolerance)
STABLE = 2.0     # points: "stable" = instability under 2% (the LMC paper)
IMP_FRACTIONS = (0.0, 0.01, 0.10)               # IMP's rewind steps, as fractions of training: 0, k_mid, k*
GRID_FRACTIONS = (0.0, 0.005, 0.01, 0.025, 0.10)  # the dense network's instability grid
NOISE_SCALES = (0.25, 1.0, 4.0)                 # x each layer's initial std (the paper sweeps the scale)
QUICK_NOISE_SCALES = (1.0, 4.0)


@dataclass
class Testbed:
    study: Study
    level: int
    ks: tuple[Step, ...]
    total: int
    dense: Study | None = None    # the same dense runs, rewound on the finer grid (instability of level 0)

    @property
    def grid(self) -> tuple[Step, ...]:
        return tuple(self.dense.rewind_steps) if self.dense is not None else self.ks

    @property
    def k0(self) -> Step:
        return self.ks[0]

    @property
    def kstar(self) -> Step:
        return self.ks[-1]

    @property
    def kmid(self) -> Step:
        """1% of training: the early k the LMC paper's ResNet-20 subnetworks are stable at."""
        return min(self.ks[1:-1] or self.ks[-1:], key=lambda k: abs(k.it - 0.01 * self.total))

    @property
    def density(self) -> float:
        return (1 - self.study.spec.prune.fraction) ** self.level

    def where(self) -> str:
        return f"level {self.level} ({100 * self.density:.1f}% of the weights)"


def _steps(fractions, total: int) -> tuple[Step, ...]:
    return tuple(dict.fromkeys(Step(0, round(f * total)) for f in fractions))


QUICK_SHORTER = 4   # --quick: the testbed's schedule (steps, milestones, warmup) a quarter as long ...
QUICK_FLOOR = 200   # ... but never shorter than this many iterations


def shortened(spec, factor: int, data_root: str | None = None, floor: int = QUICK_FLOOR):
    """``spec`` with its schedule (iterations, milestones, warmup) ``factor`` times shorter, but not
    below ``floor`` iterations (nor longer than it was): the quick look's testbed. The rewind steps
    stay fractions of training."""
    _, ipe, total = check_spec(spec, TrainOptions(data_root=data_root))
    short = max(total // factor, min(total, floor))
    if short == total:
        return spec
    t = spec.train

    def scale(step) -> str:
        return f"{step.iterations(ipe) * short // total}it"

    return spec.replace(**{"train.steps": f"{short}it", "train.milestones": ",".join(map(scale, t.milestones)),
                           "train.warmup": scale(t.warmup)})


def testbed_base(ctx: Context, preset: str = PRESET):
    """The testbed preset with the reproduction's changes (and, with ``--quick``, shortened)."""
    spec = ctx.spec(get_preset(preset).spec)
    if not ctx.quick:
        return spec
    short = shortened(spec, QUICK_SHORTER, ctx.data_root)
    for name in ("steps", "milestones", "warmup"):
        before, after = getattr(spec.train, name), getattr(short.train, name)
        if before != after:
            text = ",".join(map(str, after)) if isinstance(after, tuple) else str(after)
            was = ",".join(map(str, before)) if isinstance(before, tuple) else str(before)
            ctx.changes[f"train.{name}"] = (ctx.changes.get(f"train.{name}", (was,))[0], text)   # the claim's value
            ctx.shortened[f"train.{name}"] = text
    return short


def testbed_spec(ctx: Context, preset: str = PRESET):
    """(spec saving W_k on the grid, IMP's rewind steps, iterations)."""
    spec = testbed_base(ctx, preset)
    _, _, total = check_spec(spec, TrainOptions(data_root=ctx.data_root))
    grid = _steps(IMP_FRACTIONS if ctx.quick else GRID_FRACTIONS, total)
    return spec.replace(**{"train.checkpoints": ",".join(map(str, grid))}), _steps(IMP_FRACTIONS, total), total


def testbed(ctx: Context, preset: str = PRESET, ks: tuple[Step, ...] | None = None) -> Testbed:
    """The shared study, trained (or found) to its judged level for every replicate."""
    name = f"testbed-{preset}-{ks}"
    spec, all_ks, total = testbed_spec(ctx, preset)   # (also records this claim's changes to the preset)
    if name not in ctx.cache:
        ks = ks or all_ks
        study = Study(spec, ks, preset, ctx.store, ctx.data_root)
        grid = tuple(Step.parse(str(k)) for k in spec.train.checkpoints)
        dense = Study(spec, grid, preset, ctx.store, ctx.data_root) if grid != ks else None
        level = 2 if ctx.quick else 4
        ctx.log(f"lottery study {study.key}: {preset}, rewind {','.join(map(str, ks))}, {level} levels, "
                f"{ctx.replicates} replicates")
        study.run(level, replicates=ctx.replicates, options=ctx.options)
        ctx.cache[name] = Testbed(study, level, ks, total, dense)
    return ctx.cache[name]


@register_shared("the testbed's lottery study (its runs are also the pretraining grids' supervised reference)",
                 ("C1", "C2", "C3", "C4", "C5", "C6", "C7", "C9", "C10", "C13", "C14", "C19", "C20", "C21", "C22",
                  "C23", "C24"))
def _train_testbed(ctx: Context) -> None:
    testbed(ctx)


def _branch(ctx: Context, tb: Testbed, kind: str, k: Step | tuple[Step, ...], params: dict | None = None) -> None:
    """Branch ``kind`` at the judged level from W_k for every replicate (several k: one population)."""
    ks = k if isinstance(k, tuple) else (k,)
    key = ("branch", kind, ",".join(map(str, ks)), json.dumps(params or {}, sort_keys=True))
    if key not in ctx.cache:
        tb.study.branch(kind, [tb.level], params, replicates=ctx.replicates, rewinds=ks, options=ctx.options)
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
    ks = ",".join(str(k) for k in tb.ks)
    checkpoints = ",".join(str(k) for k in tb.study.spec.train.checkpoints)
    out = [f"rewind lottery --preset {tb.study.preset} --levels {tb.level} --rewind {ks} "
           f"--set train.checkpoints={checkpoints} {ctx.flags()}"]
    for kind, k, extra in branches:
        out.append(f"rewind branch {kind} --study {tb.study.key} --levels {tb.level} --rewind {k} "
                   f"--replicates {ctx.replicates} --root {ctx.root_label}{extra}")
    return out


def setting(ctx: Context, tb: Testbed) -> str:
    return (f"{tb.study.preset} ({tb.total} it, global pruning {100 * tb.study.spec.prune.fraction:.0f}% per level), "
            f"{ctx.replicates} replicates, judged at {tb.where()}; k = {', '.join(map(str, tb.ks))} "
            f"(k* = {tb.kstar}, k_mid = {tb.kmid})")


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
    caption = (f"{title}: final test accuracy against the weights remaining, per rewind step (mean and spread over "
               f"{ctx.replicates} replicates); the dense network at 100%.")
    return [(p, caption) for p in paths if p.suffix == ".svg"]


@register_claim(
    "C1", "Rewinding to k > 0 matches the dense network at lower density than k = 0",
    "Frankle, Dziugaite, Roy & Carbin 2020, Linear mode connectivity and the lottery ticket hypothesis (ICML), "
    "and Frankle, Schwab & Morcos 2020, The early phase of neural network training (ICLR), Fig. 1",
    "ResNet-20 on CIFAR-10: IMP rewound to k >= 500 iterations matches the dense network down to 16.8% of the "
    "weights remaining, while k = 0 does not.",
    "At the judged level, two tests on accuracy paired by replicate: IMP rewound to k* minus the dense network "
    f"> -{MATCH} points (matching: within {MATCH} points, the LMC paper's tolerance), and IMP rewound to k = 0 "
    f"minus the dense network < -{MATCH} points (not matching). Both must hold. Paper's effects (ResNet-20, "
    "16.8%): k* about 0, k = 0 about -1.5 points.",
    "cifar_resnet_20 (GPU: 62,500 iterations per run, 8.8 ms each on one H200 measured: ~0.15 h per run; "
    "20 levels x 2 rewind steps x 3 replicates is ~18 GPU-hours)", cost=8)
def c1(ctx: Context) -> Measurement:
    tb = testbed(ctx)
    table = tb.study.table()
    dense = accuracy(ctx, tb, 0, table=table)
    star, zero = accuracy(ctx, tb, tb.level, tb.kstar, table=table), accuracy(ctx, tb, tb.level, tb.k0, table=table)
    tests = [Test(f"IMP k={tb.kstar} - dense", star - dense, ">", -MATCH, effect=0.0),
             Test("IMP k=0 - dense", zero - dense, "<", -MATCH, effect=-1.5)]
    return Measurement(
        tests, f"at {100 * tb.density:.1f}%: k={tb.kstar} {star.mean() - dense.mean():+.2f}, k=0 "
               f"{zero.mean() - dense.mean():+.2f} points from dense ({dense.mean():.2f}%)",
        setting(ctx, tb), summary_table(table[table["branch"] == "none"], tb.level),
        lottery_figure(ctx, tb, "c1-lottery", f"{PRESET}: IMP with rewinding"), [tb.study.key], commands(ctx, tb))


def _baseline_claim(ctx: Context, kinds: list[tuple[str, str]], effect: float) -> Measurement:
    """Branches at k* on the judged level, each against IMP rewound to k* (paired)."""
    tb = testbed(ctx)
    for kind, _ in kinds:
        _branch(ctx, tb, kind, tb.kstar)
    table = tb.study.table()
    imp = accuracy(ctx, tb, tb.level, tb.kstar, table=table)
    tests, parts = [], []
    for kind, label in kinds:
        acc = accuracy(ctx, tb, tb.level, tb.kstar, kind, table)
        tests.append(Test(f"{label} - IMP (k={tb.kstar})", acc - imp, "<", 0.0, effect=effect))
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
    "to k* < 0. Both must hold. Paper's effect (ResNet-20, 16.8%): about -2 points.",
    "cifar_resnet_20 and cifar_vgg_16 (GPU)", cost=1)
def c2(ctx: Context) -> Measurement:
    return _baseline_claim(ctx, [("reinit", "reinit"), ("random-prune", "random pruning")], -2.0)


@register_claim(
    "C5", "Sign-preserving reinitialisation at k loses to rewinding to k",
    "Frankle, Schwab & Morcos 2020, The early phase of neural network training, Section 4 (Fig. 4)",
    "Keeping the signs of W_k but drawing new magnitudes from the initialisation distribution does not "
    "recover the accuracy of rewinding: signs are not all you need.",
    "At the judged level, accuracy paired by replicate: sign-reinit at k* minus IMP rewound to k* < 0. Paper's "
    "effect (ResNet-20): about -1 point at moderate sparsity.",
    "cifar_resnet_20 (GPU)", cost=1)
def c5(ctx: Context) -> Measurement:
    return _baseline_claim(ctx, [("sign-reinit", "sign-preserving reinit")], -1.0)


@register_claim(
    "C6", "Shuffling the weights within each layer at k loses to rewinding to k",
    "Frankle, Schwab & Morcos 2020, The early phase of neural network training, Section 4 (Fig. 5)",
    "Permuting the surviving weights of W_k within each layer (keeping each layer's distribution) does not "
    "recover the accuracy of rewinding: the weights are not i.i.d. draws from the layer's distribution.",
    "At the judged level, accuracy paired by replicate: shuffle-layer at k* minus IMP rewound to k* < 0. Paper's "
    "effect (ResNet-20): about -1 point at moderate sparsity.",
    "cifar_resnet_20 (GPU)", cost=1)
def c6(ctx: Context) -> Measurement:
    return _baseline_claim(ctx, [("shuffle-layer", "shuffled within layers")], -1.0)


def trend(values: np.ndarray) -> float:
    """Least-squares slope of ``values`` against their position 0, 1, 2, ... (NaN if any is NaN)."""
    v = np.asarray(values, dtype=float)
    if not np.isfinite(v).all() or len(v) < 2:
        return float("nan")
    x = np.arange(len(v), dtype=float)
    return float(np.polyfit(x, v, 1)[0])


@register_claim(
    "C7", "Robustness to Gaussian noise at k grows with k",
    "Frankle, Schwab & Morcos 2020, The early phase of neural network training, Section 4 (Fig. 6)",
    "Adding Gaussian noise to the rewound weights W_k hurts less the later k is: the network becomes robust "
    "to perturbation during the early phase (shown over a range of noise scales).",
    "At the judged level, the damage of noise at k is accuracy with noise (std s x each layer's initial std) "
    "minus without, paired by replicate, for s = 0.25, 1 and 4 and k = 0, k_mid, k*. Per replicate, the trend of "
    "the damage across k is the least-squares slope of damage against the position of k (0, 1, 2), averaged over "
    "the scales; test: trend > 0 (less damage later). Per-scale trends are shown, not judged. No paper number "
    "transfers (effect not given).",
    "cifar_resnet_20 (GPU)", cost=5)
def c7(ctx: Context) -> Measurement:
    tb = testbed(ctx)
    ks = (tb.k0, tb.kmid, tb.kstar)
    scales = QUICK_NOISE_SCALES if ctx.quick else NOISE_SCALES
    for s in scales:
        _branch(ctx, tb, "noise", ks, {"scale": s})
    table = tb.study.table()
    noise = table[table["branch"] == "noise"]
    rows, per_scale = [], {}
    for s in scales:
        part = noise[noise["branch_params"].map(lambda p: json.loads(p or "{}").get("scale") == s)]
        damage = {k: accuracy(ctx, tb, tb.level, k, "noise", part) - accuracy(ctx, tb, tb.level, k, table=table)
                  for k in ks}
        frame = pd.DataFrame(damage)
        per_scale[s] = frame.apply(lambda r: trend(r.to_numpy()), axis=1)
        rows.append({"scale": s, **{f"damage at k={k}": f"{d.mean():+.2f} ± {d.std():.2f}" for k, d in damage.items()},
                     "trend (points per k step)": f"{per_scale[s].mean():+.2f} ± {per_scale[s].std():.2f}"})
    mean_trend = pd.DataFrame(per_scale).mean(axis=1)
    tests = [Test("trend of the noise damage across k (mean over scales)", mean_trend, ">", 0.0)]
    measured = "damage trend across k (points per step of k): " + ", ".join(
        f"scale {s:g} {t.mean():+.2f}" for s, t in per_scale.items()) + f"; mean {mean_trend.mean():+.2f}"
    return Measurement(tests, measured, setting(ctx, tb) + f"; noise scales {', '.join(f'{s:g}' for s in scales)}",
                       pd.DataFrame(rows), [], [tb.study.key],
                       commands(ctx, tb, [("noise", k, f" --scale {s:g}") for s in scales for k in ks]))


# ---- instability (C3, C4) ----------------------------------------------------------------------

def instability_rows(ctx: Context, tb: Testbed, bn_reset: bool = True) -> pd.DataFrame:
    name = ("instability", tb.study.key, bn_reset)
    if name not in ctx.cache:
        from ..analysis import instability

        points = 3 if ctx.quick or not bn_reset else 5
        kw = dict(copies=2, points=points, bn_reset=bn_reset, replicates=ctx.replicates, options=ctx.options)
        dense = instability(tb.dense or tb.study, [0], **kw)
        ctx.cache[name] = pd.concat([dense, instability(tb.study, [tb.level], **kw)], ignore_index=True)
    return ctx.cache[name]


def instab(ctx: Context, rows: pd.DataFrame, level: int, k: Step) -> pd.Series:
    """Test-error instability (points) per replicate."""
    df = rows[(rows["metric"] == "instability") & (rows["split"] == "test") & (rows["level"] == level)
              & (rows["rewind_step"] == str(k))]
    return (100 * df.groupby("replicate")["value"].mean()).reindex(range(ctx.replicates))


def _instability_table(ctx: Context, tb: Testbed, rows: pd.DataFrame) -> pd.DataFrame:
    out = []
    for level in (0, tb.level):
        row = {"network": "dense" if level == 0 else f"IMP {tb.where()}"}
        ks = tb.grid if level == 0 else tb.ks
        for k in tb.grid:
            v = instab(ctx, rows, level, k)
            row[f"k={k}"] = f"{v.mean():.2f} ± {v.std():.2f}" if k in ks else "-"
        stable = [k for k in ks if instab(ctx, rows, level, k).mean() < STABLE]
        row["first k stable (mean < 2)"] = str(stable[0]) if stable else "none"
        out.append(row)
    return pd.DataFrame(out)


def _instability_commands(ctx: Context, tb: Testbed, bn: str = " --bn-reset", points: int = 5) -> list[str]:
    flags = f"--points {3 if ctx.quick else points}{bn} --replicates {ctx.replicates} --root {ctx.root_label}"
    out = commands(ctx, tb)
    if tb.dense is not None:
        out.append(f"rewind lottery --preset {tb.study.preset} --levels 0 --rewind {','.join(map(str, tb.grid))} "
                   f"--set train.checkpoints={','.join(map(str, tb.grid))} {ctx.flags()}")
    out.append(f"rewind instability --study {(tb.dense or tb.study).key} --levels 0 --at "
               f"{','.join(map(str, tb.grid))} {flags}")
    out.append(f"rewind instability --study {tb.study.key} --levels {tb.level} --at "
               f"{','.join(map(str, tb.ks))} {flags}")
    return out


@register_claim(
    "C3", "Instability falls as k grows; IMP subnetworks become stable earlier than the dense network",
    "Frankle, Dziugaite, Roy & Carbin 2020, Linear mode connectivity and the lottery ticket hypothesis, "
    "Figs. 2 and 5",
    "Dense ResNet-20 becomes stable (instability < 2%) at k ~ 2,000 iterations (3% of training); its IMP "
    "subnetworks at ~500.",
    "Instability = the largest test error on the linear path between two copies trained from W_k with "
    "different data orders, minus the mean of the ends (BatchNorm re-estimated at each point), in points; the dense "
    "network on the grid k = 0, 0.5, 1, 2.5 and 10% of training, the IMP subnetwork at IMP's k. Tests, paired by "
    "replicate: dense instability at k* minus at k = 0 < 0; IMP subnetwork at the judged level minus the dense "
    "network, both at k_mid, < 0 (the subnetwork is stable earlier). Both must hold. The first k at which each is "
    "stable is shown. Paper's effect: dense ResNet-20 falls from about 20 to 0 points; none transfers for the gap.",
    "cifar_resnet_20 and cifar_vgg_16 with rewind steps 0-2,000 it (GPU)", cost=10)
def c3(ctx: Context) -> Measurement:
    from ..report.instability import plot_instability

    tb = testbed(ctx)
    rows = instability_rows(ctx, tb)
    dense = {k: instab(ctx, rows, 0, k) for k in tb.grid}
    sub = {k: instab(ctx, rows, tb.level, k) for k in tb.ks}
    tests = [Test(f"dense: instability at k={tb.kstar} - at k=0", dense[tb.kstar] - dense[tb.k0], "<", 0.0,
                  effect=-20.0),
             Test(f"at k={tb.kmid}: IMP subnetwork - dense", sub[tb.kmid] - dense[tb.kmid], "<", 0.0)]
    figs = [(p, "Instability (test error barrier, points) against the rewind step k, dense and IMP subnetwork "
                f"(mean and spread over {ctx.replicates} replicates)")
            for p in plot_instability(rows, ctx.figure_path("c3-instability")) if p.suffix == ".svg"]
    return Measurement(tests, "dense " + " -> ".join(f"{dense[k].mean():.1f}" for k in tb.grid) + " points at k = "
                              + ", ".join(map(str, tb.grid)) + "; subnetwork " +
                              " -> ".join(f"{sub[k].mean():.1f}" for k in tb.ks) + " at k = " +
                              ", ".join(map(str, tb.ks)),
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
    f"For each rewind step k of the grid at the judged level, two verdicts by the rule above: matching (IMP - dense > "
    f"-{MATCH} points) and stable (instability < {STABLE:g} points). Held when no k has definite verdicts that "
    "disagree (matching but unstable, or stable but not matching) and at least one k is matching-and-stable and "
    "one non-matching-and-unstable; not held when some k disagrees; otherwise inconclusive.",
    "cifar_resnet_20 at 20 levels and several k (GPU)", cost=0, after=("C3",))
def c4(ctx: Context) -> Measurement:
    tb = testbed(ctx)
    rows, table = instability_rows(ctx, tb), tb.study.table()
    dense = accuracy(ctx, tb, 0, table=table)
    tests, out = [], []
    for k in tb.ks:
        match = Test(f"k={k}: IMP - dense", accuracy(ctx, tb, tb.level, k, table=table) - dense, ">", -MATCH)
        stable = Test(f"k={k}: instability", instab(ctx, rows, tb.level, k), "<", STABLE)
        tests += [match, stable]
        out.append({"rewind": str(k), "IMP - dense (points)": f"{match.result['mean']:+.2f}",
                    "instability (points)": f"{stable.result['mean']:.2f}"})

    def decide(tests: list[Test]) -> str:
        return matching_is_stable([(tests[i].verdict, tests[i + 1].verdict) for i in range(0, len(tests), 2)])

    n_k = len(tb.ks)
    return Measurement(tests, f"matching and stable judged at {n_k} rewind steps (the verdict column of the tests "
                              "pairs them)", setting(ctx, tb), pd.DataFrame(out), [], [tb.study.key],
                       _instability_commands(ctx, tb), decide=decide)


# ---- warmup (C14) and per-example linear mode connectivity (C22) ----------------------------------

WARMUP_PRESET = "mnist1d_resnet_warmup"


@register_claim(
    "C14", "Learning-rate warmup makes rewinding to k = 0 work",
    "Frankle & Carbin 2019, The lottery ticket hypothesis (ICLR), Section 5 (VGG-19 and ResNet-18 at high learning "
    "rates); Frankle et al. 2020 (LMC), Appendix",
    "At the learning rates where IMP rewound to k = 0 fails, training with learning-rate warmup lets k = 0 find "
    "matching subnetworks again.",
    f"The testbed with a 200-iteration linear warmup ({WARMUP_PRESET}), IMP rewound to k = 0 and k* at the judged "
    "level, paired by replicate (same seeds): (a) with warmup, IMP k = 0 minus its dense network > -0.2 points "
    "(matching); (b) IMP k = 0 with warmup minus IMP k = 0 without > 0 (warmup improves k = 0). Both must hold. "
    "Paper's effect: k = 0 with warmup matches (about 0).",
    "cifar_resnet_20 at lr 0.1 without and with warmup, or cifar_vgg_16 (GPU)", cost=6)
def c14(ctx: Context) -> Measurement:
    tb = testbed(ctx)
    wb = testbed(ctx, WARMUP_PRESET, (tb.k0, tb.kstar))
    wt, table = wb.study.table(), tb.study.table()
    w_dense, w_zero = accuracy(ctx, wb, 0, table=wt), accuracy(ctx, wb, wb.level, wb.k0, table=wt)
    zero = accuracy(ctx, tb, tb.level, tb.k0, table=table)
    w_star = accuracy(ctx, wb, wb.level, wb.kstar, table=wt)
    tests = [Test("warmup: IMP k=0 - dense", w_zero - w_dense, ">", -MATCH, effect=0.0),
             Test("IMP k=0: warmup - no warmup", w_zero - zero, ">", 0.0)]
    return Measurement(
        tests, f"with warmup at {100 * wb.density:.1f}%: k=0 {w_zero.mean() - w_dense.mean():+.2f}, k={wb.kstar} "
               f"{w_star.mean() - w_dense.mean():+.2f} points from dense ({w_dense.mean():.2f}%); k=0 "
               f"{(w_zero - zero).mean():+.2f} against no warmup",
        setting(ctx, wb), summary_table(wt[wt["branch"] == "none"], wb.level), [],
        [wb.study.key, tb.study.key], commands(ctx, wb))


LMC_THRESHOLD = 0.05   # nats: an example is linearly connected when its midpoint barrier is below this


def spearman(x, y) -> float:
    x, y = pd.Series(list(x), dtype=float), pd.Series(list(y), dtype=float)
    if x.isna().any() or y.isna().any() or x.nunique() < 2 or y.nunique() < 2:
        return float("nan")
    return float(x.corr(y, method="spearman"))


@register_claim(
    "C22", "The share of linearly connected training examples predicts IMP's success",
    "Paul, Larsen, Ganguli, Frankle & Dziugaite 2022, Lottery tickets on a data diet, Section 4",
    "The fraction of training examples that are linearly mode connected in the dense network at the rewind step "
    "(small loss barrier between two copies trained from W_k) predicts the accuracy of IMP rewound to k.",
    f"On the testbed, per replicate: the share of training examples whose loss barrier at the "
    f"midpoint of two dense copies trained from W_k is below {LMC_THRESHOLD} nats (evaluation mode, BatchNorm "
    "statistics as trained), and the accuracy of IMP rewound to k at the judged level; test: their Spearman "
    "correlation across IMP's k (0, k_mid, k*) > 0. The share is shown on the finer grid. No paper number "
    "transfers.",
    "cifar_resnet_20 with rewind steps 0-2,000 it and `rewind example-lmc` (GPU)", cost=0.1)
def c22(ctx: Context) -> Measurement:
    from ..analysis.example_lmc import example_lmc

    tb = testbed(ctx)
    instability_rows(ctx, tb, bn_reset=False)
    lmc = example_lmc(tb.dense or tb.study, (LMC_THRESHOLD,), level=0)
    share = lmc.groupby(["replicate", "rewind_step"])["fraction"].mean()
    table = tb.study.table()
    acc = {k: accuracy(ctx, tb, tb.level, k, table=table) for k in tb.ks}
    corr, rows = [], []
    for r in range(ctx.replicates):
        s = [share.get((r, str(k)), float("nan")) for k in tb.ks]
        a = [acc[k].get(r, float("nan")) for k in tb.ks]
        corr.append(spearman(s, a))
    for k in tb.grid:
        s = pd.Series([share.get((r, str(k)), float("nan")) for r in range(ctx.replicates)])
        rows.append({"rewind": str(k), "connected share %": f"{100 * s.mean():.1f} ± {100 * s.std():.1f}",
                     "IMP accuracy %": f"{acc[k].mean():.2f} ± {acc[k].std():.2f}" if k in acc else "-"})
    tests = [Test("Spearman correlation across k: connected share vs IMP accuracy", corr, ">", 0.0, units="")]
    return Measurement(
        tests, f"Spearman {np.nanmean(corr):+.2f} across k (connected share "
               f"{100 * share.groupby(level=1).mean().min():.0f}-{100 * share.groupby(level=1).mean().max():.0f}%)",
        setting(ctx, tb) + f"; barrier threshold {LMC_THRESHOLD} nats", pd.DataFrame(rows), [], [tb.study.key],
        _instability_commands(ctx, tb, "", 3))


__all__ = ["Testbed", "testbed", "testbed_spec", "testbed_base", "shortened", "accuracy"]
