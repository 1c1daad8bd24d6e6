"""Pretraining in lottery studies: the masks of sparse pretraining, and the paper's grid.

The early-phase paper (section 5) replaces the first k iterations of training by pretraining on
altered data and runs IMP rewound to the pretrained weights. :func:`pretrain_members` gives
training members their pretraining (train/pretrain.py), taking sparse pretraining's masks from a
lottery study; :func:`pretrain_study` runs the grid of kinds x pretraining lengths beside the
supervised reference (k = 0 and rewinding to each length) and returns one tidy table.
"""
from __future__ import annotations

import dataclasses

import pandas as pd
import torch

from .. import rng
from ..prune.masks import Mask, random_mask
from ..spec import MAX_LEVELS, MAX_REPLICATES, Spec, SpecError, check_range
from ..step import Step
from ..store import Store
from ..train import Member, TrainOptions
from ..train.pretrain import with_pretraining

MASK_STREAM = 2  # rng.PRETRAIN streams: 0 and 1 alter the train and test splits, 2 draws random masks


def sparse_masks(spec: Spec, replicates: list[int], store: Store, opts: TrainOptions) -> list[Mask]:
    """The mask each replicate pretrains (pretrain.kind = sparse): level ``pretrain.level`` of the
    chain of replicate r rewound to the last rewind step of study ``pretrain.study`` (levels it
    lacks are trained), or a random mask with that mask's per-layer counts (``pretrain.mask =
    random``), drawn from the replicate's pretrain.seed."""
    from .study import Study

    p = spec.pretrain
    try:
        source = Study.load(p.study, store, opts.data_root)
    except SpecError as e:
        raise SpecError(f"pretrain.study: {str(e).removeprefix('--study: ')}") from None
    if source.spec.model != spec.model or source.spec.data != spec.data:
        raise SpecError(f"pretrain.study: study {source.key} trains another model or data "
                        f"({source.spec.model.name} on {source.spec.data.name}); its masks do not fit")
    k = source.rewind_steps[-1]
    masks = []
    for r in replicates:
        imp = source.mask(r, k, p.level)
        if p.mask == "random":  # spec is the replicate's: its pretrain.seed is shifted already
            imp = random_mask(imp, rng.generator(rng.PRETRAIN, p.seed, MASK_STREAM))
        masks.append(imp)
    return masks


def pretrain_members(members: list[Member], store: Store, opts: TrainOptions,
                     replicates: list[int] | None = None) -> list[Member]:
    """``members`` (replicate ``replicates[i]`` each; default their index) starting where their
    pretraining ends, the pretraining trained or found in the store."""
    spec = members[0].spec
    masks = None
    if spec.pretrain.kind == "sparse":
        reps = replicates if replicates is not None else [m.index for m in members]
        masks = [sparse_masks(m.spec, [r], store, opts)[0] for m, r in zip(members, reps)]
    return with_pretraining(members, store, opts, masks)
