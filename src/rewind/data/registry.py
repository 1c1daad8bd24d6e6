"""The dataset registry: what ``data.name`` may be.

A dataset is a function ``load(spec: DataSpec, root: Path)`` registered by name; it returns the
four tensors ``(x_train, y_train, x_test, y_test)``, two ``torch.utils.data.Dataset``s of
``(input, label)`` pairs (read once into memory), or an :class:`InMemoryData`. rewind's own:
the embedded MNIST-1D and digits, the generated Gaussian task, the standard files of MNIST,
Fashion-MNIST, CIFAR-10/100 and ImageNet, and ``npz`` (arrays ``x_train, y_train, x_test,
y_test`` in the file ``data.path``; no code needed). A dataset that reads a file (``path=True``)
has that file's SHA-256 in its runs' keys; a plugin's dataset has its code's digest there too.
What a user brings (a file, a plugin's arrays) is input: a problem with it is a SpecError naming the
array and the problem (exit 2, nothing written).
"""
from __future__ import annotations

import hashlib
import inspect
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from ..spec import DataSpec, SpecError, register_dataset_catalogue, register_identity
from .tensors import InMemoryData


@dataclass(frozen=True)
class DatasetEntry:
    name: str
    load: Callable
    doc: str = ""
    path: bool = False           # reads the file data.path (whose digest joins the key)
    group: str = "rewind"
    digest: str = ""


DATASETS: dict[str, DatasetEntry] = {}


def register_dataset(name: str, *, path: bool = False):
    """Decorator over ``load(spec, root)`` (see the module's docstring). ``path=True``: the dataset
    reads ``data.path`` (required, and its contents are part of what names the runs)."""
    from ..plugins import origin_of

    def deco(fn):
        if name in DATASETS:
            raise SpecError(f"register_dataset: a dataset named {name!r} is already registered "
                            f"(by {DATASETS[name].group})")
        where = origin_of(fn)
        DATASETS[name] = DatasetEntry(name, fn, (inspect.getdoc(fn) or "").split("\n")[0], path, where.group,
                                      where.digest)
        return fn
    return deco


def get_dataset(name: str) -> DatasetEntry:
    if name not in DATASETS:
        from ..plugins import load_plugins

        load_plugins(export=False)   # a worker process asked for a plugin's dataset
    if name not in DATASETS:
        raise SpecError(f"data.name: unknown dataset {name!r}; known: {', '.join(DATASETS)} (a plugin's dataset "
                        "needs --plugin or REWIND_PLUGINS)")
    return DATASETS[name]


register_dataset_catalogue(lambda name: name in DATASETS, lambda: list(DATASETS))

_FILE_DIGESTS: dict[tuple, str] = {}


