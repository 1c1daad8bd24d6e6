"""Optimizers and the learning-rate schedule (a pure function of the iteration)."""
from __future__ import annotations

import torch

from ..spec import TrainSpec


def make_optimizer(spec: TrainSpec, params) -> torch.optim.Optimizer:
    if spec.optimizer == "sgd":
        return torch.optim.SGD(params, lr=spec.lr, momentum=spec.momentum, nesterov=spec.nesterov,
                               weight_decay=spec.weight_decay)
    if spec.optimizer == "adam":
        return torch.optim.Adam(params, lr=spec.lr, betas=tuple(spec.betas), weight_decay=spec.weight_decay)
    raise ValueError(f"train.optimizer: unknown optimizer {spec.optimizer!r}")


def lr_at(spec: TrainSpec, iteration: int, iterations_per_epoch: int) -> float:
    """Learning rate used for the update at ``iteration`` (0-based)."""
    lr = spec.lr
    warmup = spec.warmup.iterations(iterations_per_epoch)
    if warmup and iteration < warmup:
        lr *= (iteration + 1) / warmup
    for m in spec.milestones:
        if iteration >= m.iterations(iterations_per_epoch):
            lr *= spec.gamma
    return lr


def zero_where_pruned(keep: torch.Tensor, tensors) -> bool:
    """Whether every tensor shaped like ``keep`` (0/1) holds (signed) zeros wherever ``keep`` is 0.

    When a parameter and its optimizer state are zero where pruned and its gradient is masked, an
    update by SGD (momentum, Nesterov, weight decay) or Adam leaves the pruned weights at zero, signs
    included, so multiplying the weights by the mask after the step changes no bit and is skipped.
    A loaded optimizer state (pretraining deficit, a dense run's momentum) may hold values there;
    then the mask is applied after every step."""
    off = keep == 0
    return not any(bool(t[off].any()) for t in tensors if t.shape == keep.shape)


def optimizer_tensors(opt: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """Optimizer state as flat named tensors (``optim/<param index>/<name>``)."""
    out = {}
    for idx, state in opt.state_dict()["state"].items():
        for name, value in state.items():
            t = value if torch.is_tensor(value) else torch.tensor(value)
            out[f"optim/{idx}/{name}"] = t
    return out


def load_optimizer_tensors(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    sd = opt.state_dict()
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if not key.startswith("optim/"):
            continue
        _, idx, name = key.split("/", 2)
        state.setdefault(int(idx), {})[name] = value.clone()
    sd["state"] = state
    opt.load_state_dict(sd)
