"""rewind train: train a recipe (R replicates), or find it in the store; and --ddp, which starts the
same command as N torchrun processes."""
from __future__ import annotations

import os
import sys

from ..spec import SpecError, check_range
from . import args as common
from .registry import register_command


def _arguments(p) -> None:
    p.add_argument("--preset", default="mnist1d_mlp", help="named recipe (default: mnist1d_mlp; rewind presets)")
    common.replicates(p)
    p.add_argument("--resume-every", type=int, default=500, metavar="N", help="iterations between resume points")
    common.pretraining(p)
    d = p.add_argument_group("a deficit in the first iterations (critical periods)")
    d.add_argument("--deficit", default=None, metavar="KIND", help="random-labels, blur or subset, removed after "
                                                                   "--deficit-until (the --pretrain-PARAM flags set it)")
    d.add_argument("--deficit-until", default=None, metavar="STEP", help="iteration at which it is removed, e.g. 2ep")
    common.trains(p, preset=None)


@register_command("train", help="train a recipe (returned from the store if already trained)", arguments=_arguments,
                  fields=True, example="rewind train --preset mnist1d_conv --set train.lr=0.05 --replicates 3")
def train(args) -> int:
    from ..api import train as train_runs

    common.count(args)
    if args.resume_every < 1:
        raise SpecError(f"--resume-every must be at least 1 iteration, got {args.resume_every}")
    spec, name = common.spec_of(args)
    opts = common.options(args, resume_every=args.resume_every)
    runs = train_runs(spec, replicates=args.replicates, root=args.root, options=opts, name=name)
    for run in runs:
        record, member = run.summary(), run.meta().get("member", 0)
        seed = run.spec_doc()["spec"]["seeds"]["init"]
        if record.get("status") == "diverged":
            last = record.get("last_finite_loss")
            outcome = (f"DIVERGED at iteration {record['diverged_at']} "
                       f"(last finite loss {'-' if last is None else f'{last:.4g}'})")
        else:
            final = record["final"]
            split = "test" if "test_accuracy" in final else "train"   # (train.eval_splits=train)
            outcome = f"{split} accuracy {final[f'{split}_accuracy']:.4f}  {split} loss {final[f'{split}_loss']:.4f}"
        print(f"{run.key}  {name or '-'}  member {member}  seed {seed}  {outcome}  {run.path}")
    return 0


def launch_ddp(args, argv: list[str]) -> int:
    """``rewind CMD ... --ddp N``: the same command as N torchrun processes on this machine; what
    every rank would refuse is refused here first, in one line, before any rank starts."""
    import subprocess

    from ..host import launched, usable_cpus

    if launched():
        raise SpecError("--ddp: this process is already one of a torchrun world; leave --ddp out")
    if args.command not in common.DDP_COMMANDS:
        raise SpecError(f"--ddp: {' and '.join(common.DDP_COMMANDS)} train data-parallel; "
                        f"`rewind {args.command}` does not")
    check_range("--ddp", args.ddp, 1, 1024)
    if args.executor != "local":
        raise SpecError("--ddp: each run trains on this machine's processes; leave --executor out")
    if args.engine == "vectorised":
        raise SpecError("--engine vectorised: stacks members in one process; with --ddp use sequential or auto")
    spec, _ = common.spec_of(args)
    if spec.probe.schedule:
        raise SpecError("probe.schedule: probes are not taken in data-parallel (--ddp) runs; train the probed run "
                        "in one process")
    common.options(args)   # the device, counts and executor flags
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
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, usable_cpus() // args.ddp)))  # the cores shared among ranks
    return subprocess.call(cmd, env=env)
