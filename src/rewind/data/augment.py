"""Augmentation on whole batches, seeded by (augment seed, iteration): no per-sample Python.

``crop_flip``: random crop of the image padded by 4 zero pixels on each side
(shift of -4..4 pixels in each direction) and a horizontal flip with
probability 1/2, as in the CIFAR recipes.
"""
from __future__ import annotations

import torch

from .. import rng

PAD = 4


def draws(batch: int, seed: int, iteration: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The random choices for one batch: vertical and horizontal shifts, flips."""
    g = rng.generator(rng.AUGMENT, seed, iteration)
    dy = torch.randint(-PAD, PAD + 1, (batch,), generator=g)
    dx = torch.randint(-PAD, PAD + 1, (batch,), generator=g)
    flip = torch.rand(batch, generator=g) < 0.5
    return dy, dx, flip


def crop_flip(x: torch.Tensor, seed: int, iteration: int) -> torch.Tensor:
    """x: [B, C, H, W] -> the same shape, shifted (zero fill) and flipped per example."""
    b, c, h, w = x.shape
    dy, dx, flip = (t.to(x.device) for t in draws(b, seed, iteration))
    padded = torch.nn.functional.pad(x, (PAD, PAD, PAD, PAD))
    rows = (PAD + dy).view(b, 1, 1) + torch.arange(h, device=x.device).view(1, h, 1)
    cols = (PAD + dx).view(b, 1, 1) + torch.arange(w, device=x.device).view(1, 1, w)
    cols = torch.where(flip.view(b, 1, 1), cols.flip(2), cols)
    batch_idx = torch.arange(b, device=x.device).view(b, 1, 1)
    return padded.permute(0, 2, 3, 1)[batch_idx, rows, cols].permute(0, 3, 1, 2).contiguous()


AUGMENTATIONS = {"crop_flip": crop_flip}


def apply(kind: str, x: torch.Tensor, seed: int, iteration: int) -> torch.Tensor:
    if kind == "none":
        return x
    if x.dim() != 4:
        raise ValueError(f"data.augment: {kind} needs image batches [B, C, H, W], got shape {tuple(x.shape)}")
    return AUGMENTATIONS[kind](x, seed, iteration)
