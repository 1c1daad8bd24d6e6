"""The network against Hu et al.'s (2020) linear model, trained side by side.

The task is binary (two classes, labels -1 / +1) and the network has one output. Inputs are
centred with the training mean and scaled to norm sqrt(d) per example (the paper's
assumption: centred data with ||x||^2 about d). The linear model is f_lin(x) = beta . psi(x),
psi(x) = [sqrt(alpha) x / sqrt(d); sqrt(b)], beta = 0 at the start, its kernel alpha X X^T / d
+ b 1 1^T the affine approximation of the network's NTK at initialisation (analysis/linear_model/ntk.py):
``closed-form`` (two_layer networks: the activation's constants) or ``fitted`` (least squares
to the empirical NTK on ``ntk_samples`` training inputs; any model).

The network's output at initialisation is handled explicitly: ``subtract`` trains and
compares f_t(x) - f_0(x) (the theory's kernel dynamics start from 0 in function space),
``symmetric`` trains (f_A(x) - f_B(x)) / sqrt(2) with B a copy of A at initialisation, so
the output is exactly 0 at step 0 and the NTK at initialisation is A's.

Both models see the same examples in the same order, the same loss (``squared``: (f - y)^2 / 2,
``cross-entropy``: the logistic loss log(1 + exp(-y f))) and the same learning rate:
``full_batch`` is plain gradient descent on the whole training set with a constant rate (the
theory's setting); otherwise both use the preset's optimizer, schedule and batches. Only the
parameters named by ``train`` (first layer, output layer, or all) are trained.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.nn import functional as F

from ... import alloc
from ...store.records import LINEAR_META, read_record, read_table
from ...data import batch_indices, iterations_per_epoch, load_data, require_in_memory
from ...models import create_model
from ...spec import Spec, SpecError
from ...store import atomic_write_text
from ...train.member import dtype_of
from ...train.optim import lr_at, make_optimizer
from . import ntk

MODELS_OF = ("fitted", "closed-form")
TRAINED = ("first", "second", "both")
LOSSES = ("squared", "cross-entropy")
OUTPUTS = ("subtract", "symmetric")


@dataclass(frozen=True)
class HuOptions:
    model_of: str = "fitted"
    train: str = "both"
    steps: int = 1000          # iterations
    lr: float = 0.0            # 0: the preset's learning rate
    full_batch: bool = True
    loss: str = "squared"
    output: str = "subtract"
    ntk_samples: int = 500     # inputs the NTK is measured and fitted on
    drift_samples: int = 100   # inputs the NTK's movement is measured on
    points: int = 40           # measured steps, log-spaced from 1 to steps
    threshold: float = 0.1     # discrepancy at which the models have parted

    def check(self) -> None:
        for name, value, allowed in (("--model-of", self.model_of, MODELS_OF), ("--train", self.train, TRAINED),
                                     ("--loss", self.loss, LOSSES), ("--output", self.output, OUTPUTS)):
            if value not in allowed:
                raise SpecError(f"{name}: {value!r} is not allowed; choose one of: {', '.join(allowed)}")
        for name, value in (("--steps", self.steps), ("--ntk-samples", self.ntk_samples),
                            ("--drift-samples", self.drift_samples), ("--points", self.points)):
            if not isinstance(value, int) or value < 1:
                raise SpecError(f"{name}: must be a positive integer, got {value!r}")
        if not (self.lr >= 0 and math.isfinite(self.lr)):
            raise SpecError(f"--lr: must be a positive number, got {self.lr!r}")
        if not 0 < self.threshold:
            raise SpecError(f"--threshold: must be positive, got {self.threshold!r}")


def sphere(x_train: torch.Tensor, x_test: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Centre with the training mean, then scale every example to norm sqrt(d)."""
    shape = x_train.shape[1:]
    mean = x_train.flatten(1).mean(0)

    def f(x):
        flat = x.flatten(1) - mean
        d = flat.shape[1]
        return (flat * (d ** 0.5 / flat.norm(dim=1, keepdim=True).clamp_min(1e-12))).view(-1, *shape)

    return f(x_train), f(x_test)


def binary_task(spec: Spec, data_root=None):
    """(x_train, y_train, x_test, y_test) with labels -1 / +1 and sphered inputs."""
    data = load_data(spec.data, data_root)
    require_in_memory(data, "the linear-model comparison")
    if data.num_classes != 2:
        raise SpecError(f"--classes: {spec.data.name} has {data.num_classes} classes; the comparison with Hu et al.'s "
                        "linear model is binary: give two classes, e.g. --classes 0,1 (sets data.classes)")
    dtype = dtype_of(spec)
    x_train, x_test = sphere(data.inputs("train", dtype), data.inputs("test", dtype))
    sign = lambda y: y.to(dtype) * 2 - 1
    return x_train, sign(data.y_train), x_test, sign(data.y_test)