def file_digest(path: str) -> str:
    """SHA-256 of a data file, remembered by (path, size, mtime) within a process."""
    p = Path(path).expanduser()
    try:
        st = p.stat()
    except OSError as e:
        raise SpecError(f"data.path: {path} cannot be read ({e.strerror or e})") from None
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _FILE_DIGESTS:
        h = hashlib.sha256()
        try:
            with open(p, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
        except OSError as e:
            raise SpecError(f"data.path: {path} cannot be read ({e.strerror or e})") from None
        _FILE_DIGESTS[key] = h.hexdigest()[:16]
    return _FILE_DIGESTS[key]


def _identity(spec) -> dict[str, str]:
    entry = DATASETS.get(spec.data.name)
    out = {}
    if entry is not None and entry.digest:
        out["data.name"] = entry.digest
    if spec.data.path and (entry is None or entry.path):   # (a dataset that reads no file refuses the path)
        out["data.path"] = file_digest(spec.data.path)
    return out


register_identity(_identity)


def check_path(spec: DataSpec) -> None:
    """data.path is given exactly when the dataset reads a file."""
    entry = get_dataset(spec.name)
    if entry.path and not spec.path:
        raise SpecError(f"data.path: the {spec.name} dataset reads a file; give it, e.g. --set data.path=data.npz")
    if spec.path and not entry.path:
        raise SpecError(f"data.path: the {spec.name} dataset reads no file (npz and file-reading plugin datasets do)")


def to_data(name: str, loaded) -> InMemoryData:
    """What a dataset function returned, as InMemoryData (tensors checked; Datasets read into memory)."""
    if isinstance(loaded, InMemoryData):
        return loaded
    if isinstance(loaded, tuple) and len(loaded) == 2:
        (x_train, y_train), (x_test, y_test) = _read(loaded[0], name, "train"), _read(loaded[1], name, "test")
    elif isinstance(loaded, tuple) and len(loaded) == 4:
        x_train, y_train, x_test, y_test = (torch.as_tensor(np.asarray(t)) if not isinstance(t, torch.Tensor) else t
                                            for t in loaded)
    else:
        raise SpecError(f"dataset {name}: its loader returned {type(loaded).__name__}; return (x_train, y_train, "
                        "x_test, y_test), (train Dataset, test Dataset) or an InMemoryData")
    return checked(name, x_train, y_train, x_test, y_test)


def _read(dataset, name: str, split: str):
    try:
        pairs = [dataset[i] for i in range(len(dataset))]
    except Exception as e:  # noqa: BLE001 - a user's Dataset may raise anything
        raise SpecError(f"dataset {name}: reading its {split} Dataset failed ({type(e).__name__}: {e})") from None
    if not pairs:
        raise SpecError(f"dataset {name}: its {split} Dataset is empty")
    xs = torch.stack([torch.as_tensor(np.asarray(x)) for x, _ in pairs])
    ys = torch.as_tensor([int(y) for _, y in pairs])
    return xs, ys


def checked(name: str, x_train, y_train, x_test, y_test, what: str = "") -> InMemoryData:
    """Tensors checked the way every dataset's are: float inputs (integers are converted), integer
    labels from 0, matching lengths and example shapes; one line names the array and the problem
    (a SpecError: what a user brings is input, refused before anything is written)."""
    where = what or f"dataset {name}"
    arrays = {"x_train": x_train, "y_train": y_train, "x_test": x_test, "y_test": y_test}
    for key in ("x_train", "x_test"):
        x = arrays[key]
        if x.dtype == torch.bool or x.is_complex():
            raise SpecError(f"{where}: {key} must hold real numbers, not {x.dtype}")
        if x.dim() < 2:
            raise SpecError(f"{where}: {key} must be [examples, ...], got shape {tuple(x.shape)}")
        if not torch.isfinite(x.double()).all():
            raise SpecError(f"{where}: {key} holds values that are not finite")
    for key in ("y_train", "y_test"):
        y = arrays[key]
        if y.is_floating_point() or y.is_complex() or y.dtype == torch.bool:
            raise SpecError(f"{where}: {key} must hold integer class labels, not {y.dtype}")
        if y.dim() != 1:
            raise SpecError(f"{where}: {key} must be one label per example, got shape {tuple(y.shape)}")
    for x, y, split in ((x_train, y_train, "train"), (x_test, y_test, "test")):
        if len(x) != len(y):
            raise SpecError(f"{where}: x_{split} has {len(x)} examples but y_{split} {len(y)} labels")
        if len(y) == 0:
            raise SpecError(f"{where}: the {split} split is empty")
    if tuple(x_train.shape[1:]) != tuple(x_test.shape[1:]):
        raise SpecError(f"{where}: train examples have shape {tuple(x_train.shape[1:])}, test examples "
                        f"{tuple(x_test.shape[1:])}")
    low = int(min(y_train.min(), y_test.min()))
    classes = int(max(y_train.max(), y_test.max())) + 1
    if low < 0:
        raise SpecError(f"{where}: labels must be 0, 1, ..., C-1; found {low}")
    if classes < 2:
        raise SpecError(f"{where}: labels must name at least two classes (0 and 1)")
    missing = sorted(set(range(classes)) - set(torch.unique(y_train).tolist()))
    if missing:
        raise SpecError(f"{where}: labels must be 0, 1, ..., {classes - 1}, but y_train has no {missing[0]}")
    return InMemoryData(name, x_train.float(), y_train.long(), x_test.float(), y_test.long(), classes)


# ---- rewind's own ----------------------------------------------------------------------------------
def _builtin(name, fn, doc):
    DATASETS[name] = DatasetEntry(name, fn, doc)


def _register_builtins() -> None:
    from . import embedded, files, imagenet, synthetic

    _builtin("mnist1d", embedded.mnist1d, "MNIST-1D, generated offline (mnist1d), 4,000/1,000 by default")
    _builtin("digits", embedded.digits, "scikit-learn's 8x8 digits, 1,438/359")
    _builtin("gaussian", synthetic.gaussian, "Gaussian inputs labelled by a fixed random teacher")
    _builtin("mnist", lambda s, r: files.load_idx("mnist", r), "MNIST, IDX files under --data-root")
    _builtin("fashion_mnist", lambda s, r: files.load_idx("fashion_mnist", r), "Fashion-MNIST, IDX files")
    _builtin("cifar10", lambda s, r: files.load_cifar("cifar10", r), "CIFAR-10, the python pickle archive")
    _builtin("cifar100", lambda s, r: files.load_cifar("cifar100", r), "CIFAR-100, the python pickle archive")
    _builtin("imagenet", lambda s, r: imagenet.load_imagenet(r, s.image_size, s.split_seed),
             "ImageNet, JPEG folders, streamed")
    DATASETS["npz"] = DatasetEntry("npz", load_npz, "arrays x_train, y_train, x_test, y_test in the file data.path",
                                   path=True)


def load_npz(spec: DataSpec, root: Path) -> InMemoryData:
    """data.name=npz: the arrays x_train, y_train, x_test, y_test of the .npz file data.path (read
    without unpickling anything)."""
    path = Path(spec.path).expanduser()
    what = f"data.path {spec.path}"
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in ("x_train", "y_train", "x_test", "y_test") if k not in f.files]
            if missing:
                raise SpecError(f"{what}: no array {missing[0]!r} in the file (it has: {', '.join(f.files) or 'none'}); "
                                "an npz dataset holds x_train, y_train, x_test and y_test")
            arrays = {k: f[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    except SpecError:
        raise
    except FileNotFoundError:
        raise SpecError(f"{what}: no such file") from None
    except IsADirectoryError:
        raise SpecError(f"{what}: a directory, not an npz file") from None
    except (ValueError, EOFError, zipfile.BadZipFile) as e:   # pickles are refused by allow_pickle=False
        raise SpecError(f"{what}: not a plain npz file ({type(e).__name__}: {str(e)[:100]})") from None
    except OSError as e:
        raise SpecError(f"{what}: cannot be read as an npz file ({e.strerror or type(e).__name__})") from None
    for k, a in arrays.items():
        if a.dtype.kind not in "biuf":
            raise SpecError(f"{what}: {k} has dtype {a.dtype}; numbers are needed")
    t = {k: torch.from_numpy(np.ascontiguousarray(a)) for k, a in arrays.items()}
    return checked("npz", t["x_train"], t["y_train"], t["x_test"], t["y_test"], what)


_register_builtins()
