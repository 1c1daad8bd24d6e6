"""The linear-model comparison's speed under each allocator policy, against a plain PyTorch loop.

    .venv/bin/python benchmarks/linear_alloc.py [--sizes 25x1024,100x4096] [--steps 100] [--threads 1]

`rewind linear` trains a two-layer network and its linear model full batch on 4,000 examples:
every step allocates and frees activations of 4,000 x m floats (16 MiB at m = 1,024, 64 MiB at
m = 4,096). Each cell is a fresh process (the policy is process-wide), best of two:

  plain     a plain PyTorch loop with the same shapes (network and linear model, full-batch SGD,
            squared loss), no rewind imported: glibc's own policy
  fixed     the same loop after `import rewind` (mmap threshold fixed at 1 MiB: rewind/alloc.py)
  heap      the same loop inside `rewind.alloc.heap_only()`
  rewind    `rewind.analysis.linear_model.hu.compare_hu` itself (which runs inside heap_only),
            measuring 40 log-spaced points and the NTK at initialisation on 500 inputs
  rewind-fixed  the same with heap_only() made a no-op (the policy before it existed)

Printed: seconds per step (the loop's median of the steps after the first 5; compare_hu's total
over its steps) and minor page faults per step.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys

LOOP = r"""
import json, resource, sys, time, contextlib
mode, d, m, steps, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
if mode != "plain":
    import rewind
    from rewind import alloc
import torch
torch.set_num_threads(threads)
g = torch.Generator().manual_seed(0)
x, y = torch.randn(4000, d, generator=g), torch.randn(4000, generator=g).sign()
w, v = torch.randn(m, d, generator=g).requires_grad_(), torch.randn(m, generator=g).requires_grad_()
beta = torch.zeros(d + 1, requires_grad=True)
feats = torch.cat([x, torch.ones(4000, 1)], 1)
opt = torch.optim.SGD([w, v, beta], lr=1.0)
ctx = alloc.heap_only() if mode == "heap" else contextlib.nullcontext()
times = []
with ctx:
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(steps):
        t = time.perf_counter()
        out = torch.relu(x @ w.T / d ** 0.5) @ v / m ** 0.5
        loss = 0.5 * ((out - y) ** 2).mean() + 0.5 * ((feats @ beta - y) ** 2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - t)
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
times = sorted(times[5:])
print(json.dumps({"step_s": times[len(times) // 2], "faults": faults / steps}))
"""

COMPARE = r"""
import json, resource, sys, time, contextlib
mode, d, m, steps, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
import rewind, torch
from rewind import alloc
from rewind.analysis.linear_model.hu import HuOptions, compare_hu
torch.set_num_threads(threads)
if mode == "rewind-fixed":
    alloc.heap_only = contextlib.nullcontext
spec = rewind.get_preset("gaussian_two_layer").spec.replace(
    **{"data.train_size": 4000, "data.dim": d, "model.widths": str(m)})
f0, t = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
compare_hu(spec, HuOptions(steps=steps, full_batch=True))
seconds = time.perf_counter() - t
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0
print(json.dumps({"step_s": seconds / steps, "faults": faults / steps}))
"""


def cell(mode: str, d: int, m: int, steps: int, threads: int) -> dict:
    script = COMPARE if mode.startswith("rewind") else LOOP
    best = None
    for _ in range(2):
        out = subprocess.run([sys.executable, "-c", script, mode, str(d), str(m), str(steps), str(threads)],
                             capture_output=True, text=True, check=True)
        r = json.loads(out.stdout.strip().splitlines()[-1])
        best = r if best is None or r["step_s"] < best["step_s"] else best
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="25x1024,100x4096", help="d x m pairs")
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    modes = ("plain", "fixed", "heap", "rewind-fixed", "rewind")
    print(f"| d x m | {' | '.join(modes)} | rewind / plain |")
    print(f"|---|{'---|' * (len(modes) + 1)}")
    for size in args.sizes.split(","):
        d, m = map(int, size.split("x"))
        r = {mode: cell(mode, d, m, args.steps, args.threads) for mode in modes}
        cells = [f"{1000 * r[k]['step_s']:.1f} ms ({r[k]['faults']:,.0f} faults)" for k in modes]
        print(f"| {d} x {m:,} | {' | '.join(cells)} | {r['rewind']['step_s'] / r['plain']['step_s']:.2f}x |")


if __name__ == "__main__":
    main()
