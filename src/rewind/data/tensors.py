"""A dataset held as tensors, and the seeded order its training batches are drawn in. A leaf
of the data package: the loaders (embedded, files, synthetic, imagenet) build on it and
data/core.py dispatches to them."""
from __future__ import annotations

from ..errors import DataError  # noqa: F401  (raised here, and re-exported as data.DataError)

import math
from dataclasses import dataclass

import torch

from .. import rng


Pixels = tuple[tuple[float, ...], tuple[float, ...]]  # per-channel (mean, std) of images kept as uint8


_TABLES: dict = {}


def _table(pixels: Pixels, device: torch.device) -> torch.Tensor:
    """(C, 256) float32: ((v / 255) - mean_c) / std_c for every pixel value v, computed on the CPU
    with the float32 operations the whole-set normalisation used, element by element."""
    key = (pixels, str(device))
    if key not in _TABLES:
        mean, std = pixels
        v = torch.arange(256, dtype=torch.float32).repeat(len(mean), 1)
        table = v.div_(255.0).sub_(torch.tensor(mean).view(-1, 1)).div_(torch.tensor(std).view(-1, 1))
        _TABLES[key] = table.to(device)
    return _TABLES[key]


def to_float(x: torch.Tensor, pixels: Pixels | None, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Inputs as the network sees them. Images kept as uint8 (N, C, ...) become
    (x / 255 - mean) / std per channel in float32, with the same bits on every device, then cast
    to ``dtype``. Float inputs are only cast."""
    if pixels is None:
        return x.to(dtype)
    out = _normalise(x, pixels) if x.device.type == "cpu" else _lookup(x, pixels)
    return out if dtype == torch.float32 else out.to(dtype)


def _normalise(x: torch.Tensor, pixels: Pixels) -> torch.Tensor:
    """The CPU's way: the float32 operations of the whole-set normalisation, element by element
    (the bits of :func:`_lookup`, tested for every value; 1.3-3x faster than its gather: a batch of
    128 MNIST images 61 against 107 us, of 128 CIFAR images 163 against 518 us, 2 cores)."""
    mean, std = pixels
    shape = (1, -1) + (1,) * (x.dim() - 2)
    out = x.to(torch.float32).div_(255.0)
    return out.sub_(torch.tensor(mean).view(shape)).div_(torch.tensor(std).view(shape))


def _lookup(x: torch.Tensor, pixels: Pixels) -> torch.Tensor:
    """Other devices' way: each pixel looked up in a 256-entry table per channel computed on the
    CPU (a GPU's division by a scalar multiplies by the reciprocal and can differ in the last bit)."""
    table = _table(pixels, x.device)
    out = torch.empty(x.shape, dtype=torch.float32, device=x.device)
    # int32 indices of at most 256K pixels (1 MiB) at a time: larger index tensors are served by mmap
    # (rewind/alloc.py), and an evaluation chunk of 4,096 MNIST rows made two 12.8 MB temporaries
    rows = max(1, (1 << 18) // max(1, x[0].numel()))
    for c in range(x.shape[1]):
        for i in range(0, len(x), rows):
            idx = x[i:i + rows, c].reshape(-1).int()
            out[i:i + rows, c] = table[c].index_select(0, idx).view(x[i:i + rows, c].shape)
    return out


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


def shard_rows(n: int, part: tuple[int, int] | None) -> slice:
    """Rows of a batch of ``n`` that part (rank, world) of a data-parallel group trains."""
    if part is None:
        return slice(None)
    rank, world = part
    return slice(n * rank // world, n * (rank + 1) // world)


_PERM_CACHE: dict[tuple[int, int, int], torch.Tensor] = {}


def _cached_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    key = (n, seed, epoch)
    perm = _PERM_CACHE.get(key)
    if perm is None:
        if len(_PERM_CACHE) > 256:
            _PERM_CACHE.clear()
        perm = _PERM_CACHE[key] = rng.epoch_permutation(n, seed, epoch)
    return perm
