"""Claims about the early phase (C8), Hu et al.'s linear model (C11, C16, C17, C18) and the embedded
presets (C12)."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..api import replicate_members
from ..presets import get_preset
from ..train import TrainOptions, check_spec
from ..exec import train_population
from .registry import Context, Measurement, register_claim
from .verdict import Test


def preset_spec(ctx: Context, preset: str):
    return ctx.spec(get_preset(preset).spec)


def _overrides(ctx: Context) -> str:
    return ctx.set_flags()


# ---- C8: early-phase landmarks ----------------------------------------------------------------

EARLY_PRESET = "mnist1d_resnet"
GRAD_RATIO = 2.0


def _at(series: pd.Series, step: int) -> float:
    """The value at the last measured step <= ``step``."""
    return float(series[series.index <= step].iloc[-1])


@register_claim(
    "C8", "The early-phase landmarks: gradients large then falling, signs settling, distance from init slowing",
    "Frankle, Schwab & Morcos 2020, The early phase of neural network training, Section 3 (Fig. 2)",
    "ResNet-20: very large gradients in the first tens of iterations, the gradient norm reaching a minimum around "
    "200 iterations; the weights' signs and their distance from initialisation change fast at first and then "
    "slowly (most of the sign changes happen early).",
    "Probes on the testbed preset during the first quarter of training (window W; every iteration for the first "
    "2.5% of training, then every 0.5%), per replicate, all prunable weights: (a) the largest gradient norm in the "
    f"window over the median gradient norm in its second half > {GRAD_RATIO:g}; (b) signs settling: the share of "
    "weights whose sign differs from the final weights falls more in the first half of the window than in the "
    "second (difference of the two drops > 0, points); (c) distance from initialisation slowing: its growth in the "
    "first half of the window minus its growth in the second, over its value at W, > 0. All three must hold.",
    "cifar_resnet_20 with `rewind early --until 4000it` (GPU)", cost=3)
def c8(ctx: Context) -> Measurement:
    from ..analysis.probes import early_table
    from ..report.early import plot_timeline

    from .lottery_claims import testbed_base

    spec = testbed_base(ctx, EARLY_PRESET)
    _, _, total = check_spec(spec, TrainOptions(data_root=ctx.data_root))
    window = max(4, total // 4)
    schedule = f"1it:{max(2, total // 40)}it,{max(1, total // 200)}it"
    spec = spec.replace(**{"probe.schedule": schedule, "probe.until": f"{window}it"})   # probed (and evaluated)
    # in the window only: the final weights, which the sign test compares with, are kept without a probe
    runs = train_population(replicate_members(spec, EARLY_PRESET, ctx.replicates, kind="early"), ctx.store, ctx.options)
    table = early_table(runs)
    allw = table[table["layer"] == "all"]
    grad, signs, dist, rows = [], [], [], []
    for run in runs:
        r = allw[allw["run"] == run.key]
        g = r[r["metric"] == "grad_norm"].groupby("step")["value"].mean()
        s = 100 * r[r["metric"] == "sign_diff_final"].groupby("step")["value"].mean()
        d = r[r["metric"] == "dist_init"].groupby("step")["value"].mean()
        half = window // 2
        g_w = g[g.index <= window]
        ratio = float(g_w.max() / g_w[g_w.index >= half].median())
        sign_drop = (_at(s, 0) - _at(s, half)) - (_at(s, half) - _at(s, window))
        slowing = ((_at(d, half) - _at(d, 0)) - (_at(d, window) - _at(d, half))) / _at(d, window)
        grad.append(ratio), signs.append(sign_drop), dist.append(slowing)
        rows.append({"run": run.key, "max gradient norm (step)": f"{g_w.max():.3f} ({int(g_w.idxmax())})",
                     "median, 2nd half": f"{g_w[g_w.index >= half].median():.3f}", "ratio": f"{ratio:.1f}",
                     "signs differing from final: 0 / W/2 / W (%)":
                         f"{_at(s, 0):.1f} / {_at(s, half):.1f} / {_at(s, window):.1f}",
                     "distance from init: W/2 / W": f"{_at(d, half):.2f} / {_at(d, window):.2f}"})
    tests = [Test("gradient norm: window max / median of 2nd half", grad, ">", GRAD_RATIO, "x"),
             Test("signs: drop in 1st half - drop in 2nd half", signs, ">", 0.0, "points"),
             Test("distance from init: (growth 1st half - 2nd half) / value at W", dist, ">", 0.0, "")]
    figs = [(p, "The early phase of the testbed: gradient norm, signs differing from the final weights and distance "
                "from initialisation against the iteration (all prunable weights, each replicate)")
            for p in plot_timeline(table, ctx.figure_path("c8-timeline")) if p.suffix == ".svg"]
    return Measurement(
        tests, f"gradient max / later {sum(grad) / len(grad):.1f}x; sign changes {sum(signs) / len(signs):+.1f} points "
               f"faster in the 1st half; distance growth slows by {100 * sum(dist) / len(dist):.0f}% of its value at W",
        f"{EARLY_PRESET} ({total} it), window W = {window} it, schedule {schedule}, {ctx.replicates} replicate(s)",
        pd.DataFrame(rows), figs, [r.key for r in runs],
        [f"rewind early --preset {EARLY_PRESET} --schedule {schedule} --until {window}it --replicates {ctx.replicates} "
         f"--root {ctx.root_label}{_overrides(ctx)}"])


# ---- Hu et al.'s linear model (C11, C16, C17, C18) ---------------------------------------------

HU_PRESET = "gaussian_two_layer"
HU_TRAIN_SIZE = 4000
HU_THRESHOLD = 0.1
HU_DIM, HU_WIDTH = 100, 4096            # C11: the paper's regime (high d) at the largest width the CPU allows
SWEEP_DIM, SWEEP_WIDTH = 25, 1024       # C16, C17: where a departure at 0.1 is defined at m = 1,024
SWEEP_LRS = (0.5, 1.0, 2.0, 4.0)
SWEEP_DIMS = (25, 50)
EXPONENT_MARGIN = 0.2
QUICK_NTK = 200                          # --quick: the NTK fitted on fewer inputs ...
QUICK_HU_STEPS = 500                     # ... and at most 500 steps (the departures at d = 25, 50 come before 400);
# the examples stay HU_TRAIN_SIZE: at 1,000 and d = 50 the discrepancy never falls below 0.1 (minimum 0.116)


def _hu_spec(ctx: Context, dim: int, width: int):
    return preset_spec(ctx, HU_PRESET).replace(**{"data.train_size": HU_TRAIN_SIZE, "data.dim": dim,
                                                  "model.widths": str(width)})


def _hu_options(ctx: Context, spec):
    """The comparison's options for ``spec``: its own steps (``--quick``: at most 500, on fewer
    NTK inputs)."""
    from ..analysis.linear_model.hu import HuOptions

    _, _, total = check_spec(spec, TrainOptions(data_root=ctx.data_root))
    if ctx.quick:
        return HuOptions(steps=min(total, QUICK_HU_STEPS), ntk_samples=QUICK_NTK)
    return HuOptions(steps=total, ntk_samples=500)


def _sweep(ctx: Context, dim: int, width: int, lrs=(0.0,)):
    """(table, curves, steps) of the sweep, computed once per reproduction (the steps follow
    from the spec and ctx.quick, both fixed for a context)."""
    from ..analysis.linear_model.hu import linear_sweep

    name = ("hu", dim, width, tuple(lrs))
    if name not in ctx.cache:
        spec = _hu_spec(ctx, dim, width)
        options = _hu_options(ctx, spec)
        ctx.cache[name] = linear_sweep(spec, options, [None], list(lrs), ctx.replicates, ctx.store.root, HU_PRESET,
                                       ctx.data_root) + (options.steps,)
    return ctx.cache[name]


def _hu_command(ctx: Context, dim: int, width: int, steps: int, extra: str = "") -> str:
    return (f"rewind linear-sweep --preset {HU_PRESET} --set data.train_size={HU_TRAIN_SIZE} --set data.dim={dim} "
            f"--widths {width} --full-batch{extra}{_quick_hu_flags(ctx, steps)} --replicates {ctx.replicates} "
            f"--root {ctx.root_label}{_overrides(ctx)}")


def _quick_hu_flags(ctx: Context, steps: int) -> str:
    return f" --steps {steps}it --ntk-samples {QUICK_NTK}" if ctx.quick else ""


@register_claim(
    "C11", "The network tracks Hu et al.'s linear model early and departs later",
    "Hu, Xiao, Adlam & Pennington 2020, The surprising simplicity of the early-time learning dynamics of neural "
    "networks (NeurIPS)",
    "Early in training, a two-layer network's outputs stay close to those of a linear model of the inputs (the "
    "affine approximation of its NTK at initialisation); later they depart. The theory is for high input dimension.",
    f"The preset's two-layer ReLU network at d = {HU_DIM} and m = {HU_WIDTH:,} (the paper's high-dimensional regime "
    f"at the largest width this CPU allows; at m = 1,024 the finite-width kernel error alone exceeds the threshold, "
    f"docs/linear.md), full-batch gradient descent, squared loss, both layers, {HU_TRAIN_SIZE:,} Gaussian examples, "
    "against the fitted linear model; discrepancy = ||f - f_lin|| / ||f|| on the training set at 40 log-spaced "
    f"steps. Per replicate: (a) its minimum < {HU_THRESHOLD:g} (the models agree to within 10%, the threshold of "
    f"`rewind linear`); (b) its value at the end > {HU_THRESHOLD:g} (they have parted). Both must hold.",
    "gaussian_two_layer at m >= 8,192 and d >= 100, or cifar10_cats_horses_mlp|cnn (GPU for the CNN)", cost=4)
def c11(ctx: Context) -> Measurement:
    from ..report.early import plot_hu

    dim, width = (SWEEP_DIM, SWEEP_WIDTH) if ctx.quick else (HU_DIM, HU_WIDTH)
    table, curves, total = _sweep(ctx, dim, width)
    tests = [Test("minimum discrepancy", table["discrepancy_min"], "<", HU_THRESHOLD, ""),
             Test("discrepancy at the end", table["discrepancy_end"], ">", HU_THRESHOLD, "")]
    show = table[["replicate", "discrepancy_step1", "discrepancy_min", "discrepancy_min_step", "discrepancy_end",
                  "departure_train", "test_error_network", "test_error_linear"]].round(3)
    figs = [(p, f"Replicate 0: the discrepancy between the network and its linear model, and both models' test "
                f"errors, against the step (d = {dim}, m = {width:,}); the dashed line is the threshold {HU_THRESHOLD}")
            for p in plot_hu(curves[curves["replicate"] == 0], ctx.figure_path("c11-linear"), HU_THRESHOLD)
            if p.suffix == ".svg"]
    return Measurement(
        tests, f"discrepancy {table['discrepancy_step1'].mean():.3f} at step 1, minimum "
               f"{table['discrepancy_min'].mean():.3f} (step {int(table['discrepancy_min_step'].median())}), "
               f"{table['discrepancy_end'].mean():.3f} at {total} it",
        f"{HU_PRESET} with d = {dim}, m = {width:,}, {HU_TRAIN_SIZE:,} examples, {total} it, {ctx.replicates} "
        "replicates", show, figs, sorted(set(curves["run"])), [_hu_command(ctx, dim, width, total)])


DEPARTURE = "departure_train_interpolated"   # the threshold crossing interpolated between measured steps


def _departures(table: pd.DataFrame, by: str, values, column: str = DEPARTURE) -> pd.DataFrame:
    """Departure (train; the crossing interpolated in log step) per replicate (rows) and ``by``
    value (columns); NaN where none is defined (never within the threshold, or still within at
    the end)."""
    t = table.assign(dep=[float(d) if d is not None and d == d and d > 0 else float("nan")
                          for d in table[column]])
    return (t.pivot_table(index="replicate", columns=by, values="dep", aggfunc="mean", dropna=False)
            .reindex(index=sorted(set(t["replicate"])), columns=list(values)))


@register_claim(
    "C16", "The network departs from its linear model at a time proportional to 1 / learning rate",
    "Hu, Xiao, Adlam & Pennington 2020, The surprising simplicity of the early-time learning dynamics of neural "
    "networks, Section 3 (the agreement holds up to a time of order 1 / learning rate)",
    "The linear model's agreement holds for a time that scales inversely with the learning rate: the departure "
    "step times the learning rate is constant.",
    f"The two-layer network at d = {SWEEP_DIM}, m = {SWEEP_WIDTH:,} (where the discrepancy starts below 0.1 and a "
    f"departure is defined), full batch, lr = {', '.join(f'{x:g}' for x in SWEEP_LRS)}; per replicate, the "
    "least-squares slope of log(departure step) against log(lr), the departure being the step at which the "
    "discrepancy crosses 0.1 for the last time, interpolated in log step between the measured steps; predicted "
    "-1. Judged as an equivalence: slope + 1 "
    f"within +-{EXPONENT_MARGIN}. Paper's effect: slope + 1 = 0.",
    "gaussian_two_layer at larger d and m (GPU for m >= 8,192)", cost=3, after=("C11",))
def c16(ctx: Context) -> Measurement:
    lrs = SWEEP_LRS[1:3] if ctx.quick else SWEEP_LRS
    table, curves, total = _sweep(ctx, SWEEP_DIM, SWEEP_WIDTH, lrs)
    deps = _departures(table, "lr", lrs)
    x = np.log(np.asarray(lrs, dtype=float))
    slopes = [float(np.polyfit(x, np.log(row.to_numpy()), 1)[0]) if row.notna().all() else float("nan")
              for _, row in deps.iterrows()]
    tests = [Test("slope of log departure against log lr, + 1", [s + 1 for s in slopes], "~", EXPONENT_MARGIN, "",
                  effect=0.0)]
    rows = [{"lr": lr, "departure (per replicate)": " ".join(f"{d:.1f}" for d in deps[lr]),
             "departure x lr": f"{(deps[lr] * lr).mean():.0f}"} for lr in lrs]
    return Measurement(
        tests, f"slope {np.nanmean(slopes):+.2f} (predicted -1); departure x lr "
               + ", ".join(f"{(deps[lr] * lr).mean():.0f}" for lr in lrs),
        f"{HU_PRESET} with d = {SWEEP_DIM}, m = {SWEEP_WIDTH:,}, {HU_TRAIN_SIZE:,} examples, {total} it, "
        f"{ctx.replicates} replicates", pd.DataFrame(rows), [], sorted(set(curves["run"])),
        [_hu_command(ctx, SWEEP_DIM, SWEEP_WIDTH, total, " --lrs " + ",".join(f"{x:g}" for x in lrs))])


@register_claim(
    "C17", "The departure from the linear model comes later in higher input dimension",
    "Hu, Xiao, Adlam & Pennington 2020, The surprising simplicity of the early-time learning dynamics of neural "
    "networks, Section 3",
    "The time for which the network agrees with its linear model grows with the input dimension d.",
    f"The two-layer network at m = {SWEEP_WIDTH:,}, lr 1, d = {' and '.join(map(str, SWEEP_DIMS))} (at d >= 100 "
    "and this width the discrepancy never falls below 0.1, so no departure is defined there); the departure as in "
    "C16 (interpolated between measured steps); per replicate, "
    f"log2(departure at d = {SWEEP_DIMS[1]} / departure at d = {SWEEP_DIMS[0]}) > 0. Paper's effect: 1 (departure "
    "proportional to d).",
    "gaussian_two_layer at d = 100-1,000 with m >= 8,192 (GPU)", cost=1, after=("C16",))
def c17(ctx: Context) -> Measurement:
    per_dim, runs = {}, []
    for dim in SWEEP_DIMS:
        table, curves, total = _sweep(ctx, dim, SWEEP_WIDTH)
        per_dim[dim] = _departures(table, "lr", [table["lr"].iloc[0]]).iloc[:, 0]
        runs += sorted(set(curves["run"]))
    lo, hi = SWEEP_DIMS
    ratio = np.log2(per_dim[hi] / per_dim[lo])
    tests = [Test(f"log2 departure ratio, d = {hi} over d = {lo}", ratio, ">", 0.0, "", effect=1.0)]
    rows = [{"d": d, "departure (per replicate)": " ".join(f"{x:.1f}" for x in v)} for d, v in per_dim.items()]
    return Measurement(
        tests, f"departure {per_dim[lo].mean():.0f} (d = {lo}) -> {per_dim[hi].mean():.0f} (d = {hi}): x"
               f"{2 ** ratio.mean():.2f}", f"{HU_PRESET} with m = {SWEEP_WIDTH:,}, {HU_TRAIN_SIZE:,} examples, "
               f"{total} it, {ctx.replicates} replicates", pd.DataFrame(rows), [], runs,
        [_hu_command(ctx, d, SWEEP_WIDTH, total) for d in SWEEP_DIMS])


DEEP_PRESETS = ("mnist1d_binary_mlp", "mnist1d_binary_cnn")


@register_claim(
    "C18", "Deeper networks and CNNs also track their linear model early",
    "Hu, Xiao, Adlam & Pennington 2020, The surprising simplicity of the early-time learning dynamics of neural "
    "networks, Section 5 (experiments beyond two layers)",
    "Multi-layer fully connected and convolutional networks, too, agree early with the linear model given by the "
    "affine approximation of their NTK, and depart later.",
    f"The presets {' and '.join(DEEP_PRESETS)} (MNIST-1D classes 0 vs 1; 4-layer MLP 256-256-256 and the 1-D CNN; "
    "standard parametrisation) against the linear model fitted to their measured NTK, full batch at the presets' "
    f"learning rates; per replicate and preset: minimum discrepancy on the training set < {HU_THRESHOLD:g}, the "
    "same threshold as C11. Both must hold.",
    "cifar10_cats_horses_mlp and cifar10_cats_horses_cnn, the paper's task (GPU for the CNN)", cost=2)
def c18(ctx: Context) -> Measurement:
    from ..analysis.linear_model.hu import linear_sweep

    tests, rows, runs, commands = [], [], [], []
    for preset in DEEP_PRESETS:
        spec = preset_spec(ctx, preset)
        options = _hu_options(ctx, spec)
        table, curves = linear_sweep(spec, options, [None], [0.0], ctx.replicates, ctx.store.root,
                                     preset, ctx.data_root)
        tests.append(Test(f"{preset}: minimum discrepancy", table["discrepancy_min"], "<", HU_THRESHOLD, ""))
        rows.append({"preset": preset, "step 1": f"{table['discrepancy_step1'].mean():.3f}",
                     "minimum (step)": f"{table['discrepancy_min'].mean():.3f} "
                                       f"({int(table['discrepancy_min_step'].median())})",
                     "end": f"{table['discrepancy_end'].mean():.3f}",
                     "test error net / linear %": f"{100 * table['test_error_network'].mean():.1f} / "
                                                  f"{100 * table['test_error_linear'].mean():.1f}"})
        runs += sorted(set(curves["run"]))
        commands.append(f"rewind linear-sweep --preset {preset} --full-batch{_quick_hu_flags(ctx, options.steps)} "
                        f"--replicates {ctx.replicates} --root {ctx.root_label}{_overrides(ctx)}")
    return Measurement(
        tests, "minimum discrepancy " + ", ".join(f"{r['preset']} {r['minimum (step)']}" for r in rows),
        f"{' and '.join(DEEP_PRESETS)}, full batch, {ctx.replicates} replicates", pd.DataFrame(rows), [], runs, commands)


# ---- C12: the embedded presets reach the published accuracies ----------------------------------

PUBLISHED = (("mnist1d_mlp", 68.0), ("mnist1d_conv", 94.0))
TOLERANCE = 1.0


@register_claim(
    "C12", "The MNIST-1D presets reach the published MLP 68% / CNN 94%",
    "Greydanus 2020, Scaling down deep learning (MNIST-1D), Table 1",
    "On MNIST-1D an MLP reaches 68% and a CNN 94% test accuracy.",
    f"Final test accuracy of each preset per replicate minus the published number > -{TOLERANCE:g} point (the "
    "paper reports whole percents from single runs). Both must hold.",
    "(embedded: this is the scale of the paper)", cost=1)
def c12(ctx: Context) -> Measurement:
    tests, rows, runs_all = [], [], []
    for preset, published in PUBLISHED:
        spec = preset_spec(ctx, preset)
        runs = train_population(replicate_members(spec, preset, ctx.replicates), ctx.store, ctx.options)
        acc = [100 * r.summary()["final"]["test_accuracy"] for r in runs]
        tests.append(Test(f"{preset} - {published:g}%", [a - published for a in acc], ">", -TOLERANCE))
        rows.append({"preset": preset, "published %": published,
                     "test accuracy % (mean ± std)": f"{pd.Series(acc).mean():.2f} ± {pd.Series(acc).std():.2f}",
                     "per replicate": " ".join(f"{a:.2f}" for a in acc), "n": len(acc)})
        runs_all += [r.key for r in runs]
    return Measurement(
        tests, ", ".join(f"{r['preset']} {r['test accuracy % (mean ± std)'].split(' ±')[0]}%" for r in rows),
        f"mnist1d_mlp and mnist1d_conv as preset, {ctx.replicates} replicate(s)", pd.DataFrame(rows), [], runs_all,
        [f"rewind train --preset {p} --replicates {ctx.replicates} --root {ctx.root_label}{_overrides(ctx)}"
         for p, _ in PUBLISHED])
