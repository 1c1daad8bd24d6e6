"""Pruning criteria: what decides which weights a level keeps.

A criterion is a registered function ``score(inp: ScoreInput) -> {name: scores}`` giving one score
per weight of every prunable tensor (higher = kept); the pools and rates of ``prune.*`` (global or
layerwise, per-type fractions, exclusions) rank them exactly as magnitude pruning always has: a
pool keeps ``round(N (1 - p)^L)`` weights, weights already pruned stay pruned, ties go by position.
An *iterative* criterion (SynFlow) is scored again after each of ``prune.rounds`` rounds, the
density falling exponentially to the level's target.

Shipped: ``magnitude`` (|w| of the weights scored: IMP, the default; the same masks as before
criteria existed), ``magnitude_init`` (|w_0|), ``random``, ``snip`` (|g * w|, Lee et al. 2019),
``grasp`` (keeps the lowest -w * Hg, Wang et al. 2020), ``synflow`` (|w * dR/dw| of the
linearised network on an all-ones input, iterative, data-free; Tanaka et al. 2020). Which weights
are scored is ``prune.score_at``: ``end`` (the previous level's final weights: IMP) or ``rewind``
(the weights the level starts from: pruning at initialisation when the rewind step is 0).
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Callable, Iterator

import torch

from ..spec import PruneSpec, SpecError, register_criterion_catalogue, register_identity
from .masks import Mask, keep_top, prune_groups


@dataclass
class ScoreInput:
    weights: dict[str, torch.Tensor]   # the state scored (model/ names stripped): final weights or W_k
    mask: Mask                          # the current mask (False: pruned already)
    model: torch.nn.Module | None       # the model, holding ``weights`` under ``mask`` (criteria with gradients)
    generator: torch.Generator          # seeded from (seeds.prune, level, rewind step)
    init: dict[str, torch.Tensor] | None = None            # W_0 of the same replicate
    batches: Callable[[], Iterator[tuple[torch.Tensor, torch.Tensor]]] | None = None  # training (x, y)
    input_shape: tuple[int, ...] = ()   # one example's shape (data-free criteria)


@dataclass(frozen=True)
class Criterion:
    name: str
    score: Callable[[ScoreInput], dict[str, torch.Tensor]]
    doc: str
    data: bool = False        # reads training batches
    iterative: bool = False   # scored again after each of prune.rounds rounds
    group: str = "rewind"     # who registered it: rewind, or a plugin
    digest: str = ""          # a plugin's code (part of its runs' keys)


CRITERIA: dict[str, Criterion] = {}


def register_criterion(name: str, *, data: bool = False, iterative: bool = False):
    """Decorator over ``score(inp: ScoreInput) -> {prunable name: scores}`` (higher = kept);
    ``data``: it reads training batches (inp.batches, inp.model); ``iterative``: it is scored again
    after each of prune.rounds rounds. A name that is taken is refused."""
    from ..plugins import origin_of

    def deco(fn):
        if name in CRITERIA:
            raise SpecError(f"register_criterion: a criterion named {name!r} is already registered "
                            f"(by {CRITERIA[name].group})")
        where = origin_of(fn)
        CRITERIA[name] = Criterion(name, fn, inspect.getdoc(fn) or "", data, iterative, where.group, where.digest)
        return fn
    return deco


def _identity(spec) -> dict[str, str]:
    entry = CRITERIA.get(spec.prune.criterion)
    return {"prune.criterion": entry.digest} if entry is not None and entry.digest else {}


register_identity(_identity)


def get_criterion(name: str) -> Criterion:
    if name not in CRITERIA:
        raise SpecError(f"prune.criterion: unknown criterion {name!r}; criteria: {', '.join(sorted(CRITERIA))}")
    return CRITERIA[name]


register_criterion_catalogue(lambda name: name in CRITERIA, lambda: sorted(CRITERIA))


def prune(criterion: Criterion, inp: ScoreInput, spec: PruneSpec, kind_of: Callable[[str], str],
          level: int | None = None, density: float | None = None, mask_model=None) -> Mask:
    """The mask of ``level`` (each pool keeps round(N (1 - p)^level)) or, one-shot, at ``density``
    (each pool keeps round(N density)), from ``inp.mask`` and the criterion's scores.
    ``mask_model(mask)`` applies a mask to ``inp.model`` between the rounds of an iterative criterion."""
    if (level is None) == (density is None):
        raise ValueError("give the level or the density")
    if level is not None and level < 1:
        raise ValueError("level must be at least 1")
    if density is not None and not 0.0 < density <= 1.0:
        raise SpecError(f"target density must lie in (0, 1], got {density!r}")
    groups = prune_groups(spec, list(inp.mask), kind_of)
    targets = [round(sum(inp.mask[n].numel() for n in names) * ((1.0 - rate) ** level if level is not None
                                                                 else density)) for names, rate in groups]
    mask = {n: m.clone().bool() for n, m in inp.mask.items()}
    rounds = spec.rounds if criterion.iterative else 1
    start = [sum(int(mask[n].sum()) for n in names) for names, _ in groups]
    for r in range(1, rounds + 1):
        scores = criterion.score(ScoreInput(inp.weights, mask, inp.model, inp.generator, inp.init, inp.batches,
                                            inp.input_shape))
        missing = [n for n in mask if n not in scores or scores[n].shape != mask[n].shape]
        if missing:
            raise ValueError(f"criterion {criterion.name}: no scores of the right shape for {missing[0]}")
        for (names, _), have, target in zip(groups, start, targets):
            # exponential schedule from the pool's current count to its target (one round: the target)
            keep = target if r == rounds else round(have * (target / max(have, 1)) ** (r / rounds))
            keep_top(scores, mask, names, keep)
        if mask_model is not None and r < rounds:
            mask_model(mask)
    return mask


# ---- the shipped criteria ------------------------------------------------------------------------
def _prunable(inp: ScoreInput) -> list[str]:
    return list(inp.mask)


@register_criterion("magnitude")
def magnitude(inp: ScoreInput) -> dict[str, torch.Tensor]:
    """|w| of the weights scored (IMP: the previous level's final weights)."""
    return {n: inp.weights[n].abs() for n in _prunable(inp)}


@register_criterion("magnitude_init")
def magnitude_init(inp: ScoreInput) -> dict[str, torch.Tensor]:
    """|w_0|: magnitude at initialisation, whatever the step pruned at."""
    if inp.init is None:
        raise ValueError("criterion magnitude_init: the initial weights are not known here")
    return {n: inp.init[n].abs() for n in _prunable(inp)}


@register_criterion("random")
def random(inp: ScoreInput) -> dict[str, torch.Tensor]:
    """Uniform random scores from the pruning seed: a random mask with the pools' counts."""
    return {n: torch.rand(inp.mask[n].shape, generator=inp.generator, dtype=torch.float64) for n in _prunable(inp)}


def _gradients(inp: ScoreInput, create_graph: bool = False) -> tuple[dict[str, torch.Tensor], list]:
    """Mean loss gradient over the criterion's training batches, at the model's (masked) weights."""
    from torch.nn import functional as F

    model = inp.model
    params = dict(model.named_parameters())
    names = _prunable(inp)
    grads = {n: torch.zeros_like(params[n]) for n in names}
    batches = list(inp.batches())
    for x, y in batches:
        loss = F.cross_entropy(model(x), y) / len(batches)
        g = torch.autograd.grad(loss, [params[n] for n in names], create_graph=create_graph)
        for n, gi in zip(names, g):
            grads[n] = grads[n] + gi
    return grads, batches


def _needs(inp: ScoreInput, what: str) -> None:
    if inp.model is None or inp.batches is None:
        raise ValueError(f"criterion {what}: needs the model and training batches")


@register_criterion("snip", data=True)
def snip(inp: ScoreInput) -> dict[str, torch.Tensor]:
    """|g * w|: the loss gradient on prune.batches training batches times the weight (SNIP)."""
    _needs(inp, "snip")
    params = dict(inp.model.named_parameters())
    grads, _ = _gradients(inp)
    return {n: (grads[n] * params[n]).detach().abs() for n in grads}


@register_criterion("grasp", data=True)
def grasp(inp: ScoreInput) -> dict[str, torch.Tensor]:
    """GraSP removes the weights with the highest -w * (H g) (H the loss Hessian, g its gradient):
    the score kept is w * (H g)."""
    _needs(inp, "grasp")
    params = dict(inp.model.named_parameters())
    names = _prunable(inp)
    g, batches = _gradients(inp)
    g = {n: v.detach() for n, v in g.items()}
    hg = {n: torch.zeros_like(params[n]) for n in names}
    from torch.nn import functional as F

    for x, y in batches:  # H g as the gradient of g(θ)·stopgrad(g), batch by batch
        loss = F.cross_entropy(inp.model(x), y) / len(batches)
        gi = torch.autograd.grad(loss, [params[n] for n in names], create_graph=True)
        z = sum((a * g[n]).sum() for a, n in zip(gi, names))
        for n, h in zip(names, torch.autograd.grad(z, [params[n] for n in names])):
            hg[n] += h
    return {n: (params[n] * hg[n]).detach() for n in names}


@register_criterion("synflow", iterative=True)
def synflow(inp: ScoreInput) -> dict[str, torch.Tensor]:
    """|w * dR/dw| with R the sum of the linearised network's output (weights replaced by their
    absolute values, BatchNorm in eval mode) on an all-ones input; data-free, scored again after
    each of prune.rounds rounds (SynFlow)."""
    if inp.model is None or not inp.input_shape:
        raise ValueError("criterion synflow: needs the model and the input shape")
    import copy

    model = copy.deepcopy(inp.model).double().eval()
    params = dict(model.named_parameters())
    with torch.no_grad():
        for p in params.values():
            p.abs_()
        for n, m in inp.mask.items():
            params[n].mul_(m.to(params[n].dtype))
    ones = torch.ones((1, *inp.input_shape), dtype=torch.float64)
    r = model(ones).sum()
    names = _prunable(inp)
    grads = torch.autograd.grad(r, [params[n] for n in names])
    return {n: (params[n] * g).detach().abs() for n, g in zip(names, grads)}
