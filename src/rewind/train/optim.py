"""Optimizers and the learning-rate schedule (a pure function of the iteration)."""
from __future__ import annotations

import torch
from torch.optim.adam import adam as _adam
from torch.optim.sgd import sgd as _sgd

from ..spec import TrainSpec


class Optimizer:
    """SGD (momentum, Nesterov, weight decay) or Adam: the update that ``torch.optim.SGD`` and
    ``torch.optim.Adam`` compute, through the same functional kernels (``torch.optim.sgd.sgd``,
    ``torch.optim.adam.adam``) with the same arguments, so the same bits (tested against them), and
    the part of their interface rewind uses (``param_groups[i]["lr"]``, ``state`` by parameter,
    ``zero_grad``, ``step``, ``state_dict``/``load_state_dict`` in their format).

    Why not torch.optim's classes: building, zeroing, stepping or saving one imports
    ``torch._dynamo`` (so that torch.compile leaves those methods alone), 0.8-1.8 s a process on
    2 cores, most of a short run's start-up after ``import torch``."""

    def __init__(self, spec: TrainSpec, params):
        if spec.optimizer not in ("sgd", "adam"):
            raise ValueError(f"train.optimizer: unknown optimizer {spec.optimizer!r}")
        self.spec = spec
        self.param_groups = [{"params": list(params), "lr": spec.lr}]
        self.state: dict[torch.Tensor, dict[str, torch.Tensor]] = {}

    @property
    def _params(self) -> list[torch.Tensor]:
        return self.param_groups[0]["params"]

    def zero_grad(self, set_to_none: bool = True) -> None:
        for p in self._params:
            if set_to_none:
                p.grad = None
            elif p.grad is not None:
                p.grad.zero_()

    @torch.no_grad()
    def step(self) -> None:
        s, lr = self.spec, self.param_groups[0]["lr"]
        params = [p for p in self._params if p.grad is not None]
        grads = [p.grad for p in params]
        if s.optimizer == "sgd":
            bufs = [self.state.get(p, {}).get("momentum_buffer") for p in params] if s.momentum else []
            _sgd(params, grads, bufs, weight_decay=s.weight_decay, momentum=s.momentum, lr=lr, dampening=0,
                 nesterov=s.nesterov, maximize=False)
            for p, buf in zip(params, bufs):   # the first step creates each buffer
                self.state.setdefault(p, {})["momentum_buffer"] = buf
            return
        for p in params:
            if p not in self.state:   # as Adam does: a float step count on the CPU, zero moments
                self.state[p] = {"step": torch.tensor(0.0, dtype=_scalar_dtype()),
                                 "exp_avg": torch.zeros_like(p, memory_format=torch.preserve_format),
                                 "exp_avg_sq": torch.zeros_like(p, memory_format=torch.preserve_format)}
        state = [self.state[p] for p in params]
        beta1, beta2 = s.betas
        _adam(params, grads, [t["exp_avg"] for t in state], [t["exp_avg_sq"] for t in state], [],
              [t["step"] for t in state], amsgrad=False, beta1=beta1, beta2=beta2, lr=lr,
              weight_decay=s.weight_decay, eps=1e-8, maximize=False)

    def state_dict(self) -> dict:
        """torch.optim's format: state by parameter index (the same tensors, not copies)."""
        index = {p: i for i, p in enumerate(self._params)}
        return {"state": {index[p]: dict(v) for p, v in self.state.items()},
                "param_groups": [{"lr": self.param_groups[0]["lr"], "params": list(range(len(self._params)))}]}

    def load_state_dict(self, sd: dict) -> None:
        """As torch.optim loads: tensors moved to their parameter's device and floating dtype, the
        step count kept as it is."""
        def placed(v: torch.Tensor, p: torch.Tensor) -> torch.Tensor:
            return v.to(device=p.device, dtype=p.dtype) if v.is_floating_point() else v.to(p.device)

        params = self._params
        self.state = {params[int(i)]: {k: v if k == "step" else placed(v, params[int(i)]) for k, v in values.items()}
                      for i, values in sd["state"].items()}


def _scalar_dtype() -> torch.dtype:
    return torch.float64 if torch.get_default_dtype() == torch.float64 else torch.float32


def make_optimizer(spec: TrainSpec, params) -> Optimizer:
    return Optimizer(spec, params)


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


def optimizer_tensors(opt: Optimizer) -> dict[str, torch.Tensor]:
    """Optimizer state as flat named tensors (``optim/<param index>/<name>``)."""
    out = {}
    for idx, state in opt.state_dict()["state"].items():
        for name, value in state.items():
            t = value if torch.is_tensor(value) else torch.tensor(value)
            out[f"optim/{idx}/{name}"] = t
    return out


def load_optimizer_tensors(opt: Optimizer, tensors: dict[str, torch.Tensor]) -> None:
    sd = opt.state_dict()
    state: dict[int, dict] = {}
    for key, value in tensors.items():
        if not key.startswith("optim/"):
            continue
        _, idx, name = key.split("/", 2)
        state.setdefault(int(idx), {})[name] = value.clone()
    sd["state"] = state
    opt.load_state_dict(sd)
