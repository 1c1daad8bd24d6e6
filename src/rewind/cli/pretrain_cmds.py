"""Pretraining and deficits: rewind pretrain-study (IMP rewound to weights pretrained on altered
data, per kind and length) and rewind critical-period (final accuracy against an early deficit's
length)."""
from __future__ import annotations

from . import args as common
from .registry import register_command


def print_pretrain(table, levels) -> None:
    from ..report import pretrain_summary

    s = pretrain_summary(table)
    if levels:
        s = s[s["level"].isin(levels)]
    print(f"{'kind':<15} {'length':>7} {'level':>5} {'density%':>9} {'test acc (mean ± std)':>22} {'n':>2} "
          f"{'minus supervised at length':>28} {'minus k=0':>26}")
    for r in s.to_dict("records"):
        def diff(name):
            if r[f"minus_{name}"] != r[f"minus_{name}"]:
                return "-"
            return (f"{100 * r[f'minus_{name}']:+6.2f} [{100 * r[f'minus_{name}_low']:+6.2f}, "
                    f"{100 * r[f'minus_{name}_high']:+6.2f}]")
        print(f"{r['kind']:<15} {r['pretrain_steps']:>7} {r['level']:>5} {100 * r['density']:>9.2f} "
              f"{common.mean_std(r['mean'], r['std'], int(r['n']), width=12)}  {r['n']:>2} {diff('supervised'):>28} "
              f"{diff('k0'):>26}")


def _study_args(p) -> None:
    p.add_argument("--kinds", default="random-labels,transform,blur,subset,sparse",
                   help="random-labels, rotation (images), transform (1-D), blur, subset, sparse (IMP and random mask)")
    p.add_argument("--steps", default="0it,200it,1ep,4ep", help="pretraining lengths (0it: the k = 0 reference)")
    p.add_argument("--levels", type=int, required=True, help="pruning levels of every study")
    common.replicates(p, default=3)
    p.add_argument("--report-levels", default=None, help="levels shown in the table and figure (default: all)")
    p.add_argument("--sparse-level", type=int, default=None,
                   help="level of the reference study's IMP mask that sparse pretraining trains (default: --levels)")
    common.alteration(p, ("size", "factor", "upsample", "lr", "seed"))
    common.outputs(p)
    common.trains(p)


@register_command("pretrain-study", help="pretraining on altered data: IMP rewound to the pretrained weights, per "
                                         "kind and length, beside supervised rewinding", arguments=_study_args,
                  fields=True, example="rewind pretrain-study --preset mnist1d_mlp --kinds blur,random-labels "
                                       "--steps 0it,200it --levels 3 --plot pretrain")
def pretrain_study(args) -> int:
    from ..data import load_data
    from ..lottery.pretrain_grid import PretrainGrid
    from ..store import Store

    spec, name = common.spec_of(args, pretrain=False)
    steps = common.steps(args.steps, "--steps")
    kinds = tuple(common.names(args.kinds))
    params = common.alteration_params(args)
    if "subset" in kinds and "size" not in params:
        params["size"] = max(spec.data.batch_size, len(load_data(spec.data, args.data_root).y_train) // 10)
    grid = PretrainGrid(spec, kinds, steps, args.levels, args.replicates, name, Store(args.root), params,
                        args.sparse_level, args.data_root)
    table = grid.run(common.options(args))
    shown = common.levels(args.report_levels) if args.report_levels else None
    print_pretrain(table, shown)
    common.write_outputs(args, table, "plot_pretrain", shown)
    return 0


def _critical_args(p) -> None:
    p.add_argument("--deficit", default="blur", help="random-labels, blur (default) or subset")
    p.add_argument("--until", default="0it,1ep,4ep,16ep", help="deficit lengths (0it: none)")
    common.replicates(p, default=3)
    common.alteration(p, ("size", "factor", "upsample", "seed"))
    common.outputs(p)
    common.trains(p)


@register_command("critical-period", help="final accuracy against the length of an early deficit (Achille et al.'s "
                                          "critical periods)", arguments=_critical_args, fields=True,
                  example="rewind critical-period --preset mnist1d_mlp --deficit blur --until 0it,1ep,4ep --plot cp")
def critical_period(args) -> int:
    from ..analysis.critical import critical_periods, critical_summary
    from ..store import Store

    spec, name = common.spec_of(args, pretrain=False)
    untils = list(common.steps(args.until, "--until"))
    table = critical_periods(spec, args.deficit, untils, args.replicates, name, Store(args.root),
                             common.options(args), common.alteration_params(args, ("size", "factor", "upsample", "seed")))
    print(f"deficit {args.deficit} ({name or '-'}): final test accuracy against the iteration it is removed at")
    print(f"{'until':>8} {'iterations':>10} {'test acc (mean ± std)':>22} {'n':>3}")
    for r in critical_summary(table).itertuples():
        print(f"{r.deficit_until:>8} {r.deficit_iterations:>10} {common.mean_std(r.mean, r.std, int(r.count), width=12)}"
              f"   {r.count:>3}")
    common.write_outputs(args, table, "plot_critical")
    return 0
