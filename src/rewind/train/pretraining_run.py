"""Pretraining on altered data replaces the first k iterations of training.

A spec with a ``pretrain`` section is trained as two runs. The *pretraining run* trains from the
seeded initialisation for k iterations on the altered data (data/alter.py); its spec is the
pretraining part only (schedule, seeds, model, data and the pretrain section), so studies that
differ only after pretraining share it. The *training run* then starts at iteration k from the
pretrained weights with a fresh optimizer, on the real data, with the schedule, data order and
length as if the first k iterations had been ordinary training; a lottery study rewinds every
level to those weights (the start checkpoint of its dense run).

Between the two:
- a pretraining task with its own number of outputs (rotation, transform: 4) leaves a 4-way
  head; it is replaced by a freshly initialised head of the task's size, drawn like the model's
  own initialisation from the seed derive_seed(HEAD, seeds.init, pretrain.seed); every other
  tensor is kept bit for bit;
- a *deficit* (pretrain.deficit, Achille et al.'s critical periods) is the same two runs with
  the optimizer state carried across: the alteration is simply removed at k;
- sparse pretraining trains only the subnetwork of a mask (a study's IMP mask or a random one);
  the dense network then starts from the pretrained weights where the mask is 1 and from its
  initialisation W_0 where it is 0 (biases and normalisation parameters, never masked, are the
  pretrained ones).
"""
from __future__ import annotations

import dataclasses

import torch

from .. import rng
from ..models import create_model
from ..spec import ProbeSpec, PruneSpec, Spec
from ..step import Step


def pretraining_spec(spec: Spec, ipe: int) -> Spec:
    """The spec of the pretraining run: its schedule's first k iterations (all steps written in
    iterations of the real training set), no pruning, probes, extra checkpoints or evaluation
    points, the pretraining learning rate if one is set; no augmentation for the 4-way tasks (a
    flip would change which rotation an image shows)."""
    p, t = spec.pretrain, spec.train
    k = p.steps.iterations(ipe)
    it = lambda s: Step(0, s.iterations(ipe))  # noqa: E731
    train = dataclasses.replace(
        t, steps=Step(0, k), milestones=tuple(it(m) for m in t.milestones if m.iterations(ipe) < k),
        warmup=it(t.warmup), eval_every=it(t.eval_every), eval_at=(), checkpoints=(), lr=p.lr or t.lr)
    data = dataclasses.replace(spec.data, augment="none") if p.kind in ("rotation", "transform") else spec.data
    return dataclasses.replace(spec, train=train, data=data, prune=PruneSpec(), probe=ProbeSpec())


def head_seed(spec: Spec) -> int:
    return rng.derive_seed(rng.HEAD, spec.seeds.init, spec.pretrain.seed)


def after_pretraining(spec: Spec, pretrained: dict[str, torch.Tensor], initial: dict[str, torch.Tensor],
                      mask: dict[str, torch.Tensor] | None, input_shape, classes: int) -> dict[str, torch.Tensor]:
    """The weights training starts from at iteration k (see the module's docstring)."""
    out = {n: v.clone() for n, v in pretrained.items()}
    fresh = create_model(spec.model, input_shape, classes, seed=head_seed(spec))
    state = fresh.state_dict()
    if any(tuple(out[n].shape) != tuple(state[n].shape) for n in state):
        head = fresh.output_layer + "."
        for n, v in state.items():
            if n.startswith(head):
                out[n] = v.clone()
    if mask is not None:
        for n, m in mask.items():
            out[n] = torch.where(m.to(torch.bool), out[n], initial[n])
    return out
