"""Train a population of members, each to its own run directory.

A *member* is one network: a spec, and optionally starting weights, a mask and
the iteration it starts at (rewinding). Members of a population share the
architecture and schedule; this sequential engine trains them one after the
other. Every random choice is a pure function of the member's seeds and the
iteration, so a run resumed from any resume point ends bit-identical (CPU) to
an uninterrupted one.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import math
import os
import socket
import sys
import time
from dataclasses import dataclass, field
from typing import Callable

import torch
from torch.nn import functional as F

from ..data import augment, batch_indices, iterations_per_epoch, load_data
from ..data.tensors import shard_rows, to_float
from ..models import create_model, place
from ..spec import Spec, SpecError
from ..store import RunDir, Store, notice, tensor_digest
from ..store.runs import SEQUENTIAL
from .ddp import SINGLE, Single, data_parallel
from .optim import load_optimizer_tensors, lr_at, make_optimizer, optimizer_tensors, zero_where_pruned


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


def data_workers(opts: TrainOptions) -> int:
    return min(8, os.cpu_count() or 1) if opts.data_workers is None else opts.data_workers


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


def schedule_points(spec: Spec, ipe: int, start: int, total: int) -> tuple[set[int], set[int]]:
    """Iterations at which to evaluate and to checkpoint."""
    t = spec.train
    evals = {start, total}
    every = t.eval_every.iterations(ipe)
    if every:
        evals.update(range(0, total + 1, every))
    evals.update(s.iterations(ipe) for s in t.eval_at)
    ckpts = {start, total} | {s.iterations(ipe) for s in t.checkpoints}
    keep = lambda s: {i for i in s if start <= i <= total}  # noqa: E731
    return keep(evals), keep(ckpts)


def _state_tensors(model, opt, mask) -> dict[str, torch.Tensor]:
    out = {f"model/{k}": v for k, v in model.state_dict().items()}
    if mask is not None:
        out.update({f"mask/{k}": v for k, v in mask.items()})
    out.update(optimizer_tensors(opt))
    return out


def train_member(member: Member, store: Store, opts: TrainOptions) -> RunDir:
    dp = data_parallel(opts)  # under DDP every rank trains, rank 0 alone locks and writes
    engine = engine_name("sequential", opts)
    if member.engine != engine:
        member = dataclasses.replace(member, engine=engine)
    run = store.run(member.key)
    if dp.agree(run.done):
        return run
    with run.lock() if dp.writes else contextlib.nullcontext():
        if dp.agree(run.done):  # another process finished it while we waited
            return run
        if dp.writes:
            run.reset_if_damaged()
        dp.barrier()
        _train_locked(member, run, opts, dp)
    dp.barrier()  # every rank sees the finished run
    return run


@dataclass
class Prepared:
    """What both engines set up before training: data on the device and the step arithmetic."""

    data: object
    device: torch.device
    dtype: torch.dtype
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    n: int
    batch_size: int
    ipe: int
    total: int
    classes: int          # outputs of the network (a pretraining task may have its own)
    pixels: tuple | None = None  # x_train/x_test are uint8 images normalised per batch (data/tensors.py)

    def batch_inputs(self, x: torch.Tensor) -> torch.Tensor:
        """Inputs of a batch drawn from x_train or x_test, as the network sees them."""
        return x if self.pixels is None else to_float(x, self.pixels, self.dtype)


@functools.lru_cache(maxsize=32)
def _prunable_names(model_spec, input_shape, classes) -> tuple[str, ...]:
    with torch.device("meta"):  # shapes only: no memory, whatever the width
        return tuple(create_model(model_spec, input_shape, classes, seed=0, initialise_weights=False).prunable())


def check_spec(spec: Spec, opts: TrainOptions, starts: tuple[int, ...] = (0,)) -> tuple[object, int, int]:
    """Every check that the spec, the options and the model's shapes allow, before anything is
    written: device, data, batch size, augmentation, pruning names, start points. Settings that a
    shortened schedule makes moot (milestones, warmup, evaluation points past the end) give a
    one-line warning. Returns (data, iterations per epoch, total iterations)."""
    resolve_device(opts.device)
    data = load_data(spec.data, opts.data_root)
    streaming = getattr(data, "streaming", False)
    allowed = ("none", "random_resized_crop") if streaming else ("none", "crop_flip")
    if spec.data.augment not in allowed:
        raise SpecError(f"data.augment: {spec.data.augment!r} is not available for {spec.data.name}; "
                        f"choose {' or '.join(allowed)}")
    n, bs = len(data.y_train), spec.data.batch_size
    if bs > n:
        raise SpecError(f"data.batch_size: {bs} is larger than the training set ({n} examples of {spec.data.name})")
    ipe = iterations_per_epoch(n, bs)
    total = spec.train.steps.iterations(ipe)
    if total > MAX_ITERATIONS:
        raise SpecError(f"train.steps: {spec.train.steps} is {total:,} iterations; at most {MAX_ITERATIONS:,} are allowed")
    for start in starts:
        if start > total:
            raise SpecError(f"a member starts at {start}it, after the end of training ({total}it)")
    if spec.pretrain.kind:
        from ..data.alter import check_alteration
        from ..data.core import require_in_memory

        require_in_memory(data, "pretraining")
        from ..data.core import data_root

        check_alteration(spec.pretrain, tuple(data.input_shape), n, bs, data_root(opts.data_root))
        if spec.pretrain.steps.iterations(ipe) > total:  # (== total: the pretraining run itself)
            raise pretraining_too_long(spec, ipe, total)
    names = _prunable_names(spec.model, tuple(data.input_shape), data.num_classes)
    unknown = [x for x in spec.prune.exclude if x not in names]
    if unknown:
        what = "is not a prunable tensor" if len(unknown) == 1 else "are not prunable tensors"
        raise SpecError(f"prune.exclude: {', '.join(unknown)} {what} of {spec.model.name}; they are: {', '.join(names)}")
    t = spec.train
    warmup = (t.warmup,) if t.warmup.ep or t.warmup.it else ()
    for label, steps in (("train.milestones", t.milestones), ("train.eval_at", t.eval_at),
                         ("train.checkpoints", t.checkpoints), ("train.warmup", warmup)):
        late = [str(s) for s in steps if s.iterations(ipe) > total]
        if late:
            notice(f"{label}: {', '.join(late)} after the end of training ({total}it) has no effect")
    return data, ipe, total


# The largest number of iterations a run may ask for (an epoch count is converted first).
MAX_ITERATIONS = 10**9


def pretraining_too_long(spec: Spec, ipe: int, total: int) -> SpecError:
    k = spec.pretrain.steps.iterations(ipe)
    return SpecError(f"pretrain.steps: {spec.pretrain.steps} ({k}it) is not before the end of training "
                     f"({spec.train.steps}, {total}it)")


def pretraining_run(spec: Spec, start: int, ipe: int, total: int) -> bool:
    """Whether a run of ``spec`` starting at ``start`` is the pretraining part of its spec (a
    spec with a pretrain section is trained as two runs: train/pretrain.py)."""
    if not spec.pretrain.kind:
        return False
    k = spec.pretrain.steps.iterations(ipe)
    if start >= k:
        return False
    if total != k:
        raise SpecError(f"pretrain.kind: a spec with pretraining is trained as two runs, the pretraining "
                        f"(iterations 0-{k}) and the training that resumes at {k}it; train it with rewind.train, "
                        "a lottery study, or rewind.exec.with_pretraining")
    return True


def _altered(spec: Spec, data, root) -> tuple:
    """The four tensors and the number of classes of the pretraining task (data/alter.py)."""
    from .. import rng
    from ..data.alter import alter

    p = spec.pretrain
    out = []
    for code, (x, y) in enumerate(((data.inputs("train"), data.y_train), (data.inputs("test"), data.y_test))):
        g = rng.generator(rng.PRETRAIN, p.seed, code)
        out.append(alter(p.kind, x, y, data.num_classes, p, g, ("train", "test")[code], root))
    (xtr, ytr, classes), (xte, yte, _) = out
    return xtr, ytr, xte, yte, classes


def prepare(members: list[Member], runs: list[RunDir], opts: TrainOptions, write: bool = True) -> Prepared:
    spec = members[0].spec
    data, ipe, total = check_spec(spec, opts, tuple(m.start for m in members))
    streaming = getattr(data, "streaming", False)
    pretraining = pretraining_run(spec, min(m.start for m in members), ipe, total)
    if pretraining:
        from ..data.core import data_root

        tensors = _altered(spec, data, data_root(opts.data_root))
    else:
        tensors = None
    for m, run in zip(members if write else [], runs):
        run.write_spec(m.spec_doc(), {"kind": m.kind, "preset": m.preset, "member": m.index, **m.origin})
    device, dtype = resolve_device(opts.device), dtype_of(spec)
    n, bs = len(data.y_train), spec.data.batch_size
    if streaming:
        return Prepared(data, device, dtype, None, None, None, None, n, bs, ipe, total, data.num_classes)
    if tensors is None and data.pixels is not None:  # uint8 images stay uint8, on the device too
        return Prepared(data, device, dtype, data.x_train.to(device), data.y_train.to(device), data.x_test.to(device),
                        data.y_test.to(device), n, bs, ipe, total, data.num_classes, data.pixels)
    xtr, ytr, xte, yte, classes = tensors or (data.x_train, data.y_train, data.x_test, data.y_test,
                                              data.num_classes)
    return Prepared(data, device, dtype, xtr.to(device, dtype), ytr.to(device), xte.to(device, dtype),
                    yte.to(device), len(ytr), bs, iterations_per_epoch(len(ytr), bs), total, classes)


def training_batches(pr: Prepared, spec: Spec, start: int, opts: TrainOptions, part: tuple[int, int] | None = None):
    """(inputs, labels, rows of the global batch) of iterations start, start + 1, ... on the
    device: indexed from the tensors in memory, or streamed from files by DataLoader workers
    (ImageNet). ``part`` = (rank, world) of a data-parallel group: that rank's rows of each global
    batch, drawn and augmented as one process would, then cut (from files only they are read)."""
    if pr.x_train is not None:
        for t in range(start, pr.total):
            idx = batch_indices(t, pr.n, pr.batch_size, spec.seeds.data_order).to(pr.device)
            x = augment.apply(spec.data.augment, pr.batch_inputs(pr.x_train[idx]), spec.seeds.augment, t)
            if part is None:
                yield x, pr.y_train[idx], len(idx)
            else:
                rows = shard_rows(len(idx), part)
                yield x[rows], pr.y_train[idx][rows], len(idx)
        return
    from ..data import imagenet

    batches = imagenet.TrainBatches(pr.data, start, pr.total, pr.batch_size, spec.seeds.data_order,
                                    spec.data.augment, spec.seeds.augment, part)
    for t, (it, x, y) in enumerate(imagenet.loader(batches, data_workers(opts), pr.device.type == "cuda"), start):
        assert it == t, (it, t)
        n = len(batch_indices(t, pr.n, pr.batch_size, spec.seeds.data_order))
        yield imagenet.normalise(x.to(pr.device, non_blocking=True), pr.dtype), y.to(pr.device), n


def evaluate_split(model, pr: Prepared, split: str, opts: TrainOptions, dp: Single = SINGLE) -> tuple[float, float]:
    """Mean loss and accuracy of ``model`` on a split (streamed datasets: see data/imagenet.py).
    Under DDP each rank evaluates its share of the examples and the per-example losses are
    gathered, in order, to be summed as one process sums them."""
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


class LoopHook:
    """What a layer above attaches to the sequential loop (analysis/probes.py's ProbeHook is one):
    it sees the weights before each step and the masked gradients after each backward pass, asks
    for extra evaluations, says where a resume point may be written and what it carries, and
    finishes when training ends. The loop itself knows nothing of what is measured."""

    evaluations: frozenset = frozenset()    # iterations at which the loop also evaluates

    def at(self, iteration: int, params: dict[str, torch.Tensor]) -> None:
        """Before the step at ``iteration`` (and once more at the end of training)."""

    def gradients(self, iteration: int, params: dict[str, torch.Tensor]) -> None:
        """After the backward pass of the step at ``iteration`` (gradients masked), before the update."""

    def may_resume_at(self, iteration: int) -> bool:
        return True

    def state(self) -> dict[str, torch.Tensor]:
        """Tensors carried by a resume point (given back to the factory on resumption)."""
        return {}

    def finish(self, diverged: bool) -> None:
        """After the last step (``diverged``: the loss became non-finite)."""


# Factories (member, run, model, ipe, total, iteration, resumed tensors or None) -> LoopHook | None,
# registered by the layers above when they are imported (``import rewind`` imports them all).
LOOP_HOOKS: list[Callable] = []


def register_loop_hook(factory: Callable) -> Callable:
    LOOP_HOOKS.append(factory)
    return factory


def _hooks(member: Member, run: RunDir, model, ipe: int, total: int, iteration: int, tensors) -> list[LoopHook]:
    hooks = [h for f in LOOP_HOOKS if (h := f(member, run, model, ipe, total, iteration, tensors)) is not None]
    if member.spec.probe.schedule and not hooks:
        raise RuntimeError("probe.schedule is set but no probe hook is registered (import rewind.analysis.probes)")
    return hooks


def _train_locked(member: Member, run: RunDir, opts: TrainOptions, dp: Single = SINGLE) -> None:
    spec = member.spec
    pr = prepare([member], [run], opts, write=dp.writes)
    data, device, dtype = pr.data, pr.device, pr.dtype
    ipe, total = pr.ipe, pr.total

    model = place(create_model(spec.model, data.input_shape, pr.classes, seed=spec.seeds.init), device, dtype)
    mask = None
    if member.mask is not None:
        unknown = set(member.mask) - set(model.prunable())
        if unknown:
            raise ValueError(f"mask names tensors that are not prunable: {sorted(unknown)}")
        mask = {k: v.to(device=device, dtype=torch.bool) for k, v in member.mask.items()}
    if member.init is not None:
        model.load_state_dict({k: v.to(device) for k, v in member.init.items()})
    params = dict(model.named_parameters())
    # masks as 0/1 in each parameter's dtype and layout: multiplying by a bool mask converts it on
    # every call (LeNet-300-100's first layer: 101 against 15 us); the same bits, signs of zero included
    masked = [(params[k], torch.empty_like(params[k]).copy_(m)) for k, m in mask.items()] if mask else []
    with torch.no_grad():
        for p, m in masked:
            p.mul_(m)
    opt = make_optimizer(spec.train, model.parameters())

    rows: list[dict] = []
    iteration = member.start
    if member.optim is not None:
        load_optimizer_tensors(opt, {k: v.to(device) for k, v in member.optim.items()})
    resumed, tensors = run.load_resume(), None
    if resumed is not None:
        iteration, tensors, rows = resumed
        model.load_state_dict({k[6:]: v.to(device) for k, v in tensors.items() if k.startswith("model/")})
        load_optimizer_tensors(opt, {k: v.to(device) for k, v in tensors.items()})

    evals, ckpts = schedule_points(spec, ipe, member.start, total)
    if not opts.evaluate:
        evals = set()
    hooks = _hooks(member, run, model, ipe, total, iteration, tensors) if dp.writes else []
    for h in hooks:
        evals |= h.evaluations
    params_by_name = dict(model.named_parameters())
    # the mask after each step changes nothing while the pruned weights and their optimizer state are
    # zero (optim.zero_where_pruned) and no hook sees the gradients in between
    remask = bool(masked) and (bool(hooks) or not all(
        zero_where_pruned(m, [p, *opt.state.get(p, {}).values()]) for p, m in masked))
    started = time.time()
    last_resume_time, last_resume_it = time.time(), iteration
    bar = None
    if progress_enabled(opts):
        from tqdm import tqdm

        bar = tqdm(total=total, initial=iteration, desc=f"{member.kind} {run.key[:8]}", leave=False, unit="it")

    def record(it: int) -> None:
        for split in spec.train.eval_splits:
            loss, acc = evaluate_split(model, pr, split, opts, dp)
            rows.append({"step": it, "split": split, "metric": "loss", "value": loss})
            rows.append({"step": it, "split": split, "metric": "accuracy", "value": acc})

    model.train()
    diverged, last_loss = None, None
    forward = dp.wrap(model)
    forward = torch.compile(forward) if opts.compile else forward
    batches = training_batches(pr, spec, iteration, opts, dp.part)
    while True:
        if iteration in evals:
            record(iteration)
        if iteration in ckpts and dp.writes:
            run.save_checkpoint(iteration, _state_tensors(model, opt, mask))
        for h in hooks:
            h.at(iteration, params_by_name)
        if iteration >= total:
            break
        lr = lr_at(spec.train, iteration, ipe)
        for group in opt.param_groups:
            group["lr"] = lr
        xb, yb, n = next(batches)
        with autocast(spec, device):
            loss = dp.loss(forward(xb), yb, n)
        value = dp.value(loss)
        if not math.isfinite(value):  # divergence is a result: the member stops here
            diverged = divergence(iteration, last_loss)
            break
        last_loss = value
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if masked:
            with torch.no_grad():
                for p, m in masked:
                    p.grad.mul_(m)
        for h in hooks:
            h.gradients(iteration, params_by_name)
        opt.step()
        if remask:  # a loaded optimizer state can move a pruned weight; the mask wins after every step
            with torch.no_grad():
                for p, m in masked:
                    p.mul_(m)
        iteration += 1
        if bar is not None:
            bar.update(1)
        if opts.on_iteration is not None:
            opts.on_iteration(run, iteration)
        if dp.writes and iteration < total and all(h.may_resume_at(iteration) for h in hooks) and (
            iteration - last_resume_it >= opts.resume_every or time.time() - last_resume_time >= opts.resume_seconds
        ):
            state = _state_tensors(model, opt, mask)
            for h in hooks:
                state.update(h.state())
            run.save_resume(iteration, state, rows)
            last_resume_time, last_resume_it = time.time(), iteration
    if bar is not None:
        bar.close()
    for h in hooks:
        h.finish(diverged is not None)

    if dp.writes:
        finish_run(run, rows, total, member.start, round(time.time() - started, 3), device,
                   engine="sequential+compile" if opts.compile else "sequential", diverged=diverged, opts=opts,
                   extra=dp.record())


def divergence(iteration: int, last_loss) -> dict:
    """The record of a member whose training loss became non-finite at ``iteration``."""
    return {"diverged_at": iteration, "last_finite_loss": None if last_loss is None else float(last_loss)}


def finish_run(run: RunDir, rows: list[dict], total: int, start: int, seconds: float, device, engine: str,
            diverged: dict | None = None, opts: TrainOptions | None = None, extra: dict | None = None) -> None:
    hook = None
    if opts is not None and opts.on_event is not None:
        opts.on_event(run, "finishing")
        hook = functools.partial(opts.on_event, run)
    final = {f"{r['split']}_{r['metric']}": r["value"] for r in rows if r["step"] == total}
    summary = {
        "iterations": total, "start": start, "seconds": seconds, "device": str(device),
        "device_name": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__, "engine": engine, "final": final, "threads": torch.get_num_threads(),
        "host": socket.gethostname(), "pid": os.getpid(),  # where it finished (a cluster's runs say which node)
        **(extra or {}),
    }
    if diverged is not None:
        summary.update(status="diverged", **diverged)
        last = diverged["last_finite_loss"]
        notice(f"run {run.key} diverged: its training loss was not finite at iteration {diverged['diverged_at']} "
               f"(last finite loss {'-' if last is None else f'{last:.4g}'}); stored as diverged")
    run.finish(rows, summary, hook)


def usable_cpus() -> int:
    """Cores this process may run on: its CPU affinity, and the cgroup's CPU quota when there is one."""
    import os

    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = open("/sys/fs/cgroup/cpu.max").read().split()[:2]
        if quota != "max":
            n = min(n, max(1, int(int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, n)
