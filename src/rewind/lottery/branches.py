"""Branches: what to do to a level's rewound weights and mask before training it.

A branch is one typed function ``fn(inp: BranchInput, **params) -> BranchOutput``
registered by name. Perturbations touch the prunable tensors only (conv and
linear weights); biases and normalisation parameters stay at W_k. Every branch
trains from the chain's rewind step k with the chain's schedule, so it differs
from plain rewinding only in what the function changed.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from ..prune.masks import Mask, random_mask
from ..spec import Spec, SpecError, apply_overrides


@dataclass
class BranchInput:
    weights: dict[str, torch.Tensor]       # W_k: the dense run's state at the rewind step
    mask: Mask                              # the level's IMP mask
    generator: torch.Generator              # seeded from (seeds.prune, level, k, branch, seed)
    init_weights: dict[str, torch.Tensor]   # W_0 of the same replicate
    fresh: Callable[[int], dict[str, torch.Tensor]]  # a fresh initialisation from an integer seed
    spec: Spec


@dataclass
class BranchOutput:
    weights: dict[str, torch.Tensor]
    mask: Mask
    spec: Spec


@dataclass(frozen=True)
class BranchKind:
    name: str
    fn: Callable[..., BranchOutput]
    doc: str
    params: dict[str, tuple[type, Any]] = field(default_factory=dict)  # name -> (type, default)
    group: str = "rewind"   # who registered it (a branch's runs are named by their weights and masks)


BRANCHES: dict[str, BranchKind] = {}


def register_branch(name: str):
    """Decorator over ``fn(inp: BranchInput, **params) -> BranchOutput``; typed keyword parameters
    become the branch's --NAME VALUE flags. A name that is taken is refused."""
    from ..plugins import origin_of

    def deco(fn):
        if name in BRANCHES:
            raise SpecError(f"register_branch: a branch named {name!r} is already registered (by {BRANCHES[name].group})")
        sig = inspect.signature(fn)
        hints = {k: v for k, v in fn.__annotations__.items()}
        params = {}
        for p in list(sig.parameters.values())[1:]:
            tp = hints.get(p.name, str)
            tp = {"float": float, "int": int, "bool": bool, "str": str, "dict": dict}.get(tp, tp) if isinstance(tp, str) else tp
            params[p.name] = (tp, p.default)
        BRANCHES[name] = BranchKind(name, fn, inspect.getdoc(fn) or "", params, origin_of(fn).group)
        return fn
    return deco


def get_branch(name: str) -> BranchKind:
    if name not in BRANCHES:
        raise SpecError(f"unknown branch {name!r}; branches: {', '.join(sorted(BRANCHES))}")
    return BRANCHES[name]


