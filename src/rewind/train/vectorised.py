"""The vectorised engine: K members of a population as one computation.

Parameters of all members live in one flat tensor [K, P] (each named parameter
is a view of it), so the backward pass yields one [K, P] gradient and the
optimizer update, the masks and the weight decay are a handful of whole-tensor
operations. The forward pass is the model's own ``stacked_forward`` where it
has one (batched matmuls for MLPs) and ``torch.func.vmap`` over the module
otherwise; BatchNorm keeps per-member running statistics.

Members advance in lockstep on a shared iteration counter. A member whose
training starts later (a later rewind step) or whose resume point is ahead
waits until the counter reaches it; all members that step together are at
the same iteration, so they share the learning rate. Results equal sequential
training up to float rounding (batched kernels sum in another order): after
200 steps the weights agree to about 1e-5 relative (tests assert 1e-4).
"""
from __future__ import annotations

import contextlib
import time

import torch
from torch.nn import functional as F

from ..data import batch_indices, iterations_per_epoch, load_data
from ..models import create_model
from ..store import RunDir, Store
from .loop import Member, TrainOptions, _finish, _progress_enabled, dtype_of, schedule_points
from .optim import lr_at


class Stack:
    """Flat parameters, buffers and optimizer state of K members."""

    def __init__(self, template, k: int, device):
        self.template = template
        self.k = k
        self.names, self.shapes, self.slices = [], [], []
        off = 0
        for name, p in template.named_parameters():
            self.names.append(name)
            self.shapes.append(tuple(p.shape))
            self.slices.append(slice(off, off + p.numel()))
            off += p.numel()
        self.size = off
        self.flat = torch.zeros(k, off, device=device, dtype=next(template.parameters()).dtype)
        self.buffers = {n: torch.stack([b.detach().clone()] * k) for n, b in template.named_buffers()}
        self.mask: torch.Tensor | None = None

    def views(self, flat: torch.Tensor) -> dict[str, torch.Tensor]:
        k = flat.shape[0]
        return {n: flat[:, sl].view(k, *shape) for n, sl, shape in zip(self.names, self.slices, self.shapes)}

    def set_member(self, i: int, state: dict[str, torch.Tensor]) -> None:
        for n, sl in zip(self.names, self.slices):
            self.flat[i, sl] = state[n].reshape(-1).to(self.flat)
        for n in self.buffers:
            self.buffers[n][i] = state[n].to(self.buffers[n])

    def member_state(self, i: int) -> dict[str, torch.Tensor]:
        out = {n: self.flat[i, sl].view(shape).clone() for n, sl, shape in zip(self.names, self.slices, self.shapes)}
        out.update({n: b[i].clone() for n, b in self.buffers.items()})
        # state_dict order, so checkpoints of both engines are alike
        return {n: out[n] for n in self.template.state_dict()}


class StackedOptimizer:
    """SGD (momentum, Nesterov, weight decay) and Adam on [K, P] tensors, with the same
    arithmetic as torch.optim's implementations and the same state names."""

    def __init__(self, train_spec, k: int, size: int, device, dtype):
        self.spec = train_spec
        self.steps = torch.zeros(k, dtype=torch.float32, device=device)  # updates taken per member
        zeros = lambda: torch.zeros(k, size, device=device, dtype=dtype)  # noqa: E731
        if train_spec.optimizer == "sgd":
            self.state = {"momentum_buffer": zeros()} if train_spec.momentum else {}
        else:
            self.state = {"exp_avg": zeros(), "exp_avg_sq": zeros()}

    @torch.no_grad()
    def step(self, p: torch.Tensor, g: torch.Tensor, state: dict[str, torch.Tensor], steps: torch.Tensor,
             lr: float) -> None:
        s = self.spec
        if s.weight_decay:
            g = g.add(p, alpha=s.weight_decay)
        if s.optimizer == "sgd":
            if s.momentum:
                buf = state["momentum_buffer"]
                buf.mul_(s.momentum).add_(g)
                g = g.add(buf, alpha=s.momentum) if s.nesterov else buf
            p.add_(g, alpha=-lr)
            return
        b1, b2 = s.betas
        m, v = state["exp_avg"], state["exp_avg_sq"]
        m.lerp_(g, 1 - b1)
        v.mul_(b2).addcmul_(g, g, value=1 - b2)
        steps = steps.to(p.dtype)
        bc1 = 1 - torch.pow(b1, steps).unsqueeze(1)
        bc2_sqrt = (1 - torch.pow(b2, steps)).sqrt().unsqueeze(1)
        denom = (v.sqrt() / bc2_sqrt).add_(1e-8)
        p.addcdiv_(m, denom * (bc1 / lr), value=-1.0)

    def member_tensors(self, stack: Stack, i: int) -> dict[str, torch.Tensor]:
        if self.steps[i] == 0:
            return {}
        out = {}
        for idx, (sl, shape) in enumerate(zip(stack.slices, stack.shapes)):
            for name, t in self.state.items():
                out[f"optim/{idx}/{name}"] = t[i, sl].view(shape).clone()
            if self.spec.optimizer == "adam":
                out[f"optim/{idx}/step"] = self.steps[i].clone()
        return out

    def load_member(self, stack: Stack, i: int, tensors: dict[str, torch.Tensor]) -> None:
        for idx, sl in enumerate(stack.slices):
            for name, t in self.state.items():
                key = f"optim/{idx}/{name}"
                if key in tensors:
                    t[i, sl] = tensors[key].reshape(-1).to(t)
            if f"optim/{idx}/step" in tensors:
                self.steps[i] = float(tensors[f"optim/{idx}/step"])
            elif any(k.startswith("optim/") for k in tensors):
                self.steps[i] = max(float(self.steps[i]), 1.0)


