"""Data parallelism for one member: the global batch of every iteration split across N processes.

``Single`` is how one process trains (the whole batch, mean loss, writes the store); ``DataParallel``
is the same interface on a torch.distributed group: every rank draws the same seeded global batch
and trains rows [n*r/N, n*(r+1)/N) of it, the loss is the rank's sum scaled so that DDP's averaged
gradient is the gradient of the global batch's mean loss, BatchNorm statistics are those of the
global batch (SyncBatchNorm), every rank evaluates its share of the examples (the per-example
losses are gathered and summed in order), and only rank 0 writes the store. With float64 weights
the result equals one process training the same global batches to rounding (tests: 1e-10 after
50 steps); with a fixed world size it is bit-reproducible, and a resumed run ends identical.

Launch with ``torchrun --nproc-per-node N -m rewind train ...`` (NCCL on GPUs, Gloo on CPUs) or
``rewind train --ddp N``, which runs torchrun for you.
"""
from __future__ import annotations

import atexit
import functools
import os

import torch
import torch.nn.functional as F
from torch import nn

from ..host import launched, silent_rank  # noqa: F401  (re-exported: train.ddp.launched)
from ..spec import SpecError


class Single:
    """One process trains the whole batch (the default)."""

    rank, world, writes = 0, 1, True

    def wrap(self, model: nn.Module) -> nn.Module:
        return model

    part: tuple[int, int] | None = None  # (rank, world) of a data-parallel group; None: the whole batch

    def loss(self, out: torch.Tensor, y: torch.Tensor, n: int) -> torch.Tensor:
        return F.cross_entropy(out, y)

    def value(self, loss: torch.Tensor) -> float:
        """The global batch's mean loss (every rank gets the same number)."""
        return loss.item()

    def agree(self, flag: bool) -> bool:
        """Rank 0's answer, on every rank."""
        return flag

    def barrier(self) -> None:
        pass

    def record(self) -> dict:
        return {}


SINGLE = Single()


class DataParallel(Single):
    def __init__(self, device: torch.device, batchnorm: str):
        import torch.distributed as dist

        self.dist, self.device, self.batchnorm = dist, device, batchnorm
        self.rank, self.world = dist.get_rank(), dist.get_world_size()
        self.writes, self.part = self.rank == 0, (self.rank, self.world)

    def wrap(self, model: nn.Module) -> nn.Module:
        if self.batchnorm == "sync":
            if self.device.type == "cuda":
                model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
            else:  # torch's SyncBatchNorm runs on GPUs only; this one computes the same on CPUs
                for m in model.modules():
                    if isinstance(m, nn.modules.batchnorm._BatchNorm):
                        m.__class__ = _global_batchnorm(type(m))
        from torch.nn.parallel import DistributedDataParallel

        ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def loss(self, out: torch.Tensor, y: torch.Tensor, n: int) -> torch.Tensor:
        return F.cross_entropy(out, y, reduction="sum") * (self.world / n)  # DDP divides by world

    def value(self, loss: torch.Tensor) -> float:
        t = loss.detach().clone()
        self.dist.all_reduce(t)
        return t.item() / self.world

    def agree(self, flag: bool) -> bool:
        t = torch.tensor([int(flag)], device=self.device)
        self.dist.broadcast(t, 0)
        return bool(t.item())

    def barrier(self) -> None:
        self.dist.barrier()

    def gather_evaluation(self, per_example: torch.Tensor, correct: int) -> tuple[float, float]:
        """Mean loss and accuracy over every rank's share: per-example losses gathered in rank
        order (the examples' order) and summed in index order, as one process sums them."""
        dist = self.dist
        count = torch.tensor([len(per_example), correct], device=per_example.device)
        counts = [torch.zeros_like(count) for _ in range(self.world)]
        dist.all_gather(counts, count)
        longest = max(int(c[0]) for c in counts)
        padded = torch.zeros(longest, dtype=per_example.dtype, device=per_example.device)
        padded[:len(per_example)] = per_example
        parts = [torch.empty_like(padded) for _ in range(self.world)]
        dist.all_gather(parts, padded)
        every = torch.cat([p[:int(c[0])] for p, c in zip(parts, counts)])
        n = len(every)
        return (every.cumsum(0)[-1] / n).item(), sum(int(c[1]) for c in counts) / n

    def record(self) -> dict:
        return {"ddp": {"world_size": self.world, "backend": self.dist.get_backend(), "batchnorm": self.batchnorm}}


class _AllReduceSum(torch.autograd.Function):
    """Sum over ranks, differentiable: the gradient of each rank's input is the sum over ranks of
    the gradients of the output (every rank's loss depends on every rank's input)."""

    @staticmethod
    def forward(ctx, x):
        import torch.distributed as dist

        x = x.clone()
        dist.all_reduce(x)
        return x

    @staticmethod
    def backward(ctx, grad):
        import torch.distributed as dist

        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


@functools.lru_cache(maxsize=None)
def _global_batchnorm(base: type) -> type:
    """``base`` (a BatchNorm class) whose training statistics are those of the whole global batch:
    per-channel sums all-reduced through autograd, two passes (mean, then centred squares)."""

    class GlobalBatchNorm(base):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            import torch.distributed as dist

            if not (self.training and dist.is_initialized() and dist.get_world_size() > 1):
                return super().forward(x)
            dims = [0, *range(2, x.dim())]
            shape = [1, -1] + [1] * (x.dim() - 2)
            count = torch.tensor([x.numel() // x.shape[1]], dtype=x.dtype, device=x.device)
            sums = _AllReduceSum.apply(torch.cat([x.sum(dims), count]))
            n = sums[-1]
            mean = sums[:-1] / n
            centred = x - mean.view(shape)
            var = _AllReduceSum.apply((centred * centred).sum(dims)) / n
            y = centred * torch.rsqrt(var + self.eps).view(shape)
            if self.affine:
                y = y * self.weight.view(shape) + self.bias.view(shape)
            if self.track_running_stats:
                with torch.no_grad():
                    self.num_batches_tracked.add_(1)
                    m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                    self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                    self.running_var.mul_(1 - m).add_(var.detach() * (n / (n - 1)), alpha=m)
            return y

    GlobalBatchNorm.__name__ = GlobalBatchNorm.__qualname__ = f"Global{base.__name__}"
    return GlobalBatchNorm


_GROUP: dict = {}


def data_parallel(opts) -> Single:
    """How this process trains under ``opts``: alone, or as one rank of the torchrun world."""
    if not opts.ddp:
        return SINGLE
    import torch.distributed as dist

    if not launched():
        raise SpecError("--ddp: this process was not started by torchrun; run `torchrun --nproc-per-node N "
                        "-m rewind ...` or `rewind train --ddp N`")
    device = ddp_device(opts.device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
        # a group left to the interpreter's exit can abort the process ("terminate called without
        # an active exception", seen 1 launch in ~20 with Gloo): take it down in order
        atexit.register(_close_group)
    key = (str(device), opts.ddp_batchnorm)
    if key not in _GROUP:
        _GROUP[key] = DataParallel(device, opts.ddp_batchnorm)
    return _GROUP[key]


def _close_group() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()


def ddp_device(name: str) -> torch.device:
    """A rank's device: its local GPU (LOCAL_RANK) when training on CUDA, else the CPU."""
    if name.startswith("cuda") or (name == "auto" and torch.cuda.is_available()):
        local = int(os.environ.get("LOCAL_RANK", "0"))
        torch.cuda.set_device(local)
        return torch.device("cuda", local)
    return torch.device("cpu")
