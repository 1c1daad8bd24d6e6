"""Model-steps per second: plain PyTorch loop vs rewind's sequential and vectorised engines.

    .venv/bin/python benchmarks/population.py [--steps 300] [--ks 1,4,16,64] [--models mnist1d_mlp,mnist1d_conv]
    .venv/bin/python benchmarks/population.py --models cifar_conv2 --ks 4 --steps 20   # Conv-2 on CIFAR-format data

All numbers come from one process on the same machine. "plain" is the way the
reference code trains: one model at a time, a torch DataLoader over a
TensorDataset with shuffling, torch.optim.SGD. rewind's runs skip evaluation
(TrainOptions(evaluate=False)) but include their start and end checkpoint writes.
"""
from __future__ import annotations

import argparse
import tempfile
import time

import torch
from torch.nn import functional as F
from torch.utils.data import DataLoader, TensorDataset

import rewind
from rewind.data import load_data
from rewind.models import create_model
from rewind.store import Store
from rewind.train import Member, TrainOptions
from rewind.exec import train_population


def plain_loop(spec, k: int, steps: int) -> float:
    data = load_data(spec.data)
    loader = DataLoader(TensorDataset(data.inputs("train"), data.y_train), batch_size=spec.data.batch_size, shuffle=True,
                        drop_last=True)
    start = time.perf_counter()
    for member in range(k):
        torch.manual_seed(member)
        model = create_model(spec.model, data.input_shape, data.num_classes, seed=member)
        opt = torch.optim.SGD(model.parameters(), lr=spec.train.lr, momentum=spec.train.momentum,
                              weight_decay=spec.train.weight_decay)
        done = 0
        while done < steps:
            for x, y in loader:
                loss = F.cross_entropy(model(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()
                done += 1
                if done == steps:
                    break
    return k * steps / (time.perf_counter() - start)


def rewind_engine(spec, k: int, steps: int, engine: str) -> float:
    spec = spec.replace(**{"train.steps": f"{steps}it", "train.eval_every": "0it", "train.milestones": ""})
    members = [Member(spec.replace(**{"seeds.init": i, "seeds.data_order": i})) for i in range(k)]
    with tempfile.TemporaryDirectory() as root:
        start = time.perf_counter()
        train_population(members, Store(root), TrainOptions(quiet=True, engine=engine, evaluate=False))
        return k * steps / (time.perf_counter() - start)


def synthetic_mnist(root: str) -> None:
    """MNIST-format files of random images (speed does not depend on content)."""
    import gzip
    import struct
    from pathlib import Path

    import numpy as np

    folder = Path(root) / "mnist"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 60_000), ("t10k", 10_000)):
        with gzip.open(folder / f"{prefix}-images-idx3-ubyte.gz", "wb", compresslevel=1) as fh:
            fh.write(struct.pack(">IIII", 2051, n, 28, 28) + rng.integers(0, 256, (n, 28, 28), dtype=np.uint8).tobytes())
        with gzip.open(folder / f"{prefix}-labels-idx1-ubyte.gz", "wb") as fh:
            fh.write(struct.pack(">II", 2049, n) + rng.integers(0, 10, n, dtype=np.uint8).tobytes())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--ks", default="1,4,16,64")
    ap.add_argument("--models", default="mnist1d_mlp,mnist1d_conv,mnist1d_resnet,lenet_300_100")
    ap.add_argument("--repeat", type=int, default=3, help="best of this many timings (the machine is shared)")
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.steps} steps per member")
    print(f"{'preset':<14} {'K':>3} {'plain':>8} {'sequential':>11} {'vectorised':>11} {'vec/seq':>8} {'vec/plain':>10}")
    for name in args.models.split(","):
        if name == "lenet_300_100":
            # LeNet-300-100 on MNIST-shaped data (synthetic files through the real IDX loader),
            # SGD like the other rows (the paper's recipe uses Adam)
            import os

            os.environ["REWIND_DATA"] = tempfile.mkdtemp()
            synthetic_mnist(os.environ["REWIND_DATA"])
            spec = rewind.get_preset("mnist_lenet_300_100").spec.replace(**{
                "train.optimizer": "sgd", "train.lr": 0.05, "train.momentum": 0.9, "data.batch_size": 100})
        elif name == "cifar_conv2":
            # Conv-2 (4.3M parameters) on CIFAR-format files of random images, SGD like the other rows
            import os
            from pathlib import Path

            from step_time import write_cifar10

            os.environ["REWIND_DATA"] = tempfile.mkdtemp()
            write_cifar10(Path(os.environ["REWIND_DATA"]))
            spec = rewind.get_preset("cifar_conv2").spec.replace(**{
                "train.optimizer": "sgd", "train.lr": 0.05, "train.momentum": 0.9})
        else:
            spec = rewind.get_preset(name).spec
        load_data(spec.data)
        rewind_engine(spec, 2, 20, "vectorised")  # warm-up
        for k in map(int, args.ks.split(",")):
            best = lambda fn, *a: max(fn(*a) for _ in range(args.repeat))  # noqa: E731
            plain = best(plain_loop, spec, k, args.steps)
            seq = best(rewind_engine, spec, k, args.steps, "sequential")
            vec = best(rewind_engine, spec, k, args.steps, "vectorised")
            print(f"{name:<14} {k:>3} {plain:>8.0f} {seq:>11.0f} {vec:>11.0f} {vec / seq:>7.2f}x {vec / plain:>9.2f}x",
                  flush=True)


if __name__ == "__main__":
    main()
