"""The Ray executor against the local one, and what a paper-scale study would take on a cluster.

    .venv/bin/python benchmarks/cluster.py [--steps 2000it] [--levels 5] [--tasks 200] [--chunk 16]

1. The demo study (`make demo`'s lottery: mnist1d_resnet, rewind 0it and 200it, 3 replicates,
   reinit at 200it; `--levels`, `--steps` shorten it) three ways, each in a fresh store:
   `--executor local` (one process, 2 torch threads), and `--executor ray` on a two-node cluster
   on the loopback address (`ray start --head` + `ray start --address`, one CPU each), started
   before the clock runs. The results tables are compared with the local executor's at 1 thread
   (the tasks' thread count: ResNet stacks are autograd convolutions, whose float32 bits depend on
   the thread count) and at 2.
2. The scheduling overhead of one Ray task: a population of already-trained members submitted
   as one task per member (each task finds its run done and returns) - pickling the member's
   starting weights and mask, the round trip, the store check - per task.
3. On paper: the wall time of the issue's ResNet-20 CIFAR-10 study (20 levels, 4 rewind steps,
   3 replicates, 2 baselines) on G GPUs, from a per-run time and the measured overhead, by
   simulating the plan: the dense runs, then each chain's levels one after another (a chain
   moves on as soon as its previous level is done), then the baseline branches. Runs queue for
   G GPUs, first come first served.

It stops its loopback cluster with `ray stop --force`, which stops every Ray on the machine: run
it where no other Ray cluster is running (the tests stop only their own nodes).
"""
from __future__ import annotations

import argparse
import heapq
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RAY = str(Path(sys.executable).with_name("ray"))
ENV = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


def demo_args(steps: str, levels: int, chunk: int) -> list[str]:
    return ["lottery", "--preset", "mnist1d_resnet", "--levels", str(levels), "--rewind", "0it,200it",
            "--replicates", "3", "--baselines", "reinit", "--baselines-at", "200it", "--quiet",
            "--set", f"train.steps={steps}", "--chunk", str(chunk)]


def timed(args: list[str]) -> float:
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "rewind", *args], env=ENV, check=True, capture_output=True)
    return time.perf_counter() - t


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_cluster() -> str:
    port = free_port()
    subprocess.run([RAY, "start", "--head", "--num-cpus", "1", "--port", str(port), "--node-ip-address", "127.0.0.1",
                    "--include-dashboard", "false"], env=ENV, check=True, capture_output=True)
    subprocess.run([RAY, "start", "--address", f"127.0.0.1:{port}", "--num-cpus", "1", "--node-ip-address",
                    "127.0.0.1"], env=ENV, check=True, capture_output=True)
    return f"127.0.0.1:{port}"


def task_overhead(address: str, root: Path, tasks: int) -> float:
    """Seconds per Ray task for members whose runs are already done (nothing to train)."""
    import ray

    from rewind.exec import train_population
    from rewind.presets import get_preset
    from rewind.store import Store
    from rewind.train import Member, TrainOptions

    spec = get_preset("mnist1d_resnet").spec.replace(**{"train.steps": "2it", "train.eval_every": "2it"})
    members = [Member(spec.replace(**{"seeds.init": i})) for i in range(tasks)]
    store = Store(root)
    train_population(members, store, TrainOptions(quiet=True, engine="sequential"))  # done, here
    opts = TrainOptions(quiet=True, executor="ray", ray_address=address, engine="sequential")
    train_population(members[:2], store, opts)  # connect and check the store once, outside the clock
    t = time.perf_counter()
    from rewind.exec.raycluster import _remote, task_options

    remote, base = _remote(), task_options(opts)
    ray.get([remote.remote([m], str(store.root), base) for m in members])
    return (time.perf_counter() - t) / tasks


