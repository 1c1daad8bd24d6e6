"""The command line: ``rewind train | ls | results | presets``."""
from __future__ import annotations

import argparse
import errno
import json
import os
import sys
import textwrap
import warnings

from .presets import PRESETS
from .spec import MAX_LEVELS, MAX_REPLICATES, SpecError, check_range, field_help, parse_assignments, split_list
from .store import CheckpointError, RecordDamaged, RewindWarning, RunDamaged
from .store.io import probe_output


def _fields_epilog() -> str:
    rows = field_help()
    width = max(len(r[0]) for r in rows)
    dwidth = max(len(r[1]) for r in rows)
    lines = ["spec fields (--set FIELD=VALUE; defaults shown are the bare spec's, a preset may change them):"]
    for path, default, doc in rows:
        lines.append(f"  {path:<{width}}  {default:<{dwidth}}  {doc}")
    lines.append("")
    lines.append("steps are written 500it, 2ep or 1ep100it; lists are comma-separated (2000it,3000it).")
    lines.append("presets: " + ", ".join(sorted(PRESETS)) + " (rewind presets describes them)")
    return "\n".join(lines)


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", default=None, help="run store directory (default: $REWIND_ROOT or ./runs)")


class _Parser(argparse.ArgumentParser):
    """argparse, but a refusal is one line (and exit 2) like every other refusal of rewind."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="rewind", description="Lottery-ticket and early-phase-of-training experiments.")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="train a preset (returned from the store if already trained)",
                       formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_fields_epilog())
    t.add_argument("--preset", default="mnist1d_mlp", help="named recipe (default: mnist1d_mlp)")
    t.add_argument("--set", dest="sets", action="append", default=[], metavar="FIELD=VALUE",
                   help="change a spec field, e.g. --set train.lr=0.05 (repeatable)")
    t.add_argument("--config", default=None, metavar="FILE.toml", help="TOML file of spec fields, as [section] tables")
    t.add_argument("--replicates", type=int, default=1, help="train R replicates (every seed shifted by 0..R-1)")
    t.add_argument("--data-root", default=None, help="dataset directory (default: $REWIND_DATA or ~/.cache/rewind/data)")
    t.add_argument("--resume-every", type=int, default=500, metavar="N", help="iterations between resume points")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    _pretrain_args(t)
    d = t.add_argument_group("a deficit in the first iterations (critical periods)")
    d.add_argument("--deficit", default=None, metavar="KIND", help="random-labels, blur or subset, removed after "
                                                                   "--deficit-until (the --pretrain-PARAM flags set it)")
    d.add_argument("--deficit-until", default=None, metavar="STEP", help="iteration at which it is removed, e.g. 2ep")
    _engine_arg(t)
    _common(t)

    ls = sub.add_parser("ls", help="list the runs in the store")
    _common(ls)

    ve = sub.add_parser("verify", help="check every checksum of the store (like git fsck)",
                        description="Reports each run as ok, damaged (the file and what is wrong) or unfinished, "
                                    "and each study, instability and linear-model record as ok or damaged. "
                                    "Exit status 1 when damage remains.")
    ve.add_argument("--repair", action="store_true",
                    help="move damaged runs and records to <root>/.damaged/ (they are recomputed when asked for) "
                         "and remove files left by interrupted writes")
    _common(ve)

    r = sub.add_parser("results", help="print every metric as one tidy table")
    r.add_argument("--format", choices=("csv", "json"), default="csv")
    _common(r)

    sub.add_parser("presets", help="list the named recipes")

    dl = sub.add_parser("data", help="datasets: download the official files (checksummed)")
    dl.add_argument("action", choices=("download",))
    dl.add_argument("name", help="mnist, fashion_mnist, cifar10 or cifar100")
    dl.add_argument("--data-root", default=None, help="dataset directory (default: $REWIND_DATA or ~/.cache/rewind/data)")

    lt = sub.add_parser("lottery", help="iterative magnitude pruning with rewinding (a lottery study)",
                        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_fields_epilog())
    lt.add_argument("--preset", default="mnist1d_mlp", help="named recipe (default: mnist1d_mlp)")
    lt.add_argument("--levels", type=int, required=True, help="pruning levels after the dense level 0")
    lt.add_argument("--rewind", default=None,
                    help="rewind steps, comma-separated (default: 0it, or with --pretrain its end)")
    lt.add_argument("--replicates", type=int, default=1, help="replicates (seeds shifted by 0..R-1)")
    lt.add_argument("--prune-fraction", type=float, default=None, help="fraction of remaining weights pruned per level")
    lt.add_argument("--strategy", default=None, choices=("global", "layerwise"), help="magnitude pruning strategy")
    lt.add_argument("--baselines", default="", help="branches to run at every level, e.g. reinit,random-prune")
    lt.add_argument("--baselines-at", default=None, metavar="STEPS",
                    help="run the baselines on the masks of these rewind steps only (default: every rewind step)")
    lt.add_argument("--plot", default=None, metavar="PATH", help="also write the figure to PATH.png and PATH.svg")
    _pretrain_args(lt)
    _train_args(lt)

    br = sub.add_parser("branch", help="run a branch (baseline or perturbation) on levels of a lottery study",
                        description="Branches: " + "; ".join(f"{k}: {v.doc.splitlines()[0]}" for k, v in sorted(_branches().items()))
                        + ". Branch parameters are given as --NAME VALUE (e.g. --scale 0.5, --keep-signs true, --scope global).")
    br.add_argument("kind", help="branch name: " + ", ".join(sorted(_branches())))
    br.add_argument("--study", required=True, help="study key (or a unique prefix), as printed by rewind lottery")
    br.add_argument("--levels", required=True, help="levels: 1-5, 3 or 1,3,5")
    br.add_argument("--rewind", default=None, help="only these rewind steps of the study (default: all)")
    br.add_argument("--replicates", type=int, default=None, help="replicates (default: the study's)")
    br.add_argument("--set", dest="sets", action="append", default=[], metavar="FIELD=VALUE",
                    help="fields to change (the retrain branch)")
    br.add_argument("--quiet", action="store_true")
    _engine_arg(br)
    _common(br)

    ins = sub.add_parser("instability", help="instability analysis: train copies from W_k and interpolate",
                         formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_fields_epilog())
    src = ins.add_mutually_exclusive_group()
    src.add_argument("--preset", default=None, help="dense networks of this recipe (default: mnist1d_mlp)")
    src.add_argument("--study", default=None, help="subnetworks of a lottery study (key or unique prefix)")
    ins.add_argument("--at", default=None,
                     help="steps k to spawn copies from, comma-separated (with --study: some of its rewind steps)")
    ins.add_argument("--levels", default="0", help="levels of the study (1-5, 0,2,4); default 0 (dense)")
    ins.add_argument("--copies", type=int, default=2, help="copies per point (every pair is interpolated)")
    ins.add_argument("--points", type=int, default=30, help="points on each path, ends included")
    ins.add_argument("--bn-reset", action="store_true", help="re-estimate BatchNorm statistics at each point")
    ins.add_argument("--bn-batches", type=int, default=20, help="training batches for --bn-reset")
    ins.add_argument("--replicates", type=int, default=None, help="replicates (default: 1, or the study's)")
    ins.add_argument("--baselines", default="", help="branches to analyse too, e.g. reinit,random-prune")
    ins.add_argument("--plot", default=None, metavar="PATH", help="also write the figure to PATH.png and PATH.svg")
    _pretrain_args(ins)
    _train_args(ins)

    ps = sub.add_parser("pretrain-study", help="pretraining on altered data: IMP rewound to the pretrained weights, "
                                               "per kind and length, beside supervised rewinding",
                        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_fields_epilog())
    ps.add_argument("--preset", default="mnist1d_mlp", help="named recipe (default: mnist1d_mlp)")
    ps.add_argument("--kinds", default="random-labels,transform,blur,subset,sparse",
                    help="random-labels, rotation (images), transform (1-D), blur, subset, sparse (IMP and random mask)")
    ps.add_argument("--steps", default="0it,200it,1ep,4ep", help="pretraining lengths (0it: the k = 0 reference)")
    ps.add_argument("--levels", type=int, required=True, help="pruning levels of every study")
    ps.add_argument("--replicates", type=int, default=3)
    ps.add_argument("--report-levels", default=None, help="levels shown in the table and figure (default: all)")
    ps.add_argument("--sparse-level", type=int, default=None,
                    help="level of the reference study's IMP mask that sparse pretraining trains (default: --levels)")
    for name, doc in (("size", "subset: examples (default: a tenth of the training set)"),
                      ("factor", "blur: downsampling factor (default 4)"), ("upsample", "blur: nearest or linear"),
                      ("lr", "learning rate while pretraining"), ("seed", "seed of the alterations")):
        ps.add_argument(f"--pretrain-{name}", default=None, help=doc)
    ps.add_argument("--csv", default=None, metavar="PATH", help="also write the table (one row per subnetwork)")
    ps.add_argument("--plot", default=None, metavar="PATH", help="also write the figure to PATH.png and PATH.svg")
    _train_args(ps)

    sc = sub.add_parser("scores", help="per-example data scores (EL2N, GraNd, forgetting events), averaged over "
                                       "replicates", formatter_class=argparse.RawDescriptionHelpFormatter,
                        epilog=_fields_epilog())
    sc.add_argument("--preset", default="mnist1d_mlp", help="named recipe (default: mnist1d_mlp)")
    sc.add_argument("--method", required=True, help="el2n, grand or forgetting")
    sc.add_argument("--at", required=True, help="the step scored (forgetting: counted up to it), e.g. 10ep or 0it")
    sc.add_argument("--replicates", type=int, default=10, help="runs averaged (default 10, as the authors advise)")
    sc.add_argument("--csv", default=None, metavar="PATH", help="also write the table (example, label, method, "
                                                                 "at, replicate, score)")
    sc.add_argument("--plot", default=None, metavar="PATH", help="also write the histogram to PATH.png and PATH.svg")
    _train_args(sc)

    dd = sub.add_parser("data-diet", help="final accuracy against the fraction of training data kept, random or "
                                          "by score (Paul et al. 2021)",
                        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_fields_epilog())
    dd.add_argument("--preset", default="mnist1d_mlp", help="named recipe (default: mnist1d_mlp)")
    dd.add_argument("--keep", default="0.3,0.5,0.7,0.9", help="fractions of the training set kept, in (0, 1]")
    dd.add_argument("--methods", default="random,el2n,grand", help="random, el2n, grand, forgetting")
    dd.add_argument("--keep-which", default="hardest", help="hardest (the paper: prune the easiest) or easiest")
    dd.add_argument("--replicates", type=int, default=3, help="trainings per subset")
    dd.add_argument("--score-replicates", type=int, default=10, help="runs each score is averaged over")
    dd.add_argument("--el2n-at", default=None, help="EL2N's step (default: 10%% of training)")
    dd.add_argument("--grand-at", default=None, help="GraNd's step (default: 0it, initialisation)")
    dd.add_argument("--forgetting-at", default=None, help="forgetting events counted up to (default: the end)")
    dd.add_argument("--csv", default=None, metavar="PATH", help="also write the table")
    dd.add_argument("--plot", default=None, metavar="PATH", help="also write the figure to PATH.png and PATH.svg")
    _train_args(dd)

    dl_ = sub.add_parser("diet-lottery", help="IMP rewound to the end of pretraining on small random, easiest or "
                                              "hardest subsets (Paul et al. 2022)",
                         formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_fields_epilog())
    dl_.add_argument("--preset", default="mnist1d_mlp", help="named recipe (default: mnist1d_mlp)")
    dl_.add_argument("--sizes", default="100,400,1000", help="subset sizes pretrained on")
    dl_.add_argument("--orders", default="random,easiest,hardest", help="random, easiest, hardest (by the score)")
    dl_.add_argument("--steps", default="0it,200it", help="pretraining lengths (0it: the k = 0 reference)")
    dl_.add_argument("--levels", type=int, required=True, help="pruning levels of every study")
    dl_.add_argument("--replicates", type=int, default=3)
    dl_.add_argument("--balance", action="store_true", help="equally many examples of each class")
    dl_.add_argument("--score-method", default="el2n", help="the score ranking easiest and hardest (default el2n)")
    dl_.add_argument("--score-at", default=None, help="its step (default: 10%% of training; grand: 0it)")
    dl_.add_argument("--score-replicates", type=int, default=10)
    dl_.add_argument("--report-levels", default=None, help="levels shown (default: all)")
    dl_.add_argument("--csv", default=None, metavar="PATH", help="also write the table")
    dl_.add_argument("--plot", default=None, metavar="PATH", help="also write the figure to PATH.png and PATH.svg")
    _train_args(dl_)

    el = sub.add_parser("example-lmc", help="share of training examples linearly mode connected at each k, against "
                                            "IMP accuracy rewound to k (Paul et al. 2022)")
    el.add_argument("--study", required=True, help="lottery study with instability analyses at several k")
    el.add_argument("--imp-level", type=int, required=True, help="the IMP level whose accuracy is compared")
    el.add_argument("--level", type=int, default=0, help="the level whose copies' barriers are read (default 0: dense)")
    el.add_argument("--thresholds", default="0.01,0.05,0.1", help="barrier thresholds in nats")
    el.add_argument("--plot", default=None, metavar="PATH", help="also write the figure to PATH.png and PATH.svg")
    _common(el)

    cp = sub.add_parser("critical-period", help="final accuracy against the length of an early deficit "
                                                "(Achille et al.'s critical periods)",
                        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_fields_epilog())
    cp.add_argument("--preset", default="mnist1d_mlp", help="named recipe (default: mnist1d_mlp)")
    cp.add_argument("--deficit", default="blur", help="random-labels, blur (default) or subset")
    cp.add_argument("--until", default="0it,1ep,4ep,16ep", help="deficit lengths (0it: none)")
    cp.add_argument("--replicates", type=int, default=3)
    for name, doc in (("size", "subset: examples"), ("factor", "blur: downsampling factor (default 4)"),
                      ("upsample", "blur: nearest or linear"), ("seed", "seed of the alteration")):
        cp.add_argument(f"--pretrain-{name}", default=None, help=doc)
    cp.add_argument("--csv", default=None, metavar="PATH", help="also write the table")
    cp.add_argument("--plot", default=None, metavar="PATH", help="also write the figure to PATH.png and PATH.svg")
    _train_args(cp)

    ea = sub.add_parser("early", help="early-phase measurements (probes) on a step schedule, and the timeline figure",
                        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_fields_epilog())
    ea.add_argument("--preset", default="mnist1d_mlp", help="named recipe (default: mnist1d_mlp)")
    ea.add_argument("--until", default="4000it", help="last step probed (training runs to train.steps)")
    ea.add_argument("--schedule", default="1it:100it,10it:1000it,100it",
                    help="probe steps: EVERY:UNTIL segments and a last EVERY (default: 1it:100it,10it:1000it,100it)")
    ea.add_argument("--rewind-point", default="0it", help="W_k that distances are also measured to")
    ea.add_argument("--replicates", type=int, default=1)
    ea.add_argument("--plot", default=None, metavar="PATH", help="write the timeline to PATH.png and PATH.svg")
    _train_args(ea)

    li = sub.add_parser("linear", help="the network against Hu et al.'s linear model (the affine approximation of "
                                       "its NTK at initialisation), trained side by side",
                        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=_fields_epilog())
    li.add_argument("--preset", default=None, help="named recipe (default: gaussian_two_layer; mnist1d_mlp for "
                                                   "--model-of offset)")
    _hu_args(li)
    li.add_argument("--lr", type=float, default=0.0, help="learning rate of both models (default: the preset's)")
    li.add_argument("--until", default=None, help="offset model: train both this long (default 1000it)")
    li.add_argument("--schedule", default="1it:100it,10it",
                    help="offset model: measurement steps (default 1it:100it,10it); the others measure at "
                         "--points log-spaced steps")
    li.add_argument("--tolerance", type=float, default=0.02,
                    help="offset model: error gap at which the models have parted")
    li.add_argument("--replicates", type=int, default=1)
    li.add_argument("--plot", default=None, metavar="PATH", help="write the figure to PATH.png and PATH.svg")
    _train_args(li)

    ls = sub.add_parser("linear-sweep", help="departure time of the network from its linear model against width "
                                             "and learning rate", formatter_class=argparse.RawDescriptionHelpFormatter,
                        epilog=_fields_epilog())
    ls.add_argument("--preset", default="gaussian_two_layer", help="named recipe (default: gaussian_two_layer)")
    _hu_args(ls)
    ls.add_argument("--widths", default=None, help="hidden widths (every hidden layer or channel count set to each; "
                                                  "default: the preset's)")
    ls.add_argument("--lrs", default=None, help="learning rates (default: the preset's)")
    ls.add_argument("--replicates", type=int, default=1)
    ls.add_argument("--csv", default=None, metavar="PATH", help="write the departure table to PATH")
    ls.add_argument("--plot", default=None, metavar="PATH", help="write the figures to PATH-*.png and .svg")
    _train_args(ls)

    rp = sub.add_parser("reproduce", help="measure the papers' claims, judge each by a stated rule, and write "
                                          "claims.csv and a self-contained HTML report")
    rp.add_argument("--claims", default=None, help="claims to measure, e.g. C1,C3 (default: all; see --list)")
    rp.add_argument("--list", action="store_true", help="list the claims and exit")
    rp.add_argument("--replicates", type=int, default=None, help="replicates per cell (default 3; 1 with --quick)")
    rp.add_argument("--quick", action="store_true", help="a first look: 1 replicate, a shallower judged level")
    rp.add_argument("--out", default=None, metavar="DIR", help="where index.html, claims.csv, tests.csv and the "
                                                               "figures go (default: <root>/reproduce)")
    _train_args(rp)

    rt = sub.add_parser("report", help="a self-contained HTML page of one study (figures, tables, spec, command)")
    rt.add_argument("--study", default=None, help="a lottery study key (or unique prefix), or an early-phase run key "
                                                  "(default: every lottery study of the store, on one page)")
    rt.add_argument("--out", default=None, metavar="DIR", help="where index.html goes (default: <root>/report/<key>, "
                                                               "or <root>/report)")
    _common(rt)

    pl = sub.add_parser("plot", help="draw a figure from the results")
    pl.add_argument("figure", choices=("lottery", "instability"))
    pl.add_argument("--study", required=True, help="study key or unique prefix")
    pl.add_argument("--level", type=int, default=None, help="instability: the level whose paths are drawn")
    pl.add_argument("--split", default="test", choices=("train", "test"))
    pl.add_argument("--out", default=None, help="output path without suffix (default: <root>/figures/lottery-<study>)")
    _common(pl)
    return parser


def _branches():
    from .lottery import BRANCHES

    return BRANCHES


PRETRAIN_FLAGS = ("steps", "seed", "lr", "factor", "upsample", "size", "order", "score", "balance", "mask", "study",
                  "level")


def _pretrain_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("pretraining on altered data (replaces the first --pretrain-steps iterations)")
    g.add_argument("--pretrain", default=None, metavar="KIND",
                   help="random-labels, rotation (images), transform (1-D), blur, subset or sparse")
    g.add_argument("--pretrain-steps", default=None, metavar="STEP", help="its length, e.g. 200it or 2ep")
    g.add_argument("--pretrain-seed", default=None, help="seed of the alteration (default 0)")
    g.add_argument("--pretrain-lr", default=None, help="learning rate while pretraining (default: the schedule's)")
    g.add_argument("--pretrain-factor", default=None, help="blur: downsampling factor (default 4)")
    g.add_argument("--pretrain-upsample", default=None, help="blur: nearest (default) or linear")
    g.add_argument("--pretrain-size", default=None, help="subset: number of training examples")
    g.add_argument("--pretrain-order", default=None, help="subset: random (default), easiest or hardest by a score set")
    g.add_argument("--pretrain-score", default=None, help="subset: key of that score set (rewind scores)")
    g.add_argument("--pretrain-balance", default=None, help="subset: true for equally many examples per class")
    g.add_argument("--pretrain-mask", default=None, help="sparse: imp (default) or random")
    g.add_argument("--pretrain-study", default=None, help="sparse: key of the study whose mask is pretrained")
    g.add_argument("--pretrain-level", default=None, help="sparse: level of that study's mask")


def _pretrain_overrides(args) -> dict:
    """--pretrain KIND --pretrain-PARAM V ... (or --deficit KIND --deficit-until S) as pretrain.* fields."""
    out = {}
    if getattr(args, "pretrain", None) is not None:
        out["pretrain.kind"] = args.pretrain
    if getattr(args, "deficit", None) is not None or getattr(args, "deficit_until", None) is not None:
        if out or getattr(args, "pretrain_steps", None) is not None:
            raise SpecError("--deficit: give either --pretrain or --deficit, not both")
        if args.deficit is None or args.deficit_until is None:
            raise SpecError("--deficit: give the kind and --deficit-until STEP together")
        out.update({"pretrain.kind": args.deficit, "pretrain.steps": args.deficit_until, "pretrain.deficit": True})
    for name in PRETRAIN_FLAGS:
        v = getattr(args, f"pretrain_{name}", None)
        if v is not None:
            if "pretrain.kind" not in out:
                raise SpecError(f"--pretrain-{name}: give --pretrain KIND too")
            out[f"pretrain.{name}"] = v
    return out


def _engine_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--engine", default="auto", choices=("auto", "sequential", "vectorised"),
                   help="how a population is trained: auto (vectorised for 2+ small members), sequential, vectorised")
    p.add_argument("--device", default="cpu", help="cpu, cuda (or cuda:N) or auto (default: cpu)")
    p.add_argument("--workers", type=int, default=1,
                   help="split vectorised populations across this many one-thread processes (default 1)")
    p.add_argument("--data-workers", type=int, default=None,
                   help="DataLoader worker processes for datasets streamed from files (ImageNet; default min(8, cores))")
    p.add_argument("--threads", type=int, default=None, metavar="N",
                   help="torch threads in this process (default: torch's choice); float32 results are bit-identical "
                        "only for a fixed thread count, which every run records")
    p.add_argument("--compile", action="store_true",
                   help="torch.compile the training forward pass (sequential engine; pays off on GPUs and long runs)")
    p.add_argument("--chunk", type=int, default=16, metavar="K",
                   help="the vectorised engine stacks at most K members at once (default 16); convolutional stacks "
                        "are split across processes or Ray tasks in chunks of K, so a smaller K spreads them wider")
    p.add_argument("--executor", default="local", choices=("local", "processes", "ray"),
                   help="where populations train: local (this process), processes (--workers processes on this "
                        "machine), ray (tasks on a Ray cluster; pip install 'rewind[ray]')")
    p.add_argument("--ray-address", default=None, metavar="auto|HOST:PORT",
                   help="the Ray cluster to join (default: start Ray on this machine, or join $RAY_ADDRESS)")
    p.add_argument("--cpus-per-task", type=int, default=1, metavar="C",
                   help="Ray: CPUs (and torch threads) of each task (default 1)")
    p.add_argument("--gpus-per-task", type=float, default=0.0, metavar="G",
                   help="Ray: GPUs of each task; > 0 trains on the task's GPU (default 0)")
    p.add_argument("--ddp", type=int, default=None, metavar="N",
                   help="train each run data-parallel on N processes (torchrun; NCCL on GPUs, Gloo on CPUs; "
                        "train and lottery)")
    p.add_argument("--ddp-batchnorm", default="sync", choices=("sync", "local"),
                   help="with DDP: BatchNorm statistics of the global batch (sync, as one process) or per rank")


DDP_COMMANDS = ("train", "lottery")


def _launch_ddp(args, argv: list[str]) -> int:
    """``rewind CMD ... --ddp N``: the same command as N torchrun processes on this machine."""
    import subprocess

    from .train.ddp import launched

    if launched():
        raise SpecError("--ddp: this process is already one of a torchrun world; leave --ddp out")
    if args.command not in DDP_COMMANDS:
        raise SpecError(f"--ddp: {' and '.join(DDP_COMMANDS)} train data-parallel; `rewind {args.command}` does not")
    check_range("--ddp", args.ddp, 1, 1024)
    if args.executor != "local":
        raise SpecError("--ddp: each run trains on this machine's processes; leave --executor out")
    # what every rank would refuse, refused here, in one line, before any rank starts
    if args.engine == "vectorised":
        raise SpecError("--engine vectorised: stacks members in one process; with --ddp use sequential or auto")
    from .api import make_spec

    spec, _ = make_spec(args.preset, {**parse_assignments(args.sets), **_pretrain_overrides(args)}, args.config)
    if spec.probe.schedule:
        raise SpecError("probe.schedule: probes are not taken in data-parallel (--ddp) runs; train the probed run "
                        "in one process")
    _options(args)   # the device, counts and executor flags
    rest, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--ddp":
            skip = True
        elif not a.startswith("--ddp="):
            rest.append(a)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={args.ddp}",
           "-m", "rewind", *rest]
    from .train.loop import usable_cpus

    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, usable_cpus() // args.ddp)))  # the cores shared among ranks
    return subprocess.call(cmd, env=env)


def _options(args, **extra):
    """TrainOptions from the flags every training command shares."""
    from .train import TrainOptions

    from .train.loop import resolve_device

    resolve_device(args.device)  # refused before anything is written
    check_range("--workers", args.workers, 1, 1024)
    check_range("--chunk", args.chunk, 1, 4096)
    if args.threads is not None:
        check_range("--threads", args.threads, 1, 1024)
    if args.data_workers is not None:
        check_range("--data-workers", args.data_workers, 0, 1024)
    from .train.ddp import launched

    ddp = launched()  # one rank of a torchrun world
    if ddp and (args.command not in DDP_COMMANDS or args.executor != "local"):
        raise SpecError(f"--ddp: {' and '.join(DDP_COMMANDS)} train data-parallel (with the local executor); "
                        f"`rewind {args.command}` does not")
    opts = TrainOptions(quiet=args.quiet or ddp, data_root=getattr(args, "data_root", None), engine=args.engine,
                        device=args.device, workers=args.workers, data_workers=args.data_workers,
                        compile=args.compile, threads=args.threads, executor=args.executor,
                        ray_address=args.ray_address, cpus_per_task=args.cpus_per_task,
                        gpus_per_task=args.gpus_per_task, ddp=ddp, ddp_batchnorm=args.ddp_batchnorm,
                        chunk=args.chunk, **extra)
    if args.executor != "ray" and (args.ray_address or args.gpus_per_task or args.cpus_per_task != 1):
        raise SpecError("--ray-address, --cpus-per-task and --gpus-per-task go with --executor ray")
    if args.executor == "ray":  # the cluster, its resources and the store checked before anything is trained
        from .exec.raycluster import connect
        from .store import Store

        connect(opts, Store(getattr(args, "root", None)).root)
    return opts


def _hu_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model-of", default="fitted", choices=("fitted", "closed-form", "offset"),
                   help="the linear model: fitted (affine kernel fitted to the network's measured NTK), closed-form "
                        "(two_layer: the activation's constants), offset (ours: a f_0(x) + W z(x) + b, not the paper's)")
    p.add_argument("--train", default="both", help="parameters trained: first (first layer), second (output layer) "
                                                    "or both (every layer) (default both)")
    p.add_argument("--steps", default=None, help="iterations both models train (default: the preset's train.steps)")
    p.add_argument("--full-batch", action="store_true",
                   help="full-batch gradient descent at a constant rate (the theory's setting); default: the "
                        "preset's optimizer, schedule and batches")
    p.add_argument("--loss", default="squared", help="squared ((f - y)^2 / 2) or cross-entropy (log(1 + e^(-yf)))")
    p.add_argument("--output", default="subtract", help="the network's output at initialisation: subtract (compare "
                                                        "f_t - f_0) or symmetric ((f_A - f_B)/sqrt 2, zero at the start)")
    p.add_argument("--classes", default=None, metavar="A,B", help="the two classes of a multi-class dataset "
                                                                   "(sets data.classes)")
    p.add_argument("--ntk-samples", type=int, default=500, help="training inputs the NTK is measured on (default 500)")
    p.add_argument("--points", type=int, default=40, help="log-spaced measurement steps (default 40)")
    p.add_argument("--threshold", type=float, default=0.1,
                   help="discrepancy ||f - f_lin|| / ||f|| above which the models have parted (default 0.1)")


def _train_args(p: argparse.ArgumentParser) -> None:
    _engine_arg(p)
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="FIELD=VALUE",
                   help="change a spec field, e.g. --set train.lr=0.05 (repeatable)")
    p.add_argument("--config", default=None, metavar="FILE.toml", help="TOML file of spec fields, as [section] tables")
    p.add_argument("--data-root", default=None, help="dataset directory (default: $REWIND_DATA or ~/.cache/rewind/data)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    _common(p)


def _baselines(text: str) -> tuple[str, ...]:
    """--baselines reinit,random-prune -> names, each checked against the branch registry."""
    from .lottery import get_branch

    names = tuple(b.strip() for b in text.split(",") if b.strip())
    for b in names:
        get_branch(b)
    return names


def parse_levels(text: str) -> list[int]:
    """'1-5', '3' or '1,3,5' -> sorted levels, each from 0 to MAX_LEVELS."""
    levels: set[int] = set()
    try:
        for part in text.split(","):
            part = part.strip()
            if not part:
                raise ValueError
            a, b = part.split("-", 1) if "-" in part else (part, part)
            a, b = int(a), int(b)
            for x in (a, b):
                check_range("--levels", x, 0, MAX_LEVELS)
            if a > b:
                raise ValueError
            levels.update(range(a, b + 1))
    except ValueError:
        raise SpecError(f"--levels: cannot read {text!r}; write 1-5, 3 or 1,3,5") from None
    return sorted(levels)


def _print_summary(table) -> None:
    from .report.lottery import format_params, lottery_summary

    s = lottery_summary(table)
    if s.empty:
        return
    div = bool(s["diverged"].sum())
    print(f"{'branch':<28} {'rewind':>8} {'level':>5} {'density%':>9} {'test acc (mean ± std)':>24} {'n':>3}"
          + ("  diverged" if div else ""))
    for row in s.itertuples():
        name = (row.branch + " " + format_params(row.branch_params)).strip()
        print(f"{name:<28} {row.rewind_step:>8} {int(row.level):>5} {100 * row.density:>9.2f} "
              f"{100 * row.mean:>14.2f} ± {100 * row.std:<6.2f} {int(row.n):>3}"
              + (f"  {int(row.diverged):>8}" if div else ""))


def _print_paired(table, rewind_steps) -> None:
    """Each later rewind step against the first, paired by replicate (needs 2+ replicates)."""
    from .report.lottery import paired_differences

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


def _cmd_lottery(args) -> int:
    from .api import make_spec
    from .lottery import Study
    from .step import parse_steps
    from .store import Store

    overrides = {**parse_assignments(args.sets), **_pretrain_overrides(args)}
    if args.prune_fraction is not None:
        overrides["prune.fraction"] = args.prune_fraction
    if args.strategy is not None:
        overrides["prune.strategy"] = args.strategy
    check_range("--replicates", args.replicates, 1, MAX_REPLICATES)
    check_range("--levels", args.levels, 0, MAX_LEVELS)
    spec, name = make_spec(args.preset, overrides, args.config)
    try:
        rewinds = parse_steps(args.rewind or (str(spec.pretrain.steps) if spec.pretrain.kind else "0it"))
    except ValueError as e:
        raise SpecError(f"--rewind: {e}") from None
    baselines = _baselines(args.baselines)
    study = Study(spec, rewinds, name, Store(args.root), args.data_root)
    at = None
    if args.baselines_at:
        try:
            at = tuple(parse_steps(args.baselines_at))
        except ValueError as e:
            raise SpecError(f"--baselines-at: {e}") from None
        unknown = [str(k) for k in at if k not in study.rewind_steps]
        if unknown:
            raise SpecError(f"--baselines-at: {', '.join(unknown)} not among the rewind steps "
                            f"({', '.join(map(str, study.rewind_steps))})")
    opts = _options(args)
    study.run(args.levels, replicates=args.replicates, options=opts)
    for b in baselines:
        if args.levels >= 1:
            study.branch(b, list(range(1, args.levels + 1)), replicates=args.replicates, rewinds=at, options=opts)
    print(f"study {study.key}  ({name or '-'}, rewind {', '.join(map(str, study.rewind_steps))}, "
          f"{args.levels} levels, {args.replicates} replicate(s))")
    table = study.table()
    _print_summary(table)
    _print_paired(table, study.rewind_steps)
    if args.plot:
        from .report import plot_lottery

        for p in plot_lottery(study.table(), args.plot):
            print(f"wrote {p}")
    return 0


def _branch_params(extra: list[str]) -> dict:
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


def _cmd_branch(args, extra: list[str]) -> int:
    from .lottery import Study
    from .step import parse_steps
    from .store import Store

    params = _branch_params(extra)
    if args.sets:
        params["settings"] = parse_assignments(args.sets)
    study = Study.load(args.study, Store(args.root), getattr(args, "data_root", None))
    rewinds = parse_steps(args.rewind) if args.rewind else None
    if rewinds:
        unknown = [str(k) for k in rewinds if k not in study.rewind_steps]
        if unknown:
            raise SpecError(f"--rewind: {', '.join(unknown)} not in the study's rewind steps "
                            f"({', '.join(map(str, study.rewind_steps))})")
    study.branch(args.kind, parse_levels(args.levels), params, replicates=args.replicates, rewinds=rewinds,
                 options=_options(args))
    print(f"study {study.key}")
    _print_summary(study.table())
    return 0


def _cmd_plot(args) -> int:
    from .lottery import Study
    from .report import plot_instability, plot_lottery
    from .store import Store

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


def _print_instability(table) -> None:
    from .report import instability_summary
    from .report.lottery import format_params

    s = instability_summary(table)
    acc = table[(table["metric"] == "error") & (table["alpha"].isin([0.0, 1.0])) & (table["split"] == "test")]
    ends = acc.groupby(["branch", "level", "rewind_iteration"])["value"].mean()
    print(f"{'branch':<24} {'level':>5} {'density%':>9} {'k':>8} {'train instab. %':>17} {'test instab. %':>17} "
          f"{'end test acc %':>15}")
    for (branch, params, level, k_it, k), grp in s.groupby(["branch", "branch_params", "level", "rewind_iteration",
                                                            "rewind_step"], sort=True):
        tr = grp[grp["split"] == "train"].iloc[0]
        te = grp[grp["split"] == "test"].iloc[0]
        name = (branch + " " + format_params(params)).strip()
        end_acc = 100 * (1 - ends.get((branch, level, k_it), float("nan")))
        print(f"{name:<24} {int(level):>5} {100 * tr.density:>9.2f} {k:>8} {100 * tr['mean']:>9.2f} ± {100 * tr['std']:<5.2f}"
              f" {100 * te['mean']:>9.2f} ± {100 * te['std']:<5.2f} {end_acc:>15.2f}"
              + (f"  ({int(te['diverged'])} pair(s) with a diverged copy)" if te["diverged"] else ""))


def _cmd_early(args) -> int:
    from .api import make_spec, replicate_members
    from .store import Store
    from .exec import train_population

    overrides = parse_assignments(args.sets)
    overrides.update({"probe.schedule": args.schedule, "probe.until": args.until,
                      "probe.rewind_point": args.rewind_point})
    spec, name = make_spec(args.preset, overrides, args.config)
    check_range("--replicates", args.replicates, 1, MAX_REPLICATES)
    members = replicate_members(spec, name, args.replicates, kind="early")
    runs = train_population(members, Store(args.root),
                            _options(args))
    from .analysis.probes import early_table

    table = early_table(runs)
    _print_early(table)
    if args.plot:
        from .report import plot_timeline

        for p in plot_timeline(table, args.plot):
            print(f"wrote {p}")
    return 0


def _print_early(table) -> None:
    """Landmarks: when the gradient norm peaks and bottoms out, how fast signs settle."""
    from .analysis.probes import landmarks

    for key, value in landmarks(table).items():
        print(f"{key:<44} {value}")


def _hu_setup(args):
    """Spec, preset name and HuOptions from the arguments of linear and linear-sweep."""
    from .analysis.hu import HuOptions
    from .api import make_spec
    from .data import iterations_per_epoch, load_data, require_in_memory
    from .step import Step
    from .train import TrainOptions, check_spec

    sets = parse_assignments(args.sets)
    if args.classes:
        sets["data.classes"] = args.classes
    spec, name = make_spec(args.preset or "gaussian_two_layer", sets, args.config)
    check_spec(spec, TrainOptions(data_root=args.data_root))
    data = load_data(spec.data, args.data_root)
    if args.model_of != "offset":
        require_in_memory(data, "the linear-model comparison")
    ipe = iterations_per_epoch(len(data.y_train), spec.data.batch_size)
    try:
        steps = Step.parse(args.steps).iterations(ipe) if args.steps else spec.train.steps.iterations(ipe)
    except ValueError as e:
        raise SpecError(f"--steps: {e}") from None
    if data.num_classes != 2 and args.model_of != "offset":
        raise SpecError(f"--classes: {name or 'the spec'} has {data.num_classes} classes; the comparison with Hu et "
                        "al.'s linear model is binary: give two, e.g. --classes 0,1")
    options = HuOptions(model_of=args.model_of, train=args.train, steps=steps, lr=getattr(args, "lr", 0.0) or 0.0,
                        full_batch=args.full_batch, loss=args.loss, output=args.output, ntk_samples=args.ntk_samples,
                        points=args.points, threshold=args.threshold)
    options.check()
    return spec, name, options


def _cmd_linear(args) -> int:
    import pandas as pd

    if args.model_of == "offset":
        return _cmd_linear_offset(args)
    from .analysis.hu import hu_comparison, summarise
    from .spec import replicate_spec
    from .store import Store

    spec, name, options = _hu_setup(args)
    check_range("--replicates", args.replicates, 1, MAX_REPLICATES)
    runs = [hu_comparison(replicate_spec(spec, r), options, Store(args.root).root, name, r, args.data_root)
            for r in range(args.replicates)]
    for r, (rows, meta) in enumerate(runs):
        fit = meta["fit"]
        line = (f"replicate {r}: NTK on {meta['ntk_examples']} inputs, affine fit alpha={fit['alpha']:.4g} "
                f"b={fit['b']:.4g} c={fit['c']:.4g}, ||Theta0 - K|| / ||Theta0|| = {fit['error']:.3f}")
        if "closed_form" in meta:
            cf = meta["closed_form"]
            line += f"; closed form alpha={cf['alpha']:.4g} b={cf['b']:.4g} (error {cf['error']:.3f})"
        print(line)
    rows = pd.concat([r for r, _ in runs], ignore_index=True)
    v = rows.groupby(["split", "model", "metric", "step"])["value"].mean()
    steps = sorted(rows.step.unique())
    show = [s for s in steps if s in (0, 1) or any(s <= t < s * 1.5 for t in (3, 10, 30, 100, 300, 1000, 3000, 10000))
            or s == steps[-1]]
    print(f"{'step':>6} {'discrep train':>14} {'discrep test':>13} {'net test err':>13} {'lin test err':>13} "
          f"{'NTK moved':>10}")
    for s in show:
        drift = v.get(("train", "network", "ntk_distance", s))
        print(f"{s:>6} {v['train', 'both', 'discrepancy', s]:>14.3f} {v['test', 'both', 'discrepancy', s]:>13.3f} "
              f"{100 * v['test', 'network', 'error', s]:>12.1f}% {100 * v['test', 'linear', 'error', s]:>12.1f}% "
              f"{'' if drift is None else f'{drift:.3f}':>10}")
    for r, (rows_r, meta) in enumerate(runs):
        d = summarise(rows_r, meta)

        def when(x):
            return "never within it" if x == 0 else f"still within it at {d['steps']}" if x is None else f"from step {x}"

        print(f"replicate {r}: discrepancy above {options.threshold:g}: {when(d['departure_train'])} (train), "
              f"{when(d['departure_test'])} (test)")
    _write_outputs(args, rows, "plot_hu")
    return 0


def _cmd_linear_sweep(args) -> int:
    from .analysis.hu import linear_sweep
    from .store import Store

    spec, name, options = _hu_setup(args)
    check_range("--replicates", args.replicates, 1, MAX_REPLICATES)
    widths, lrs = _sweep_values(args.widths, "--widths", int), _sweep_values(args.lrs, "--lrs", float)

    def show(row):
        dep = {None: f">{row['steps']}", 0: "never"}
        print(f"width {row['width'] or '-':>6} lr {row['lr']:<7g} rep {row['replicate']}: discrepancy step 1 "
              f"{row['discrepancy_step1']:.3f}, min {row['discrepancy_min']:.3f} at {row['discrepancy_min_step']}, "
              f"end {row['discrepancy_end']:.3f}; departs {dep.get(row['departure_train'], row['departure_train'])}; "
              f"test error net {100 * row['test_error_network']:.1f}% lin {100 * row['test_error_linear']:.1f}%; "
              f"fit error {row['fit_error']:.3f}")

    table, curves = linear_sweep(spec, options, widths, lrs, args.replicates, Store(args.root).root, name,
                                 args.data_root, progress=show)
    _write_outputs(args, table, "plot_departure", curves)
    return 0


def _sweep_values(text: str, flag: str, kind) -> list:
    """--widths 64,256 or --lrs 0.1,1: positive values; left out: [0] (the preset's value). An
    explicit 0 or an empty list is refused (it used to run the preset's values silently)."""
    import math

    if text is None:
        return [kind(0)]
    what = "widths (positive integers)" if kind is int else "learning rates (positive numbers)"
    try:
        values = [kind(v) for v in split_list(text)]
    except ValueError:
        raise SpecError(f"{flag}: cannot read {text!r}; give {what}, e.g. "
                        f"{'64,256,1024' if kind is int else '0.1,0.3,1'}") from None
    bad = [v for v in values if not (math.isfinite(v) and v > 0)]
    if bad or not values:
        raise SpecError(f"{flag}: {bad[0] if bad else text!r} is not allowed; give {what}, or leave {flag} out "
                        "for the preset's")
    return values


def _cmd_linear_offset(args) -> int:
    import pandas as pd

    from .analysis.linear import linear_comparison, parting
    from .api import make_spec, replicate_spec
    from .data import iterations_per_epoch, load_data
    from .step import Step
    from .store import Store

    from .train import TrainOptions, check_spec

    spec, name = make_spec(args.preset or "mnist1d_mlp", parse_assignments(args.sets), args.config)
    check_spec(spec, TrainOptions(data_root=args.data_root))
    data = load_data(spec.data, args.data_root)
    try:
        until = Step.parse(args.until or args.steps or "1000it").iterations(
            iterations_per_epoch(len(data.y_train), spec.data.batch_size))
    except ValueError as e:
        raise SpecError(f"--until: {e}") from None
    from .spec import parse_schedule

    try:
        parse_schedule(args.schedule)
    except SpecError as e:
        raise SpecError(str(e).replace("probe.schedule", "--schedule")) from None
    check_range("--replicates", args.replicates, 1, MAX_REPLICATES)
    frames = [linear_comparison(replicate_spec(spec, r), Store(args.root).root, until, args.schedule, name, r,
                                args.data_root) for r in range(args.replicates)]
    rows = pd.concat(frames, ignore_index=True)
    err = rows[rows.metric == "error"].groupby(["split", "model", "step"])["value"].mean()
    dist = rows[rows.metric == "output_distance"].groupby(["split", "step"])["value"].mean()
    steps = sorted(rows.step.unique())
    show = [s for s in steps if s in (0, 10, 50, 100, 200, 500, 1000, 2000, 4000) or s == steps[-1]]
    print(f"{'step':>6} {'net train err':>14} {'lin train err':>14} {'net test err':>13} {'lin test err':>13} "
          f"{'dist train':>11} {'dist test':>10}")
    for s in show:
        print(f"{s:>6} {100 * err['train', 'network', s]:>13.1f}% {100 * err['train', 'linear', s]:>13.1f}% "
              f"{100 * err['test', 'network', s]:>12.1f}% {100 * err['test', 'linear', s]:>12.1f}% "
              f"{dist['train', s]:>11.3f} {dist['test', s]:>10.3f}")
    for r, frame in enumerate(frames):
        p = parting(frame, args.tolerance)
        print(f"replicate {r}: errors differ by more than {100 * args.tolerance:.0f} points from step "
              f"{p['train']} (train), {p['test']} (test)")
    _write_outputs(args, rows, "plot_linear")
    return 0


def _cmd_instability(args) -> int:
    from .analysis import instability
    from .api import make_spec
    from .lottery import Study
    from .step import parse_steps
    from .store import Store

    store = Store(args.root)
    opts = _options(args)
    try:
        at = parse_steps(args.at) if args.at else None
    except ValueError as e:
        raise SpecError(f"--at: {e}") from None
    pretrain = _pretrain_overrides(args)
    if args.study:
        if args.sets or args.config or pretrain:
            raise SpecError("--set, --config and --pretrain change the recipe: use them with --preset, not --study")
        study = Study.load(args.study, store, getattr(args, "data_root", None))
    else:
        spec, name = make_spec(args.preset or "mnist1d_mlp", {**parse_assignments(args.sets), **pretrain}, args.config)
        if not at and spec.pretrain.kind:
            at = (spec.pretrain.steps,)
        if not at:
            raise SpecError("--at: give the steps to spawn copies from, e.g. --at 0it,50it,200it")
        study = Study(spec, at, name, store, args.data_root)
    baselines = _baselines(args.baselines)
    table = instability(study, parse_levels(args.levels), at, copies=args.copies, points=args.points,
                        replicates=args.replicates, bn_reset=args.bn_reset, bn_batches=args.bn_batches,
                        baselines=baselines, options=opts)
    print(f"study {study.key}  ({study.preset or '-'}; instability: max error on the path minus mean endpoint error)")
    _print_instability(table)
    if args.plot:
        from .report import plot_instability

        for p in plot_instability(table, args.plot):
            print(f"wrote {p}")
    return 0


def _cmd_pretrain_study(args) -> int:
    from .api import make_spec
    from .data import load_data
    from .lottery.pretrain import PretrainGrid
    from .step import parse_steps
    from .store import Store

    spec, name = make_spec(args.preset, parse_assignments(args.sets), args.config)
    try:
        steps = tuple(parse_steps(args.steps))
    except ValueError as e:
        raise SpecError(f"--steps: {e}") from None
    kinds = tuple(k.strip() for k in args.kinds.split(",") if k.strip())
    params = {k: getattr(args, f"pretrain_{k}") for k in ("size", "factor", "upsample", "lr", "seed")
              if getattr(args, f"pretrain_{k}") is not None}
    if "subset" in kinds and "size" not in params:
        params["size"] = max(spec.data.batch_size, len(load_data(spec.data, args.data_root).y_train) // 10)
    grid = PretrainGrid(spec, kinds, steps, args.levels, args.replicates, name, Store(args.root), params,
                        args.sparse_level, args.data_root)
    table = grid.run(_options(args))
    shown = parse_levels(args.report_levels) if args.report_levels else None
    _print_pretrain(table, shown)
    _write_outputs(args, table, "plot_pretrain", shown)
    return 0


def _cmd_scores(args) -> int:
    from .analysis.scores import ScoreSet, mean_scores
    from .api import make_spec
    from .step import Step
    from .store import Store

    spec, name = make_spec(args.preset, parse_assignments(args.sets), args.config)
    try:
        at = Step.parse(args.at)
    except ValueError as e:
        raise SpecError(f"--at: {e}") from None
    scores = ScoreSet(spec, args.method, at, args.replicates, name, Store(args.root), args.data_root)
    table = scores.compute(_options(args))
    mean = mean_scores(table)["score"]
    q = mean.quantile([0.1, 0.5, 0.9])
    print(f"scores {scores.key}  ({name or '-'}, {args.method} at {at} = {scores.at_it}it, {args.replicates} "
          f"replicate(s), {len(mean)} examples)  {scores.path / 'scores.csv'}")
    print(f"mean over replicates: mean {mean.mean():.4f}  10% {q[0.1]:.4f}  median {q[0.5]:.4f}  90% {q[0.9]:.4f}")
    if args.replicates >= 2:
        wide = table.pivot(index="example", columns="replicate", values="score")
        half = args.replicates // 2
        a, b = wide.iloc[:, :half].mean(axis=1), wide.iloc[:, half:].mean(axis=1)
        print(f"split-half reliability (Spearman between the means of replicates 0-{half - 1} and "
              f"{half}-{args.replicates - 1}): {a.corr(b, method='spearman'):.3f}")
    _write_outputs(args, table, "plot_scores")
    return 0


def _cmd_data_diet(args) -> int:
    from .analysis.diet import data_diet
    from .api import make_spec
    from .step import Step
    from .store import Store

    spec, name = make_spec(args.preset, parse_assignments(args.sets), args.config)
    try:
        keep = [float(v) for v in args.keep.split(",")]
    except ValueError:
        raise SpecError(f"--keep: cannot read {args.keep!r}; write fractions such as 0.3,0.5,0.7") from None
    at = {}
    for m in ("el2n", "grand", "forgetting"):
        v = getattr(args, f"{m}_at")
        if v is not None:
            try:
                at[m] = Step.parse(v)
            except ValueError as e:
                raise SpecError(f"--{m}-at: {e}") from None
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    table = data_diet(spec, keep, methods, args.replicates, name, Store(args.root), _options(args),
                      args.score_replicates, at, args.keep_which)
    s = table.groupby(["method", "keep"])["test_accuracy"].agg(["mean", "std", "count"]).reset_index()
    print(f"data diet ({name or '-'}; keeping the {args.keep_which} examples by each score): final test accuracy")
    print(f"{'method':<11} {'keep':>5} {'test acc (mean ± std)':>22} {'n':>3}")
    for r in s.itertuples():
        print(f"{r.method:<11} {r.keep:>5.2f} {100 * r.mean:>12.2f} ± {100 * (r.std if r.std == r.std else 0):<6.2f} "
              f"{r.count:>3}")
    _write_outputs(args, table, "plot_diet")
    return 0


def _cmd_diet_lottery(args) -> int:
    from .analysis.diet import default_at
    from .analysis.scores import ScoreSet
    from .api import make_spec
    from .lottery.pretrain import PretrainGrid, diet_variants
    from .step import Step, parse_steps
    from .store import Store
    from .train import check_spec

    spec, name = make_spec(args.preset, parse_assignments(args.sets), args.config)
    try:
        steps = tuple(parse_steps(args.steps))
        sizes = [int(v) for v in args.sizes.split(",")]
        at = Step.parse(args.score_at) if args.score_at else None
    except ValueError as e:
        raise SpecError(f"--steps, --sizes or --score-at: {e}") from None
    orders = [o.strip() for o in args.orders.split(",") if o.strip()]
    opts = _options(args)
    store = Store(args.root)
    key = None
    if any(o != "random" for o in orders):
        _, ipe, total = check_spec(spec, opts)
        scores = ScoreSet(spec, args.score_method, at or default_at(args.score_method, spec, ipe, total),
                          args.score_replicates, name, store, args.data_root)
        diet_variants(sizes, orders, "-")  # refuse bad orders and sizes before scoring
        scores.compute(opts)
        key = scores.key
        print(f"scores {key} ({args.score_method} at {scores.at}, {args.score_replicates} replicates)")
    grid = PretrainGrid(spec, (), steps, args.levels, args.replicates, name, store, {}, None, args.data_root,
                        variants=diet_variants(sizes, orders, key, args.balance))
    table = grid.run(opts)
    shown = parse_levels(args.report_levels) if args.report_levels else None
    _print_pretrain(table, shown)
    _write_outputs(args, table, "plot_pretrain", shown)
    return 0


def _cmd_example_lmc(args) -> int:
    from .analysis.example_lmc import lmc_against_imp
    from .lottery import Study
    from .store import Store

    try:
        thresholds = [float(v) for v in args.thresholds.split(",")]
    except ValueError:
        raise SpecError(f"--thresholds: cannot read {args.thresholds!r}; write numbers such as 0.01,0.05") from None
    study = Study.load(args.study, Store(args.root))
    per_k, corr = lmc_against_imp(study, args.imp_level, thresholds, args.level)
    print(f"study {study.key}: training examples with barrier < threshold between copies from W_k (level "
          f"{args.level}), and IMP level {args.imp_level} rewound to k")
    print(f"{'threshold':>9} {'k':>8} {'connected % (mean ± std)':>26} {'IMP test acc %':>16} {'n':>3}")
    for r in per_k.itertuples():
        print(f"{r.threshold:>9g} {r.rewind_step:>8} {100 * r.fraction:>15.2f} ± {100 * (r.fraction_std or 0):<8.2f} "
              f"{100 * r.imp_accuracy:>16.2f} {r.n:>3}")
    for r in corr.itertuples():
        print(f"Spearman(connected share, IMP accuracy) at threshold {r.threshold:g}: {r.spearman:+.3f} (n = {r.n} "
              f"replicate x k pairs)")
    if args.plot:
        from .report import plot_example_lmc

        for p in plot_example_lmc(per_k, args.plot):
            print(f"wrote {p}")
    return 0


# output flags: probed before any work (store/io.probe_output), written when the work is done
OUTPUT_FLAGS = (("csv", "--csv", "file"), ("plot", "--plot", "stem"), ("out", "--out", "dir"))


def _check_outputs(args) -> None:
    for attr, flag, kind in OUTPUT_FLAGS:
        value = getattr(args, attr, None)
        if value is not None and not (attr == "plot" and not isinstance(value, str)):
            probe_output(value, flag, "stem" if args.command == "plot" and attr == "out" else kind)


def _write_outputs(args, table, plot: str, *plot_args) -> None:
    """--csv PATH and --plot PATH of the experiment commands (``plot`` names a report function)."""
    if getattr(args, "csv", None):
        from pathlib import Path

        Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.csv, index=False)
        print(f"wrote {args.csv}")
    if args.plot:
        from . import report

        for p in getattr(report, plot)(table, args.plot, *plot_args):
            print(f"wrote {p}")


def _cmd_critical_period(args) -> int:
    from .analysis.critical import critical_periods
    from .api import make_spec
    from .step import parse_steps
    from .store import Store

    spec, name = make_spec(args.preset, parse_assignments(args.sets), args.config)
    try:
        untils = list(parse_steps(args.until))
    except ValueError as e:
        raise SpecError(f"--until: {e}") from None
    params = {k: getattr(args, f"pretrain_{k}") for k in ("size", "factor", "upsample", "seed")
              if getattr(args, f"pretrain_{k}") is not None}
    table = critical_periods(spec, args.deficit, untils, args.replicates, name, Store(args.root), _options(args),
                             params)
    g = table.groupby(["deficit_until", "deficit_iterations"])["test_accuracy"]
    s = g.agg(["mean", "std", "count"]).reset_index().sort_values("deficit_iterations")
    print(f"deficit {args.deficit} ({name or '-'}): final test accuracy against the iteration it is removed at")
    print(f"{'until':>8} {'iterations':>10} {'test acc (mean ± std)':>22} {'n':>3}")
    for r in s.itertuples():
        print(f"{r.deficit_until:>8} {r.deficit_iterations:>10} {100 * r.mean:>12.2f} ± {100 * (r.std or 0):<6.2f} "
              f"{r.count:>3}")
    _write_outputs(args, table, "plot_critical")
    return 0


def _print_pretrain(table, levels) -> None:
    from .report import pretrain_summary

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
              f"{100 * r['mean']:>12.2f} ± {100 * r['std']:<6.2f} {r['n']:>2} {diff('supervised'):>28} {diff('k0'):>26}")


def _cmd_reproduce(args) -> int:
    from .reproduce import CLAIMS, claim_ids, reproduce
    from .store import Store

    if args.list:
        for c in claim_ids():
            print(f"{c:<4} {CLAIMS[c].title}\n     {CLAIMS[c].paper}")
        return 0
    opts = _options(args)
    root = Store(args.root).root
    result = reproduce(args.claims, args.replicates, root, args.out or root / "reproduce", args.quick,
                       parse_assignments(args.sets), opts, args.data_root,
                       log=None if args.quiet else (lambda m: print(m, flush=True)))
    print(f"\n{'claim':<5} {'verdict':<13} measured")
    for r in result.results:
        print(f"{r.claim.id:<5} {r.verdict:<13} {r.measurement.summary}")
    print(f"\n{len(result.results)} claim(s) in {result.seconds:.0f} s")
    print(f"wrote {result.csv}")
    print(f"wrote {result.page}")
    return 0


def _cmd_report(args) -> int:
    from .report.study_page import study_page
    from .store import Store

    store = Store(args.root)
    page = study_page(args.study, store, args.out)
    print(f"wrote {page}")
    return 0


def _cmd_train(args) -> int:
    from .api import make_spec, replicate_members
    from .store import Store
    from .exec import train_population

    check_range("--replicates", args.replicates, 1, MAX_REPLICATES)
    if args.resume_every < 1:
        raise SpecError(f"--resume-every must be at least 1 iteration, got {args.resume_every}")
    spec, name = make_spec(args.preset, {**parse_assignments(args.sets), **_pretrain_overrides(args)}, args.config)
    members = replicate_members(spec, name, args.replicates)
    opts = _options(args, resume_every=args.resume_every)
    store = Store(args.root)
    if spec.pretrain.kind:
        from .lottery.study import pretrain_members

        members = pretrain_members(members, store, opts)
    runs = train_population(members, store, opts)
    for member, run in zip(members, runs):
        record = run.summary()
        if record.get("status") == "diverged":
            last = record.get("last_finite_loss")
            outcome = (f"DIVERGED at iteration {record['diverged_at']} "
                       f"(last finite loss {'-' if last is None else f'{last:.4g}'})")
        else:
            final = record["final"]
            outcome = f"test accuracy {final['test_accuracy']:.4f}  test loss {final['test_loss']:.4f}"
        print(f"{run.key}  {name or '-'}  member {member.index}  seed {member.spec.seeds.init}  {outcome}  {run.path}")
    return 0


def _cmd_ls(args) -> int:
    from .store import Store

    store = Store(args.root)
    runs = store.runs()
    if not runs:
        print(f"no runs in {store.root}")
        return 0
    print(f"{'run':<16}  {'kind':<8}  {'preset':<14}  {'status':<8}  {'data':<8}  {'model':<10}  "
          f"{'steps':<8}  {'opt':<4}  {'lr':<7}  {'seed':<4}  test_acc")
    damaged = 0
    for run in runs:
        health = run.health()
        if health.status == "damaged":
            damaged += 1
            print(f"{run.key:<16}  {'damaged':<8}  {health.problem}")
            continue
        try:
            meta, spec = run.meta(), run.spec_doc()["spec"]
            fields = (f"{spec['data']['name']:<8}  {spec['model']['name']:<10}  {spec['train']['steps']:<8}  "
                      f"{spec['train']['optimizer']:<4}  {spec['train']['lr']:<7g}  {spec['seeds']['init']:<4}")
        except (RunDamaged, KeyError, TypeError, ValueError):  # an unfinished run's spec is checked when it trains
            meta, fields = run.meta(), f"{'(spec.json unreadable)':<52}"
        record = run.summary()
        acc = record.get("final", {}).get("test_accuracy")
        shown = f"at {record['diverged_at']}it" if health.status == "diverged" else ("" if acc is None else f"{acc:.4f}")
        print(f"{run.key:<16}  {str(meta.get('kind', '-')):<8}  {str(meta.get('preset', '-')):<14}  "
              f"{health.status:<8}  {fields}  {shown}")
    if damaged:
        print(f"rewind ls: {damaged} damaged run(s); `rewind verify --repair` moves them aside, and the command "
              "that made them trains them again", file=sys.stderr)
    return 1 if damaged else 0


def _cmd_verify(args) -> int:
    from .store import Store
    from .store.verify import verify_store

    store = Store(args.root)
    rows = verify_store(store, repair=args.repair)
    for r in rows:
        detail = "  ".join(x for x in (r["problem"], r["action"]) if x)
        print(f"{r['what']:<12}  {r['key']:<20}  {r['status']:<14}  {detail}")
    if not rows:
        print(f"no runs or records in {store.root}")
        return 0
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    left = sum(1 for r in rows if r["status"] == "damaged" and not r["action"].startswith("moved"))
    print(f"{len(rows)} checked in {store.root}: " + ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))
          + ("" if not left else f"; {left} damaged" + ("" if args.repair else
                                                          " (rerun with --repair to move them aside)")))
    return 1 if left else 0


