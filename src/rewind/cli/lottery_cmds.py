"""Lottery studies: rewind lottery (IMP with rewinding), rewind branch (a baseline or perturbation
on levels of a study), rewind plot (a study's figure)."""
from __future__ import annotations

from ..spec import MAX_LEVELS, SpecError, check_range, parse_assignments
from . import args as common
from .registry import register_command


def print_summary(table) -> None:
    """Final test accuracy per branch, rewind step and level (mean ± std over replicates)."""
    from ..report.lottery import format_params, lottery_summary

    s = lottery_summary(table)
    if s.empty:
        return
    div = bool(s["diverged"].sum())
    print(f"{'branch':<28} {'rewind':>8} {'level':>5} {'density%':>9} {'test acc (mean ± std)':>24} {'n':>3}"
          + ("  diverged" if div else ""))
    for row in s.itertuples():
        name = (row.branch + " " + format_params(row.branch_params)).strip()
        print(f"{name:<28} {row.rewind_step:>8} {int(row.level):>5} {100 * row.density:>9.2f} "
              f"{common.mean_std(row.mean, row.std, int(row.n), width=14)} {int(row.n):>3}"
              + (f"  {int(row.diverged):>8}" if div else ""))


def print_paired(table, rewind_steps) -> None:
    """Each later rewind step against the first, paired by replicate (needs 2+ replicates)."""
    from ..report.lottery import paired_differences

    if len(rewind_steps) < 2 or table[table["level"] > 0]["replicate"].nunique() < 2:
        return
    first = str(rewind_steps[0])
    for k in rewind_steps[1:]:
        d = paired_differences(table, first, str(k))
        print(f"\nk={k} minus k={first}, paired by replicate (test accuracy, points; 95% bootstrap interval):")
        print(f"{'level':>5} {'density%':>9} {'dense':>7} {'k=' + first:>9} {'k=' + str(k):>9} {'difference':>11} "
              f"{'interval':>17} {'n':>3}")
        for r in d.to_dict("records"):
            print(f"{r['level']:>5} {100 * r['density']:>9.2f} {100 * r['dense']:>7.2f} {100 * r['mean_' + first]:>9.2f} "
                  f"{100 * r['mean_' + str(k)]:>9.2f} {100 * r['difference']:>+11.2f} "
                  f"[{100 * r['ci_low']:>+6.2f}, {100 * r['ci_high']:>+6.2f}] {r['n']:>3}")


def _lottery_args(p) -> None:
    p.add_argument("--preset", default="mnist1d_mlp", help="named recipe (default: mnist1d_mlp; rewind presets)")
    p.add_argument("--levels", type=int, required=True, help="pruning levels after the dense level 0")
    p.add_argument("--rewind", default=None,
                   help="rewind steps, comma-separated (default: 0it, or with --pretrain its end)")
    common.replicates(p)
    p.add_argument("--prune-fraction", type=float, default=None, help="fraction of remaining weights pruned per level")
    p.add_argument("--strategy", default=None, choices=("global", "layerwise"), help="magnitude pruning strategy")
    p.add_argument("--baselines", default="", help="branches to run at every level, e.g. reinit,random-prune")
    p.add_argument("--baselines-at", default=None, metavar="STEPS",
                   help="run the baselines on the masks of these rewind steps only (default: every rewind step)")
    common.outputs(p, csv=False)
    common.pretraining(p)
    common.trains(p, preset=None)


@register_command("lottery", help="iterative magnitude pruning with rewinding (a lottery study)",
                  arguments=_lottery_args, fields=True,
                  example="rewind lottery --preset mnist1d_resnet --levels 5 --rewind 0it,200it --replicates 3 "
                          "--baselines reinit --plot fig")
