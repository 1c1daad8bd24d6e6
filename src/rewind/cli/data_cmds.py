"""What the data contributes: rewind scores (EL2N, GraNd, forgetting events), rewind data-diet
(training on the examples kept by a score) and rewind diet-lottery (IMP rewound to pretraining on
small subsets)."""
from __future__ import annotations

from . import args as common
from .pretrain_cmds import print_pretrain
from .registry import register_command


def _scores_args(p) -> None:
    p.add_argument("--method", required=True, help="el2n, grand or forgetting")
    p.add_argument("--at", required=True, help="the step scored (forgetting: counted up to it), e.g. 10ep or 0it")
    common.replicates(p, default=10, what="runs averaged (as the authors advise)")
    common.outputs(p)
    common.trains(p)


@register_command("scores", help="per-example data scores (EL2N, GraNd, forgetting events), averaged over replicates",
                  arguments=_scores_args, fields=True,
                  example="rewind scores --preset mnist1d_mlp --method el2n --at 400it --replicates 10 --csv el2n.csv")
def scores(args) -> int:
    from ..analysis.scores import ScoreSet, describe
    from ..store import Store

    spec, name = common.spec_of(args, pretrain=False)
    at = common.step(args.at, "--at")
    score_set = ScoreSet(spec, args.method, at, args.replicates, name, Store(args.root), args.data_root)
    table = score_set.compute(common.options(args))
    d = describe(table)
    print(f"scores {score_set.key}  ({name or '-'}, {args.method} at {at} = {score_set.at_it}it, {args.replicates} "
          f"replicate(s), {d['examples']} examples)  {score_set.path / 'scores.csv'}")
    print(f"mean over replicates: mean {d['mean']:.4f}  10% {d['q10']:.4f}  median {d['median']:.4f}  "
          f"90% {d['q90']:.4f}")
    if d["split_half"] is not None:
        print(f"split-half reliability (Spearman between the means of replicates {d['halves'][0]} and "
              f"{d['halves'][1]}): {d['split_half']:.3f}")
    common.write_outputs(args, table, "plot_scores")
    return 0


def _diet_args(p) -> None:
    p.add_argument("--keep", default="0.3,0.5,0.7,0.9", help="fractions of the training set kept, in (0, 1]")
    p.add_argument("--methods", default="random,el2n,grand", help="random, el2n, grand, forgetting")
    p.add_argument("--keep-which", default="hardest", help="hardest (the paper: prune the easiest) or easiest")
    common.replicates(p, default=3, what="trainings per subset")
    p.add_argument("--score-replicates", type=int, default=10, help="runs each score is averaged over")
    p.add_argument("--el2n-at", default=None, help="EL2N's step (default: 10%% of training)")
    p.add_argument("--grand-at", default=None, help="GraNd's step (default: 0it, initialisation)")
    p.add_argument("--forgetting-at", default=None, help="forgetting events counted up to (default: the end)")
    common.outputs(p)
    common.trains(p)


@register_command("data-diet", help="final accuracy against the fraction of training data kept, random or by score "
                                    "(Paul et al. 2021)", arguments=_diet_args, fields=True,
                  example="rewind data-diet --preset mnist1d_mlp --keep 0.3,0.5,0.7 --methods random,el2n --plot diet")
def data_diet(args) -> int:
    from ..analysis.diet import data_diet as diet, diet_summary
    from ..store import Store

    spec, name = common.spec_of(args, pretrain=False)
    keep = common.numbers(args.keep, "--keep", example="0.3,0.5,0.7")
    at = {m: common.step(getattr(args, f"{m}_at"), f"--{m}-at") for m in ("el2n", "grand", "forgetting")
          if getattr(args, f"{m}_at") is not None}
    table = diet(spec, keep, common.names(args.methods), args.replicates, name, Store(args.root),
                 common.options(args), args.score_replicates, at, args.keep_which)
    print(f"data diet ({name or '-'}; keeping the {args.keep_which} examples by each score): final test accuracy")
    print(f"{'method':<11} {'keep':>5} {'test acc (mean ± std)':>22} {'n':>3}")
    for r in diet_summary(table).itertuples():
        print(f"{r.method:<11} {r.keep:>5.2f} {common.mean_std(r.mean, r.std, int(r.count), width=12)}   {r.count:>3}")
    common.write_outputs(args, table, "plot_diet")
    return 0


def _diet_lottery_args(p) -> None:
    p.add_argument("--sizes", default="100,400,1000", help="subset sizes pretrained on")
    p.add_argument("--orders", default="random,easiest,hardest", help="random, easiest, hardest (by the score)")
    p.add_argument("--steps", default="0it,200it", help="pretraining lengths (0it: the k = 0 reference)")
    p.add_argument("--levels", type=int, required=True, help="pruning levels of every study")
    common.replicates(p, default=3)
    p.add_argument("--balance", action="store_true", help="equally many examples of each class")
    p.add_argument("--score-method", default="el2n", help="the score ranking easiest and hardest (default el2n)")
    p.add_argument("--score-at", default=None, help="its step (default: 10%% of training; grand: 0it)")
    p.add_argument("--score-replicates", type=int, default=10)
    p.add_argument("--report-levels", default=None, help="levels shown (default: all)")
    common.outputs(p)
    common.trains(p)


@register_command("diet-lottery", help="IMP rewound to the end of pretraining on small random, easiest or hardest "
                                       "subsets (Paul et al. 2022)", arguments=_diet_lottery_args, fields=True,
                  example="rewind diet-lottery --preset mnist1d_mlp --sizes 100,400 --steps 0it,200it --levels 3")
def diet_lottery(args) -> int:
    from ..analysis.diet import default_at
    from ..analysis.scores import ScoreSet
    from ..lottery.pretrain_grid import PretrainGrid, diet_variants
    from ..store import Store
    from ..train import check_spec

    spec, name = common.spec_of(args, pretrain=False)
    steps = common.steps(args.steps, "--steps")
    sizes = common.numbers(args.sizes, "--sizes", int, example="100,400")
    at = common.step(args.score_at, "--score-at") if args.score_at else None
    orders = common.names(args.orders)
    opts = common.options(args)
    store = Store(args.root)
    key = None
    if any(o != "random" for o in orders):
        _, ipe, total = check_spec(spec, opts)
        score_set = ScoreSet(spec, args.score_method, at or default_at(args.score_method, spec, ipe, total),
                             args.score_replicates, name, store, args.data_root)
        diet_variants(sizes, orders, "-")  # refuse bad orders and sizes before scoring
        score_set.compute(opts)
        key = score_set.key
        print(f"scores {key} ({args.score_method} at {score_set.at}, {args.score_replicates} replicates)")
    grid = PretrainGrid(spec, (), steps, args.levels, args.replicates, name, store, {}, None, args.data_root,
                        variants=diet_variants(sizes, orders, key, args.balance))
    table = grid.run(opts)
    shown = common.levels(args.report_levels) if args.report_levels else None
    print_pretrain(table, shown)
    common.write_outputs(args, table, "plot_pretrain", shown)
    return 0
