"""ImageNet (ILSVRC-2012) from its folder tree of JPEGs, streamed through a DataLoader.

Layout under the data root (the usual one; the official validation archive is flat
and has to be sorted into class folders once, e.g. with the devkit's labels)::

    imagenet/train/<wnid>/*.JPEG
    imagenet/val/<wnid>/*.JPEG

Classes are the sorted folder names of ``train``; ``val`` must use the same names.

Training batches are items of a map-style dataset indexed by *iteration*: item t is
the whole batch of iteration t (its examples from the seeded epoch permutation, its
random-resized-crop and flip draws from (augment seed, t)), so any number of
DataLoader workers produce identical batches, and a resumed run continues with the
batch it would have seen. Workers return uint8 images; the trainer converts and
normalises (with ImageNet's channel statistics) on its device.

Random-resized-crop follows the usual recipe (area 8%-100% of the image, aspect
ratio 3/4-4/3 log-uniform, up to 10 attempts, else a centre crop of clamped aspect
ratio), with all of a batch's draws made at once (:func:`resized_crop_boxes`); each
image is then cropped and resized to ``image_size`` in one bilinear resample.
Evaluation images: resize the shorter side to 8/7 of ``image_size`` (256 for 224)
and take the centre square. Evaluating on the training split uses a fixed sample
of at most 10,000 training images (seeded by ``data.split_seed``), not all 1.28M.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import rng
from .tensors import batch_indices, shard_rows
from .tensors import DataError

MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
EXTENSIONS = {".jpeg", ".jpg", ".png"}
TRAIN_EVAL_EXAMPLES = 10_000
HOW_TO_GET = ("ImageNet cannot be downloaded automatically: obtain ILSVRC2012_img_train.tar and "
              "ILSVRC2012_img_val.tar from https://image-net.org (registration required), extract the training "
              "archive's per-class tars into {root}/train/<wnid>/ and sort the validation images into "
              "{root}/val/<wnid>/ by their labels")


@dataclass
class ImageFolderData:
    """File lists and labels of a train/val folder tree; images are read when batches are made."""

    name: str
    root: Path
    classes: list[str]
    train_files: list[str]
    y_train: torch.Tensor
    test_files: list[str]
    y_test: torch.Tensor
    image_size: int
    split_seed: int = 0
    streaming = True

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return (3, self.image_size, self.image_size)

    def eval_files(self, split: str) -> tuple[list[str], torch.Tensor]:
        if split == "test":
            return self.test_files, self.y_test
        if split != "train":
            raise ValueError(f"split must be 'train' or 'test', got {split!r}")
        n = len(self.train_files)
        if n <= TRAIN_EVAL_EXAMPLES:
            return self.train_files, self.y_train
        pick = torch.randperm(n, generator=rng.generator(rng.SPLIT, self.split_seed))[:TRAIN_EVAL_EXAMPLES].sort().values
        return [self.train_files[i] for i in pick.tolist()], self.y_train[pick]


def _scan(folder: Path, classes: list[str] | None) -> tuple[list[str], list[str], list[int]]:
    if not folder.is_dir():
        raise DataError(f"imagenet: no directory {folder}; " + HOW_TO_GET.format(root=folder.parent))
    found = sorted(e.name for e in os.scandir(folder) if e.is_dir())
    if classes is None:
        classes = found
    elif found != classes:
        extra, missing = sorted(set(found) - set(classes)), sorted(set(classes) - set(found))
        raise DataError(f"imagenet: the class folders of {folder} differ from train/ "
                     f"(only in val: {extra[:5]}, missing in val: {missing[:5]})")
    files, labels = [], []
    for label, cls in enumerate(classes):
        names = sorted(e.name for e in os.scandir(folder / cls)
                       if e.is_file() and os.path.splitext(e.name)[1].lower() in EXTENSIONS)
        files.extend(f"{folder.name}/{cls}/{n}" for n in names)
        labels.extend([label] * len(names))
    if not files:
        raise DataError(f"imagenet: no images (.JPEG, .jpg, .png) under {folder}; " + HOW_TO_GET.format(root=folder.parent))
    return classes, files, labels


def load_imagenet(root: Path, image_size: int = 224, split_seed: int = 0) -> ImageFolderData:
    folder = root / "imagenet"
    if not folder.is_dir():
        raise DataError(f"imagenet: no directory {folder}; " + HOW_TO_GET.format(root=folder))
    classes, train, y_train = _scan(folder / "train", None)
    _, val, y_val = _scan(folder / "val", classes)
    return ImageFolderData("imagenet", folder, classes, train, torch.tensor(y_train), val, torch.tensor(y_val),
                           image_size, split_seed)


# ----------------------------------------------------------------------------- crops

SCALE = (0.08, 1.0)
RATIO = (3 / 4, 4 / 3)
ATTEMPTS = 10


def crop_draws(batch: int, seed: int, iteration: int) -> dict[str, torch.Tensor]:
    """Every random number one batch's random-resized-crop and flip use, in one generator."""
    g = rng.generator(rng.AUGMENT, seed, iteration)
    return {
        "area": torch.empty(batch, ATTEMPTS, dtype=torch.float64).uniform_(*SCALE, generator=g),
        "log_ratio": torch.empty(batch, ATTEMPTS, dtype=torch.float64).uniform_(
            math.log(RATIO[0]), math.log(RATIO[1]), generator=g),
        "top": torch.rand(batch, ATTEMPTS, dtype=torch.float64, generator=g),
        "left": torch.rand(batch, ATTEMPTS, dtype=torch.float64, generator=g),
        "flip": torch.rand(batch, generator=g) < 0.5,
    }