def lottery(args) -> int:
    from ..lottery import Study
    from ..store import Store

    extra = {}
    if args.prune_fraction is not None:
        extra["prune.fraction"] = args.prune_fraction
    if args.strategy is not None:
        extra["prune.strategy"] = args.strategy
    common.count(args)
    check_range("--levels", args.levels, 0, MAX_LEVELS)
    spec, name = common.spec_of(args, extra)
    rewinds = common.steps(args.rewind or (str(spec.pretrain.steps) if spec.pretrain.kind else "0it"), "--rewind")
    baselines = common.baselines(args.baselines)
    study = Study(spec, rewinds, name, Store(args.root), args.data_root)
    at = None
    if args.baselines_at:
        at = common.steps(args.baselines_at, "--baselines-at")
        unknown = [str(k) for k in at if k not in study.rewind_steps]
        if unknown:
            raise SpecError(f"--baselines-at: {', '.join(unknown)} not among the rewind steps "
                            f"({', '.join(map(str, study.rewind_steps))})")
    opts = common.options(args)
    study.run(args.levels, replicates=args.replicates, options=opts)
    for b in baselines:
        if args.levels >= 1:
            study.branch(b, list(range(1, args.levels + 1)), replicates=args.replicates, rewinds=at, options=opts)
    print(f"study {study.key}  ({name or '-'}, rewind {', '.join(map(str, study.rewind_steps))}, "
          f"{args.levels} levels, {args.replicates} replicate(s))")
    table = study.table()
    print_summary(table)
    print_paired(table, study.rewind_steps)
    if args.plot:
        from ..report import plot_lottery

        for p in plot_lottery(table, args.plot):
            print(f"wrote {p}")
    return 0


def branch_params(extra: list[str]) -> dict:
    """--NAME VALUE (or --NAME=VALUE) pairs after the known flags: the branch's parameters."""
    params, i = {}, 0
    while i < len(extra):
        tok = extra[i]
        if not tok.startswith("--"):
            raise SpecError(f"unexpected argument {tok!r}; branch parameters are written --NAME VALUE")
        name = tok[2:].replace("-", "_")
        if "=" in name:
            name, value = name.split("=", 1)
            i += 1
        else:
            if i + 1 >= len(extra):
                raise SpecError(f"{tok}: give a value")
            value = extra[i + 1]
            i += 2
        params[name] = value
    return params


def _branch_description() -> str:
    from ..lottery import BRANCHES

    return ("Branches: " + "; ".join(f"{k}: {v.doc.splitlines()[0]}" for k, v in sorted(BRANCHES.items()))
            + ". Branch parameters are given as --NAME VALUE (e.g. --scale 0.5, --keep-signs true, --scope global).")


def _branch_args(p) -> None:
    p.add_argument("kind", help="branch name (see above)")
    p.add_argument("--study", required=True, help="study key (or a unique prefix), as printed by rewind lottery")
    p.add_argument("--levels", required=True, help="levels: 1-5, 3 or 1,3,5")
    p.add_argument("--rewind", default=None, help="only these rewind steps of the study (default: all)")
    common.replicates(p, default=None)
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="FIELD=VALUE",
                   help="fields to change (the retrain branch)")
    common.training(p)
    common.store(p)


@register_command("branch", help="run a branch (baseline or perturbation) on levels of a lottery study",
                  arguments=_branch_args, description=_branch_description, passthrough=True,
                  example="rewind branch noise --study 5f3a --levels 1-4 --scale 0.5")
def branch(args) -> int:
    from ..lottery import Study
    from ..store import Store

    params = branch_params(args.extra)
    if args.sets:
        params["settings"] = parse_assignments(args.sets)
    study = Study.load(args.study, Store(args.root), getattr(args, "data_root", None))
    rewinds = common.steps(args.rewind, "--rewind") if args.rewind else None
    if rewinds:
        unknown = [str(k) for k in rewinds if k not in study.rewind_steps]
        if unknown:
            raise SpecError(f"--rewind: {', '.join(unknown)} not in the study's rewind steps "
                            f"({', '.join(map(str, study.rewind_steps))})")
    study.branch(args.kind, common.levels(args.levels), params, replicates=args.replicates, rewinds=rewinds,
                 options=common.options(args))
    print(f"study {study.key}")
    print_summary(study.table())
    return 0


def _plot_args(p) -> None:
    p.add_argument("figure", choices=("lottery", "instability"))
    p.add_argument("--study", required=True, help="study key or unique prefix")
    p.add_argument("--level", type=int, default=None, help="instability: the level whose paths are drawn")
    p.add_argument("--split", default="test", choices=("train", "test"))
    p.add_argument("--out", default=None, help="output path without suffix (default: <root>/figures/lottery-<study>)")
    common.store(p)


@register_command("plot", help="draw a study's figure from the results (PNG and SVG)", arguments=_plot_args,
                  example="rewind plot lottery --study 5f3a --out fig/lottery")
