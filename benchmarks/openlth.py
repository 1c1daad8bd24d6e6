"""open_lth's LeNet-300-100 protocol: rewind against a plain PyTorch loop doing the same work in
the same process (the standing reference when open_lth itself is not installed).

    .venv/bin/python benchmarks/openlth.py [--levels 3] [--epochs 2]

Protocol (open_lth's mnist_lenet_300_100 with SGD): LeNet-300-100, SGD lr 0.1 without momentum,
batch 128, 2 epochs, loss and accuracy on the test set at step 0 and at the end of every epoch
(open_lth's standard callbacks; its lottery runner never evaluates the train set), global magnitude
pruning of 20% of the remaining weights per level with the output layer excluded. ``--eval-train``
also evaluates the 60,000 training images at each of those points, 7x the evaluation work
(rewind's default, train.eval_splits = train,test). Data: MNIST-format files written here
(60,000 + 10,000 synthetic images in the official IDX format, benchmarks/concurrency.py), the same
tensors for both. Four workloads:

  train     one dense run
  imp       IMP levels 0..L rewound to k = 0 (L + 1 trainings)
  rewind    the same rewound to k = 100 it
  sweep     {0it, 100it} x 2 replicates: open_lth runs it as four separate lottery commands, each
            training its own dense network and L levels (4 (L + 1) trainings); the plain loop does
            the same; rewind shares each replicate's dense run between the two rewind steps and
            trains the chains of a level as one population.

With open_lth installed (Python 3.8-era PyTorch), the equivalent commands are
  python open_lth.py lottery --default_hparams=mnist_lenet_300_100 --levels=3 \\
      --training_steps=2ep --rewinding_steps=100it --replicate=1
and the same with --rewinding_steps omitted and --replicate=2: four commands for the sweep.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

sys.path.insert(0, str(Path(__file__).parent))
from concurrency import write_mnist  # noqa: E402

import rewind  # noqa: E402
from rewind.data import load_data  # noqa: E402
from rewind.data.tensors import to_float  # noqa: E402  (images are uint8, normalised per batch, as in rewind)
from rewind.lottery.study import Study  # noqa: E402
from rewind.step import parse_steps  # noqa: E402

BATCH, LR, FRACTION = 128, 0.1, 0.2


def spec_for(epochs: int, splits: tuple[str, ...]) -> rewind.Spec:
    return rewind.get_preset("mnist_lenet_300_100").spec.replace(**{
        "train.eval_splits": ",".join(splits),
        "train.optimizer": "sgd", "train.lr": LR, "train.momentum": 0.0, "data.batch_size": BATCH,
        "train.steps": f"{epochs}ep", "train.milestones": "", "train.eval_every": "1ep",
        "prune.strategy": "global", "prune.fraction": FRACTION, "prune.output_fraction": 0.0,
        "prune.exclude": "out.weight"})


# ---- the plain loop -------------------------------------------------------------------------
def lenet() -> nn.Sequential:
    return nn.Sequential(nn.Flatten(), nn.Linear(784, 300), nn.ReLU(), nn.Linear(300, 100), nn.ReLU(),
                         nn.Linear(100, 10))


PRUNABLE = ("1.weight", "3.weight")   # the output layer (5.weight) is excluded


def plain_evaluate(model, data, splits):
    with torch.no_grad():
        model.eval()
        for split in splits:
            x, y = (data.x_test, data.y_test) if split == "test" else (data.x_train, data.y_train)
            for j in range(0, len(y), 10_000):
                out = model(to_float(x[j:j + 10_000], data.pixels))
                F.cross_entropy(out, y[j:j + 10_000]).item()
                (out.argmax(1) == y[j:j + 10_000]).float().sum().item()
        model.train()


def plain_train(model, data, epochs, seed, splits, masks=None, keep_at=None):
    """SGD for ``epochs`` epochs, evaluating ``splits`` at step 0 and after every epoch, as open_lth
    does; returns the weights at iteration ``keep_at`` (or None)."""
    opt = torch.optim.SGD(model.parameters(), lr=LR)
    g = torch.Generator().manual_seed(seed)
    n, it, kept = len(data.y_train), 0, None
    params = dict(model.named_parameters())
    plain_evaluate(model, data, splits)
    for _ in range(epochs):
        perm = torch.randperm(n, generator=g)
        for i in range(0, n, BATCH):
            if it == keep_at:
                kept = {k: v.detach().clone() for k, v in model.state_dict().items()}
            idx = perm[i:i + BATCH]
            loss = F.cross_entropy(model(to_float(data.x_train[idx], data.pixels)), data.y_train[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            if masks:
                with torch.no_grad():
                    for k, m in masks.items():
                        params[k].mul_(m)
            it += 1
        plain_evaluate(model, data, splits)
    return kept


def global_prune(model, masks, fraction):
    params = dict(model.named_parameters())
    alive = torch.cat([params[k].detach().abs()[masks[k].bool()] for k in PRUNABLE])
    cut = torch.kthvalue(alive, int(fraction * len(alive))).values
    return {k: masks[k] * (params[k].detach().abs() > cut).float() for k in PRUNABLE}


def plain_chain(data, epochs, levels, rewind_at, seed, splits):
    """One open_lth lottery command: dense training, then ``levels`` prune-rewind-train levels."""
    torch.manual_seed(seed)
    model = lenet()
    init = {k: v.clone() for k, v in model.state_dict().items()}
    masks = {k: torch.ones_like(dict(model.named_parameters())[k]) for k in PRUNABLE}
    kept = plain_train(model, data, epochs, seed, splits, keep_at=rewind_at or None)
    start = kept if rewind_at else init
    for _ in range(levels):
        masks = global_prune(model, masks, FRACTION)
        model.load_state_dict(start)
        with torch.no_grad():
            for k, m in masks.items():
                dict(model.named_parameters())[k].mul_(m)
        plain_train(model, data, epochs, seed, splits, masks)


# ---- rewind -----------------------------------------------------------------------------------
def rewind_study(spec, rewinds, levels, replicates, data_root):
    with tempfile.TemporaryDirectory() as root:
        study = Study(spec, parse_steps(rewinds), None, rewind.Store(root), data_root)
        study.run(levels, replicates=replicates, options=rewind.TrainOptions(data_root=data_root))


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--levels", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--eval-train", action="store_true", help="also evaluate the train set (7x the evaluation)")
    a = ap.parse_args()
    splits = ("train", "test") if a.eval_train else ("test",)
    with tempfile.TemporaryDirectory() as data_root:
        write_mnist(Path(data_root))
        spec = spec_for(a.epochs, splits)
        data = load_data(spec.data, data_root)
        # the first optimizer of a process imports torch._dynamo (1.4 s here): pay it before timing
        torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=LR)
        rows = []

        def train_once():
            with tempfile.TemporaryDirectory() as root:
                rewind.train(spec, root=root, options=rewind.TrainOptions(data_root=data_root))

        rows.append(("train", timed(train_once), timed(lambda: plain_chain(data, a.epochs, 0, 0, 1, splits))))
        rows.append(("imp", timed(lambda: rewind_study(spec, "0it", a.levels, 1, data_root)),
                     timed(lambda: plain_chain(data, a.epochs, a.levels, 0, 1, splits))))
        rows.append(("rewind", timed(lambda: rewind_study(spec, "100it", a.levels, 1, data_root)),
                     timed(lambda: plain_chain(data, a.epochs, a.levels, 100, 1, splits))))
        rows.append(("sweep", timed(lambda: rewind_study(spec, "0it,100it", a.levels, 2, data_root)),
                     timed(lambda: [plain_chain(data, a.epochs, a.levels, k, r, splits) for k in (0, 100) for r in (1, 2)])))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; LeNet-300-100, {a.epochs} epochs, "
          f"levels 0-{a.levels}, evaluating {'+'.join(splits)}")
    print(f"{'workload':<8} {'rewind s':>9} {'plain loop s':>13} {'plain / rewind':>15}")
    for name, r, p in rows:
        print(f"{name:<8} {r:>9.1f} {p:>13.1f} {p / r:>14.2f}x")


if __name__ == "__main__":
    main()
