"""Populations and the engines that train them here: the sequential loop (train/loop.py, one
member after another) or the vectorised engine (train/vectorised.py, members stacked), in this
process or split across worker processes (local.py); the engine choice and how a population may
be split without changing its bits. ``train_population`` (plan.py) hands a population to the
executor that ``TrainOptions.executor`` names; the trainer knows nothing of executors."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Hashable

import torch

from ..data import load_data
from ..models import create_model
from ..spec import SpecError, check_range
from ..store import RunDir, Store
from ..host import usable_cpus
from ..train.loop import train_member
from ..train.member import Member, TrainOptions, engine_name
from ..train.setup import check_spec
from ..train.vectorised import train_vectorised
from .local import run_parallel

EXECUTORS = ("local", "processes", "ray")


def population_key(spec) -> tuple:
    """What members of one population must share: data, model, training and pretraining fields
    (only seeds, starting weights and masks may differ)."""
    return (spec.data, spec.model, spec.train, spec.pretrain)


def check_population(members: list[Member], opts: TrainOptions) -> None:
    if opts.executor not in EXECUTORS:
        raise SpecError(f"--executor: {opts.executor!r} is not allowed; choose {', '.join(EXECUTORS)}")
    if members:
        ref = members[0].spec
        for m in members[1:]:
            if population_key(m.spec) != population_key(ref):
                raise ValueError("members of one population must share data, model, training and pretraining "
                                 "fields; only seeds, starting weights and masks may differ")
        check_spec(ref, opts, tuple(m.start for m in members))
        if opts.ddp and any(m.spec.probe.schedule for m in members):
            raise SpecError("probe.schedule: probes are not taken in data-parallel (--ddp) runs; train the "
                            "probed run in one process")


def set_threads(opts: TrainOptions) -> None:
    if opts.threads is not None:
        check_range("threads", opts.threads, 1, 1024)
        torch.set_num_threads(opts.threads)
    elif torch.get_num_threads() > usable_cpus():
        torch.set_num_threads(usable_cpus())   # never more threads than the cores this process may use


def with_engine(members: list[Member], opts: TrainOptions) -> list[Member]:
    """``members`` naming the engine that trains them (part of their keys: Member.key)."""
    name = engine_name(choose_engine(members, opts), opts)
    return [m if m.engine == name else dataclasses.replace(m, engine=name) for m in members]


def train_here(members: list[Member], store: Store, opts: TrainOptions) -> list[RunDir]:
    """The population trained on this machine: in this process, or (vectorised, ``workers`` > 1 or
    the processes executor) split across worker processes."""
    set_threads(opts)
    members = with_engine(members, opts)
    if members and members[0].engine == "vectorised":
        pending = [m for m in members if not store.run(m.key).done]
        workers = opts.workers if opts.executor != "processes" or opts.workers > 1 else usable_cpus()
        parts = split_stacks(pending, opts, workers) if workers > 1 else []
        if len(parts) > 1:
            run_parallel(parts, store, opts, workers)
        return train_vectorised(members, store, opts)
    return [train_member(m, store, opts) for m in members]


def split_stacks(pending: list, opts: TrainOptions, slots: int) -> list[list]:
    """A vectorised population (its unfinished members, or Work items holding them) cut into one
    part per slot (fewer when there are fewer members) without changing any member's bits. A
    member's bits never depend on its companions or their number (train/vectorised.py pads a lone
    member, and each part is stacked ``opts.chunk`` members at a time), so any split will do. The
    hand-differentiated MLPs and conv nets do not depend on the thread count either (tested); stacks
    through autograd (BatchNorm, vmap) round differently with other thread counts, so each part is
    trained with the same ``--threads`` and matches one process run with that thread count."""
    n = max(1, min(slots, len(pending))) if pending else 0
    bounds = [round(i * len(pending) / n) for i in range(n + 1)] if n else [0]
    return [pending[a:b] for a, b in zip(bounds, bounds[1:])]


def fixed_engine(members: list[Member], opts: TrainOptions) -> TrainOptions:
    """``opts`` with the engine that ``auto`` chooses for this population written in, so that parts
    of it trained elsewhere (another process, another node) use the engine the whole would."""
    return dataclasses.replace(opts, engine=choose_engine(members, opts))


# Without a hand-written backward pass, members with more parameters than this are trained one by
# one: on 2 CPU cores LeNet-300-100 (266K) through autograd ran at 578 model-steps/s stacked 16 at
# a time against 627 sequentially, while the MNIST-1D MLP (15K) ran 3.5x faster stacked; Conv-2
# (4.3M, vmap) 0.60-0.70x at K = 4. With one (ReLU MLPs: models/stacked.py; the small ReLU conv nets:
# models/stacked_conv.py) stacking wins at every size measured: LeNet-300-100 1.8-2.0x at K = 4-16,
# a 1-D CNN of 149K parameters (widths 64,128,256) 1.4x at K = 8 (benchmarks/population.py). A lone
# member is stacked too (the engine is the model's, not the population's): a lone MLP ran 1.2-1.5x
# faster as a stack of one; a lone conv net, computed beside a copy of itself (train/vectorised.py),
# 1.15x (ResNet-8, 1-D CNN) to 1.6x (digits CNN) slower than the sequential loop (300 it, 2 cores).
VECTORISE_MAX_PARAMS = 100_000


def choose_engine(members: list[Member], opts: TrainOptions) -> str:
    """The engine of a population: decided by the model, the data and the options, never by the
    number of members, so that a member is the same run (the same key, the same bits) whether it is
    trained alone, in a study's population or again after a repair."""
    if opts.engine not in ("auto", "sequential", "vectorised"):
        raise ValueError(f"engine: {opts.engine!r} is not allowed; choose auto, sequential or vectorised")
    if not members:
        return "sequential"
    if opts.ddp:  # each member data-parallel across the ranks, one after another
        if opts.engine == "vectorised":
            raise ValueError("engine: vectorised stacks members in one process; with --ddp use sequential or auto")
        return "sequential"
    spec = members[0].spec
    data = load_data(spec.data, opts.data_root)
    if getattr(data, "streaming", False):
        if opts.engine == "vectorised":
            raise ValueError(f"engine: vectorised needs a dataset held in memory; {spec.data.name} is streamed "
                             "from files (use sequential or auto)")
        return "sequential"
    if opts.compile:
        if opts.engine == "vectorised":
            raise ValueError("engine: vectorised does not compile its step; use --compile with sequential or auto")
        return "sequential"
    if opts.engine != "auto":
        return opts.engine
    if any(m.spec.probe.schedule for m in members):
        return "sequential"  # probes are callbacks of the sequential loop
    model = create_model(spec.model, data.input_shape, data.num_classes, seed=0)
    if model.hand_differentiated and spec.train.precision != "bf16":  # bf16 autocast goes through autograd
        return "vectorised"
    n_params = sum(p.numel() for p in model.parameters())
    return "vectorised" if n_params <= VECTORISE_MAX_PARAMS else "sequential"


@dataclass
class Work:
    tag: Hashable
    member: Member
    group: str = "population"


class Engines:
    """The engine chosen for each group of a plan, decided once (it depends on the model and the
    options only, so this saves building a model for every population of a plan)."""

    def __init__(self, opts: TrainOptions):
        self.opts, self.chosen = opts, {}

    def options(self, group: str, members: list[Member]) -> TrainOptions:
        if group not in self.chosen:
            self.chosen[group] = fixed_engine(members, self.opts)
        return self.chosen[group]


def by_group(work: list[Work]) -> dict[str, list[Work]]:
    groups: dict[str, list[Work]] = {}
    for w in work:
        groups.setdefault(w.group, []).append(w)
    return groups