def plot(args) -> int:
    from ..lottery import Study
    from ..report import plot_instability, plot_lottery
    from ..store import Store

    store = Store(args.root)
    study = Study.load(args.study, store, getattr(args, "data_root", None))
    out = args.out or str(store.root / "figures" / f"{args.figure}-{study.key}")
    if args.figure == "lottery":
        paths = plot_lottery(study.table(), out, split=args.split)
    else:
        paths = plot_instability(study.instability_table(), out, level=args.level)
    for p in paths:
        print(f"wrote {p}")
    return 0


def _prune_at_args(p) -> None:
    p.add_argument("--criteria", default="magnitude_init,random,snip,grasp,synflow",
                   help="pruning criteria (rewind criteria lists them)")
    p.add_argument("--densities", default="0.262144,0.107374,0.043980",
                   help="target densities, in (0, 1) (default: 0.64^3, 0.64^5, 0.64^7: IMP's at 36%% per level)")
    p.add_argument("--at", default="0it", help="the step whose weights are scored and trained from (default 0it)")
    common.replicates(p, default=3)
    p.add_argument("--no-shuffle", action="store_true",
                   help="leave out each mask shuffled within its layers (the random-prune branch, layerwise)")
    p.add_argument("--reinit", action="store_true", help="also each mask with its weights drawn afresh")
    common.outputs(p)
    common.trains(p)


@register_command("prune-at", help="prune at a step with a criterion (SNIP, GraSP, SynFlow, ...), train the "
                                   "subnetwork, and the ablations that test what the mask knows",
                  arguments=_prune_at_args, fields=True,
                  example="rewind prune-at --preset mnist1d_resnet --criteria snip,synflow --densities 0.262,0.107 "
                          "--replicates 3 --csv pai.csv")
def prune_at(args) -> int:
    from ..lottery.pai import pai_summary, prune_at as train_cells
    from ..store import Store

    spec, name = common.spec_of(args)
    table = train_cells(spec, common.names(args.criteria), common.numbers(args.densities, "--densities"),
                        common.step(args.at, "--at"), common.count(args), name, Store(args.root),
                        common.options(args), shuffle=not args.no_shuffle, reinit=args.reinit,
                        data_root=args.data_root)
    print(f"pruning at {args.at} ({name or '-'}): final test accuracy of the subnetworks")
    print(f"{'criterion':<16} {'density%':>9} {'variant':<9} {'test acc (mean ± std)':>22} {'n':>3}")
    for r in pai_summary(table).itertuples():
        print(f"{r.criterion:<16} {100 * r.density:>9.2f} {r.variant:<9} "
              f"{common.mean_std(r.mean, r.std, int(r.count), width=12)}   {r.count:>3}")
    common.write_outputs(args, table, "plot_pai")
    return 0


def _masks_args(p) -> None:
    p.add_argument("--study", required=True, help="lottery studies (keys or unique prefixes), comma-separated: "
                                                  "compared with each other at equal densities")
    common.outputs(p)
    common.store(p)


@register_command("masks", help="per-layer densities of the masks of lottery studies and their overlap (Jaccard) "
                                "across rewind steps, replicates, levels and criteria, against chance",
                  arguments=_masks_args, example="rewind masks --study 5f3a,9c01 --csv masks.csv --plot masks")
def masks(args) -> int:
    from ..analysis.masks import mask_analysis, overlap_summary
    from ..lottery import Study
    from ..store import Store

    store = Store(args.root)
    studies = [Study.load(k, store) for k in common.names(args.study)]
    if not studies:
        raise SpecError("--study: give at least one study key")
    key, rows = mask_analysis(studies, store.root)
    print(f"masks {key}: {rows['run'].nunique()} masks of {len(studies)} stud{'y' if len(studies) == 1 else 'ies'}")
    print(f"{'differs':<22} {'criteria':<28} {'level':>5} {'Jaccard':>8} {'chance':>7} {'pairs':>5}")
    for r in overlap_summary(rows).itertuples():
        crit = r.criterion if r.criterion == r.other_criterion else f"{r.criterion} vs {r.other_criterion}"
        print(f"{r.differs:<22} {crit:<28} {int(r.level):>5} {r.jaccard:>8.3f} {r.chance:>7.3f} {int(r.pairs):>5}")
    common.write_outputs(args, rows, "plot_masks")
    return 0
