from __future__ import annotations

import dataclasses
import os
from pathlib import Path

from ..spec import MNIST1D_GENERATOR_FIELDS, SUBSET_FIELDS, DataSpec
from .tensors import InMemoryData, batch_indices, iterations_per_epoch, require_in_memory  # noqa: F401  (re-exported)


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
    from . import synthetic
    from .registry import check_path, file_digest, get_dataset, to_data

    if spec.classes:
        key = ("classes", spec.classes, str(data_root(root)), spec)
        if key not in _DATA_CACHE:
            _DATA_CACHE[key] = synthetic.keep_classes(load_data(dataclasses.replace(spec, classes=()), root),
                                                      spec.classes)
        return _DATA_CACHE[key]
    check_path(spec)
    key = (spec.name, spec.split_seed, spec.image_size, *(getattr(spec, f) for f in MNIST1D_GENERATOR_FIELDS),
           spec.path, file_digest(spec.path) if spec.path else "", str(data_root(root)))
    if spec.subset:
        full = load_data(dataclasses.replace(spec, subset="", **{f: DataSpec.__dataclass_fields__[f].default
                                                                 for f in SUBSET_FIELDS}), root)
        key = (*key, spec.subset, *(getattr(spec, f) for f in SUBSET_FIELDS))
        if key not in _DATA_CACHE:
            from .subsets import select

            _DATA_CACHE[key] = select(full, spec, data_root(root))
        return _DATA_CACHE[key]
    if key not in _DATA_CACHE:
        entry = get_dataset(spec.name)
        loaded = entry.load(spec, data_root(root))
        _DATA_CACHE[key] = loaded if entry.group == "rewind" and spec.name != "npz" else to_data(spec.name, loaded)
    return _DATA_CACHE[key]
