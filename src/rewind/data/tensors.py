"""A dataset held as tensors, and the seeded order its training batches are drawn in. A leaf
of the data package: the loaders (embedded, files, synthetic, imagenet) build on it and
data/core.py dispatches to them."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .. import rng


@dataclass
class InMemoryData:
    """A dataset as four tensors. Inputs are float32, labels int64."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def split(self, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        if name == "train":
            return self.x_train, self.y_train
        if name == "test":
            return self.x_test, self.y_test
        raise ValueError(f"split must be 'train' or 'test', got {name!r}")


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
