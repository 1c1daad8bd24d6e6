"""GraNd's per-example gradient norms, batched (layer by layer for Linear/Conv networks, else torch.func
vmap of grad), against a Python loop that
runs each example's own backward pass, in the same process, on the same model and examples.

    .venv/bin/python benchmarks/scores.py [--presets mnist1d_mlp,mnist1d_conv] [--examples 4000] [--loop 400]

The loop is timed on --loop examples and reported per example; both compute the same norms
(checked to 1e-4 relative, float32). Also reports EL2N's rate (one forward pass per batch).
"""
from __future__ import annotations

import argparse
import time

import torch
from torch.nn import functional as F

import rewind
from rewind.analysis.scores import el2n, grand
from rewind.data import load_data
from rewind.models import create_model


def loop_grand(model, x, y) -> torch.Tensor:
    model.eval()
    out = []
    for i in range(len(y)):
        model.zero_grad(set_to_none=True)
        F.cross_entropy(model(x[i:i + 1]), y[i:i + 1]).backward()
        out.append(sum(p.grad.double().pow(2).sum() for p in model.parameters()).sqrt())
    return torch.stack(out)


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--presets", default="mnist1d_mlp,mnist1d_conv")
    ap.add_argument("--examples", type=int, default=4000)
    ap.add_argument("--loop", type=int, default=400)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    for preset in args.presets.split(","):
        spec = rewind.get_preset(preset).spec
        data = load_data(spec.data)
        model = create_model(spec.model, data.input_shape, data.num_classes, seed=0)
        x, y = data.inputs("train")[:args.examples], data.y_train[:args.examples]
        ref = loop_grand(model, x[:args.loop], y[:args.loop])
        fast = grand(model, x[:args.loop], y[:args.loop], data.num_classes)
        assert torch.allclose(ref, fast, rtol=1e-4), (ref - fast).abs().max()
        t_vmap = best(lambda: grand(model, x, y, data.num_classes), args.repeat) / len(y)
        t_loop = best(lambda: loop_grand(model, x[:args.loop], y[:args.loop]), args.repeat) / args.loop
        t_el2n = best(lambda: el2n(model, x, y, data.num_classes), args.repeat) / len(y)
        print(f"{preset:<14} GraNd batched {1 / t_vmap:>9,.0f} examples/s   loop {1 / t_loop:>7,.0f} examples/s   "
              f"ratio {t_loop / t_vmap:5.1f}x   (EL2N {1 / t_el2n:>10,.0f} examples/s)")


if __name__ == "__main__":
    main()
