"""Linear mode connectivity: rewind instability (copies from W_k, interpolated) and rewind
example-lmc (the share of training examples connected at each k, against IMP's accuracy)."""
from __future__ import annotations

from ..spec import SpecError
from . import args as common
from .registry import register_command


def print_instability(table) -> None:
    from ..report import instability_summary
    from ..report.lottery import format_params

    s = instability_summary(table)
    print(f"{'branch':<24} {'level':>5} {'density%':>9} {'k':>8} {'train instab. %':>17} {'test instab. %':>17} "
          f"{'end test acc %':>15}")
    for (branch, params, level, k_it, k), grp in s.groupby(["branch", "branch_params", "level", "rewind_iteration",
                                                            "rewind_step"], sort=True):
        tr = grp[grp["split"] == "train"].iloc[0]
        te = grp[grp["split"] == "test"].iloc[0]
        name = (branch + " " + format_params(params)).strip()
        print(f"{name:<24} {int(level):>5} {100 * tr.density:>9.2f} {k:>8} "
              f"{common.mean_std(tr['mean'], tr['std'], int(tr['n']), width=9)} "
              f"{common.mean_std(te['mean'], te['std'], int(te['n']), width=9)} {100 * te['end_accuracy']:>15.2f}"
              + (f"  ({int(te['diverged'])} pair(s) with a diverged copy)" if te["diverged"] else ""))


def _arguments(p) -> None:
    src = p.add_mutually_exclusive_group()
    src.add_argument("--preset", default=None, help="dense networks of this recipe (default: mnist1d_mlp)")
    src.add_argument("--study", default=None, help="subnetworks of a lottery study (key or unique prefix)")
    p.add_argument("--at", default=None,
                   help="steps k to spawn copies from, comma-separated (with --study: some of its rewind steps)")
    p.add_argument("--levels", default="0", help="levels of the study (1-5, 0,2,4); default 0 (dense)")
    p.add_argument("--copies", type=int, default=2, help="copies per point (every pair is interpolated)")
    p.add_argument("--points", type=int, default=30, help="points on each path, ends included")
    p.add_argument("--bn-reset", action="store_true", help="re-estimate BatchNorm statistics at each point")
    p.add_argument("--bn-batches", type=int, default=20, help="training batches for --bn-reset")
    common.replicates(p, default=None)
    p.add_argument("--baselines", default="", help="branches to analyse too, e.g. reinit,random-prune")
    common.outputs(p, csv=False)
    common.pretraining(p)
    common.trains(p, preset=None)


@register_command("instability", help="instability analysis: train copies from W_k and interpolate",
                  arguments=_arguments, fields=True,
                  example="rewind instability --preset mnist1d_resnet --at 0it,20it,100it,200it --points 5 --bn-reset")
def instability(args) -> int:
    from ..analysis import instability as analyse
    from ..lottery import Study
    from ..store import Store

    store = Store(args.root)
    opts = common.options(args)
    at = common.steps(args.at, "--at") if args.at else None
    pretrain = common.pretrain_overrides(args)
    if args.study:
        if args.sets or args.config or pretrain:
            raise SpecError("--set, --config and --pretrain change the recipe: use them with --preset, not --study")
        study = Study.load(args.study, store, getattr(args, "data_root", None))
    else:
        spec, name = common.spec_of(args, preset=args.preset or "mnist1d_mlp")
        if not at and spec.pretrain.kind:
            at = (spec.pretrain.steps,)
        if not at:
            raise SpecError("--at: give the steps to spawn copies from, e.g. --at 0it,50it,200it")
        study = Study(spec, at, name, store, args.data_root)
    table = analyse(study, common.levels(args.levels), at, copies=args.copies, points=args.points,
                    replicates=args.replicates, bn_reset=args.bn_reset, bn_batches=args.bn_batches,
                    baselines=common.baselines(args.baselines), options=opts)
    print(f"study {study.key}  ({study.preset or '-'}; instability: max error on the path minus mean endpoint error)")
    print_instability(table)
    if args.plot:
        from ..report import plot_instability

        for p in plot_instability(table, args.plot):
            print(f"wrote {p}")
    return 0


def _lmc_args(p) -> None:
    p.add_argument("--study", required=True, help="lottery study with instability analyses at several k")
    p.add_argument("--imp-level", type=int, required=True, help="the IMP level whose accuracy is compared")
    p.add_argument("--level", type=int, default=0, help="the level whose copies' barriers are read (default 0: dense)")
    p.add_argument("--thresholds", default="0.01,0.05,0.1", help="barrier thresholds in nats")
    common.outputs(p, csv=False)
    common.store(p)


@register_command("example-lmc", help="share of training examples linearly mode connected at each k, against IMP "
                                      "accuracy rewound to k (Paul et al. 2022)", arguments=_lmc_args,
                  example="rewind example-lmc --study 5f3a --imp-level 4 --thresholds 0.01,0.05")
def example_lmc(args) -> int:
    from ..analysis.example_lmc import lmc_against_imp
    from ..lottery import Study
    from ..store import Store

    thresholds = common.numbers(args.thresholds, "--thresholds", example="0.01,0.05")
    study = Study.load(args.study, Store(args.root))
    per_k, corr = lmc_against_imp(study, args.imp_level, thresholds, args.level)
    print(f"study {study.key}: training examples with barrier < threshold between copies from W_k (level "
          f"{args.level}), and IMP level {args.imp_level} rewound to k")
    print(f"{'threshold':>9} {'k':>8} {'connected % (mean ± std)':>26} {'IMP test acc %':>16} {'n':>3}")
    for r in per_k.itertuples():
        print(f"{r.threshold:>9g} {r.rewind_step:>8} {common.mean_std(r.fraction, r.fraction_std, int(r.n), width=15)}"
              f"    {100 * r.imp_accuracy:>16.2f} {r.n:>3}")
    for r in corr.itertuples():
        print(f"Spearman(connected share, IMP accuracy) at threshold {r.threshold:g}: {r.spearman:+.3f} (n = {r.n} "
              f"replicate x k pairs)")
    if args.plot:
        from ..report import plot_example_lmc

        for p in plot_example_lmc(per_k, args.plot):
            print(f"wrote {p}")
    return 0
