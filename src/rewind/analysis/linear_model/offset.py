"""The network against a linear model in the early phase (after Hu et al. 2020).

The linear model used, and why. Hu et al. show that early in training a
two-layer network's outputs track those of a linear model whose feature
scaling depends on the activation; that derivation assumes a two-layer
network, plain gradient descent and a particular initialisation, none of which
hold for our deep networks trained with momentum and weight decay. We use the
simplest model that isolates "what a linear function of the inputs can learn
from the same training signal":

    g_t(x) = a_t f_0(x) + W_t z(x) + b_t,   z(x) = (x - mean) / std  (per input feature, train set)

with a_0 = 1, W_0 = 0 and b_0 = 0, so g starts exactly where the network starts
(||f_0 - g_0|| = 0). The learnable scale a lets the linear model shrink the
network's initial logits, which is most of what a freshly initialised network
does in its first steps; without it the comparison is dominated by that one
effect. g is linear in its parameters (a, W, b) over fixed features
(f_0(x), z(x), 1). Trained on the same batches in the same order with the
same optimizer, learning-rate schedule, momentum and weight decay as the
network (no rescaling of the step size). The comparison reports both models'
loss and error and the normalised distance between their outputs (logits),
||f_t(X) - g_t(X)||_F / sqrt(n), on the train and test sets.
"""
from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import pandas as pd
import torch
from torch.nn import functional as F

from ...store.records import read_table
from ...data import batch_indices, iterations_per_epoch, load_data, require_in_memory
from ...models import create_model
from ...spec import Spec, probe_steps
from ...store import atomic_write_text
from ...train.evaluate import evaluate_examples
from ...train.member import dtype_of
from ...train.optim import lr_at, make_optimizer


class OffsetLinear(torch.nn.Module):
    """g(x) = a * offset(x) + W z(x) + b; offset is the network at initialisation (frozen), a starts at 1."""

    def __init__(self, offset_model, mean, std, num_classes: int):
        super().__init__()
        self.offset = offset_model
        for p in self.offset.parameters():
            p.requires_grad_(False)
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)
        self.linear = torch.nn.Linear(mean.numel(), num_classes)
        self.scale = torch.nn.Parameter(torch.ones((), dtype=mean.dtype))
        with torch.no_grad():
            self.linear.weight.zero_()
            self.linear.bias.zero_()

    def forward(self, x):
        with torch.no_grad():
            base = self.offset(x)
        return self.scale * base + self.linear(((x - self.mean) / self.std).flatten(1))


@torch.no_grad()
def _outputs(model, x, batch=4096):
    model.eval()
    out = torch.cat([model(x[i:i + batch]) for i in range(0, len(x), batch)])
    model.train()
    return out


