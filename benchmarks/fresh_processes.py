"""Bit-identity across fresh processes: the same training in N new processes, one after another.

    .venv/bin/python benchmarks/fresh_processes.py [--preset mnist1d_mlp] [--engine vectorised]
        [--replicates 2] [--processes 30] [--threads 2] [--set train.steps=120it ...] [--no-eval]

Each process imports rewind, trains the preset's replicates as one population in a store of its
own and prints, for every run, a digest of its metrics file and of its last checkpoint's tensors.
The table counts the distinct results: one line per population means every process gave the same
bits. This is how the first-call inaccuracy of MKL's vector math was found (rewind/vml.py: 11
differing processes in 260); rerun it after a torch upgrade or on a new machine, since an effect
that shows in 1 process in 25 passes every single test. Processes run one after another (two at
once would change the timing that such effects depend on).
"""
from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys

CHILD = """
import hashlib, json, sys, tempfile
from pathlib import Path
import rewind
from rewind.store import load_checkpoint, tensor_digest
from rewind.train import TrainOptions

preset, engine, replicates, evaluate, overrides = json.loads(sys.argv[1])
with tempfile.TemporaryDirectory() as root:
    rewind.train(preset, overrides, replicates=replicates, root=root,
                 options=TrainOptions(quiet=True, engine=engine, evaluate=evaluate))
    out = []
    for done in sorted(Path(root).glob("*/DONE")):
        run = done.parent
        last = max(run.glob("step_*.safetensors"), key=lambda p: int(p.stem[5:]))
        metrics = run / "metrics.csv"
        m = hashlib.sha256(metrics.read_bytes()).hexdigest()[:8] if metrics.exists() else "-"
        out.append(f"{m}:{tensor_digest(load_checkpoint(last)[0])[:8]}")
    print(" ".join(out))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="mnist1d_mlp")
    ap.add_argument("--engine", default="vectorised", choices=("auto", "sequential", "vectorised"))
    ap.add_argument("--replicates", type=int, default=2)
    ap.add_argument("--processes", type=int, default=30)
    ap.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS of every process")
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                    help="spec overrides (default: train.steps=120it, train.eval_every=40it, train.milestones=60it)")
    ap.add_argument("--no-eval", action="store_true", help="train without evaluations (TrainOptions(evaluate=False))")
    a = ap.parse_args()
    overrides = dict(s.split("=", 1) for s in a.set) or {"train.steps": "120it", "train.eval_every": "40it",
                                                          "train.milestones": "60it"}
    arg = json.dumps([a.preset, a.engine, a.replicates, not a.no_eval, overrides])
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads)}
    counts: collections.Counter = collections.Counter()
    for i in range(a.processes):
        proc = subprocess.run([sys.executable, "-c", CHILD, arg], env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"process {i} failed:\n{proc.stderr[-2000:]}")
        counts[proc.stdout.strip()] += 1
    print(f"{a.preset}, engine {a.engine}, {a.replicates} replicates, {a.threads} threads, {overrides}; "
          f"{a.processes} fresh processes")
    print("processes  results (metrics digest:weights digest, one per run)")
    for result, n in counts.most_common():
        print(f"{n:>9}  {result}")
    print("bit-identical in every process" if len(counts) == 1 else f"{len(counts)} different results")


if __name__ == "__main__":
    main()
