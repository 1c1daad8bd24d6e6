"""Datasets read from the files their owners publish.

MNIST and Fashion-MNIST: the four gzipped IDX files. CIFAR-10 and CIFAR-100:
the "python version" tar.gz (or its extracted folder), whose batches are
pickles: they are read with an unpickler that accepts only the few NumPy
types the format uses, since a data directory is not trusted code.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import struct
import tarfile
import urllib.request
from pathlib import Path

import numpy as np
import torch

from .tensors import DataError, InMemoryData  # noqa: F401  (DataError: re-exported, data.files.DataError)


IDX_FILES = {
    "train_x": "train-images-idx3-ubyte.gz", "train_y": "train-labels-idx1-ubyte.gz",
    "test_x": "t10k-images-idx3-ubyte.gz", "test_y": "t10k-labels-idx1-ubyte.gz",
}
SOURCES = {
    "mnist": ("mnist", "https://ossci-datasets.s3.amazonaws.com/mnist/", {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c"}),
    "fashion_mnist": ("fashion_mnist", "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/", {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310"}),
    "cifar10": ("", "https://www.cs.toronto.edu/~kriz/", {"cifar-10-python.tar.gz": "c58f30108f718f92721af3b95e74349a"}),
    "cifar100": ("", "https://www.cs.toronto.edu/~kriz/", {"cifar-100-python.tar.gz": "eb9058c3a382ffc7106e4002c42a8d85"}),
}
# Per-channel statistics of each training set, for normalisation.
STATS = {
    "mnist": ((0.1307,), (0.3081,)),
    "fashion_mnist": ((0.2860,), (0.3530,)),
    "cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
}


def _how_to_get(name: str, folder: Path) -> str:
    sub, url, files = SOURCES[name]
    return (f"put {', '.join(files)} in {folder} (from {url}), or run: rewind data download {name} "
            f"--data-root {folder.parent if sub else folder}")


def _read_idx(path: Path, expect_magic: int) -> np.ndarray:
    try:
        with gzip.open(path, "rb") as fh:
            raw = fh.read()
    except (OSError, EOFError) as e:
        raise DataError(f"{path}: not a readable gzip file ({e}); delete it and obtain it again") from None
    if len(raw) < 8:
        raise DataError(f"{path}: truncated IDX file ({len(raw)} bytes)")
    magic, count = struct.unpack(">II", raw[:8])
    if magic != expect_magic:
        raise DataError(f"{path}: not an IDX {'image' if expect_magic == 2051 else 'label'} file (magic {magic})")
    if magic == 2051:
        if len(raw) < 16:
            raise DataError(f"{path}: truncated IDX header")
        rows, cols = struct.unpack(">II", raw[8:16])
        body, shape = memoryview(raw)[16:], (count, rows, cols)
    else:
        body, shape = memoryview(raw)[8:], (count,)
    need = int(np.prod(shape))
    if len(body) != need:
        raise DataError(f"{path}: truncated or padded: {len(body)} bytes of data, the header promises {need}")
    return np.frombuffer(body, dtype=np.uint8).reshape(shape)


def _pixels(name: str):
    """The per-channel (mean, std) that images of ``name`` are normalised with, per batch
    (data/tensors.py: to_float); the images themselves stay uint8."""
    mean, std = STATS[name]
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def load_idx(name: str, root: Path) -> InMemoryData:
    folder = root / SOURCES[name][0]
    if not folder.is_dir():
        raise DataError(f"{name}: no directory {folder}; {_how_to_get(name, folder)}")
    paths = {k: folder / f for k, f in IDX_FILES.items()}
    missing = [str(p) for p in paths.values() if not p.exists()]
    if missing:
        raise DataError(f"{name}: missing {', '.join(missing)}; {_how_to_get(name, folder)}")
    arrays = {k: _read_idx(p, 2051 if k.endswith("x") else 2049) for k, p in paths.items()}
    for split in ("train", "test"):
        if len(arrays[f"{split}_x"]) != len(arrays[f"{split}_y"]):
            raise DataError(f"{name}: {split} images and labels differ in count")
        labels = arrays[f"{split}_y"]
        if labels.size and int(labels.max()) >= 10:
            raise DataError(f"{name}: {paths[f'{split}_y']}: label {int(labels.max())} is out of range (0-9); "
                            "the file is damaged or not this dataset's: obtain it again")
    to_x = lambda a: torch.from_numpy(a.copy()).unsqueeze(1)  # noqa: E731  (uint8, N x 1 x 28 x 28)
    return InMemoryData(name, to_x(arrays["train_x"]), torch.from_numpy(arrays["train_y"].astype(np.int64)),
                        to_x(arrays["test_x"]), torch.from_numpy(arrays["test_y"].astype(np.int64)), num_classes=10,
                        pixels=_pixels(name))


class _CifarUnpickler(pickle.Unpickler):
    """Only what CIFAR's python batches contain: dicts, lists, bytes, ints and NumPy arrays."""

    ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
               ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
               ("numpy._core.multiarray", "scalar"), ("_codecs", "encode")}

    def find_class(self, module, name):
        if (module, name) in self.ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: not part of the CIFAR format")


