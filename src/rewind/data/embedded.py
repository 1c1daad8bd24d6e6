"""Datasets that work offline: MNIST-1D (generated) and scikit-learn's digits."""
from __future__ import annotations

import hashlib
import json
import os
import random
import tempfile
from pathlib import Path

import numpy as np
import torch

from .. import rng
from ..errors import notice
from ..spec import DataSpec
from .tensors import InMemoryData

# MNIST-1D's published generation arguments (4,000 train / 1,000 test, seed 42).
MNIST1D_VERSION = "mnist1d-default-v1"


def mnist1d_arguments(spec: DataSpec) -> dict:
    """The generator arguments a data spec asks for (sizes with 0 resolved to the published ones)."""
    return {"train_size": spec.train_size or 4000, "test_size": spec.test_size or 1000,
            "corr_noise": spec.corr_noise, "iid_noise": spec.iid_noise, "max_shift": spec.max_shift,
            "generator_seed": spec.generator_seed}


def _generate_mnist1d(arguments: dict) -> dict[str, np.ndarray]:
    """MNIST-1D made by the ``mnist1d`` package from its own seed. The package shuffles one pool
    of train + test examples, standardises it as a whole and splits it; the published dataset is
    the 5,000-example pool split 4,000 / 1,000."""
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    n = arguments["train_size"] + arguments["test_size"]
    args.num_samples = n
    args.train_split = arguments["train_size"] / n
    args.corr_noise_scale = arguments["corr_noise"]
    args.iid_noise_scale = arguments["iid_noise"]
    args.max_translation = arguments["max_shift"]
    args.seed = arguments["generator_seed"]
    # make_dataset reseeds the global Python and NumPy generators: put them back.
    py_state, np_state = random.getstate(), np.random.get_state()
    try:
        d = make_dataset(args)
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)
    # split where we ask, not where float rounding of train_split puts it
    x, y = np.concatenate([d["x"], d["x_test"]]), np.concatenate([d["y"], d["y_test"]])
    cut = arguments["train_size"]
    return {"x": x[:cut], "y": y[:cut], "x_test": x[cut:], "y_test": y[cut:]}


def _cache_name(arguments: dict) -> str:
    if arguments == mnist1d_arguments(DataSpec()):  # the published dataset keeps its old name
        return f"{MNIST1D_VERSION}.npz"
    digest = hashlib.sha256(json.dumps(arguments, sort_keys=True).encode()).hexdigest()[:12]
    return f"mnist1d-v1-{arguments['train_size']}-{arguments['test_size']}-{digest}.npz"


def _file_sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _read_cache(path: Path, arguments: dict) -> dict[str, np.ndarray] | None:
    """The cached arrays, or None when they must be generated again: no cache, a damaged one, or
    one whose bytes are not those rewind wrote (its SHA-256 is kept beside it). A cache someone
    overwrote with other data would otherwise be trained on under MNIST-1D's name and keys."""
    seal = path.with_name(path.name + ".sha256")
    if not path.exists():
        return None
    try:
        if not seal.exists() or seal.read_text().strip() != _file_sha256(path):
            if seal.exists():
                notice(f"{path} is not the file rewind generated (its SHA-256 differs from {seal.name}): "
                       "MNIST-1D is generated again. Your own arrays go in with data.name=npz data.path=FILE.")
            return None
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in ("x", "y", "x_test", "y_test")}
    except (OSError, ValueError, KeyError, EOFError):
        return None  # a damaged cache is rebuilt, not trusted
    if len(arrays["y"]) != arguments["train_size"] or len(arrays["y_test"]) != arguments["test_size"]:
        return None
    return arrays


def _write_cache(path: Path, arrays: dict[str, np.ndarray]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
    os.close(fd)
    with open(tmp, "wb") as fh:
        np.savez(fh, **arrays)
    digest = _file_sha256(Path(tmp))
    os.replace(tmp, path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".sha256.tmp")
    with os.fdopen(fd, "w") as fh:
        fh.write(digest + "\n")
    os.replace(tmp, path.with_name(path.name + ".sha256"))


def mnist1d(spec: DataSpec, root: Path) -> InMemoryData:
    """MNIST-1D, generated once per set of generator arguments and cached under the data root
    with its SHA-256 beside it (a damaged or altered cache file is generated again, never trusted)."""
    arguments = mnist1d_arguments(spec)
    path = root / _cache_name(arguments)
    arrays = _read_cache(path, arguments)
    if arrays is None:
        arrays = _generate_mnist1d(arguments)
        _write_cache(path, arrays)
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
