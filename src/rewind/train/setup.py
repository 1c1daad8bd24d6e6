"""What both engines do before and around training: every check a spec allows before anything is
written (check_spec), the data on the device and the step arithmetic (prepare), each iteration's
batch, where to evaluate and checkpoint, the mask check, the resume clock, the progress bar, and
the run's record when it ends (finish_run)."""
from __future__ import annotations

import functools
import os
import socket
import time
from dataclasses import dataclass

import torch

from ..data import augment, batch_indices, iterations_per_epoch, load_data
from ..data.tensors import shard_rows, to_float
from ..errors import notice
from ..models.registry import shapes_only
from ..spec import Spec, SpecError
from ..store import RunDir
from .member import (
    Member,
    TrainOptions,
    data_workers,
    dtype_of,
    progress_enabled,
    resolve_device,
)

MAX_ITERATIONS = 10**9


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
    return tuple(shapes_only(model_spec, input_shape, classes).prunable())


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


def pretraining_too_long(spec: Spec, ipe: int, total: int) -> SpecError:
    k = spec.pretrain.steps.iterations(ipe)
    return SpecError(f"pretrain.steps: {spec.pretrain.steps} ({k}it) is not before the end of training "
                     f"({spec.train.steps}, {total}it)")


def pretraining_run(spec: Spec, start: int, ipe: int, total: int) -> bool:
    """Whether a run of ``spec`` starting at ``start`` is the pretraining part of its spec (a
    spec with a pretrain section is trained as two runs: train/pretraining_run.py)."""
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


def check_mask(mask: dict | None, prunable) -> None:
    """A member's mask may name only prunable tensors (both engines check it the same way)."""
    unknown = set(mask or {}) - set(prunable)
    if unknown:
        raise ValueError(f"mask names tensors that are not prunable: {sorted(unknown)}")


class ResumeClock:
    """When to write a resume point: every ``opts.resume_every`` iterations or ``opts.resume_seconds``
    seconds, whichever comes first (both engines)."""

    def __init__(self, opts: TrainOptions, iteration: int):
        self.every, self.seconds = opts.resume_every, opts.resume_seconds
        self.last_it, self.last_time = iteration, time.time()

    def due(self, iteration: int) -> bool:
        return iteration - self.last_it >= self.every or time.time() - self.last_time >= self.seconds

    def reset(self, iteration: int) -> None:
        self.last_it, self.last_time = iteration, time.time()


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass

    def close(self) -> None:
        pass


def progress(opts: TrainOptions, total: int, initial: int, desc: str):
    """A progress bar on a terminal (tqdm), else one that shows nothing."""
    if not progress_enabled(opts):
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, leave=False, unit="it")
