"""Cost per batch of rewind's batched crop-and-flip against a torch DataLoader pipeline.

    .venv/bin/python benchmarks/augment.py [--batch 128] [--batches 200]

The DataLoader pipeline is the reference code's way: a Dataset that pads, crops
and flips one example at a time, collated by a DataLoader (no workers, and with
2 workers). Both produce [B, 3, 32, 32] float batches from CIFAR-sized tensors.
"""
from __future__ import annotations

import argparse
import time

import torch
from torch.utils.data import DataLoader, Dataset

from rewind.data import augment


class PerSample(Dataset):
    def __init__(self, x, seed=0):
        self.x, self.g = x, torch.Generator().manual_seed(seed)

    def __len__(self):
        return len(self.x)

    def __getitem__(self, i):
        img = torch.nn.functional.pad(self.x[i], (4, 4, 4, 4))
        dy, dx = torch.randint(0, 9, (2,), generator=self.g).tolist()
        img = img[:, dy:dy + 32, dx:dx + 32]
        return img.flip(2) if torch.rand(1, generator=self.g) < 0.5 else img


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--batches", type=int, default=200)
    args = ap.parse_args()
    x = torch.randn(50_000, 3, 32, 32)
    perm = torch.randperm(len(x))
    start = time.perf_counter()
    for t in range(args.batches):
        idx = perm[(t * args.batch) % 49_000:(t * args.batch) % 49_000 + args.batch]
        augment.crop_flip(x[idx], 0, t)
    ours = (time.perf_counter() - start) / args.batches
    results = {"rewind batched (index + crop_flip)": ours}
    for workers in (0, 2):
        loader = DataLoader(PerSample(x), batch_size=args.batch, shuffle=True, num_workers=workers)
        it = iter(loader)
        next(it)
        start = time.perf_counter()
        for _ in range(args.batches):
            next(it)
        results[f"DataLoader, per-sample transforms, {workers} workers"] = (time.perf_counter() - start) / args.batches
    for name, sec in results.items():
        print(f"{name:<52} {1000 * sec:8.3f} ms/batch   {sec / ours:6.1f}x")


if __name__ == "__main__":
    main()