def simulate(gpus: int, run_s: float, overhead_s: float, replicates: int = 3, rewinds: int = 4, levels: int = 20,
             baselines: int = 2) -> float:
    """Wall seconds of the study's plan with ``gpus`` workers (list scheduling, each run = run_s + overhead)."""
    cost = run_s + overhead_s
    free = [0.0] * gpus  # when each GPU is next free
    heapq.heapify(free)

    def place(ready_at: float) -> float:
        start = max(ready_at, heapq.heappop(free))
        heapq.heappush(free, start + cost)
        return start + cost

    dense = [place(0.0) for _ in range(replicates)]
    # chains advance as their previous level finishes: an event queue ordered by ready time
    events = [(dense[r], r, k, 1) for r in range(replicates) for k in range(rewinds)]
    heapq.heapify(events)
    end = max(dense)
    while events:
        ready, r, k, level = heapq.heappop(events)
        done = place(ready)
        end = max(end, done)
        if level < levels:
            heapq.heappush(events, (done, r, k, level + 1))
    branches = [place(end) for _ in range(baselines * levels * replicates * rewinds)]
    return max([end, *branches])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", default="2000it")
    ap.add_argument("--levels", type=int, default=5)
    ap.add_argument("--tasks", type=int, default=200)
    ap.add_argument("--chunk", type=int, default=16, help="members per stack (and per Ray task of a conv stack)")
    ap.add_argument("--resnet20-step-ms", type=float, default=8.80,
                    help="ResNet-20 CIFAR-10 time per iteration (benchmarks/step_time.py; 8.80 ms on an H200)")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="rewind-cluster-"))
    args = demo_args(a.steps, a.levels, a.chunk)
    t_local = timed([*args, "--root", str(tmp / "local"), "--threads", "2"])
    t_local1 = timed([*args, "--root", str(tmp / "local1"), "--threads", "1"])  # the bits' reference: tasks have 1 thread
    address = start_cluster()
    try:
        t_ray = timed([*args, "--root", str(tmp / "ray"), "--executor", "ray", "--ray-address", address])
        per_task = task_overhead(address, tmp / "overhead", a.tasks)
    finally:
        import ray

        ray.shutdown()
        subprocess.run([RAY, "stop", "--force"], env=ENV, capture_output=True)
    from rewind.store import Store
    from rewind.store.results import results_table

    def tidy(root):
        df = results_table(Store(root)).drop(columns=["engine", "threads", "member"])
        return df.sort_values(["run", "step", "split", "metric"]).reset_index(drop=True)

    same = tidy(tmp / "local1").equals(tidy(tmp / "ray"))
    same2 = tidy(tmp / "local").equals(tidy(tmp / "ray"))
    runs = len(Store(tmp / "ray").runs())
    print(f"demo study ({a.levels} levels, train.steps={a.steps}, --chunk {a.chunk}, {runs} runs): local (1 process, 2 threads) "
          f"{t_local:.1f} s, with 1 thread {t_local1:.1f} s; ray (2 nodes x 1 CPU, loopback) {t_ray:.1f} s; ray / local = {t_ray / t_local:.2f}; "
          f"results equal to local with --threads 1: {same}, with 2 threads: {same2}")
    print(f"Ray task overhead (a done member per task, {a.tasks} tasks): {per_task * 1000:.1f} ms per task")
    run_s = 62_500 * a.resnet20_step_ms / 1000  # cifar_resnet_20: 160 epochs = 62.5K iterations
    serial = simulate(1, run_s, per_task)
    print(f"ResNet-20 study on paper (20 levels x 4 rewinds x 3 replicates, 2 baselines = "
          f"{3 + 2 * 20 * 12 + 20 * 12} runs of {run_s / 60:.1f} min each, +{per_task * 1000:.0f} ms per task):")
    for g in (1, 8, 64):
        wall = simulate(g, run_s, per_task)
        print(f"  {g:3d} GPUs: {wall / 3600:7.1f} h  (speed-up {serial / wall:5.1f}x)")


if __name__ == "__main__":
    main()
