"""What the commands share, declared once: their arguments (the recipe, the store, how to train,
replicates, outputs, pretraining flags) and the helpers that turn them into a spec, steps,
training options and outputs. Nothing here imports torch: commands that train nothing start fast."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..spec import MAX_LEVELS, MAX_REPLICATES, SpecError, check_range, field_help, parse_assignments, split_list
from ..step import Step, parse_steps


def fields_epilog() -> str:
    from ..presets import PRESETS

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


# ---- arguments -------------------------------------------------------------------------------
def store(p: argparse.ArgumentParser) -> None:
    p.add_argument("--root", default=None, help="run store directory (default: $REWIND_ROOT or ./runs)")


def recipe(p: argparse.ArgumentParser, preset: str | None = "mnist1d_mlp", data_root: bool = True) -> None:
    """--preset, --set, --config (and --data-root): what is trained."""
    if preset is not None:
        p.add_argument("--preset", default=preset, help=f"named recipe (default: {preset}; rewind presets lists them)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="FIELD=VALUE",
                   help="change a spec field, e.g. --set train.lr=0.05 (repeatable)")
    p.add_argument("--config", default=None, metavar="FILE.toml", help="TOML file of spec fields, as [section] tables")
    if data_root:
        p.add_argument("--data-root", default=None,
                       help="dataset directory (default: $REWIND_DATA or ~/.cache/rewind/data)")


def replicates(p: argparse.ArgumentParser, default: int | None = 1, what: str = "replicates") -> None:
    shown = "default: the study's" if default is None else f"default {default}"
    p.add_argument("--replicates", type=int, default=default,
                   help=f"{what} (every seed shifted by 0..R-1; {shown})")


def outputs(p: argparse.ArgumentParser, csv: bool = True, plot: bool = True) -> None:
    if csv:
        p.add_argument("--csv", default=None, metavar="PATH", help="also write the table to PATH")
    if plot:
        p.add_argument("--plot", default=None, metavar="PATH", help="also write the figure to PATH.png and PATH.svg")


def training(p: argparse.ArgumentParser) -> None:
    """How (and where) populations train: engine, device, threads, executor, Ray, DDP; and --quiet."""
    g = p.add_argument_group("how and where to train (nothing here changes a run's result, but the engine)")
    g.add_argument("--engine", default="auto", choices=("auto", "sequential", "vectorised"),
                   help="auto (vectorised for small models), sequential, vectorised; part of a run's key")
    g.add_argument("--device", default="cpu", help="cpu, cuda (or cuda:N) or auto (default: cpu)")
    g.add_argument("--workers", type=int, default=1,
                   help="split vectorised populations across this many one-thread processes (default 1)")
    g.add_argument("--data-workers", type=int, default=None,
                   help="DataLoader worker processes for datasets streamed from files (ImageNet; default min(8, cores))")
    g.add_argument("--threads", type=int, default=None, metavar="N",
                   help="torch threads in this process (default: torch's choice); float32 results are bit-identical "
                        "only for a fixed thread count, which every run records")
    g.add_argument("--compile", action="store_true",
                   help="torch.compile the training forward pass (sequential engine; pays off on GPUs and long runs)")
    g.add_argument("--chunk", type=int, default=16, metavar="K",
                   help="the vectorised engine stacks at most K members at once (default 16)")
    g.add_argument("--executor", default="local", choices=("local", "processes", "ray"),
                   help="where populations train: local (this process), processes (--workers processes on this "
                        "machine), ray (tasks on a Ray cluster; pip install 'rewind[ray]')")
    g.add_argument("--ray-address", default=None, metavar="auto|HOST:PORT",
                   help="the Ray cluster to join (default: start Ray on this machine, or join $RAY_ADDRESS)")
    g.add_argument("--cpus-per-task", type=int, default=1, metavar="C",
                   help="Ray: CPUs (and torch threads) of each task (default 1)")
    g.add_argument("--gpus-per-task", type=float, default=0.0, metavar="G",
                   help="Ray: GPUs of each task; > 0 trains on the task's GPU (default 0)")
    g.add_argument("--ddp", type=int, default=None, metavar="N",
                   help="train each run data-parallel on N processes (torchrun; NCCL on GPUs, Gloo on CPUs; "
                        "train and lottery)")
    g.add_argument("--ddp-batchnorm", default="sync", choices=("sync", "local"),
                   help="with DDP: BatchNorm statistics of the global batch (sync, as one process) or per rank")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def trains(p: argparse.ArgumentParser, preset: str | None = "mnist1d_mlp") -> None:
    """Everything a command that trains a recipe takes: the recipe, how to train, the store."""
    if preset is not None:
        p.add_argument("--preset", default=preset, help=f"named recipe (default: {preset}; rewind presets lists them)")
    training(p)
    recipe(p, preset=None)
    store(p)


PRETRAIN_FLAGS = ("steps", "seed", "lr", "factor", "upsample", "size", "order", "score", "balance", "mask", "study",
                  "level")


def pretraining(p: argparse.ArgumentParser) -> None:
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


def alteration(p: argparse.ArgumentParser, names=("size", "factor", "upsample", "seed")) -> None:
    """--pretrain-PARAM flags of a grid's alteration (pretrain-study, critical-period)."""
    docs = {"size": "subset: examples", "factor": "blur: downsampling factor (default 4)",
            "upsample": "blur: nearest or linear", "lr": "learning rate while pretraining",
            "seed": "seed of the alteration"}
    for name in names:
        p.add_argument(f"--pretrain-{name}", default=None, help=docs[name])


