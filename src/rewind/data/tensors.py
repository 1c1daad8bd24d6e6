"""A dataset held as tensors, and the seeded order its training batches are drawn in. A leaf
of the data package: the loaders (embedded, files, synthetic, imagenet) build on it and
data/core.py dispatches to them."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .. import rng


Pixels = tuple[tuple[float, ...], tuple[float, ...]]  # per-channel (mean, std) of images kept as uint8


def to_float(x: torch.Tensor, pixels: Pixels | None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Inputs as the network sees them. Images kept as uint8 (N, C, H, W) become
    (x / 255 - mean) / std per channel, computed in float32 in place on one copy (each element's
    value depends only on that element, so normalising a batch gives the same bits as normalising
    the whole set and indexing it), then cast to ``dtype``; float inputs are only cast."""
    if pixels is None:
        return x.to(dtype)
    mean, std = pixels
    shape = (1, -1) + (1,) * (x.dim() - 2)
    mean = torch.tensor(mean, device=x.device).view(shape)
    std = torch.tensor(std, device=x.device).view(shape)
    return x.float().div_(255.0).sub_(mean).div_(std).to(dtype)


class DataError(ValueError):
    """Missing, damaged or foreign dataset files; the message says where and what to do."""


@dataclass
class InMemoryData:
    """A dataset as four tensors; labels int64. Inputs are float32, or, for image files (MNIST,
    Fashion-MNIST, CIFAR), uint8 pixels with ``pixels`` = per-channel (mean, std): a quarter of
    the memory, normalised per batch by :func:`to_float` (``inputs`` gives a whole split)."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int
    pixels: Pixels | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        """The stored (inputs, labels) of a split: uint8 where ``pixels`` is set."""
        if name == "train":
            return self.x_train, self.y_train
        if name == "test":
            return self.x_test, self.y_test
        raise ValueError(f"split must be 'train' or 'test', got {name!r}")

    def inputs(self, name: str, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """A whole split's inputs as the network sees them (a float copy for uint8 images)."""
        return to_float(self.split(name)[0], self.pixels, dtype)


def require_in_memory(data, what: str) -> None:
    """Refuse a dataset streamed from files (ImageNet) where ``what`` needs tensors in memory."""
    if getattr(data, "streaming", False):
        raise ValueError(f"{what} needs a dataset held in memory; {data.name} is streamed from files "
                         "(supported for training and lottery studies)")


def iterations_per_epoch(n_train: int, batch_size: int) -> int:
    # The last, smaller batch of an epoch is kept: every example is seen once per epoch.
    return math.ceil(n_train / batch_size)


def batch_indices(iteration: int, n_train: int, batch_size: int, seed: int) -> torch.Tensor:
    """Indices of the examples in the batch of ``iteration`` (0-based), a pure function."""
    ipe = iterations_per_epoch(n_train, batch_size)
    epoch, pos = divmod(iteration, ipe)
    perm = _cached_permutation(n_train, seed, epoch)
    return perm[pos * batch_size:(pos + 1) * batch_size]


_PERM_CACHE: dict[tuple[int, int, int], torch.Tensor] = {}


def _cached_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    key = (n, seed, epoch)
    perm = _PERM_CACHE.get(key)
    if perm is None:
        if len(_PERM_CACHE) > 256:
            _PERM_CACHE.clear()
        perm = _PERM_CACHE[key] = rng.epoch_permutation(n, seed, epoch)
    return perm
