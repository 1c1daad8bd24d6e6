"""Pretraining as a plan of two runs (train/pretraining_run.py says what each run is): the pretraining
runs are trained, or found in the store, as one population, and each member is replaced by one that
starts at iteration k from its pretrained weights."""
from __future__ import annotations

import dataclasses

import torch

from ..models import create_model
from ..spec import SpecError
from ..store import Store
from ..train.member import Member, TrainOptions
from ..train.setup import check_spec, pretraining_too_long
from ..train.pretraining_run import after_pretraining, pretraining_spec
from .plan import train_population


def with_pretraining(members: list[Member], store: Store, opts: TrainOptions,
                     masks: list[dict[str, torch.Tensor] | None] | None = None) -> list[Member]:
    """``members`` with each one whose spec pretrains (and that starts from scratch) replaced by a
    member starting at iteration k from its pretrained weights; the pretraining runs are trained
    (as one population) or found in the store. ``masks[i]`` is member i's sparse-pretraining mask."""
    todo = [i for i, m in enumerate(members) if m.spec.pretrain.kind and m.init is None and m.start == 0]
    if not todo:
        return members
    ref = members[todo[0]].spec
    data, ipe, total = check_spec(ref, opts)
    k = ref.pretrain.steps.iterations(ipe)
    if k >= total:
        raise pretraining_too_long(ref, ipe, total)
    if ref.pretrain.kind == "sparse" and (masks is None or any(masks[i] is None for i in todo)):
        raise SpecError("pretrain.kind: sparse pretraining needs each member's mask (from pretrain.study)")
    pre = [Member(pretraining_spec(members[i].spec, ipe), kind="pretrain", preset=members[i].preset,
                  index=members[i].index, mask=masks[i] if ref.pretrain.kind == "sparse" else None,
                  origin={"pretrain_for": members[i].spec.hash})
           for i in todo]
    runs = train_population(pre, store, opts)
    out = list(members)
    for i, member, run in zip(todo, pre, runs):
        if run.diverged:
            raise SpecError(f"pretraining run {run.key} diverged (its loss was not finite); lower pretrain.lr "
                            "or train.lr")
        mask, spec = member.mask, members[i].spec
        w0 = create_model(spec.model, data.input_shape, data.num_classes, seed=spec.seeds.init).state_dict() \
            if mask is not None else {}
        start = after_pretraining(spec, run.weights(k), w0, mask, data.input_shape, data.num_classes)
        optim = None
        if spec.pretrain.deficit:  # one run in two parts: the optimizer state goes on
            optim = {n: v for n, v in run.load(k).items() if n.startswith("optim/")}
        out[i] = dataclasses.replace(members[i], init=start, start=k, optim=optim,
                                     origin={**members[i].origin, "pretrain_run": run.key})
    return out