def _forward(stack: Stack, flat: torch.Tensor, buffers: dict, x: torch.Tensor, shared: bool = False):
    params = stack.views(flat)
    fast = getattr(stack.template, "stacked_forward", None)
    if fast is not None:
        out = fast(params, x, shared=shared)
        if out is not None:
            return out
    from torch.func import functional_call, vmap

    fn = lambda p, b, xb: functional_call(stack.template, (p, b), (xb,))  # noqa: E731
    return vmap(fn, in_dims=(0, 0, None if shared else 0))(params, buffers, x)


@torch.no_grad()
def _evaluate(stack: Stack, members: list[int], x, y, batch: int) -> list[tuple[float, float]]:
    idx = torch.tensor(members, device=stack.flat.device)
    flat = stack.flat[idx]
    buffers = {n: b[idx] for n, b in stack.buffers.items()}
    stack.template.eval()
    loss_sum = torch.zeros(len(members), dtype=torch.float64, device=flat.device)
    correct = torch.zeros(len(members), dtype=torch.int64, device=flat.device)
    chunk = max(1, batch // max(1, len(members)) * 4)
    for i in range(0, len(y), chunk):
        out = _forward(stack, flat, buffers, x[i:i + chunk], shared=True)
        yy = y[i:i + chunk]
        k, b, c = out.shape
        loss_sum += F.cross_entropy(out.reshape(k * b, c), yy.repeat(k), reduction="none").view(k, b).sum(1).double()
        correct += (out.argmax(2) == yy.unsqueeze(0)).sum(1)
    stack.template.train()
    n = len(y)
    return [(loss_sum[j].item() / n, correct[j].item() / n) for j in range(len(members))]


def train_vectorised(members: list[Member], store: Store, opts: TrainOptions) -> list[RunDir]:
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
        if chosen:
            _train_locked([members[i] for i in chosen], [runs[i] for i in chosen], opts)
    return runs


def _train_locked(members: list[Member], runs: list[RunDir], opts: TrainOptions) -> None:
    spec = members[0].spec
    for m, run in zip(members, runs):
        run.write_spec(m.spec_doc(), {"kind": m.kind, "preset": m.preset, "member": m.index, **m.origin})
    data = load_data(spec.data, opts.data_root)
    device, dtype = torch.device(opts.device), dtype_of(spec)
    x_train, y_train = data.x_train.to(device, dtype), data.y_train.to(device)
    x_test, y_test = data.x_test.to(device, dtype), data.y_test.to(device)
    n, bs = len(y_train), spec.data.batch_size
    ipe = iterations_per_epoch(n, bs)
    total = spec.train.steps.iterations(ipe)
    k = len(members)
    template = create_model(spec.model, data.input_shape, data.num_classes, seed=0).to(device, dtype)
    template.train()
    stack = Stack(template, k, device)
    prunable = set(template.prunable())
    if any(m.mask is not None for m in members):
        stack.mask = torch.ones(k, stack.size, dtype=torch.bool, device=device)
    for i, m in enumerate(members):
        if m.start > total:
            raise ValueError(f"member starts at {m.start}it, after the end of training ({total}it)")
        if m.init is not None:
            state = dict(template.state_dict())
            state.update(m.init)
        else:
            state = create_model(m.spec.model, data.input_shape, data.num_classes, seed=m.spec.seeds.init).state_dict()
        stack.set_member(i, state)
        if m.mask is not None:
            unknown = set(m.mask) - prunable
            if unknown:
                raise ValueError(f"mask names tensors that are not prunable: {sorted(unknown)}")
            for name, sl in zip(stack.names, stack.slices):
                if name in m.mask:
                    stack.mask[i, sl] = m.mask[name].reshape(-1).to(device=device, dtype=torch.bool)
    if stack.mask is not None:
        stack.flat.mul_(stack.mask)
    opt = StackedOptimizer(spec.train, k, stack.size, device, dtype)

    positions = [m.start for m in members]
    rows: list[list[dict]] = [[] for _ in members]
    for i, run in enumerate(runs):
        resumed = run.load_resume()
        if resumed is not None:
            positions[i], tensors, rows[i] = resumed
            stack.set_member(i, {key[6:]: v for key, v in tensors.items() if key.startswith("model/")})
            opt.load_member(stack, i, tensors)
    points = [schedule_points(m.spec, ipe, m.start, total) for m in members]
    seeds = [m.spec.seeds.data_order for m in members]

    def state_tensors(i: int) -> dict[str, torch.Tensor]:
        out = {f"model/{key}": v for key, v in stack.member_state(i).items()}
        if members[i].mask is not None:
            out.update({f"mask/{name}": stack.mask[i, sl].view(shape).clone()
                        for name, sl, shape in zip(stack.names, stack.slices, stack.shapes) if name in members[i].mask})
        out.update(opt.member_tensors(stack, i))
        return out

    started = time.time()
    last_resume_time, last_resume_it = time.time(), min(positions)
    bar = None
    if _progress_enabled(opts):
        from tqdm import tqdm

        bar = tqdm(total=total, initial=min(positions), desc=f"{members[0].kind} x{k}", leave=False, unit="it")
    t = min(positions)
    while True:
        here = [i for i in range(k) if positions[i] == t]
        to_eval = [i for i in here if t in points[i][0]]
        if to_eval:
            for split, (x, y) in (("train", (x_train, y_train)), ("test", (x_test, y_test))):
                for i, (loss, acc) in zip(to_eval, _evaluate(stack, to_eval, x, y, opts.eval_batch)):
                    rows[i].append({"step": t, "split": split, "metric": "loss", "value": loss})
                    rows[i].append({"step": t, "split": split, "metric": "accuracy", "value": acc})
        for i in here:
            if t in points[i][1]:
                runs[i].save_checkpoint(t, state_tensors(i))
        if t >= total:
            break
        if here:
            _step(stack, opt, here, t, lr_at(spec.train, t, ipe), seeds, x_train, y_train, n, bs, device)
            for i in here:
                positions[i] = t + 1
                if opts.on_iteration is not None:
                    opts.on_iteration(runs[i], t + 1)
        t += 1
        if bar is not None:
            bar.update(1)
        if t < total and (t - last_resume_it >= opts.resume_every or time.time() - last_resume_time >= opts.resume_seconds):
            for i in here:
                runs[i].save_resume(t, state_tensors(i), rows[i])
            last_resume_time, last_resume_it = time.time(), t
    if bar is not None:
        bar.close()
    seconds = round(time.time() - started, 3)
    for i, m in enumerate(members):
        _finish(runs[i], rows[i], total, m.start, seconds, device, engine=f"vectorised(K={k})")


def _step(stack: Stack, opt: StackedOptimizer, here: list[int], t: int, lr: float, seeds: list[int],
          x_train, y_train, n: int, bs: int, device) -> None:
    everyone = len(here) == stack.k
    idx = None if everyone else torch.tensor(here, device=device)
    flat = stack.flat if everyone else stack.flat[idx]
    flat = flat.detach().requires_grad_(True) if not everyone else flat.requires_grad_(True)
    buffers = stack.buffers if everyone else {n_: b[idx] for n_, b in stack.buffers.items()}
    batches = torch.stack([batch_indices(t, n, bs, seeds[i]) for i in here]).to(device)
    out = _forward(stack, flat, buffers, x_train[batches])
    kk, b, c = out.shape
    loss = F.cross_entropy(out.reshape(kk * b, c), y_train[batches].reshape(-1), reduction="none").view(kk, b).mean(1).sum()
    grad = torch.autograd.grad(loss, flat)[0]
    flat.requires_grad_(False)
    with torch.no_grad():
        mask = None if stack.mask is None else (stack.mask if everyone else stack.mask[idx])
        if mask is not None:
            grad.mul_(mask)
        state = opt.state if everyone else {k_: v[idx] for k_, v in opt.state.items()}
        if everyone:
            opt.steps += 1
            steps = opt.steps
        else:
            opt.steps[idx] += 1
            steps = opt.steps[idx]
        opt.step(flat, grad, state, steps, lr)
        if mask is not None:
            flat.mul_(mask)
        if not everyone:
            stack.flat[idx] = flat
            for k_, v in state.items():
                opt.state[k_][idx] = v
            for n_, bt in buffers.items():
                stack.buffers[n_][idx] = bt
