"""Runs that share a machine: N concurrent `rewind train` processes against one alone.

    .venv/bin/python benchmarks/concurrency.py [--n 1,2,4] [--workloads small,lenet,wide]
                                               [--policies default,passive,spin3000,threads1]

Each workload is trained by N processes started at once (seeds 1..N), in a fresh store;
the table gives the wall time of the N processes and the slowest process's training time
(from its DONE record, so without the ~2.5 s of start-up: importing torch, loading data),
and the ratio of the wall time to N x the time of one process alone under the same policy
("x serial": 1.0 is perfect sharing, above 1.3 is what the performance issue calls a collapse).

Policies are environment settings of each process:
  torch     torch's own (OpenMP threads = cores, libgomp's default: 300,000 spins, then sleep);
            REWIND_OMP_POLICY=torch
  rewind    what `import rewind` sets when the user set no wait policy (GOMP_SPINCOUNT, rewind/__init__.py)
  passive   OMP_WAIT_POLICY=PASSIVE (waiting OpenMP threads sleep at once)
  spin3000  GOMP_SPINCOUNT=3000 (waiting threads spin briefly, then sleep); spin30000 likewise
  threads1  OMP_NUM_THREADS=1

Workloads: small = the mnist1d_mlp preset for 2,000 iterations; lenet = LeNet-300-100 on
MNIST-format data (synthetic, 60,000 + 10,000 images written here), SGD 0.1, batch 128,
2 epochs (open_lth's protocol); wide = MNIST-1D MLP 1024-1024, batch 256, 300 iterations.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REWIND = [sys.executable, "-m", "rewind.cli", "train", "--quiet"]
POLICIES = {"torch": {"REWIND_OMP_POLICY": "torch"}, "rewind": {}, "passive": {"OMP_WAIT_POLICY": "PASSIVE"},
            "spin3000": {"GOMP_SPINCOUNT": "3000"}, "spin30000": {"GOMP_SPINCOUNT": "30000"},
            "threads1": {"OMP_NUM_THREADS": "1"}}


def write_mnist(root: Path) -> None:
    """Learnable synthetic data in the official IDX format (a bar whose position is the class)."""
    folder = root / "mnist"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for prefix, n in (("train", 60000), ("t10k", 10000)):
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        images = (rng.random((n, 28, 28)) * 80).astype(np.uint8)
        for c in range(10):
            images[labels == c, 2 + 2 * c:6 + 2 * c, 4:24] = 255
        with gzip.open(folder / f"{prefix}-images-idx3-ubyte.gz", "wb", compresslevel=1) as fh:
            fh.write(struct.pack(">IIII", 2051, n, 28, 28) + images.tobytes())
        with gzip.open(folder / f"{prefix}-labels-idx1-ubyte.gz", "wb", compresslevel=1) as fh:
            fh.write(struct.pack(">II", 2049, n) + labels.tobytes())


def workload_args(name: str, data_root: Path) -> list[str]:
    if name == "small":
        return ["--preset", "mnist1d_mlp", "--set", "train.steps=2000it"]
    if name == "wide":
        return ["--preset", "mnist1d_mlp", "--set", "model.widths=1024,1024", "--set", "data.batch_size=256",
                "--set", "train.steps=300it"]
    return ["--preset", "mnist_lenet_300_100", "--set", "train.optimizer=sgd", "--set", "train.lr=0.1",
            "--set", "data.batch_size=128", "--set", "train.steps=2ep", "--set", "train.milestones=",
            "--data-root", str(data_root)]


def concurrent(n: int, args: list[str], env: dict) -> tuple[float, float]:
    """(wall seconds, slowest training seconds) of n processes started at once."""
    with tempfile.TemporaryDirectory() as root:
        start = time.perf_counter()
        procs = [subprocess.Popen(REWIND + args + ["--set", f"seeds.init={i}", "--root", root], env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) for i in range(1, n + 1)]
        codes = [p.wait() for p in procs]
        wall = time.perf_counter() - start
        if any(codes):
            raise SystemExit(f"a training process failed ({codes}): {' '.join(args)}")
        train = max(json.loads(p.read_text())["seconds"] for p in Path(root).glob("*/DONE"))
    return wall, train


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", default="1,2,4")
    ap.add_argument("--workloads", default="small,lenet,wide")
    ap.add_argument("--policies", default="torch,rewind,passive,spin3000,threads1")
    ap.add_argument("--repeat", type=int, default=1, help="runs per cell; the cell shows the medians")
    a = ap.parse_args()
    counts = [int(x) for x in a.n.split(",")]
    if 1 not in counts:
        counts = [1] + counts
    with tempfile.TemporaryDirectory() as data:
        write_mnist(Path(data))
        base = {k: v for k, v in os.environ.items()
                if k not in ("OMP_NUM_THREADS", "OMP_WAIT_POLICY", "GOMP_SPINCOUNT", "REWIND_OMP_POLICY")}
        base["CI"] = "1"
        print(f"{os.cpu_count()} cores; wall s / slowest training s; x serial = wall / (N x wall alone)")
        print(f"{'workload':<8} {'policy':<9} " + " ".join(f"{f'N={n}':>22}" for n in counts))
        for wl in a.workloads.split(","):
            for policy in a.policies.split(","):
                env = {**base, **POLICIES[policy]}
                cells, alone = [], None
                for n in counts:
                    runs = sorted(concurrent(n, workload_args(wl, Path(data)), env) for _ in range(a.repeat))
                    wall = sorted(r[0] for r in runs)[len(runs) // 2]
                    train = sorted(r[1] for r in runs)[len(runs) // 2]
                    alone = wall if n == 1 else alone
                    cells.append(f"{wall:6.1f}/{train:5.1f} {wall / (n * alone):5.2f}x")
                print(f"{wl:<8} {policy:<9} " + " ".join(f"{c:>22}" for c in cells), flush=True)


if __name__ == "__main__":
    main()
