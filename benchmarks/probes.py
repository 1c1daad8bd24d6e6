"""Probe overhead: training time with the early-phase probes against the same run without.

    .venv/bin/python benchmarks/probes.py [--preset mnist1d_mlp] [--schedule 1it:100it,10it:1000it,100it] [--repeat 3]

Both runs train the preset to its end on the sequential engine (probes need it)
with the preset's evaluations; the probed run also evaluates at every probe step.
"""
from __future__ import annotations

import argparse
import tempfile
import time

import rewind
from rewind.store import Store
from rewind.train import Member, TrainOptions
from rewind.exec import train_population


def timed(spec) -> float:
    with tempfile.TemporaryDirectory() as root:
        start = time.perf_counter()
        train_population([Member(spec)], Store(root), TrainOptions(quiet=True, engine="sequential"))
        return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--preset", default="mnist1d_mlp")
    ap.add_argument("--schedule", default="1it:100it,10it:1000it,100it")
    ap.add_argument("--until", default="0it", help="probe window end (0it: the whole run)")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    spec = rewind.get_preset(args.preset).spec
    probed = spec.replace(**{"probe.schedule": args.schedule, "probe.until": args.until})
    timed(spec.replace(**{"train.steps": "50it"}))  # warm-up, data cache
    plain = min(timed(spec) for _ in range(args.repeat))
    with_probes = min(timed(probed) for _ in range(args.repeat))
    print(f"{args.preset}: {spec.train.steps} without probes {plain:.2f} s, with probes ({args.schedule}) "
          f"{with_probes:.2f} s: {with_probes / plain:.2f}x")


if __name__ == "__main__":
    main()
