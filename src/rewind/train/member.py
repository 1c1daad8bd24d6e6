"""What to train and how: a :class:`Member` (one network: a spec, and optionally starting weights,
a mask, the iteration it starts at) and its key; :class:`TrainOptions` (how and where, which
changes no result but the engine's name); the device and dtype a spec trains with."""
from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass, field
from typing import Callable

import torch

from ..spec import Spec, SpecError
from ..store import RunDir, tensor_digest
from ..store.runs import SEQUENTIAL


def engine_name(engine: str, opts: "TrainOptions") -> str:
    """What names the arithmetic of a run, in its key: ``sequential`` (the default, left out of
    keys), ``sequential+compile`` or ``vectorised`` (whose member's bits do not depend on its
    companions: train/vectorised.py); ``+local-bn`` for data-parallel training with per-rank
    BatchNorm statistics. Where it ran is not part of it: the device, the thread count and a
    data-parallel world size are recorded with every run (results: device, threads, ddp), and a
    run is the same bits again on the same kind of device with the same threads and ranks."""
    if engine == "vectorised":
        return "vectorised"
    name = "sequential+compile" if opts.compile else SEQUENTIAL
    # per-rank BatchNorm statistics are another computation, not another place (ddp.py)
    return name + "+local-bn" if opts.ddp and opts.ddp_batchnorm == "local" else name


@dataclass
class Member:
    """One network to train. ``key`` names its run directory."""

    spec: Spec
    kind: str = "train"
    preset: str | None = None
    index: int = 0
    init: dict[str, torch.Tensor] | None = None   # starting weights; None: seeded initialisation
    mask: dict[str, torch.Tensor] | None = None   # prunable tensor name -> bool tensor
    start: int = 0                                # iteration at which training starts
    origin: dict = field(default_factory=dict)    # where init/mask came from (recorded, not hashed)
    optim: dict[str, torch.Tensor] | None = None  # optimizer state to start from (optim/...); None: fresh
    engine: str = SEQUENTIAL                      # the arithmetic that trains it (engine_name); part of the key

    @property
    def key(self) -> str:
        """The run's name: a hash of the spec, the starting point and the engine. The engine is part
        of it because engines round differently: a key names one set of bits. The sequential
        engine's runs keep the spec's hash (the form every store has used)."""
        if self.init is None and self.mask is None and self.start == 0 and self.optim is None \
                and self.engine == SEQUENTIAL:
            return self.spec.hash
        h = hashlib.sha256(self.spec.canonical_json().encode())
        h.update(f"|start={self.start}".encode())
        h.update(f"|init={tensor_digest(self.init) if self.init is not None else '-'}".encode())
        h.update(f"|mask={tensor_digest(self.mask) if self.mask is not None else '-'}".encode())
        if self.optim is not None:
            h.update(f"|optim={tensor_digest(self.optim)}".encode())
        if self.engine != SEQUENTIAL:
            h.update(f"|engine={self.engine}".encode())
        return h.hexdigest()[:16]

    def spec_doc(self) -> dict:
        doc = {"spec": self.spec.to_dict(), "key": self.key}
        if self.engine != SEQUENTIAL:
            doc["engine"] = self.engine
        if self.key != self.spec.hash:
            doc["start"] = {
                "iteration": self.start,
                "init_sha256": tensor_digest(self.init) if self.init is not None else None,
                "mask_sha256": tensor_digest(self.mask) if self.mask is not None else None,
            }
            if self.optim is not None:
                doc["start"]["optim_sha256"] = tensor_digest(self.optim)
        return doc


@dataclass
class TrainOptions:
    """How to train, as opposed to what: nothing here changes a run's result."""

    device: str = "cpu"
    engine: str = "auto"             # auto | sequential | vectorised
    quiet: bool = False
    resume_every: int = 500          # iterations between resume points
    resume_seconds: float = 300.0    # ... or seconds, whichever comes first
    data_root: str | None = None
    eval_batch: int = 4096
    evaluate: bool = True            # False skips every evaluation (benchmarks); the run then has no metrics
    chunk: int = 16                  # the vectorised engine stacks at most this many members at once
    workers: int = 1                 # split a vectorised population across this many 1-thread processes
    data_workers: int | None = None  # DataLoader workers for streamed datasets (ImageNet); None: min(8, cores)
    compile: bool = False            # torch.compile the training forward pass (sequential engine)
    threads: int | None = None       # torch threads of this process (None: torch's choice); float32 results
                                     # of the sequential engine depend on it, so every run records it
    executor: str = "local"          # where populations run (exec/): local | processes | ray
    ray_address: str | None = None   # ray: None starts Ray on this machine (or joins $RAY_ADDRESS); auto; HOST:PORT
    cpus_per_task: int = 1           # ray: CPUs (and torch threads) of each task
    gpus_per_task: float = 0.0       # ray: GPUs of each task (> 0 trains on the task's GPU)
    ddp: bool = False                # this process is one rank of a torchrun world training each member (ddp.py)
    ddp_batchnorm: str = "sync"      # ddp: sync (global-batch statistics, as one process) | local (per rank)
    on_iteration: Callable[[RunDir, int], None] | None = None  # called after each step (tests, probes)
    on_event: Callable[[RunDir, str], None] | None = None      # called at "finishing" (last checkpoint written),
                                                               # "metrics-written", "done-written" (fault tests)


def dtype_of(spec: Spec) -> torch.dtype:
    """The dtype of weights and data (bf16 runs keep float32 weights and autocast)."""
    return torch.float64 if spec.train.precision == "float64" else torch.float32


def autocast(spec: Spec, device: torch.device):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=spec.train.precision == "bf16")


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name not in ("cpu", "cuda") and not (name.startswith("cuda:") and name[5:].isdigit()):
        raise SpecError(f"--device: {name!r} is not allowed; choose cpu, cuda, cuda:N or auto")
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise SpecError(f"--device {name}: CUDA is not available on this machine (use cpu or auto)")
        if ":" in name and int(name[5:]) >= torch.cuda.device_count():
            raise SpecError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return torch.device(name)


def progress_enabled(opts: TrainOptions) -> bool:
    return not opts.quiet and not os.environ.get("CI") and sys.stderr.isatty()


def data_workers(opts: TrainOptions) -> int:
    """DataLoader workers for datasets streamed from files (ImageNet): the option, or min(8, cores)."""
    return min(8, os.cpu_count() or 1) if opts.data_workers is None else opts.data_workers