def _unpickle(data: bytes, where: str) -> dict:
    try:
        obj = _CifarUnpickler(io.BytesIO(data), encoding="bytes").load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, struct.error) as e:
        raise DataError(f"{where}: not a CIFAR python batch ({e})") from None
    if not isinstance(obj, dict) or b"data" not in obj:
        raise DataError(f"{where}: not a CIFAR python batch (no data entry)")
    return obj


CIFAR = {
    "cifar10": ("cifar-10-python.tar.gz", "cifar-10-batches-py",
                [f"data_batch_{i}" for i in range(1, 6)], ["test_batch"], b"labels", 10),
    "cifar100": ("cifar-100-python.tar.gz", "cifar-100-python", ["train"], ["test"], b"fine_labels", 100),
}


def load_cifar(name: str, root: Path) -> InMemoryData:
    archive_name, folder_name, train_files, test_files, label_key, classes = CIFAR[name]
    archive, folder = root / archive_name, root / folder_name
    blobs: dict[str, bytes] = {}
    if folder.is_dir():
        for f in train_files + test_files:
            if not (folder / f).exists():
                raise DataError(f"{name}: missing {folder / f}; {_how_to_get(name, root)}")
            blobs[f] = (folder / f).read_bytes()
    elif archive.exists():
        try:
            with tarfile.open(archive, "r:gz") as tar:
                for f in train_files + test_files:
                    try:
                        member = tar.extractfile(f"{folder_name}/{f}")
                    except KeyError:
                        member = None
                    if member is None:
                        raise DataError(f"{archive}: has no {folder_name}/{f}; is it the python version of {name}?")
                    blobs[f] = member.read()
        except (tarfile.TarError, OSError, EOFError) as e:
            raise DataError(f"{archive}: damaged or truncated archive ({e}); delete it and obtain it again") from None
    else:
        raise DataError(f"{name}: neither {archive} nor {folder} exists; {_how_to_get(name, root)}")

    def stack(files):
        xs, ys = [], []
        for f in files:
            d = _unpickle(blobs[f], f"{name} {f}")
            data = np.asarray(d[b"data"])
            if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
                raise DataError(f"{name} {f}: data must be uint8 rows of 3072 values, got {data.dtype} {data.shape}")
            labels = np.asarray(d.get(label_key), dtype=np.int64)
            if labels.shape != (len(data),) or labels.min(initial=0) < 0 or labels.max(initial=0) >= classes:
                raise DataError(f"{name} {f}: labels missing or out of range")
            xs.append(data)
            ys.append(labels)
        x = torch.from_numpy(np.concatenate(xs)).view(-1, 3, 32, 32)
        return x, torch.from_numpy(np.concatenate(ys))

    x_train, y_train = stack(train_files)
    x_test, y_test = stack(test_files)
    return InMemoryData(name, x_train, y_train, x_test, y_test, num_classes=classes, pixels=_pixels(name))


def download(name: str, root: str | os.PathLike) -> list[Path]:
    """Fetch a dataset's official files and check their MD5 sums."""
    if name == "imagenet":
        from .imagenet import HOW_TO_GET

        raise DataError(HOW_TO_GET.format(root=Path(root) / "imagenet"))
    if name not in SOURCES:
        raise DataError(f"no download for {name!r}; datasets: {', '.join(SOURCES)}")
    sub, url, files = SOURCES[name]
    folder = Path(root) / sub
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for f, md5 in files.items():
        path = folder / f
        if not path.exists():
            try:
                with urllib.request.urlopen(url + f, timeout=60) as r:
                    data = r.read()
            except OSError as e:
                raise DataError(f"cannot download {url + f} ({e}); {_how_to_get(name, folder)}") from None
            if hashlib.md5(data).hexdigest() != md5:
                raise DataError(f"{url + f}: checksum mismatch; not saved")
            tmp = path.with_suffix(path.suffix + ".part")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        out.append(path)
    return out