def coerce_params(kind: BranchKind, params: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for key, value in params.items():
        if key not in kind.params:
            allowed = ", ".join(kind.params) or "none"
            raise SpecError(f"branch {kind.name}: unknown parameter {key!r}; parameters: {allowed}")
        tp, _default = kind.params[key]
        try:
            if tp is bool and isinstance(value, str):
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError("expected true or false")
                value = value.lower() in ("true", "1", "yes")
            elif tp is dict:
                if not isinstance(value, dict):
                    raise ValueError("expected FIELD=VALUE settings")
            else:
                value = tp(value)
        except (TypeError, ValueError) as e:
            raise SpecError(f"branch {kind.name}: parameter {key}={value!r}: {e}") from None
        out[key] = value
    full = {k: d for k, (_t, d) in kind.params.items()}
    full.update(out)
    return full


def _same(inp: BranchInput, weights=None, mask=None, spec=None) -> BranchOutput:
    return BranchOutput(inp.weights if weights is None else weights, inp.mask if mask is None else mask,
                        inp.spec if spec is None else spec)


def _map_prunable(inp: BranchInput, fn: Callable[[str, torch.Tensor], torch.Tensor]) -> dict[str, torch.Tensor]:
    out = dict(inp.weights)
    for name in inp.mask:
        out[name] = fn(name, inp.weights[name])
    return out


def _seed_from(g: torch.Generator) -> int:
    return int(torch.randint(0, 2**62, (1,), generator=g))


@register_branch("reinit")
def reinit(inp: BranchInput) -> BranchOutput:
    """Fresh random initialisation (same distribution, new seed) of every tensor, same mask."""
    return _same(inp, weights=inp.fresh(_seed_from(inp.generator)))


@register_branch("random-prune")
def random_prune(inp: BranchInput, scope: str = "layerwise") -> BranchOutput:
    """A random mask with the IMP mask's per-layer densities (scope=layerwise) or its overall
    density over the pruned tensors (scope=global); weights W_k."""
    return _same(inp, mask=random_mask(inp.mask, inp.generator, scope, inp.spec.prune.exclude))


@register_branch("sign-reinit")
def sign_reinit(inp: BranchInput) -> BranchOutput:
    """New magnitudes drawn from the initialisation distribution; every sign kept from W_k."""
    fresh = inp.fresh(_seed_from(inp.generator))
    return _same(inp, weights=_map_prunable(inp, lambda n, w: fresh[n].abs() * torch.where(w < 0, -1.0, 1.0)))


@register_branch("sign-flip")
def sign_flip(inp: BranchInput) -> BranchOutput:
    """Every surviving weight's sign flipped; magnitudes kept."""
    return _same(inp, weights=_map_prunable(inp, lambda n, w: -w))


@register_branch("random-sign")
def random_sign(inp: BranchInput) -> BranchOutput:
    """Magnitudes kept, signs drawn uniformly at random."""
    def fn(n, w):
        signs = torch.randint(0, 2, w.shape, generator=inp.generator).to(w.dtype) * 2 - 1
        return w.abs() * signs
    return _same(inp, weights=_map_prunable(inp, fn))


def _shuffle_rows(w: torch.Tensor, m: torch.Tensor, g: torch.Generator, keep_signs: bool, per_filter: bool):
    out = w.clone()
    rows = range(w.shape[0]) if per_filter else [None]
    for r in rows:
        wr = out if r is None else out[r]
        mr = m if r is None else m[r]
        vals = wr[mr]
        perm = torch.randperm(vals.numel(), generator=g)
        new = vals[perm]
        if keep_signs:
            new = new.abs() * torch.where(vals < 0, -1.0, 1.0)
        wr[mr] = new
    return out


@register_branch("shuffle-layer")
def shuffle_layer(inp: BranchInput, keep_signs: bool = False) -> BranchOutput:
    """Surviving weights permuted among the surviving positions of their layer (the layer's
    multiset of values is kept); with keep_signs, magnitudes move and each position keeps its sign."""
    return _same(inp, weights=_map_prunable(
        inp, lambda n, w: _shuffle_rows(w, inp.mask[n], inp.generator, keep_signs, per_filter=False)))


@register_branch("shuffle-filter")
def shuffle_filter(inp: BranchInput, keep_signs: bool = False) -> BranchOutput:
    """As shuffle-layer, within each output filter (row of a linear weight, output channel of a conv)."""
    return _same(inp, weights=_map_prunable(
        inp, lambda n, w: _shuffle_rows(w, inp.mask[n], inp.generator, keep_signs, per_filter=True)))


@register_branch("noise")
def noise(inp: BranchInput, scale: float = 1.0) -> BranchOutput:
    """W_k plus Gaussian noise of std = scale x the std of the layer at initialisation (W_0)."""
    if scale < 0:
        raise SpecError(f"branch noise: scale must be zero or positive, got {scale}")

    def fn(n, w):
        std = inp.init_weights[n].float().std().item()
        return w + scale * std * torch.randn(w.shape, generator=inp.generator, dtype=w.dtype)
    return _same(inp, weights=_map_prunable(inp, fn))


@register_branch("retrain")
def retrain(inp: BranchInput, settings: dict = None) -> BranchOutput:  # type: ignore[assignment]
    """Same mask and rewound weights, other training or data fields (e.g. seeds.data_order=7)."""
    if not settings:
        raise SpecError("branch retrain: give the fields to change, e.g. --set seeds.data_order=7")
    for key in settings:
        if key.split(".")[0] in ("model",):
            raise SpecError(f"branch retrain: {key} changes the architecture; only data, train and seeds fields")
    return _same(inp, spec=apply_overrides(inp.spec, settings))
