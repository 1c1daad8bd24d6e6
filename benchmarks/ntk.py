"""Cost of the Hu et al. comparison (rewind linear): the empirical NTK at initialisation and its
affine fit, in examples per second (batched torch.func jacobians against a loop of per-example
autograd gradients, in the same process, on the same model and inputs), and one training step
of the linear model against one of the network (full batch, same loss).

    .venv/bin/python benchmarks/ntk.py [--presets gaussian_two_layer,mnist1d_binary_mlp,...] [--examples 500]

Run on a quiet machine; each figure is the best of --repeat runs.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

import rewind
from rewind.analysis.linear_model import ntk
from rewind.analysis.linear_model.hu import AffineKernelModel, _loss, binary_task
from rewind.models import create_model

sys.path.insert(0, str(Path(__file__).parent))
from scores import best  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--presets", default="gaussian_two_layer,mnist1d_binary_mlp,mnist1d_binary_cnn,"
                                         "digits_binary_cnn")
    ap.add_argument("--examples", type=int, default=500)
    ap.add_argument("--loop", type=int, default=50, help="examples the per-example loop is timed on")
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print(f"{'preset':<22} {'params':>8} {'NTK ex/s':>9} {'loop ex/s':>10} {'speed-up':>9} {'fit s':>7} "
          f"{'net step ms':>12} {'lin step ms':>12} {'lin/net':>8}")
    for name in args.presets.split(","):
        spec = rewind.get_preset(name).spec
        if spec.data.name == "gaussian":
            spec = spec.replace(**{"data.train_size": 4000})
        x_train, y_train, _, _ = binary_task(spec)
        model = create_model(spec.model, tuple(x_train.shape[1:]), 1, seed=0)
        names = ntk.layer_parameters(model, "both")
        x = x_train[:args.examples]
        ntk.empirical_ntk(model, x[:8], names)   # warm up torch.func's tracing
        fast = best(lambda: ntk.empirical_ntk(model, x, names), args.repeat)
        slow = best(lambda: ntk.direct_ntk(model, x[:args.loop], names), 1)
        theta = ntk.empirical_ntk(model, x, names)
        fit = best(lambda: ntk.fit_affine(theta, x), args.repeat)
        fast_rate, slow_rate = len(x) / fast, args.loop / slow
        lin = AffineKernelModel(0.5, 0.1, x_train[0].numel(), x_train.dtype)
        steps = 20

        def train(m):
            opt = torch.optim.SGD([p for p in m.parameters()], lr=spec.train.lr)
            for _ in range(steps):
                loss = _loss(m(x_train).squeeze(1), y_train, "squared")
                opt.zero_grad()
                loss.backward()
                opt.step()

        net_t = best(lambda: train(model), args.repeat) / steps
        lin_t = best(lambda: train(lin), args.repeat) / steps
        params = sum(p.numel() for p in model.parameters())
        print(f"{name:<22} {params:>8,} {fast_rate:>9.0f} {slow_rate:>10.0f} {fast_rate / slow_rate:>8.1f}x "
              f"{fit:>7.3f} {1e3 * net_t:>12.2f} {1e3 * lin_t:>12.2f} {lin_t / net_t:>8.3f}")


if __name__ == "__main__":
    main()
