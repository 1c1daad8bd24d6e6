"""The vectorised engine: K members of a population as one computation.

All members' parameters live in one flat tensor in which each parameter is a
contiguous [K, *shape] view (:class:`Stack`); the optimizer update, masks and
weight decay are whole-tensor operations on it. Gradients come from the model's
``stacked_grad`` where it has one (ReLU networks of Linear layers: batched matmuls
and a hand-written backward pass, models/stacked.py; the small ReLU conv nets:
grouped channels-last convolutions, models/stacked_conv.py), and otherwise from
autograd through ``stacked_forward`` or ``torch.func.vmap`` over the module;
BatchNorm keeps per-member running statistics.

Members advance in lockstep on a shared iteration counter. A member whose
training starts later (a later rewind step) or whose resume point is ahead
waits until the counter reaches it; all members that step together are at
the same iteration, so they share the learning rate. Results equal sequential
training up to float rounding (batched kernels sum in another order): in
float64, after 200 steps, to ~1e-15 relative (tests assert 1e-10).
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import time

import torch

from .. import alloc, rng
from ..data import augment, iterations_per_epoch
from ..models import create_model
from ..store import RunDir, Store
from .member import Member, TrainOptions, autocast
from .optim import lr_at, zero_where_pruned
from .setup import (
    ResumeClock,
    check_mask,
    divergence,
    finish_run,
    prepare,
    progress,
    schedule_points,
)


class Stack:
    """Parameters, masks and buffers of K members.

    All parameters live in one flat tensor laid out parameter by parameter, each
    parameter's block holding all K members contiguously, so every parameter is a
    contiguous [K, *shape] view (what batched matmuls want) and the optimizer,
    weight decay and masks are single operations over the flat tensor.
    """

    def __init__(self, template, k: int, device):
        self.template = template
        self.k = k
        named = list(template.named_parameters())
        self.names = [n for n, _ in named]
        self.shapes = [tuple(p.shape) for _, p in named]
        self.numels = [p.numel() for _, p in named]
        self.size = sum(self.numels)
        self.flat = torch.cat([p.detach().reshape(1, -1).expand(k, -1).reshape(-1) for _, p in named])
        self.buffers = {n: torch.stack([b.detach().clone()] * k) for n, b in template.named_buffers()}
        self.mask: torch.Tensor | None = None   # flat bool, True where a weight is kept
        self.keep: torch.Tensor | None = None   # the same as 0/1 in the parameters' dtype, to multiply by
        self.remask = False   # whether an update can move a pruned weight (optim.zero_where_pruned)
        self.grad_buffer: torch.Tensor | None = None   # the hand-written backward's gradient (reused)
        # Convolutions (grouped over the members) run other kernels for one group than for two or
        # more, and round differently; with two or more, each member's bits are its own (measured:
        # the digits CNN and the 1-D CNN for K = 2-17 at 1 and 2 threads, ResNet-8 with BatchNorm
        # for K = 2-17 at a fixed thread count, at any place in the stack; tests/test_identity.py).
        # So a member never steps or is evaluated alone, nor where the model's arithmetic depends on
        # the stack's size (RewindModel.stack_size): copies of the first member fill the stack, their
        # results dropped (padded), and a member's result does not depend on its companions or their
        # number.

    def views(self, flat: torch.Tensor, k: int | None = None) -> dict[str, torch.Tensor]:
        k = self.k if k is None else k
        out, off = {}, 0
        for n, shape, numel in zip(self.names, self.shapes, self.numels):
            out[n] = flat[off:off + k * numel].view(k, *shape)
            off += k * numel
        return out

    @property
    def params(self) -> dict[str, torch.Tensor]:
        return self.views(self.flat)

    def first(self, flat: torch.Tensor, k: int, n: int) -> torch.Tensor:
        """The first ``n`` of the ``k`` members laid out in ``flat`` (itself when n == k)."""
        return flat if n == k else torch.cat([v[:n].reshape(-1) for v in self.views(flat, k).values()])

    def gather(self, flat: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
        return torch.cat([v.index_select(0, idx).reshape(-1) for v in self.views(flat).values()])

    def scatter(self, flat: torch.Tensor, idx: torch.Tensor, part: torch.Tensor) -> None:
        for full, sub in zip(self.views(flat).values(), self.views(part, len(idx)).values()):
            full.index_copy_(0, idx, sub)

    def set_member(self, i: int, state: dict[str, torch.Tensor]) -> None:
        with torch.no_grad():
            for n, t in (*self.params.items(), *self.buffers.items()):
                t[i] = state[n].to(t)

    def member_state(self, i: int) -> dict[str, torch.Tensor]:
        out = {n: t[i].clone() for n, t in (*self.params.items(), *self.buffers.items())}
        # state_dict order, so checkpoints of both engines are alike
        return {n: out[n] for n in self.template.state_dict()}


class StackedOptimizer:
    """SGD (momentum, Nesterov, weight decay) and Adam on the flat parameters, with the
    arithmetic of torch.optim's implementations and the same state names."""

    def __init__(self, train_spec, stack: Stack):
        self.spec = train_spec
        self.stack = stack
        self.steps = torch.zeros(stack.k, dtype=torch.float32)  # updates taken per member
        keys = (("momentum_buffer",) if train_spec.momentum else ()) if train_spec.optimizer == "sgd" \
            else ("exp_avg", "exp_avg_sq")
        self.state = {key: torch.zeros_like(stack.flat) for key in keys}

    @torch.no_grad()
    def step(self, p: torch.Tensor, g: torch.Tensor, state: dict[str, torch.Tensor], steps: torch.Tensor,
             lr: float) -> None:
        """Update flat parameters ``p`` of ``len(steps)`` members in place; ``g`` is ours to change."""
        s = self.spec
        if s.weight_decay:
            g.add_(p, alpha=s.weight_decay)
        if s.optimizer == "sgd":
            if s.momentum:
                buf = state["momentum_buffer"]
                buf.mul_(s.momentum).add_(g)
                g = g.add_(buf, alpha=s.momentum) if s.nesterov else buf
            p.add_(g, alpha=-lr)
            return
        b1, b2 = s.betas
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m.lerp_(g, 1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        steps = steps.to(p.device, p.dtype)
        step_size = lr / (1 - torch.pow(b1, steps))
        bc2_sqrt = (1 - torch.pow(b2, steps)).sqrt()
        k = len(steps)
        for pv, mv, vv in zip(*(self.stack.views(t, k).values() for t in (p, m, v))):
            shape = (-1,) + (1,) * (pv.dim() - 1)
            denom = (vv.sqrt() / bc2_sqrt.view(shape)).add_(1e-8)
            pv.sub_(mv / denom * step_size.view(shape))

    def member_tensors(self, i: int) -> dict[str, torch.Tensor]:
        if self.steps[i] == 0:
            return {}
        out = {}
        views = {key: self.stack.views(t) for key, t in self.state.items()}
        for idx, name in enumerate(self.stack.names):
            for key in self.state:
                out[f"optim/{idx}/{key}"] = views[key][name][i].clone()
            if self.spec.optimizer == "adam":
                out[f"optim/{idx}/step"] = self.steps[i].clone()
        return out

    def load_member(self, i: int, tensors: dict[str, torch.Tensor]) -> None:
        views = {key: self.stack.views(t) for key, t in self.state.items()}
        for idx, name in enumerate(self.stack.names):
            for key in self.state:
                if f"optim/{idx}/{key}" in tensors:
                    views[key][name][i] = tensors[f"optim/{idx}/{key}"].to(views[key][name])
            if f"optim/{idx}/step" in tensors:
                self.steps[i] = float(tensors[f"optim/{idx}/step"])
            elif any(k.startswith("optim/") for k in tensors):
                self.steps[i] = max(float(self.steps[i]), 1.0)


class Orders:
    """Every member's example order for the current epoch as one [K, n] tensor, so a tick's
    batches are one slice instead of K Python calls."""

    def __init__(self, seeds: list[int], n: int, batch_size: int, device, augment: str = "none",
                 augment_seeds: list[int] | None = None):
        self.seeds, self.n, self.bs, self.device = seeds, n, batch_size, device
        self.augment, self.augment_seeds = augment, augment_seeds or [0] * len(seeds)
        self.ipe = iterations_per_epoch(n, batch_size)
        self.epoch, self.perms = -1, None

    def batch(self, t: int, here: list[int], idx: torch.Tensor | None) -> torch.Tensor:
        epoch, pos = divmod(t, self.ipe)
        if epoch != self.epoch:
            self.perms = torch.stack([rng.epoch_permutation(self.n, s, epoch) for s in self.seeds]).to(self.device)
            self.epoch = epoch
        rows = self.perms if idx is None else self.perms.index_select(0, idx)
        return rows[:, pos * self.bs:(pos + 1) * self.bs]


def _forward(stack: Stack, params: dict, buffers: dict, x: torch.Tensor, shared: bool = False):
    fast = getattr(stack.template, "stacked_forward", None)
    if fast is not None:
        out = fast(params, x, shared=shared, buffers=buffers)
        if out is not None:
            return out
    from torch.func import functional_call, vmap

    fn = lambda p, b, xb: functional_call(stack.template, (p, b), (xb,))  # noqa: E731
    return vmap(fn, in_dims=(0, 0, None if shared else 0))(params, buffers, x)


# Examples per member in each stacked evaluation batch, and members evaluated at once. Both are
# fixed: a member's metrics must not depend on how many companions are evaluated with it.
EVAL_ROWS = 1024
EVAL_MEMBERS = 16


def padded(stack: Stack, members: list[int]) -> list[int]:
    """``members`` as the engine computes them, followed by copies of the first where the model's
    arithmetic would otherwise depend on the stack's size (``RewindModel.stack_size``: convolutions
    pick other kernels for one group than for two or more, so a lone conv net is computed beside a
    copy of itself; a ResNet whose channels do not fill BatchNorm's runs of 8). The copies' results
    are dropped."""
    return members + members[:1] * (stack.template.stack_size(len(members)) - len(members))


@torch.no_grad()
def evaluate_members(stack: Stack, members: list[int], x, y, inputs=lambda x: x) -> list[torch.Tensor]:
    """Per-example losses (float64) and predictions of ``members`` on (x, y), in eval mode: fixed
    batches of EVAL_ROWS examples, at most EVAL_MEMBERS members at a time, so that the result of
    each member is the same whatever it is evaluated with."""
    out_loss, out_pred = [], []
    stack.template.eval()
    try:
        for g in range(0, len(members), EVAL_MEMBERS):
            group = members[g:g + EVAL_MEMBERS]
            rows = padded(stack, group)
            idx = torch.tensor(rows, device=x.device)
            params = {n: p.index_select(0, idx) for n, p in stack.params.items()}
            buffers = {n: b.index_select(0, idx) for n, b in stack.buffers.items()}
            losses, preds = [], []
            for i in range(0, len(y), EVAL_ROWS):
                out = _forward(stack, params, buffers, inputs(x[i:i + EVAL_ROWS]), shared=True)[:len(group)]
                yy = y[i:i + EVAL_ROWS]
                k, b, _ = out.shape
                losses.append(cross_entropy(out, yy.expand(k, b)).double())
                preds.append(out.argmax(2))
            out_loss.extend(torch.cat(losses, 1).unbind(0))
            out_pred.extend(torch.cat(preds, 1).unbind(0))
    finally:
        stack.template.train()
    return [(loss, pred) for loss, pred in zip(out_loss, out_pred)]


def evaluate_like_vectorised(model, x, y) -> tuple[float, float, torch.Tensor]:
    """Mean loss, accuracy and per-example losses (float64) of one network, computed as the
    vectorised engine evaluates its members (so the path endpoints of a vectorised run are its
    metrics exactly: analysis/instability.py)."""
    stack = Stack(model, 1, x.device)
    stack.set_member(0, model.state_dict())
    [(loss, pred)] = evaluate_members(stack, [0], x, y)
    n = len(y)
    return loss.cumsum(0)[-1].item() / n, (pred == y).sum().item() / n, loss


def _evaluate(stack: Stack, members: list[int], x, y, inputs=lambda x: x) -> list[tuple[float, float]]:
    """Mean loss and accuracy of each member; the loss summed in index order (cumsum), as the
    sequential engine sums it: a parallel sum's order can change with the threads under load."""
    n = len(y)
    return [(loss.cumsum(0)[-1].item() / n, (pred == y).sum().item() / n)
            for loss, pred in evaluate_members(stack, members, x, y, inputs)]


def train_vectorised(members: list[Member], store: Store, opts: TrainOptions) -> list[RunDir]:
    members = [m if m.engine == "vectorised" else dataclasses.replace(m, engine="vectorised") for m in members]
    runs = [store.run(m.key) for m in members]
    todo: dict[str, int] = {}
    for i, r in enumerate(runs):
        if not r.done and r.key not in todo:
            todo[r.key] = i
    if not todo:
        return runs
    with contextlib.ExitStack() as locks:
        for key in sorted(todo):  # one lock order for every process: no deadlock
            locks.enter_context(runs[todo[key]].lock())
        chosen = [i for i in todo.values() if not runs[i].done]
        for i in chosen:
            runs[i].reset_if_damaged()
        # Stacks of more than ~16 small members spill out of the caches: beyond that, train
        # the population in chunks of near-equal size (a member's result does not depend on its
        # companions, nor on their number: see Stack and padded), so that no chunk is a small
        # remainder (per member, a stack of 2 ResNet-8s cost 1.3-1.6x one of 6-15, and a lone
        # member is computed beside a copy of itself: benchmarks/testbed_step.py)
        with alloc.roomy():  # a stack's tensors are MiBs a step: keep them on the heap (rewind/alloc.py)
            for part in even_chunks(chosen, opts.chunk):
                _train_locked([members[i] for i in part], [runs[i] for i in part], opts)
    return runs


def even_chunks(items: list, most: int) -> list[list]:
    """``items`` in the fewest consecutive chunks of at most ``most`` (>= 1), their sizes differing
    by at most one: 17 at most 16 is 8 + 9, not 16 + 1."""
    n = len(items)
    parts = -(-n // max(1, most))
    return [items[p * n // parts:(p + 1) * n // parts] for p in range(parts)]


def _stacked(members: list[Member], runs: list[RunDir], pr):
    """The members as one stack: their starting weights and masks, the optimizer (with the state a
    member hands on), and where each starts (its start, or its resume point with its rows so far).
    Returns (stack, optimizer, mask views, positions, rows)."""
    spec, device = members[0].spec, pr.device
    template = create_model(spec.model, pr.data.input_shape, pr.classes, seed=0).to(device, pr.dtype)
    template.train()
    stack = Stack(template, len(members), device)
    prunable = set(template.prunable())
    if any(m.mask is not None for m in members):
        stack.mask = torch.ones_like(stack.flat, dtype=torch.bool)
    mask_views = stack.views(stack.mask) if stack.mask is not None else {}
    for i, m in enumerate(members):
        if m.init is not None:
            state = dict(template.state_dict())
            state.update(m.init)
        else:
            state = create_model(m.spec.model, pr.data.input_shape, pr.classes, seed=m.spec.seeds.init).state_dict()
        stack.set_member(i, state)
        if m.mask is not None:
            check_mask(m.mask, prunable)
            for name, mask in m.mask.items():
                mask_views[name][i] = mask.to(device=device, dtype=torch.bool)
    if stack.mask is not None:
        # multiplying by a bool mask converts it on every call (7x slower than by 0/1 floats); same bits
        stack.keep = stack.mask.to(stack.flat.dtype)
        stack.flat.mul_(stack.keep)
    opt = StackedOptimizer(spec.train, stack)
    positions = [m.start for m in members]
    for i, m in enumerate(members):
        if m.optim is not None:
            opt.load_member(i, m.optim)
    rows: list[list[dict]] = [[] for _ in members]
    for i, run in enumerate(runs):
        resumed = run.load_resume()
        if resumed is not None:
            positions[i], tensors, rows[i] = resumed
            stack.set_member(i, {key[6:]: v for key, v in tensors.items() if key.startswith("model/")})
            opt.load_member(i, tensors)
    if stack.keep is not None:
        stack.remask = not zero_where_pruned(stack.keep, [stack.flat, *opt.state.values()])
    return stack, opt, mask_views, positions, rows


def _train_locked(members: list[Member], runs: list[RunDir], opts: TrainOptions) -> None:
    spec = members[0].spec
    pr = prepare(members, runs, opts)
    device, ipe, total, k = pr.device, pr.ipe, pr.total, len(members)
    stack, opt, mask_views, positions, rows = _stacked(members, runs, pr)
    points = [schedule_points(m.spec, ipe, m.start, total) for m in members]
    if not opts.evaluate:
        points = [(set(), ckpts) for _, ckpts in points]
    orders = Orders([m.spec.seeds.data_order for m in members], pr.n, pr.batch_size, device, spec.data.augment,
                    [m.spec.seeds.augment for m in members])

    def state_tensors(i: int) -> dict[str, torch.Tensor]:
        out = {f"model/{key}": v for key, v in stack.member_state(i).items()}
        if members[i].mask is not None:
            out.update({f"mask/{name}": mask_views[name][i].clone() for name in members[i].mask})
        out.update(opt.member_tensors(i))
        return out

    def finish(i: int, seconds: float, diverged=None) -> None:
        finish_run(runs[i], rows[i], total, members[i].start, seconds, device, engine=f"vectorised(K={k})",
                   diverged=diverged, opts=opts)

    started = time.time()
    clock, bar = ResumeClock(opts, min(positions)), progress(opts, total, min(positions), f"{members[0].kind} x{k}")
    t = min(positions)
    previous: tuple[list[int], torch.Tensor | None] = ([], None)
    while True:
        here = [i for i in range(k) if positions[i] == t]
        to_eval = [i for i in here if t in points[i][0]]
        for split in spec.train.eval_splits if to_eval else ():
            x, y = (pr.x_train, pr.y_train) if split == "train" else (pr.x_test, pr.y_test)
            for i, (loss, acc) in zip(to_eval, _evaluate(stack, to_eval, x, y, pr.batch_inputs)):
                rows[i] += [{"step": t, "split": split, "metric": "loss", "value": loss},
                            {"step": t, "split": split, "metric": "accuracy", "value": acc}]
        for i in here:
            if t in points[i][1]:
                runs[i].save_checkpoint(t, state_tensors(i))
        if t >= total:
            break
        if here:
            with autocast(spec, device):
                losses, finite = _step(stack, opt, here, t, lr_at(spec.train, t, ipe), orders, pr, device)
                if not finite:  # divergence is a result: those members stop, the others take this step again
                    bad = [here[j] for j in (~torch.isfinite(losses)).nonzero().flatten().tolist()]
                    for i in bad:
                        last = previous[1][previous[0].index(i)].item() if i in previous[0] else None
                        positions[i] = None
                        finish(i, round(time.time() - started, 3), divergence(t, last))
                    here = [i for i in here if i not in bad]
                    if here:
                        losses, _ = _step(stack, opt, here, t, lr_at(spec.train, t, ipe), orders, pr, device)
            previous = (here, losses)  # each member's loss of its last step, should the next one diverge
            for i in here:
                positions[i] = t + 1
                if opts.on_iteration is not None:
                    opts.on_iteration(runs[i], t + 1)
        t += 1
        bar.update(1)
        if t < total and clock.due(t):
            for i in here:
                runs[i].save_resume(t, state_tensors(i), rows[i])
            clock.reset(t)
    bar.close()
    for i in range(k):
        if positions[i] is not None:
            finish(i, round(time.time() - started, 3))


def cross_entropy(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Per-example cross-entropy of logits [..., C], from elementwise operations: on CPU,
    torch's fused kernel took 2x as long for 64 x 100 rows of 10 classes (torch 2.13)."""
    out = out.float() if out.dtype in (torch.bfloat16, torch.float16) else out
    top = out.detach().amax(-1, keepdim=True)
    return (out - top).exp().sum(-1).log() + top.squeeze(-1) - out.gather(-1, y.unsqueeze(-1)).squeeze(-1)


def _gradient(stack: Stack, flat: torch.Tensor, kk: int, buffers: dict, xb: torch.Tensor,
              yb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Flat gradient of sum over members of each member's mean loss on its batch, and those losses."""
    if stack.template.hand_differentiated and not torch.is_autocast_enabled(flat.device.type):
        # one buffer for the whole run rather than a fresh [K x parameters] tensor every step
        if stack.grad_buffer is None or stack.grad_buffer.numel() < flat.numel():
            stack.grad_buffer = torch.empty_like(flat if flat.numel() > stack.flat.numel() else stack.flat)
        grad = stack.grad_buffer[:flat.numel()]
        losses = stack.template.stacked_grad(stack.views(flat, kk), xb, yb, stack.views(grad, kk))
        return grad, losses
    leaves = [v.requires_grad_(True) for v in stack.views(flat, kk).values()]
    try:
        out = _forward(stack, dict(zip(stack.names, leaves)), buffers, xb)
        losses = cross_entropy(out, yb).mean(1)
        grads = torch.autograd.grad(losses.sum(), leaves)
        return torch.cat([g.reshape(-1) for g in grads]), losses.detach()
    finally:
        for v in leaves:
            v.requires_grad_(False)


def _step(stack: Stack, opt: StackedOptimizer, here: list[int], t: int, lr: float, orders: Orders,
          pr, device) -> tuple[torch.Tensor, bool]:
    """One optimizer step for the members ``here``; returns their losses on this step's batches and
    whether all are finite. A member whose loss is not finite makes the step a no-op for all: the
    caller drops it and steps again (a member's result does not depend on its companions)."""
    rows = padded(stack, here)   # e.g. a lone member is computed beside a copy of itself (dropped)
    everyone = rows == list(range(stack.k))
    idx = None if everyone else torch.tensor(rows, device=device)
    kk = len(rows)
    flat = stack.flat if everyone else stack.gather(stack.flat, idx)
    buffers = stack.buffers if everyone else {n: b.index_select(0, idx) for n, b in stack.buffers.items()}
    batches = orders.batch(t, rows, idx)
    x_train, y_train = pr.x_train, pr.y_train
    xb = pr.batch_inputs(x_train.index_select(0, batches.reshape(-1))).view(*batches.shape, *x_train.shape[1:])
    yb = y_train.index_select(0, batches.reshape(-1)).view(batches.shape)
    if orders.augment != "none":
        xb = torch.stack([augment.apply(orders.augment, xb[j], orders.augment_seeds[i], t) for j, i in enumerate(rows)])
    saved = {n: b.clone() for n, b in buffers.items()}  # BatchNorm statistics, restored if the step is void
    grad, losses = _gradient(stack, flat, kk, buffers, xb, yb)
    losses = losses[:len(here)]
    if not math.isfinite(losses.sum().item()):  # one sync; NaN and inf survive the sum
        for n, b in saved.items():
            buffers[n].copy_(b)
        return losses, False
    with torch.no_grad():
        mask = None if stack.keep is None else (stack.keep if everyone else stack.gather(stack.keep, idx))
        if mask is not None:
            grad.mul_(mask)
        state = opt.state if everyone else {key: stack.gather(v, idx) for key, v in opt.state.items()}
        if everyone:
            opt.steps += 1
            steps = opt.steps
        else:
            opt.steps[torch.tensor(here)] += 1  # the step counts live on the CPU
            steps = opt.steps[torch.tensor(rows)]
        opt.step(flat, grad, state, steps, lr)
        if mask is not None and stack.remask:
            flat.mul_(mask)
        if not everyone:
            real = idx[:len(here)]
            stack.scatter(stack.flat, real, stack.first(flat, kk, len(here)))
            for key, part in state.items():
                stack.scatter(opt.state[key], real, stack.first(part, kk, len(here)))
            for n, bt in buffers.items():
                stack.buffers[n].index_copy_(0, real, bt[:len(here)])
    return losses, True
