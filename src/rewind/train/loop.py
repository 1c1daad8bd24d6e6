"""The sequential engine: one member after another, each to its own run directory.

Every random choice is a pure function of the member's seeds and the iteration, so a run resumed
from any resume point ends bit-identical (CPU) to an uninterrupted one. The set-up both engines
share is in setup.py, evaluation in evaluate.py, what layers above attach in hooks.py; what is
left here is the loop, which reads top to bottom.
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from dataclasses import dataclass

import torch

from ..models import create_model, place
from ..store import RunDir, Store
from .ddp import SINGLE, Single, data_parallel
from .evaluate import evaluate_split
from .hooks import loop_hooks
from .member import Member, TrainOptions, autocast, engine_name
from .optim import load_optimizer_tensors, lr_at, make_optimizer, optimizer_tensors, zero_where_pruned
from .setup import (ResumeClock, check_mask, divergence, finish_run, prepare, progress, schedule_points,
                    training_batches)


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


def _train_locked(member: Member, run: RunDir, opts: TrainOptions, dp: Single = SINGLE) -> None:
    spec = member.spec
    pr = prepare([member], [run], opts, write=dp.writes)
    net = _network(member, run, pr)
    model, opt, iteration, rows = net.model, net.opt, net.iteration, net.rows
    evals, ckpts = schedule_points(spec, pr.ipe, member.start, pr.total)
    evals = evals if opts.evaluate else set()
    hooks = loop_hooks(member, run, model, pr.ipe, pr.total, iteration, net.resumed) if dp.writes else []
    for h in hooks:
        evals |= h.evaluations
    params = dict(model.named_parameters())
    # the mask after each step changes nothing while the pruned weights and their optimizer state are
    # zero (optim.zero_where_pruned) and no hook sees the gradients in between
    remask = bool(net.masked) and (bool(hooks) or not all(
        zero_where_pruned(m, [p, *opt.state.get(p, {}).values()]) for p, m in net.masked))
    forward = dp.wrap(model)
    forward = torch.compile(forward) if opts.compile else forward
    batches = training_batches(pr, spec, iteration, opts, dp.part)
    clock, bar = ResumeClock(opts, iteration), progress(opts, pr.total, iteration, f"{member.kind} {run.key[:8]}")
    diverged, last_loss, started = None, None, time.time()
    model.train()
    while True:
        if iteration in evals:
            for split in spec.train.eval_splits:
                loss, acc = evaluate_split(model, pr, split, opts, dp)
                rows += [{"step": iteration, "split": split, "metric": "loss", "value": loss},
                         {"step": iteration, "split": split, "metric": "accuracy", "value": acc}]
        if iteration in ckpts and dp.writes:
            run.save_checkpoint(iteration, _state_tensors(model, opt, net.mask))
        for h in hooks:
            h.at(iteration, params)
        if iteration >= pr.total:
            break
        for group in opt.param_groups:
            group["lr"] = lr_at(spec.train, iteration, pr.ipe)
        xb, yb, n = next(batches)
        with autocast(spec, pr.device):
            loss = dp.loss(forward(xb), yb, n)
        value = dp.value(loss)
        if not math.isfinite(value):  # divergence is a result: the member stops here
            diverged = divergence(iteration, last_loss)
            break
        last_loss = value
        opt.zero_grad(set_to_none=True)
        loss.backward()
        _apply_mask(net.masked, to_gradients=True)
        for h in hooks:
            h.gradients(iteration, params)
        opt.step()
        if remask:  # a loaded optimizer state can move a pruned weight; the mask wins after every step
            _apply_mask(net.masked)
        iteration += 1
        bar.update(1)
        if opts.on_iteration is not None:
            opts.on_iteration(run, iteration)
        if dp.writes and iteration < pr.total and clock.due(iteration) and all(h.may_resume_at(iteration)
                                                                                for h in hooks):
            state = _state_tensors(model, opt, net.mask)
            for h in hooks:
                state.update(h.state())
            run.save_resume(iteration, state, rows)
            clock.reset(iteration)
    bar.close()
    for h in hooks:
        h.finish(diverged is not None)
    if dp.writes:
        finish_run(run, rows, pr.total, member.start, round(time.time() - started, 3), pr.device,
                   engine="sequential+compile" if opts.compile else "sequential", diverged=diverged, opts=opts,
                   extra=dp.record())


@dataclass
class _Network:
    """One member ready to train: its model on the device, its mask, its optimizer, and where it
    starts (its start, or its resume point with the rows recorded so far)."""

    model: torch.nn.Module
    mask: dict | None      # name -> bool, as checkpoints store it
    masked: list           # (parameter, its mask as 0/1 in the parameter's dtype and layout)
    opt: object
    iteration: int
    rows: list
    resumed: dict | None   # the resume point's tensors (hooks read theirs back)


def _network(member: Member, run: RunDir, pr) -> _Network:
    spec = member.spec
    model = place(create_model(spec.model, pr.data.input_shape, pr.classes, seed=spec.seeds.init), pr.device, pr.dtype)
    check_mask(member.mask, model.prunable())
    mask = {k: v.to(device=pr.device, dtype=torch.bool) for k, v in member.mask.items()} if member.mask else None
    if member.init is not None:
        model.load_state_dict({k: v.to(pr.device) for k, v in member.init.items()})
    params = dict(model.named_parameters())
    # masks as 0/1 in each parameter's dtype and layout: multiplying by a bool mask converts it on
    # every call (LeNet-300-100's first layer: 101 against 15 us); the same bits, signs of zero included
    masked = [(params[k], torch.empty_like(params[k]).copy_(m)) for k, m in mask.items()] if mask else []
    _apply_mask(masked)
    opt = make_optimizer(spec.train, model.parameters())
    if member.optim is not None:
        load_optimizer_tensors(opt, {k: v.to(pr.device) for k, v in member.optim.items()})
    iteration, rows, tensors = member.start, [], None
    resumed = run.load_resume()
    if resumed is not None:
        iteration, tensors, rows = resumed
        model.load_state_dict({k[6:]: v.to(pr.device) for k, v in tensors.items() if k.startswith("model/")})
        load_optimizer_tensors(opt, {k: v.to(pr.device) for k, v in tensors.items()})
    return _Network(model, mask, masked, opt, iteration, rows, tensors)


def _apply_mask(masked: list, to_gradients: bool = False) -> None:
    with torch.no_grad():
        for p, m in masked:
            (p.grad if to_gradients else p).mul_(m)


def _state_tensors(model, opt, mask) -> dict[str, torch.Tensor]:
    out = {f"model/{k}": v for k, v in model.state_dict().items()}
    if mask is not None:
        out.update({f"mask/{k}": v for k, v in mask.items()})
    out.update(optimizer_tensors(opt))
    return out