class Antisymmetric(nn.Module):
    """(A(x) - B(x)) / sqrt(2) with B a copy of A: output 0 at initialisation, NTK equal to A's."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.a, self.b = model, copy.deepcopy(model)

    def forward(self, x):
        return (self.a(x) - self.b(x)) / math.sqrt(2)


class AffineKernelModel(nn.Module):
    """f_lin(x) = beta . [sqrt(alpha) x / sqrt(d); sqrt(b)], beta = 0 at the start."""

    def __init__(self, alpha: float, b: float, d: int, dtype):
        super().__init__()
        self.alpha, self.b, self.d = alpha, max(b, 0.0), d
        self.beta = nn.Parameter(torch.zeros(d + 1, dtype=dtype))

    def features(self, x):
        flat = x.flatten(1)
        const = torch.full((len(flat), 1), math.sqrt(self.b), dtype=flat.dtype)
        return torch.cat([flat * math.sqrt(self.alpha / self.d), const], dim=1)

    def forward(self, x):
        return (self.features(x) @ self.beta).unsqueeze(1)


def measured_steps(total: int, points: int) -> list[int]:
    return sorted({0, total} | {int(round(s)) for s in np.logspace(0, math.log10(max(total, 1)), points)})


def _loss(out, y, kind):
    return 0.5 * ((out - y) ** 2).mean() if kind == "squared" else F.softplus(-y * out).mean()


@torch.no_grad()
def _outputs(model, x, batch=4096):
    return torch.cat([model(x[i:i + batch]).squeeze(1) for i in range(0, len(x), batch)])


def _kernel(spec: Spec, options: HuOptions, base, x_train) -> tuple[list[str], dict]:
    """Measure the network's NTK at initialisation, fit the affine kernel, choose the linear
    model's (alpha, b): the names of the trained parameters and the fit's description."""
    names = ntk.layer_parameters(base, options.train)
    ntk_x = x_train[:options.ntk_samples]
    started = time.time()
    theta = ntk.empirical_ntk(base, ntk_x, names)
    ntk_seconds = time.time() - started
    fit = ntk.fit_affine(theta, ntk_x)
    info = {"fit": fit.as_dict(), "ntk_examples": len(ntk_x), "ntk_seconds": round(ntk_seconds, 3),
            "parameters_trained": int(sum(dict(base.named_parameters())[n].numel() for n in names))}
    if spec.model.name == "two_layer":
        a, b = ntk.closed_form(spec.model.activation, options.train, x_train)
        info["closed_form"] = {"alpha": a, "b": b, "error": ntk.affine_error(theta, ntk_x, a, b)}
    elif options.model_of == "closed-form":
        raise SpecError(f"--model-of: the closed form holds for the two_layer network; {spec.model.name} needs "
                        "--model-of fitted (the affine kernel fitted to its measured NTK)")
    alpha, b = (info["closed_form"]["alpha"], info["closed_form"]["b"]) if options.model_of == "closed-form" \
        else (fit.alpha, fit.b)
    info["used"] = {"alpha": alpha, "b": max(b, 0.0)}
    return names, info


def _measure(rows: list, t: int, net, lin, splits, loss: str) -> None:
    """Append step t's rows: each model's loss and error, their discrepancy and distance."""
    for split, x, y, off in splits:
        with torch.no_grad():
            f = _outputs(net, x) - (off if off is not None else 0)
            g = _outputs(lin, x)
        for name, out in (("network", f), ("linear", g)):
            rows.append((t, name, split, "loss", float(_loss(out, y, loss))))
            margin = out * y   # an output of exactly 0 counts as half an error
            rows.append((t, name, split, "error", float(((margin < 0).double() + 0.5 * (margin == 0)).mean())))
        gap, size = float((f - g).norm()), float(f.norm())
        # 0 at step 0 (both outputs 0); NaN once the network has diverged
        disc = gap / size if size > 0 else 0.0 if gap == 0 else float("nan")
        rows.append((t, "both", split, "discrepancy", disc if math.isfinite(disc) else float("nan")))
        rows.append((t, "both", split, "output_distance", gap / len(y) ** 0.5))
        rows.append((t, "network", split, "output_norm", size / len(y) ** 0.5))


def compare_hu(spec: Spec, options: HuOptions, data_root=None) -> tuple[pd.DataFrame, dict]:
    """Train the network and its linear model side by side; tidy rows (step, model, split,
    metric, value) at log-spaced steps, and a dict describing the kernel fit."""
    options.check()
    with alloc.heap_only():   # full-batch tensors of up to 64 MiB, every step (rewind/alloc.py)
        return _compare_hu(spec, options, data_root)


def _compare_hu(spec: Spec, options: HuOptions, data_root=None) -> tuple[pd.DataFrame, dict]:
    x_train, y_train, x_test, y_test = binary_task(spec, data_root)
    dtype = x_train.dtype
    base = create_model(spec.model, tuple(x_train.shape[1:]), 1, seed=spec.seeds.init).to(dtype)
    names, info = _kernel(spec, options, base, x_train)
    if options.output == "symmetric":
        net, trained = Antisymmetric(base), [f"{p}.{n}" for p in ("a", "b") for n in names]
        offset_train = offset_test = None
    else:
        net, trained = base, names
        offset_train, offset_test = _outputs(base, x_train), _outputs(base, x_test)
    for n, p in net.named_parameters():
        p.requires_grad_(n in trained)
    lin = AffineKernelModel(info["used"]["alpha"], info["used"]["b"], x_train[0].numel(), dtype)
    params = {"network": [p for p in net.parameters() if p.requires_grad], "linear": [lin.beta]}

    n, bs = len(y_train), spec.data.batch_size
    ipe = iterations_per_epoch(n, bs)
    train_spec = spec.train if not options.lr else spec.replace(**{"train.lr": options.lr}).train
    if options.full_batch:
        # plain gradient descent, whatever the spec's optimizer
        train_spec = replace(train_spec, optimizer="sgd", momentum=0.0, nesterov=False, weight_decay=0.0)
    opts = {k: make_optimizer(train_spec, v) for k, v in params.items()}
    splits = (("train", x_train, y_train, offset_train), ("test", x_test, y_test, offset_test))

    drift_x = x_train[:options.drift_samples]
    theta0 = ntk.empirical_ntk(net, drift_x, trained)
    at = measured_steps(options.steps, options.points)
    drift_at = set(at[::4]) | {at[-1]}
    rows = []
    for t in range(options.steps + 1):
        if t in at:
            _measure(rows, t, net, lin, splits, options.loss)
        if t in drift_at:
            theta_t = ntk.empirical_ntk(net, drift_x, trained)
            rows.append((t, "network", "train", "ntk_distance", float((theta_t - theta0).norm() / theta0.norm())))
        if t == options.steps:
            break
        idx = None if options.full_batch else batch_indices(t, n, bs, spec.seeds.data_order)
        xb, yb = (x_train, y_train) if idx is None else (x_train[idx], y_train[idx])
        if idx is not None:
            for opt in opts.values():
                for group in opt.param_groups:
                    group["lr"] = lr_at(train_spec, t, ipe)
        off = None if offset_train is None else offset_train if idx is None else offset_train[idx]
        for name, model in (("network", net), ("linear", lin)):
            out = model(xb).squeeze(1)
            loss = _loss(out if name == "linear" or off is None else out - off, yb, options.loss)
            opts[name].zero_grad(set_to_none=True)
            loss.backward()
            opts[name].step()
    df = pd.DataFrame(rows, columns=["step", "model", "split", "metric", "value"])
    info["departure"] = departure(df, options.threshold)
    return df, info


def departure(rows: pd.DataFrame, threshold: float = 0.1, interpolate: bool = False) -> dict[str, float | None]:
    """Per split, the departure time: the first measured step from which on the discrepancy
    stays above ``threshold``. None when it ends at or below the threshold (the models still
    agree at the end: departure later than the run), 0 when it is above at every measured
    step after 0 (the models never agreed to within the threshold).

    With ``interpolate``, the step at which the discrepancy crosses the threshold for the last
    time, interpolated linearly in log(step) between the last measured step at or below it and the
    next (the measured steps are log-spaced, so without it departures differing by less than one
    spacing, about 20% at 40 points over 2,000 it, are the same number)."""
    out = {}
    for split in ("train", "test"):
        r = rows[(rows.metric == "discrepancy") & (rows.split == split) & (rows.step > 0)].sort_values("step")
        below = r[r.value <= threshold]
        if below.empty:
            out[split] = 0
        elif below.step.iloc[-1] == r.step.iloc[-1]:
            out[split] = None
        else:
            s0, v0 = float(below.step.iloc[-1]), float(below.value.iloc[-1])
            after = r[r.step > s0].iloc[0]
            s1, v1 = float(after.step), float(after.value)
            if not interpolate:
                out[split] = int(s1)
            else:
                t = (threshold - v0) / (v1 - v0)   # v0 <= threshold < v1
                out[split] = float(np.exp(np.log(s0) + t * (np.log(s1) - np.log(s0))))
    return out


def summarise(rows: pd.DataFrame, meta: dict) -> dict:
    """One row of the departure table for one comparison."""
    disc = rows[(rows.metric == "discrepancy") & (rows.split == "train") & (rows.step > 0)].set_index("step").value
    err = rows[(rows.metric == "error") & (rows.split == "test")]
    last = rows.step.max()
    final = err[err.step == last].set_index("model").value
    drift = rows[rows.metric == "ntk_distance"].set_index("step").value
    dep = departure(rows, meta["options"]["threshold"])
    smooth = departure(rows, meta["options"]["threshold"], interpolate=True)
    return {"discrepancy_step1": float(disc.iloc[0]), "discrepancy_min": float(disc.min()),
            "discrepancy_min_step": int(disc.idxmin()), "discrepancy_end": float(disc.iloc[-1]),
            "departure_train": dep["train"], "departure_test": dep["test"],
            "departure_train_interpolated": smooth["train"], "steps": int(last),
            "test_error_network": float(final["network"]), "test_error_linear": float(final["linear"]),
            "ntk_drift_end": float(drift.iloc[-1]), "fit_alpha": meta["fit"]["alpha"], "fit_b": meta["fit"]["b"],
            "fit_c": meta["fit"]["c"], "fit_error": meta["fit"]["error"]}


def with_width(spec: Spec, width: int) -> Spec:
    """The spec with every hidden width (MLP) or channel count (CNN) set to ``width``."""
    if not spec.model.widths:
        raise SpecError(f"--widths: {spec.model.name} has no model.widths to sweep")
    return spec.replace(**{"model.widths": ",".join([str(width)] * len(spec.model.widths))})


def curve_table(rows: pd.DataFrame) -> pd.DataFrame:
    """Per measured step, over replicates: the discrepancy on train and test, both models' test
    errors and how far the NTK moved (columns discrepancy_train, discrepancy_test,
    network_test_error, linear_test_error, ntk_distance); the rows at 0, 1, about 3, 10, 30, ...
    and the last step (what `rewind linear` prints)."""
    v = rows.groupby(["split", "model", "metric", "step"])["value"].mean()
    steps = sorted(rows.step.unique())
    shown = [s for s in steps if s in (0, 1) or any(s <= t < s * 1.5 for t in (3, 10, 30, 100, 300, 1000, 3000, 10000))
             or s == steps[-1]]
    return pd.DataFrame([{"step": s, "discrepancy_train": v["train", "both", "discrepancy", s],
                          "discrepancy_test": v["test", "both", "discrepancy", s],
                          "network_test_error": v["test", "network", "error", s],
                          "linear_test_error": v["test", "linear", "error", s],
                          "ntk_distance": v.get(("train", "network", "ntk_distance", s))} for s in shown])


def linear_sweep(spec: Spec, options: HuOptions, widths, lrs, replicates: int, root, preset: str | None = None,
                 data_root=None, progress=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Departure table (one row per width, learning rate and replicate) and the curves behind it."""
    from ...spec import replicate_spec

    table, curves = [], []
    for width in widths:
        for lr in lrs:
            for r in range(replicates):
                s = replicate_spec(with_width(spec, width) if width else spec, r)
                o = HuOptions(**{**asdict(options), "lr": lr or options.lr})
                rows, meta = hu_comparison(s, o, root, preset, r, data_root)
                row = {"width": width or None, "lr": o.lr or s.train.lr, "replicate": r, **summarise(rows, meta)}
                table.append(row)
                curves.append(rows.assign(width=row["width"], lr=row["lr"], replicate=r))
                if progress:
                    progress(row)
    return pd.DataFrame(table), pd.concat(curves, ignore_index=True)


