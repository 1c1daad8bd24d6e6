"""The testbed's step (ResNet-8 on MNIST-1D, batch 128, the vectorised engine): member-steps per
second of the gradient at several stack sizes K on one thread, the engine's path (autograd through
CifarResNet.stacked_forward) against a hand-written backward pass in the channels-last layout
(below; not in rewind), and, given a store, how a reproduction's member-iterations split by the
size of the stack that trained them. What bounds `rewind reproduce`'s time (docs/claims.md, Time).

    .venv/bin/python benchmarks/testbed_step.py [--ks 2,3,5,8,10,16] [--rounds 5] [--store runs/repro-E]

Both paths are timed in alternating rounds in one process (this machine's speed drifts by 10-30%
within minutes); the median of the rounds is printed. The hand-written gradient is checked against
the engine's first (float32, relative 1e-4), so both do the same work.

Measured (2 cores, one thread, torch 2.13, 2026-12-06; medians of 4-6 alternating rounds, the
machine drifting by 10-30% meanwhile). The engine's path, member-steps/s: K = 2 193-228, 3 274,
5 239-293, 6 309, 8 311, 9 302, 10 333, 14 305, 15 304, 16 207-259, 17 268 (one stack of 24-40:
245-266). So a stack of 2 costs 1.3-1.6x a stack of 6-15 per member, and from 16 members on the
stack is slower again (the engine stacks at most --chunk = 16). The hand-written backward against
the engine: K = 2 221 / 193, 5 255 / 239, 8 341 / 311, 10 369 / 333, but 14-17 233-250 against
259-305: 1.06-1.15x on small stacks, slower on large ones (it keeps every activation until the
backward pass, as autograd does, in more separate tensors). Under torch's profiler it looked 1.4x
faster (in autograd, the gradient arriving from the average pool is channels-first, and the ReLU's
and BatchNorm's backward kernels take 2-12x as long on mixed layouts), but outside the profiler the
step is the grouped convolutions' (about 70%), which neither path changes. Not adopted: it would
change every run's bits for a few percent. Run E's store (docs/reproduce, --store runs/repro-E):
57% of its 1,947,100 member-iterations trained in stacks of 2-5 (12% at K = 2), because each look
adds 2 or 5 replicates per configuration and a pretraining grid trains its arms one study after
another. Stacking the arms together (their training runs differ only in where their weights came
from) would run those at K >= 6: about 340 s of one core saved by the rates above (3 of the 63
minutes); not done.
"""
from __future__ import annotations

import argparse
import collections
import json
import statistics
import time
from pathlib import Path

import torch
from torch.nn import functional as F

import rewind
from rewind import alloc
from rewind.data import load_data
from rewind.models import create_model, stacked, stacked_conv
from rewind.train.vectorised import Stack, _gradient


def hand_grad(model, params, x, y, grads, buffers) -> torch.Tensor:
    """The gradient the engine computes (sum over members of each one's mean cross-entropy), by a
    backward pass written out with the kernels autograd calls, every tensor channels-last."""
    k, b = x.shape[:2]
    keep = {}

    def conv(h, name, module, groups=k):
        stride, padding = stacked_conv.geometry(module)
        weight = stacked_conv.grouped_weight(params[f"{name}.weight"], module)
        keep[name] = (h, weight, stride, padding, groups)
        return F.conv2d(h, weight, None, stride, padding, 1, groups)

    def bn(h, name):
        buffers[f"{name}.num_batches_tracked"].add_(1)
        w, bias = params[f"{name}.weight"].reshape(-1), params[f"{name}.bias"].reshape(-1)
        mean, var = buffers[f"{name}.running_mean"].view(-1), buffers[f"{name}.running_var"].view(-1)
        out, m, invstd = torch.ops.aten.native_batch_norm(h, w, bias, mean, var, True, 0.1, 1e-5)
        keep[name] = (h, w, mean, var, m, invstd)
        return out

    def relu(h, name):
        keep[name] = h = F.relu(h)
        return h

    def bn_back(g, name):
        h, w, mean, var, m, invstd = keep[name]
        gi, gw, gb = torch.ops.aten.native_batch_norm_backward(g, h, w, mean, var, m, invstd, True, 1e-5,
                                                               [True, True, True])
        grads[f"{name}.weight"].view(-1).copy_(gw)
        grads[f"{name}.bias"].view(-1).copy_(gb)
        return gi

    def conv_back(g, name, inputs=True):
        h, weight, stride, padding, groups = keep[name]
        gi, gw, _ = torch.ops.aten.convolution_backward(g, h, weight, None, stride, padding, [1, 1], False, [0, 0],
                                                        groups, [inputs, True, False])
        grads[f"{name}.weight"].view(gw.shape).copy_(gw)
        return gi

    with torch.no_grad():
        h = x.unsqueeze(2).transpose(0, 1).reshape(b, k, 1, -1).contiguous(memory_format=torch.channels_last)
        h = relu(bn(conv(h, "conv", model.conv), "bn"), "relu")
        for i, block in enumerate(model.blocks):
            p = f"blocks.{i}"
            out = relu(bn(conv(h, f"{p}.conv1", block.conv1), f"{p}.bn1"), f"{p}.mid")
            out = bn(conv(out, f"{p}.conv2", block.conv2), f"{p}.bn2")
            short = h if not len(block.shortcut) else bn(conv(h, f"{p}.shortcut.0", block.shortcut[0]),
                                                         f"{p}.shortcut.1")
            h = relu(out + short, f"{p}.out")
        _, kc, height, width = h.shape
        pooled = h.mean(dim=(2, 3)).reshape(b, k, -1).transpose(0, 1)
        logits = torch.baddbmm(params["out.bias"].unsqueeze(1), pooled, params["out.weight"].transpose(1, 2))
        losses, d = stacked.loss_and_grad(logits, y)
        torch.bmm(d.transpose(1, 2), pooled, out=grads["out.weight"])
        torch.sum(d, 1, out=grads["out.bias"])
        g = torch.bmm(d, params["out.weight"]).transpose(0, 1).reshape(b, 1, 1, kc) / (height * width)
        g = g.expand(b, height, width, kc).contiguous().permute(0, 3, 1, 2)
        for i in range(len(model.blocks) - 1, -1, -1):
            p = f"blocks.{i}"
            g = torch.ops.aten.threshold_backward(g, keep[f"{p}.out"], 0)
            main = conv_back(bn_back(g, f"{p}.bn2"), f"{p}.conv2")
            main = torch.ops.aten.threshold_backward(main, keep[f"{p}.mid"], 0)
            main = conv_back(bn_back(main, f"{p}.bn1"), f"{p}.conv1")
            if len(model.blocks[i].shortcut):
                g = conv_back(bn_back(g, f"{p}.shortcut.1"), f"{p}.shortcut.0")
            g = main.add_(g)
        g = torch.ops.aten.threshold_backward(g, keep["relu"], 0)
        conv_back(bn_back(g, "bn"), "conv", inputs=False)
    return losses


