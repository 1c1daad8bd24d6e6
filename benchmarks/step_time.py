"""Seconds per training iteration of a paper-scale preset, rewind against a plain PyTorch loop in the
same process on the same data (the per-run time that cluster estimates start from).

    .venv/bin/python benchmarks/step_time.py [--preset cifar_resnet_20] [--device cuda] [--steps 300]

Data: CIFAR-format files written here (50,000 + 10,000 random images in the official python
format), so the numbers do not depend on having CIFAR-10. rewind trains ``--steps`` and
``3 x --steps`` iterations (evaluation off, as in a timing run) and the difference gives the
steady-state time per iteration, free of start-up; the plain loop (SGD, momentum, the preset's
model, crop-and-flip of uint8 images normalised per batch on the device) is timed the same way.

Measured: one NVIDIA H200 (torch 2.11), ResNet-20: rewind 8.80 ms/it, plain loop 8.85 (0.99x). 2 CPU
cores (torch 2.13, --steps 5, 2026-11-26): rewind 352 ms/it, plain loop 536 (0.66x): on the CPU rewind
trains 2-D conv nets channels-last (rewind.models.place); the plain loop keeps PyTorch's default layout.
"""
from __future__ import annotations

import argparse
import io
import pickle
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn import functional as F

import rewind
from rewind.data import augment, load_data
from rewind.data.tensors import to_float
from rewind.models import create_model


def write_cifar10(root: Path, per_batch: int = 10_000) -> None:
    g = np.random.default_rng(0)
    with tarfile.open(root / "cifar-10-python.tar.gz", "w:gz", compresslevel=1) as tar:
        for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
            blob = pickle.dumps({b"labels": g.integers(0, 10, per_batch).tolist(),
                                 b"data": g.integers(0, 256, (per_batch, 3072), dtype=np.uint8)}, protocol=2)
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def time_rewind(spec, steps, opts) -> float:
    with tempfile.TemporaryDirectory() as root:
        started = time.perf_counter()
        rewind.train(spec.replace(**{"train.steps": f"{steps}it"}), root=root, options=opts)
        return time.perf_counter() - started


def time_plain(spec, steps, data, device) -> float:
    model = create_model(spec.model, data.input_shape, data.num_classes, seed=0).to(device)
    opt = torch.optim.SGD(model.parameters(), lr=spec.train.lr, momentum=spec.train.momentum,
                          weight_decay=spec.train.weight_decay)
    x, y = data.x_train.to(device), data.y_train.to(device)
    bs, n = spec.data.batch_size, len(y)
    sync(device)
    started = time.perf_counter()
    for t in range(steps):
        idx = torch.randint(0, n, (bs,), device=device)
        xb = augment.apply(spec.data.augment, to_float(x[idx], data.pixels), 0, t)
        loss = F.cross_entropy(model(xb), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    sync(device)
    return time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", default="cifar_resnet_20")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=300)
    a = ap.parse_args()
    device = torch.device(a.device)
    with tempfile.TemporaryDirectory() as data_root:
        write_cifar10(Path(data_root))
        spec = rewind.get_preset(a.preset).spec.replace(**{"train.eval_every": "0it", "train.eval_at": ""})
        opts = rewind.TrainOptions(quiet=True, data_root=data_root, device=a.device, evaluate=False)
        data = load_data(spec.data, data_root)
        time_rewind(spec, 20, opts)          # warm-up: CUDA context, cuDNN autotuning, caches
        r1, r3 = time_rewind(spec, a.steps, opts), time_rewind(spec, 3 * a.steps, opts)
        time_plain(spec, 20, data, device)
        p1, p3 = time_plain(spec, a.steps, data, device), time_plain(spec, 3 * a.steps, data, device)
    per_r, per_p = (r3 - r1) / (2 * a.steps), (p3 - p1) / (2 * a.steps)
    name = torch.cuda.get_device_name(0) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"{a.preset} on {name}, batch {spec.data.batch_size}, torch {torch.__version__}")
    print(f"  rewind      {1000 * per_r:7.2f} ms/it   (start-up and {a.steps} it: {r1:.1f} s)")
    print(f"  plain loop  {1000 * per_p:7.2f} ms/it")
    print(f"  ratio       {per_r / per_p:7.2f}x")
    ipe = -(-50_000 // spec.data.batch_size)
    total = spec.train.steps.iterations(ipe)
    print(f"  one run of {total} it: {total * per_r / 3600:.2f} h at rewind's rate")


if __name__ == "__main__":
    sys.exit(main())