def _cmd_results(args) -> int:
    from .api import results

    df = results(args.root)
    if args.format == "csv":
        df.to_csv(sys.stdout, index=False)
    else:
        json.dump(df.to_dict(orient="records"), sys.stdout)
        sys.stdout.write("\n")
    return 1 if df.attrs.get("damaged") else 0


def _cmd_data(args) -> int:
    from .data.core import data_root
    from .data.files import download

    for path in download(args.name, data_root(args.data_root)):
        print(f"ok {path}")
    return 0


def _cmd_presets(args) -> int:
    for name in sorted(PRESETS):
        print(name)
        print(textwrap.indent(textwrap.fill(PRESETS[name].doc, 88), "    "))
    return 0


def _one_line_warnings() -> None:
    """rewind's warnings as one line each on stderr, once per message."""
    def show(message, category, filename, lineno, file=None, line=None):
        print(f"rewind: warning: {message}", file=sys.stderr)

    warnings.showwarning = show
    warnings.simplefilter("default", RewindWarning)


def one_line(message) -> str:
    """A message on one line: characters that are not printable (a newline, a control character
    someone typed into a flag) are shown escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in str(message))


def _os_error(e: OSError) -> str:
    where = f"{e.filename}: " if e.filename else ""
    what = e.strerror or str(e)
    if e.errno == errno.ENOSPC:
        hint = "free some space and run the same command again (finished work is kept, nothing partial was left)"
    elif e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        hint = "choose a --root (or --data-root) you can write to, or fix the permissions"
    elif e.errno == errno.EISDIR:
        hint = "a directory stands where a file is expected"
    elif e.errno == errno.ENOTDIR:
        hint = "a file stands where a directory is expected"
    else:
        hint = "check the path and run the same command again"
    return f"{where}{what}; {hint}"


def main(argv: list[str] | None = None) -> int:
    """Exit status: 0 success; 1 the environment failed (disk full, permissions, missing or damaged
    dataset files, a damaged store); 2 bad input (refused before anything is written); 130 Ctrl-C."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "branch":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    handlers = {"train": _cmd_train, "ls": _cmd_ls, "results": _cmd_results, "presets": _cmd_presets,
                "lottery": _cmd_lottery, "plot": _cmd_plot, "instability": _cmd_instability, "early": _cmd_early,
                "linear": _cmd_linear, "linear-sweep": _cmd_linear_sweep, "pretrain-study": _cmd_pretrain_study,
                "critical-period": _cmd_critical_period,
                "scores": _cmd_scores, "data-diet": _cmd_data_diet,
                "example-lmc": _cmd_example_lmc, "diet-lottery": _cmd_diet_lottery, "data": _cmd_data, "verify": _cmd_verify,
                "reproduce": _cmd_reproduce, "report": _cmd_report}
    from .data.files import DataError
    from .train.ddp import silent_rank

    quiet_rank = silent_rank()  # one rank of a torchrun world speaks
    if quiet_rank:
        sys.stdout = open(os.devnull, "w")
    with warnings.catch_warnings():
        _one_line_warnings()
        if quiet_rank:
            warnings.simplefilter("ignore")
        try:
            _check_outputs(args)
            if getattr(args, "ddp", None) is not None:
                code = _launch_ddp(args, sys.argv[1:] if argv is None else list(argv))
            else:
                code = _cmd_branch(args, extra) if args.command == "branch" else handlers[args.command](args)
            sys.stdout.flush()  # a closed pipe shows here, not at exit
            return code
        except BrokenPipeError:
            # the reader went away (| head): stop quietly, and keep Python from complaining at exit
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            return 0
        except (DataError, RecordDamaged) as e:  # a damaged run or record of the store
            print(f"rewind {args.command}: error: {one_line(e)}", file=sys.stderr)
            return 1
        except (SpecError, CheckpointError, ValueError) as e:
            print(f"rewind {args.command}: error: {one_line(e)}", file=sys.stderr)
            return 2
        except OSError as e:
            print(f"rewind {args.command}: error: {one_line(_os_error(e))}", file=sys.stderr)
            return 1
        except MemoryError:
            print(f"rewind {args.command}: error: out of memory; use a smaller model, batch or population",
                  file=sys.stderr)
            return 1
        except KeyboardInterrupt:
            print("interrupted; the run resumes from its last resume point when asked again", file=sys.stderr)
            return 130


if __name__ == "__main__":
    sys.exit(main())
