from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import rng
from ..spec import MNIST1D_GENERATOR_FIELDS, SUBSET_FIELDS, DataSpec


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


def data_root(explicit: str | os.PathLike | None = None) -> Path:
    """Where datasets and caches live: argument, else $REWIND_DATA, else ~/.cache/rewind/data."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("REWIND_DATA")
    if env:
        return Path(env)
    return Path(os.path.expanduser("~")) / ".cache" / "rewind" / "data"


_DATA_CACHE: dict[tuple, InMemoryData] = {}


def load_data(spec: DataSpec, root: str | os.PathLike | None = None) -> InMemoryData:
    """Load (once per process) the dataset a spec names: tensors in memory, or for ImageNet
    (``streaming``) the file lists that batches are read from (data/imagenet.py)."""
    from . import embedded, files, imagenet, synthetic

    if spec.classes:
        key = ("classes", spec.classes, str(data_root(root)), spec)
        if key not in _DATA_CACHE:
            _DATA_CACHE[key] = synthetic.keep_classes(load_data(dataclasses.replace(spec, classes=()), root),
                                                      spec.classes)
        return _DATA_CACHE[key]
    key = (spec.name, spec.split_seed, spec.image_size, *(getattr(spec, f) for f in MNIST1D_GENERATOR_FIELDS),
           str(data_root(root)))
    if spec.subset:
        full = load_data(dataclasses.replace(spec, subset="", **{f: DataSpec.__dataclass_fields__[f].default
                                                                 for f in SUBSET_FIELDS}), root)
        key = (*key, spec.subset, *(getattr(spec, f) for f in SUBSET_FIELDS))
        if key not in _DATA_CACHE:
            from .subsets import select

            _DATA_CACHE[key] = select(full, spec, data_root(root))
        return _DATA_CACHE[key]
    if key not in _DATA_CACHE:
        loaders = {
            "mnist1d": embedded.mnist1d, "digits": embedded.digits, "gaussian": synthetic.gaussian,
            "mnist": lambda s, r: files.load_idx("mnist", r),
            "fashion_mnist": lambda s, r: files.load_idx("fashion_mnist", r),
            "cifar10": lambda s, r: files.load_cifar("cifar10", r),
            "cifar100": lambda s, r: files.load_cifar("cifar100", r),
            "imagenet": lambda s, r: imagenet.load_imagenet(r, s.image_size, s.split_seed),
        }
        _DATA_CACHE[key] = loaders[spec.name](spec, data_root(root))
    return _DATA_CACHE[key]