def alteration_params(args, names=("size", "factor", "upsample", "lr", "seed")) -> dict:
    return {k: getattr(args, f"pretrain_{k}") for k in names if getattr(args, f"pretrain_{k}", None) is not None}


# ---- values from the arguments ----------------------------------------------------------------
def pretrain_overrides(args) -> dict:
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


def spec_of(args, extra: dict | None = None, preset: str | None = None, pretrain: bool = True):
    """(spec, preset name) from --preset (or ``preset``), --config, --set and (``pretrain``) the
    --pretrain/--deficit flags; every field checked (models registered first, so model.name is too)."""
    from .. import models  # noqa: F401  (registers the model catalogue that model.name is checked against)
    from ..api import make_spec

    overrides = {**parse_assignments(getattr(args, "sets", [])), **(pretrain_overrides(args) if pretrain else {}),
                 **(extra or {})}
    return make_spec(preset or args.preset, overrides, getattr(args, "config", None))


def step(text: str, flag: str) -> Step:
    try:
        return Step.parse(text)
    except ValueError as e:
        raise SpecError(f"{flag}: {e}") from None


def steps(text: str, flag: str) -> tuple[Step, ...]:
    try:
        return tuple(parse_steps(text))
    except ValueError as e:
        raise SpecError(f"{flag}: {e}") from None


def numbers(text: str, flag: str, kind=float, example: str = "0.1,0.5") -> list:
    try:
        return [kind(v) for v in split_list(text)]
    except ValueError:
        raise SpecError(f"{flag}: cannot read {text!r}; write numbers such as {example}") from None


def names(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def count(args, name: str = "replicates", low: int = 1, high: int = MAX_REPLICATES) -> int:
    return check_range(f"--{name}", getattr(args, name), low, high)


def levels(text: str) -> list[int]:
    """'1-5', '3' or '1,3,5' -> sorted levels, each from 0 to MAX_LEVELS."""
    out: set[int] = set()
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
            out.update(range(a, b + 1))
    except ValueError:
        raise SpecError(f"--levels: cannot read {text!r}; write 1-5, 3 or 1,3,5") from None
    return sorted(out)


def baselines(text: str) -> tuple[str, ...]:
    """--baselines reinit,random-prune -> names, each checked against the branch registry."""
    from ..lottery import get_branch

    out = tuple(names(text))
    for b in out:
        get_branch(b)
    return out


DDP_COMMANDS = ("train", "lottery")


def options(args, **extra):
    """TrainOptions from the flags every training command shares (checked before anything is
    written; a Ray cluster is connected to and its store checked)."""
    from ..analysis import probes  # noqa: F401  (its loop hook: any training command may be asked for probes)
    from ..host import launched
    from ..train import TrainOptions
    from ..train.member import resolve_device

    resolve_device(args.device)
    check_range("--workers", args.workers, 1, 1024)
    check_range("--chunk", args.chunk, 1, 4096)
    if args.threads is not None:
        check_range("--threads", args.threads, 1, 1024)
    if args.data_workers is not None:
        check_range("--data-workers", args.data_workers, 0, 1024)
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
        from ..exec.raycluster import connect
        from ..store import Store

        connect(opts, Store(getattr(args, "root", None)).root)
    return opts


# ---- outputs ----------------------------------------------------------------------------------
# output flags: probed before any work (store/io.probe_output), written when the work is done
OUTPUT_FLAGS = (("csv", "--csv", "file"), ("plot", "--plot", "stem"), ("out", "--out", "dir"))


def check_outputs(args) -> None:
    from ..store.io import probe_output

    for attr, flag, kind in OUTPUT_FLAGS:
        value = getattr(args, attr, None)
        if isinstance(value, str):
            probe_output(value, flag, "stem" if args.command == "plot" and attr == "out" else kind)


def write_outputs(args, table, plot: str, *plot_args) -> None:
    """--csv PATH and --plot PATH of the experiment commands (``plot`` names a report function)."""
    if getattr(args, "csv", None):
        Path(args.csv).parent.mkdir(parents=True, exist_ok=True)
        table.to_csv(args.csv, index=False)
        print(f"wrote {args.csv}")
    if getattr(args, "plot", None):
        from .. import report

        for p in getattr(report, plot)(table, args.plot, *plot_args):
            print(f"wrote {p}")


def mean_std(mean: float, std: float, n: int, scale: float = 100.0, width: int = 6) -> str:
    """'71.20 ± 0.85' over replicates; one replicate shows as 'n = 1', never as '± 0.00'."""
    if n < 2 or std != std:
        return f"{scale * mean:>{width}.2f} (n = {n})"
    return f"{scale * mean:>{width}.2f} ± {scale * std:<5.2f}"
