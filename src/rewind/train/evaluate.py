"""Evaluation: mean loss and accuracy (and per-example losses) of a network on a split, in eval
mode, summed in index order. Training's evaluations, instability's path points and the probes use
these functions, so a path's endpoints reproduce the runs' own metrics exactly."""
from __future__ import annotations

import torch
from torch.nn import functional as F

from ..data.tensors import shard_rows, to_float
from .ddp import SINGLE, Single
from .member import TrainOptions, data_workers


@torch.no_grad()
def evaluate_batches(model, batches) -> tuple[float, float, torch.Tensor]:
    """Mean cross-entropy, accuracy and the per-example losses (float64) over an iterable of
    (inputs, labels) batches, in eval mode."""
    was_training = model.training
    model.eval()
    losses, correct = [], 0
    for x, y in batches:
        out = model(x)
        losses.append(F.cross_entropy(out, y, reduction="none").double())
        correct += (out.argmax(1) == y).sum().item()
    model.train(was_training)
    per_example = torch.cat(losses)
    # summed in index order (cumsum is sequential): a parallel sum's order, and so its last bits,
    # can change with the threads the runtime hands out on a loaded machine
    return (per_example.cumsum(0)[-1] / len(per_example)).item(), correct / len(per_example), per_example


def tensor_batches(x: torch.Tensor, y: torch.Tensor, batch: int, pixels=None, dtype: torch.dtype | None = None):
    """Consecutive (inputs, labels) chunks; uint8 images (``pixels``) normalised chunk by chunk to ``dtype``."""
    if pixels is None:
        return ((x[i:i + batch], y[i:i + batch]) for i in range(0, len(y), batch))
    return ((to_float(x[i:i + batch], pixels, dtype), y[i:i + batch]) for i in range(0, len(y), batch))


def evaluate_examples(model, x: torch.Tensor, y: torch.Tensor, batch: int = 4096, pixels=None,
                      dtype: torch.dtype | None = None) -> tuple[float, float, torch.Tensor]:
    """Mean cross-entropy, accuracy and the per-example losses (float64) on (x, y), in eval mode.

    Training's evaluations and instability's interpolation points both use this function (or,
    for streamed datasets, :func:`evaluate_batches` over :func:`streamed_batches`), so a path's
    endpoints reproduce the copies' final metrics exactly."""
    return evaluate_batches(model, tensor_batches(x, y, batch, pixels, dtype))


def evaluate(model, x: torch.Tensor, y: torch.Tensor, batch: int = 4096, pixels=None,
             dtype: torch.dtype | None = None) -> tuple[float, float]:
    """Mean cross-entropy and accuracy on (x, y)."""
    loss, acc, _ = evaluate_examples(model, x, y, batch, pixels, dtype)
    return loss, acc


def streamed_batches(data, split: str, device: torch.device, dtype: torch.dtype, opts: TrainOptions,
                     part: tuple[int, int] | None = None):
    """Evaluation batches of a streamed dataset (ImageNet: centre crops; the train split is a
    fixed sample, see data/imagenet.py), normalised on the device; ``part``: a rank's share."""
    from ..data import imagenet

    files, labels = data.eval_files(split)
    rows = shard_rows(len(files), part)
    files, labels = files[rows], labels[rows]
    dataset = imagenet.EvalBatches(data, files, labels, max(1, min(opts.eval_batch, 256)))
    for x, y in imagenet.loader(dataset, data_workers(opts), device.type == "cuda"):
        yield imagenet.normalise(x.to(device), dtype), y.to(device)


def evaluate_split(model, pr, split: str, opts: TrainOptions, dp: Single = SINGLE) -> tuple[float, float]:
    """Mean loss and accuracy of ``model`` on a split of ``pr`` (the engines' set-up, setup.Prepared;
    streamed datasets: see data/imagenet.py). Under DDP each rank evaluates its share of the
    examples and the per-example losses are gathered, in order, to be summed as one process sums them."""
    if pr.x_train is not None:
        x, y = (pr.x_train, pr.y_train) if split == "train" else (pr.x_test, pr.y_test)
        if dp.part is None:
            return evaluate(model, x, y, opts.eval_batch, pr.pixels, pr.dtype)
        rows = shard_rows(len(y), dp.part)
        _, acc, per = evaluate_examples(model, x[rows], y[rows], opts.eval_batch, pr.pixels, pr.dtype)
    else:
        _, acc, per = evaluate_batches(model, streamed_batches(pr.data, split, pr.device, pr.dtype, opts, dp.part))
        if dp.part is None:
            return per.cumsum(0)[-1].item() / len(per), acc
    return dp.gather_evaluation(per, round(acc * len(per)))
