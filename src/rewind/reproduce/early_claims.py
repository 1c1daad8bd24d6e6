"""Claims about the early phase (C8), the linear model (C11) and the embedded presets (C12)."""
from __future__ import annotations

import pandas as pd

from ..api import apply_overrides, replicate_members
from ..presets import get_preset
from ..train import TrainOptions, check_spec
from ..exec import train_population
from .registry import Context, Measurement, register_claim
from .verdict import Test


def preset_spec(ctx: Context, preset: str):
    spec = get_preset(preset).spec
    return apply_overrides(spec, ctx.overrides) if ctx.overrides else spec


def _overrides(ctx: Context) -> str:
    return "".join(f" --set {k}={v}" for k, v in ctx.overrides.items())


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
    "cifar_resnet_20 with `rewind early --until 4000it` (GPU)")
def c8(ctx: Context) -> Measurement:
    from ..analysis.probes import early_table
    from ..report.early import plot_timeline

    spec = preset_spec(ctx, EARLY_PRESET)
    _, _, total = check_spec(spec, TrainOptions(data_root=ctx.data_root))
    window = max(4, total // 4)
    schedule = f"1it:{max(2, total // 40)}it,{max(1, total // 200)}it"
    spec = spec.replace(**{"probe.schedule": schedule, "probe.until": "0it"})
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
    figs = [p for p in plot_timeline(table, ctx.figure_path("c8-timeline")) if p.suffix == ".svg"]
    return Measurement(
        tests, f"gradient max / later {sum(grad) / len(grad):.1f}x; sign changes {sum(signs) / len(signs):+.1f} points "
               f"faster in the 1st half; distance growth slows by {100 * sum(dist) / len(dist):.0f}% of its value at W",
        f"{EARLY_PRESET} ({total} it), window W = {window} it, schedule {schedule}, {ctx.replicates} replicate(s)",
        pd.DataFrame(rows), figs, [r.key for r in runs],
        [f"rewind early --preset {EARLY_PRESET} --schedule {schedule} --until 0it --replicates {ctx.replicates} "
         f"--root {ctx.store.root}{_overrides(ctx)}"])


# ---- C11: Hu et al.'s linear model ------------------------------------------------------------

HU_PRESET = "gaussian_two_layer"
HU_TRAIN_SIZE = 4000
HU_THRESHOLD = 0.1


@register_claim(
    "C11", "The network tracks Hu et al.'s linear model early and departs later",
    "Hu, Xiao, Adlam & Pennington 2020, The surprising simplicity of the early-time learning dynamics of neural "
    "networks (NeurIPS)",
    "Early in training, a two-layer network's outputs stay close to those of a linear model of the inputs (the "
    "affine approximation of its NTK at initialisation); later they depart.",
    "The preset's two-layer ReLU network (d = 100, m = 1,024, full-batch gradient descent, squared loss, both layers) "
    f"on {HU_TRAIN_SIZE:,} Gaussian examples, against the fitted linear model; discrepancy = ||f - f_lin|| / ||f|| on "
    f"the training set at 40 log-spaced steps. Per replicate: (a) its minimum < {HU_THRESHOLD:g} (the models agree "
    f"to within 10%, the threshold of `rewind linear`); (b) its value at the end > {HU_THRESHOLD:g} (they have "
    "parted). Both must hold.",
    "gaussian_two_layer at m >= 4,096, or cifar10_cats_horses_mlp|cnn (GPU for the CNN)")
def c11(ctx: Context) -> Measurement:
    from ..analysis.hu import HuOptions, linear_sweep
    from ..report.early import plot_hu

    spec = preset_spec(ctx, HU_PRESET).replace(**{"data.train_size": HU_TRAIN_SIZE})
    _, _, total = check_spec(spec, TrainOptions(data_root=ctx.data_root))
    options = HuOptions(steps=total)
    table, curves = linear_sweep(spec, options, [None], [0.0], ctx.replicates, ctx.store.root, HU_PRESET,
                                 ctx.data_root)
    tests = [Test("minimum discrepancy", table["discrepancy_min"], "<", HU_THRESHOLD, ""),
             Test("discrepancy at the end", table["discrepancy_end"], ">", HU_THRESHOLD, "")]
    show = table[["replicate", "discrepancy_step1", "discrepancy_min", "discrepancy_min_step", "discrepancy_end",
                  "departure_train", "test_error_network", "test_error_linear"]].round(3)
    figs = [p for p in plot_hu(curves[curves["replicate"] == 0], ctx.figure_path("c11-linear"), HU_THRESHOLD)
            if p.suffix == ".svg"]
    return Measurement(
        tests, f"discrepancy {table['discrepancy_step1'].mean():.3f} at step 1, minimum "
               f"{table['discrepancy_min'].mean():.3f} (step {int(table['discrepancy_min_step'].median())}), "
               f"{table['discrepancy_end'].mean():.3f} at {total} it",
        f"{HU_PRESET} with data.train_size={HU_TRAIN_SIZE}, {total} it, {ctx.replicates} replicate(s)",
        show, figs, sorted(set(curves["run"])),
        [f"rewind linear-sweep --preset {HU_PRESET} --set data.train_size={HU_TRAIN_SIZE} --full-batch "
         f"--replicates {ctx.replicates} --root {ctx.store.root}{_overrides(ctx)}"])


# ---- C12: the embedded presets reach the published accuracies ----------------------------------

PUBLISHED = (("mnist1d_mlp", 68.0), ("mnist1d_conv", 94.0))
TOLERANCE = 1.0


@register_claim(
    "C12", "The MNIST-1D presets reach the published MLP 68% / CNN 94%",
    "Greydanus 2020, Scaling down deep learning (MNIST-1D), Table 1",
    "On MNIST-1D an MLP reaches 68% and a CNN 94% test accuracy.",
    f"Final test accuracy of each preset per replicate minus the published number > -{TOLERANCE:g} point (the "
    "paper reports whole percents from single runs). Both must hold.",
    "(embedded: this is the scale of the paper)")
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
        [f"rewind train --preset {p} --replicates {ctx.replicates} --root {ctx.store.root}{_overrides(ctx)}"
         for p, _ in PUBLISHED])
