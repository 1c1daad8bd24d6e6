"""Datasets that work offline: MNIST-1D (generated) and scikit-learn's digits."""
from __future__ import annotations

import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch

from .. import rng
from ..spec import DataSpec
from .core import InMemoryData

# MNIST-1D's published generation arguments (4,000 train / 1,000 test, seed 42).
MNIST1D_VERSION = "mnist1d-default-v1"


def _generate_mnist1d() -> dict[str, np.ndarray]:
    from mnist1d.data import get_dataset_args, make_dataset

    # make_dataset reseeds the global Python and NumPy generators: put them back.
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        d = make_dataset(get_dataset_args())
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    return {"x": d["x"], "y": d["y"], "x_test": d["x_test"], "y_test": d["y_test"]}


def mnist1d(spec: DataSpec, root: Path) -> InMemoryData:
    path = root / f"{MNIST1D_VERSION}.npz"
    arrays = None
    if path.exists():
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in ("x", "y", "x_test", "y_test")}
        except (OSError, ValueError, KeyError):
            arrays = None  # a damaged cache is rebuilt, not trusted
    if arrays is None:
        arrays = _generate_mnist1d()
        root.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=root, suffix=".npz.tmp")
        os.close(fd)
        with open(tmp, "wb") as fh:
            np.savez(fh, **arrays)
        os.replace(tmp, path)
    return InMemoryData(
        name="mnist1d",
        x_train=torch.from_numpy(arrays["x"]).float(),
        y_train=torch.from_numpy(arrays["y"]).long(),
        x_test=torch.from_numpy(arrays["x_test"]).float(),
        y_test=torch.from_numpy(arrays["y_test"]).long(),
        num_classes=10,
    )


def digits(spec: DataSpec, root: Path) -> InMemoryData:
    """scikit-learn's 8x8 digits (1,797 images), 80/20 split fixed by ``data.split_seed``."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = torch.from_numpy(d.images.astype(np.float32)).unsqueeze(1) / 16.0
    y = torch.from_numpy(d.target.astype(np.int64))
    perm = torch.randperm(len(y), generator=rng.generator(rng.SPLIT, spec.split_seed))
    n_test = len(y) // 5
    test, train = perm[:n_test], perm[n_test:]
    mean, std = x[train].mean(), x[train].std()
    x = (x - mean) / std
    return InMemoryData("digits", x[train], y[train], x[test], y[test], num_classes=10)