def compare(spec: Spec, until: int | None = None, schedule: str = "1it:100it,10it", data_root=None) -> pd.DataFrame:
    """Train the network and the linear model side by side; tidy rows
    (step, model, split, metric, value) at the schedule's steps up to ``until``."""
    data = load_data(spec.data, data_root)
    require_in_memory(data, "the linear-model comparison")
    dtype = dtype_of(spec)
    x_train, y_train = data.inputs("train", dtype), data.y_train
    x_test, y_test = data.inputs("test", dtype), data.y_test
    n, bs = len(y_train), spec.data.batch_size
    ipe = iterations_per_epoch(n, bs)
    total = spec.train.steps.iterations(ipe)
    until = total if until is None else min(until, total)
    at = set(probe_steps(schedule, ipe, 0, until))
    net = create_model(spec.model, data.input_shape, data.num_classes, seed=spec.seeds.init).to(dtype)
    frozen = create_model(spec.model, data.input_shape, data.num_classes, seed=spec.seeds.init).to(dtype)
    flat = x_train.flatten(1)
    mean, std = flat.mean(0), flat.std(0).clamp_min(1e-8)
    lin = OffsetLinear(frozen, mean.view(x_train.shape[1:]), std.view(x_train.shape[1:]), data.num_classes)
    models = {"network": net, "linear": lin}
    opts = {name: make_optimizer(spec.train, [p for p in m.parameters() if p.requires_grad]) for name, m in models.items()}
    rows = []
    for t in range(until + 1):
        if t in at:
            outs = {}
            for split, (x, y) in (("train", (x_train, y_train)), ("test", (x_test, y_test))):
                for name, m in models.items():
                    loss, acc, _ = evaluate_examples(m, x, y)
                    rows.append({"step": t, "model": name, "split": split, "metric": "loss", "value": loss})
                    rows.append({"step": t, "model": name, "split": split, "metric": "error", "value": 1.0 - acc})
                    outs[name] = _outputs(m, x)
                dist = (outs["network"] - outs["linear"]).norm().item() / len(y) ** 0.5
                scale = outs["network"].norm().item() / len(y) ** 0.5
                rows.append({"step": t, "model": "both", "split": split, "metric": "output_distance", "value": dist})
                rows.append({"step": t, "model": "network", "split": split, "metric": "output_norm", "value": scale})
        if t == until:
            break
        lr = lr_at(spec.train, t, ipe)
        idx = batch_indices(t, n, bs, spec.seeds.data_order)
        for name, m in models.items():
            opt = opts[name]
            for group in opt.param_groups:
                group["lr"] = lr
            loss = F.cross_entropy(m(x_train[idx]), y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return pd.DataFrame(rows)


def curve_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per step (0, 10, 50, 100, 200, 500, 1000, 2000, 4000 and the last), over replicates: both
    models' train and test errors and the output distance on train and test."""
    err = rows[rows.metric == "error"].groupby(["split", "model", "step"])["value"].mean()
    dist = rows[rows.metric == "output_distance"].groupby(["split", "step"])["value"].mean()
    steps = sorted(rows.step.unique())
    shown = [s for s in steps if s in (0, 10, 50, 100, 200, 500, 1000, 2000, 4000) or s == steps[-1]]
    return pd.DataFrame([{"step": s, "network_train_error": err["train", "network", s],
                          "linear_train_error": err["train", "linear", s], "network_test_error": err["test", "network", s],
                          "linear_test_error": err["test", "linear", s], "distance_train": dist["train", s],
                          "distance_test": dist["test", s]} for s in shown])


def parting(rows: pd.DataFrame, tolerance: float = 0.02) -> dict[str, int | None]:
    """First step at which the two models' errors differ by more than ``tolerance`` (per split)."""
    out = {}
    err = rows[rows.metric == "error"].pivot_table(index=["split", "step"], columns="model", values="value")
    for split in ("train", "test"):
        e = err.loc[split]
        gap = (e["network"] - e["linear"]).abs()
        over = gap[gap > tolerance]
        out[split] = int(over.index[0]) if not over.empty else None
    return out


def linear_comparison(spec: Spec, root, until: int | None = None, schedule: str = "1it:100it,10it",
                      preset: str | None = None, replicate: int = 0, data_root=None) -> pd.DataFrame:
    """Cached under <root>/linear/<key>/rows.csv (key: spec, until, schedule)."""
    key = hashlib.sha256(json.dumps({"spec": spec.canonical_json(), "until": until, "schedule": schedule},
                                    sort_keys=True).encode()).hexdigest()[:16]
    folder = Path(root) / "linear" / key
    rows_path = folder / "rows.csv"
    if not rows_path.exists():
        started = time.time()
        rows = compare(spec, until, schedule, data_root)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {"spec": spec.to_dict(), "preset": preset, "replicate": replicate, "until": until,
                "schedule": schedule, "seconds": round(time.time() - started, 3)}
        atomic_write_text(folder / "meta.json", json.dumps(meta, indent=1, sort_keys=True))
        atomic_write_text(rows_path, rows.to_csv(index=False))
    out = read_table(rows_path, f"linear-model record {key}", ("step", "split", "metric", "value"))
    out.insert(0, "run", key)
    return out
