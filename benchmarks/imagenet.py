"""Images per second of rewind's ImageNet stream against a per-sample DataLoader pipeline.

    .venv/bin/python benchmarks/imagenet.py [--images 512] [--batch 64] [--size 224] [--workers 0,2]

Writes a synthetic train/val tree of JPEGs (ImageNet's typical 500x375, random
content, quality 90) to a temporary folder. rewind's stream: one item per
iteration, the batch's random-resized-crop boxes drawn at once, one PIL resample
per image (data/imagenet.py). The reference pipeline: a Dataset that opens one
image, draws its crop with Python's random module, crops, resizes, flips and
converts it, collated by a DataLoader — the way torchvision-based code reads
ImageNet. Both produce [B, 3, S, S] batches (rewind's as uint8, normalised on
the device; the reference's as float, normalised per sample).
"""
from __future__ import annotations

import argparse
import math
import random
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from rewind.data import imagenet


def write_tree(root: Path, images: int, classes: int = 8) -> None:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (375, 500, 3), dtype=np.uint8)
    for split, n in (("train", images), ("val", classes)):
        for i in range(n):
            folder = root / "imagenet" / split / f"n{i % classes:08d}"
            folder.mkdir(parents=True, exist_ok=True)
            # smooth-ish content so JPEG sizes are realistic (pure noise compresses badly)
            img = np.roll(base, i, axis=1) // 4 + (np.arange(500, dtype=np.uint8)[None, :, None] // 2)
            Image.fromarray(img).save(folder / f"img_{i}.JPEG", quality=90)


class PerSample(Dataset):
    def __init__(self, data, size: int):
        self.data, self.size, self.rnd = data, size, random.Random(0)
        self.mean = torch.tensor(imagenet.MEAN).view(3, 1, 1)
        self.std = torch.tensor(imagenet.STD).view(3, 1, 1)

    def __len__(self):
        return len(self.data.train_files)

    def __getitem__(self, i):
        img = Image.open(self.data.root / self.data.train_files[i]).convert("RGB")
        width, height = img.size
        for _ in range(10):
            area = width * height * self.rnd.uniform(0.08, 1.0)
            ratio = math.exp(self.rnd.uniform(math.log(3 / 4), math.log(4 / 3)))
            w, h = int(round(math.sqrt(area * ratio))), int(round(math.sqrt(area / ratio)))
            if 0 < w <= width and 0 < h <= height:
                top, left = self.rnd.randint(0, height - h), self.rnd.randint(0, width - w)
                break
        else:
            w, h, top, left = width, height, 0, 0
        img = img.crop((left, top, left + w, top + h)).resize((self.size, self.size), Image.BILINEAR)
        if self.rnd.random() < 0.5:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        x = torch.from_numpy(np.asarray(img, dtype=np.float32) / 255).permute(2, 0, 1)
        return (x - self.mean) / self.std, self.data.y_train[i]


def rate(batches, n_batches: int, batch: int) -> float:
    it = iter(batches)
    next(it)  # workers started, first batch made
    start = time.perf_counter()
    for _ in range(n_batches):
        next(it)
    return n_batches * batch / (time.perf_counter() - start)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--workers", default="0,2")
    args = ap.parse_args()
    n_batches = args.images // args.batch - 1
    with tempfile.TemporaryDirectory() as tmp:
        write_tree(Path(tmp), args.images)
        data = imagenet.load_imagenet(Path(tmp), args.size)
        print(f"{args.images} JPEGs of 500x375, batch {args.batch}, crops to {args.size}, images/s:")
        for workers in map(int, args.workers.split(",")):
            ours = rate(imagenet.loader(imagenet.TrainBatches(data, 0, n_batches + 1, args.batch, 0,
                                                              "random_resized_crop", 0), workers, False),
                        n_batches, args.batch)
            ref = rate(DataLoader(PerSample(data, args.size), batch_size=args.batch, shuffle=True,
                                  num_workers=workers), n_batches, args.batch)
            print(f"  {workers} workers: rewind {ours:7.1f}   per-sample DataLoader {ref:7.1f}   ({ours / ref:.2f}x)")


if __name__ == "__main__":
    main()