def rates(ks: list[int], rounds: int) -> None:
    torch.set_num_threads(1)
    spec = rewind.get_preset("mnist1d_resnet").spec
    data = load_data(spec.data)
    model = create_model(spec.model, data.input_shape, data.num_classes, seed=0).train()
    for k in ks:
        times = measure(model, data, k, rounds)
        print(f"K = {k:2d}: " + ", ".join(f"{name} {statistics.median(v):4.0f} member-steps/s "
                                          f"({min(v):.0f}-{max(v):.0f})" for name, v in times.items()))


def measure(model, data, k: int, rounds: int) -> dict[str, list[float]]:
    """Member-steps/s of each path for a stack of ``k``, in alternating rounds."""
    stack = Stack(model, k, torch.device("cpu"))
    stack.flat.normal_(0, 0.1, generator=torch.Generator().manual_seed(k))
    idx = torch.arange(128 * k) % len(data.y_train)
    x, y = data.inputs("train")[idx].view(k, 128, -1), data.y_train[idx].view(k, 128)
    grads = torch.empty_like(stack.flat)

    def engine():
        return _gradient(stack, stack.flat, k, stack.buffers, x, y)

    def hand():
        return hand_grad(model, stack.views(stack.flat), x, y, stack.views(grads), stack.buffers)

    times: dict[str, list[float]] = {"engine": [], "hand-written": []}
    with alloc.roomy():
        expected, _ = engine()
        hand()
        torch.testing.assert_close(grads, expected, rtol=1e-4, atol=1e-6)
        n = max(10, 120 // k)
        for _ in range(rounds):
            for name, step in (("engine", engine), ("hand-written", hand)):
                step()
                start = time.perf_counter()
                for _ in range(n):
                    step()
                times[name].append(k * n / (time.perf_counter() - start))
    return times


def by_stack_size(store: Path) -> None:
    """Member-iterations of a store's runs by the stack size their records name."""
    its: collections.Counter = collections.Counter()
    for done in store.glob("*/DONE"):
        record = json.loads(done.read_text())
        spec = json.loads((done.parent / "spec.json").read_text())
        steps = spec["spec"]["train"]["steps"]
        if not steps.endswith("it"):
            continue
        its[record["engine"]] += int(steps[:-2]) - ((spec.get("start") or {}).get("iteration") or 0)
    total = sum(its.values())
    print(f"{store}: {total:,} member-iterations")
    for engine, n in sorted(its.items(), key=lambda kv: -kv[1]):
        print(f"  {engine:20s} {n:9,d} ({n / total:5.1%})")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ks", default="2,3,5,8,10,16")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--store", type=Path)
    args = ap.parse_args()
    if args.store:
        by_stack_size(args.store)
    rates([int(k) for k in args.ks.split(",")], args.rounds)


if __name__ == "__main__":
    main()
