"""Masks and pruning.

A mask is a dict from prunable tensor name to a bool tensor of the same shape
(True = kept). Pruning at level L keeps ``round(N * (1 - p) ** L)`` weights of a
pool of N prunable weights, computed from N and L rather than from the previous
level's count, so the density after L levels is (1 - p)^L up to one weight of
rounding however many levels are stacked. Weights already pruned stay pruned;
ties in magnitude are broken by position (the earlier weight goes first), so
pruning is deterministic.
"""
from __future__ import annotations

from typing import Callable

import torch

from ..spec import PruneSpec, SpecError

Mask = dict[str, torch.Tensor]


def full_mask(model) -> Mask:
    params = dict(model.named_parameters())
    return {n: torch.ones_like(params[n], dtype=torch.bool) for n in model.prunable()}


def density(mask: Mask) -> float:
    total = sum(m.numel() for m in mask.values())
    return sum(int(m.sum()) for m in mask.values()) / total


def layer_densities(mask: Mask) -> dict[str, float]:
    return {n: int(m.sum()) / m.numel() for n, m in mask.items()}


def prune_groups(spec: PruneSpec, names: list[str], kind_of: Callable[[str], str]) -> list[tuple[list[str], float]]:
    """Partition prunable tensors into pools, each with its per-level pruning rate.

    ``global``: one pool at ``fraction``; tensors of a type with its own rate
    (conv/fc/output_fraction) are pruned layerwise at that rate instead.
    ``layerwise``: every tensor is its own pool, at its type's rate or ``fraction``.
    Excluded tensors are in no pool.
    """
    unknown = [n for n in spec.exclude if n not in names]
    if unknown:
        raise SpecError(f"prune.exclude: {unknown} are not prunable tensors of this model; they are: {', '.join(names)}")
    type_rate = {"conv": spec.conv_fraction, "fc": spec.fc_fraction, "output": spec.output_fraction}
    groups, pooled = [], []
    for n in names:
        if n in spec.exclude:
            continue
        rate = type_rate[kind_of(n)]
        if rate > 0:
            groups.append(([n], rate))
        elif spec.strategy == "layerwise":
            groups.append(([n], spec.fraction))
        else:
            pooled.append(n)
    if pooled:
        groups.insert(0, (pooled, spec.fraction))
    return groups


def keep_top(scores: dict[str, torch.Tensor], mask: Mask, names: list[str], keep: int) -> None:
    """Keep the ``keep`` highest-scoring weights of the pool ``names`` in ``mask`` (in place; pruned
    weights rank lowest, ties by position: the earlier weight goes first). Scores are compared in
    float64, so float32 magnitudes rank exactly as they are."""
    flat = torch.cat([torch.where(mask[n], scores[n].detach().double(), torch.full(mask[n].shape, -torch.inf,
                                                                                    dtype=torch.float64)).flatten()
                      for n in names])
    n_prune = flat.numel() - keep
    if n_prune <= 0:
        return
    order = torch.sort(flat, stable=True).indices
    kept = torch.ones(flat.numel(), dtype=torch.bool)
    kept[order[:n_prune]] = False
    offset = 0
    for n in names:
        size = mask[n].numel()
        mask[n] = mask[n] & kept[offset:offset + size].view_as(mask[n])
        offset += size


def _keep_top(weights: dict[str, torch.Tensor], mask: Mask, names: list[str], keep: int) -> None:
    keep_top({n: weights[n].abs() for n in names}, mask, names, keep)


def magnitude_prune(weights: dict[str, torch.Tensor], mask: Mask, spec: PruneSpec, level: int,
                    kind_of: Callable[[str], str]) -> Mask:
    """The mask of ``level`` from the previous level's mask and final weights."""
    if level < 1:
        raise ValueError("level must be at least 1")
    new = {n: m.clone().bool() for n, m in mask.items()}
    for names, rate in prune_groups(spec, list(mask), kind_of):
        pool = sum(mask[n].numel() for n in names)
        _keep_top(weights, new, names, round(pool * (1.0 - rate) ** level))
    return new


def prune_to_density(weights: dict[str, torch.Tensor], mask: Mask, target: float, spec: PruneSpec,
                     kind_of: Callable[[str], str]) -> Mask:
    """One-shot pruning: every pool keeps ``round(pool * target)`` weights."""
    if not 0.0 < target <= 1.0:
        raise SpecError(f"target density must lie in (0, 1], got {target!r}")
    new = {n: m.clone().bool() for n, m in mask.items()}
    for names, _rate in prune_groups(spec, list(mask), kind_of):
        pool = sum(mask[n].numel() for n in names)
        _keep_top(weights, new, names, round(pool * target))
    return new


def random_mask(reference: Mask, generator: torch.Generator, scope: str = "layerwise",
                exclude: tuple[str, ...] = ()) -> Mask:
    """A random mask with the reference's per-layer counts (``layerwise``) or its total count
    over the non-excluded tensors (``global``). Excluded tensors keep their reference mask."""
    if scope == "layerwise":
        out = {}
        for n, m in reference.items():
            keep = int(m.sum())
            flat = torch.zeros(m.numel(), dtype=torch.bool)
            flat[torch.randperm(m.numel(), generator=generator)[:keep]] = True
            out[n] = flat.view_as(m)
        return out
    if scope == "global":
        names = [n for n in reference if n not in exclude]
        total = sum(reference[n].numel() for n in names)
        keep = sum(int(reference[n].sum()) for n in names)
        flat = torch.zeros(total, dtype=torch.bool)
        flat[torch.randperm(total, generator=generator)[:keep]] = True
        out, offset = {}, 0
        for n in names:
            size = reference[n].numel()
            out[n] = flat[offset:offset + size].view_as(reference[n])
            offset += size
        for n in reference:
            if n in exclude:
                out[n] = reference[n].clone()
        return {n: out[n] for n in reference}
    raise SpecError(f"scope: {scope!r} is not allowed; choose layerwise or global")