def resized_crop_boxes(sizes: torch.Tensor, draws: dict[str, torch.Tensor]) -> torch.Tensor:
    """Crop boxes [B, 4] (left, top, width, height) for images of sizes [B, 2] (width, height),
    all at once: the first of the attempts that fits, else a centre crop."""
    width, height = sizes[:, :1].double(), sizes[:, 1:].double()
    area = width * height * draws["area"]
    ratio = draws["log_ratio"].exp()
    w = (area * ratio).sqrt().round()
    h = (area / ratio).sqrt().round()
    fits = (w > 0) & (h > 0) & (w <= width) & (h <= height)
    first = torch.where(fits.any(1), fits.double().argmax(1), torch.zeros_like(fits[:, 0], dtype=torch.long))
    pick = lambda t: t.gather(1, first.view(-1, 1)).squeeze(1)  # noqa: E731
    w, h = pick(w), pick(h)
    width, height = width.squeeze(1), height.squeeze(1)
    top = (pick(draws["top"]) * (height - h + 1)).floor()
    left = (pick(draws["left"]) * (width - w + 1)).floor()
    # no attempt fits: the whole image, its aspect ratio clamped to the allowed range, centred
    in_ratio = width / height
    cw = torch.where(in_ratio > RATIO[1], (height * RATIO[1]).round(), width)
    ch = torch.where(in_ratio < RATIO[0], (width / RATIO[0]).round(), height)
    none = ~fits.any(1)
    w, h = torch.where(none, cw, w), torch.where(none, ch, h)
    top = torch.where(none, ((height - ch) / 2).floor(), top)
    left = torch.where(none, ((width - cw) / 2).floor(), left)
    return torch.stack([left, top, w, h], 1).long()


def centre_box(width: int, height: int, image_size: int) -> tuple[float, float, float, float]:
    """Resize-the-shorter-side-to-8/7-then-centre-crop as one box in the original image."""
    side = min(width, height) * image_size / round(image_size * 8 / 7)
    return ((width - side) / 2, (height - side) / 2, (width + side) / 2, (height + side) / 2)