def hu_comparison(spec: Spec, options: HuOptions, root, preset: str | None = None, replicate: int = 0,
                  data_root=None) -> tuple[pd.DataFrame, dict]:
    """Cached under <root>/linear/<key>/ (rows.csv, meta.json); key: spec and options (a rate
    equal to the spec's own is keyed as the spec's: one record however it was asked for)."""
    options.check()
    if options.lr and options.lr == spec.train.lr:
        options = replace(options, lr=0.0)
    key = hashlib.sha256(json.dumps({"spec": spec.canonical_json(), "hu": asdict(options)},
                                    sort_keys=True).encode()).hexdigest()[:16]
    folder = Path(root) / "linear" / key
    rows_path, meta_path = folder / "rows.csv", folder / "meta.json"
    if not (rows_path.exists() and meta_path.exists()):
        started = time.time()
        rows, info = compare_hu(spec, options, data_root)
        folder.mkdir(parents=True, exist_ok=True)
        meta = {"spec": spec.to_dict(), "preset": preset, "replicate": replicate, "linear_model": options.model_of,
                "options": {**asdict(options), "lr": options.lr or spec.train.lr}, **info, "seconds": round(time.time() - started, 3)}
        atomic_write_text(rows_path, rows.to_csv(index=False))
        atomic_write_text(meta_path, json.dumps(meta, indent=1, sort_keys=True))
    meta = read_record(meta_path, LINEAR_META, f"linear-model record {key}")
    out = read_table(rows_path, f"linear-model record {key}", ("step", "split", "metric", "value"))
    out.insert(0, "run", key)
    return out, meta
