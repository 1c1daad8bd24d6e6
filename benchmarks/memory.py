"""Peak memory (RSS) of one training process on image data: rewind against a plain PyTorch loop in
the same kind of process, each measured in a fresh subprocess.

    .venv/bin/python benchmarks/memory.py [--epochs 2]

Workload: open_lth's LeNet-300-100 protocol on MNIST-format files (60,000 + 10,000 synthetic
images in the official IDX format, written here; benchmarks/concurrency.py): SGD 0.1, batch 128,
``--epochs`` epochs, evaluation of both sets at the end of each epoch. rewind keeps the images as
uint8 and normalises each batch (data/tensors.py: to_float); the references hold the normalised
set as float32 (what rewind did before) and as uint8 normalised per batch, with the same model,
batches and evaluation written as a plain loop. Every figure comes from one run of this script.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from concurrency import REWIND, workload_args, write_mnist  # noqa: E402

PLAIN = r'''
import resource, sys, torch
from torch import nn
from torch.nn import functional as F
from rewind.data import load_data
from rewind.data.tensors import to_float
from rewind.spec import DataSpec
storage, root, epochs = sys.argv[1], sys.argv[2], int(sys.argv[3])
data = load_data(DataSpec("mnist"), root)
x_train, x_test = data.x_train, data.x_test
pixels = data.pixels
if storage == "float32":
    x_train, x_test, pixels = data.inputs("train"), data.inputs("test"), None
    data = None  # only the float copies stay
y_train, y_test = load_data(DataSpec("mnist"), root).y_train, load_data(DataSpec("mnist"), root).y_test
torch.manual_seed(0)
model = nn.Sequential(nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(), nn.Linear(100, 10))
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for _ in range(epochs):
    perm = torch.randperm(len(y_train))
    for i in range(0, len(y_train), 128):
        idx = perm[i:i + 128]
        loss = F.cross_entropy(model(to_float(x_train[idx], pixels)), y_train[idx])
        opt.zero_grad(); loss.backward(); opt.step()
    with torch.no_grad():
        for x, y in ((x_test, y_test), (x_train, y_train)):
            for j in range(0, len(y), 4096):
                F.cross_entropy(model(to_float(x[j:j + 4096], pixels)), y[j:j + 4096]).item()
'''


WRAP = ("import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, stdout=subprocess.DEVNULL); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)")


def peak_mb(cmd: list[str], env: dict) -> float:
    """Peak RSS (MB) of ``cmd``, run as the only child of a fresh wrapper process."""
    out = subprocess.run([sys.executable, "-c", WRAP, *cmd], env=env, check=True, capture_output=True, text=True)
    return int(out.stdout.split()[-1]) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=int, default=2)
    a = ap.parse_args()
    env = {**os.environ, "CI": "1"}
    with tempfile.TemporaryDirectory() as data, tempfile.TemporaryDirectory() as root:
        write_mnist(Path(data))
        rows = []
        for storage in ("uint8", "float32"):
            rows.append((f"plain loop, {storage}",
                         peak_mb([sys.executable, "-c", PLAIN, storage, data, str(a.epochs)], env)))
        args = workload_args("lenet", Path(data))
        args = [x if x != "train.steps=2ep" else f"train.steps={a.epochs}ep" for x in args]
        rows.append(("rewind train (uint8)", peak_mb(REWIND + args + ["--root", root], env)))
    print(f"LeNet-300-100, MNIST-format 60,000 + 10,000, {a.epochs} epochs; peak RSS of one process")
    for name, mb in rows:
        print(f"  {name:<24} {mb:7.0f} MB")
    print("  (data: 70,000 x 784 = 55 MB as uint8, 220 MB as float32)")


if __name__ == "__main__":
    main()