def _open(root: Path, rel: str):
    from PIL import Image, UnidentifiedImageError

    path = root / rel
    try:
        img = Image.open(path)
        img.load()
        return img.convert("RGB")
    except (OSError, UnidentifiedImageError, SyntaxError) as e:
        raise DataError(f"imagenet: cannot read {path} ({e}); the file is damaged: replace it from the archive") from None


def _to_array(img) -> np.ndarray:
    return np.asarray(img, dtype=np.uint8).transpose(2, 0, 1)


def load_train_batch(data: ImageFolderData, iteration: int, batch_size: int, order_seed: int, augment: str,
                     augment_seed: int, part: tuple[int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images [B, 3, S, S] and labels of iteration's batch (``part`` = (rank, world): only
    that rank's rows of it, augmented as they are in the whole batch)."""
    from PIL import Image

    idx = batch_indices(iteration, len(data.train_files), batch_size, order_seed)
    rows = shard_rows(len(idx), part)
    images = [_open(data.root, data.train_files[i]) for i in idx[rows].tolist()]
    s = data.image_size
    out = np.empty((len(images), 3, s, s), dtype=np.uint8)
    if augment == "random_resized_crop":
        sizes = torch.tensor([img.size for img in images])
        draws = {k: v[rows] for k, v in crop_draws(len(idx), augment_seed, iteration).items()}
        boxes = resized_crop_boxes(sizes, draws).tolist()
        for j, (img, (left, top, w, h)) in enumerate(zip(images, boxes)):
            img = img.resize((s, s), Image.BILINEAR, box=(left, top, left + w, top + h))
            if draws["flip"][j]:
                img = img.transpose(Image.FLIP_LEFT_RIGHT)
            out[j] = _to_array(img)
    else:
        for j, img in enumerate(images):
            out[j] = _to_array(img.resize((s, s), Image.BILINEAR, box=centre_box(*img.size, s)))
    return torch.from_numpy(out), data.y_train[idx[rows]]


def load_eval_batch(data: ImageFolderData, files: list[str]) -> torch.Tensor:
    from PIL import Image

    s = data.image_size
    out = np.empty((len(files), 3, s, s), dtype=np.uint8)
    for j, rel in enumerate(files):
        img = _open(data.root, rel)
        out[j] = _to_array(img.resize((s, s), Image.BILINEAR, box=centre_box(*img.size, s)))
    return torch.from_numpy(out)


def normalise(x: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """uint8 [B, 3, H, W] (on any device) -> normalised floats."""
    mean = torch.tensor(MEAN, device=x.device, dtype=dtype).view(1, 3, 1, 1) * 255
    std = torch.tensor(STD, device=x.device, dtype=dtype).view(1, 3, 1, 1) * 255
    return (x.to(dtype) - mean) / std


class TrainBatches(torch.utils.data.Dataset):
    """Item i: (iteration, images, labels) of iteration ``start + i``."""

    def __init__(self, data: ImageFolderData, start: int, total: int, batch_size: int, order_seed: int,
                 augment: str, augment_seed: int, part: tuple[int, int] | None = None):
        self.data, self.start, self.total = data, start, total
        self.args = (batch_size, order_seed, augment, augment_seed, part)

    def __len__(self) -> int:
        return self.total - self.start

    def __getitem__(self, i: int):
        t = self.start + i
        return (t, *load_train_batch(self.data, t, *self.args))


class EvalBatches(torch.utils.data.Dataset):
    def __init__(self, data: ImageFolderData, files: list[str], labels: torch.Tensor, batch: int):
        self.data, self.files, self.labels, self.batch = data, files, labels, batch

    def __len__(self) -> int:
        return math.ceil(len(self.files) / self.batch)

    def __getitem__(self, i: int):
        sl = slice(i * self.batch, (i + 1) * self.batch)
        return load_eval_batch(self.data, self.files[sl]), self.labels[sl]


def loader(dataset, workers: int, pin: bool) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(dataset, batch_size=None, shuffle=False, num_workers=workers,
                                       pin_memory=pin, prefetch_factor=2 if workers else None)
