"""Instability analysis (Frankle et al. 2020, linear mode connectivity).

From one point W_k (dense, or W_k under a level's mask, or a branch of it),
N copies are trained to the end as one population; they differ only in their
data-order and augmentation seeds. For every pair (i, j) the network
W(a) = (1 - a) W_i + a W_j is evaluated at ``points`` evenly spaced a in [0, 1]
on the train and test sets. Instability is the largest error on the path minus
the mean of the two endpoints' errors. The per-example barrier (Paul et al.
2022) is each training example's loss at a = 0.5 minus the mean of its
endpoint losses.

Every interpolation is cached under ``<root>/instability/<key>/``, the key
hashing the two copies' run keys and the evaluation settings.
"""
from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from ..data import batch_indices, load_data
from ..models import create_model, place
from ..spec import MAX_COPIES, MAX_LEVELS, MAX_POINTS, MAX_REPLICATES, SpecError, check_range
from ..store import RunDir, atomic_write_text, notice
from ..store.records import read_table
from ..train import Member, TrainOptions
from ..exec import train_population
from ..train.evaluate import evaluate_batches, streamed_batches, tensor_batches
from ..train.member import dtype_of, resolve_device
from ..train.vectorised import evaluate_like_vectorised

if TYPE_CHECKING:  # imported where used: pandas is 0.27 s of `import rewind`, which every worker process pays
    import pandas as pd

COPY_SEED_STRIDE = 7919  # copy c trains with data_order/augment seeds shifted by (c + 1) * this


def copy_spec(spec, c: int):
    s = spec.seeds
    shift = (c + 1) * COPY_SEED_STRIDE
    return dataclasses.replace(spec, seeds=dataclasses.replace(s, data_order=s.data_order + shift,
                                                               augment=s.augment + shift))


def reset_batchnorm(model: nn.Module, inputs) -> None:
    """Re-estimate BatchNorm running statistics as a plain average over the batches in
    ``inputs`` (an iterable of input tensors). Only running_mean, running_var and
    num_batches_tracked change."""
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not norms:
        return
    momenta = [m.momentum for m in norms]
    was_training = model.training
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative moving average
    model.train()
    with torch.no_grad():
        for x in inputs:
            model(x)
    for m, mom in zip(norms, momenta):
        m.momentum = mom
    model.train(was_training)


def path_weights(wa: dict[str, torch.Tensor], wb: dict[str, torch.Tensor], mask: dict[str, torch.Tensor],
                 a: float) -> dict[str, torch.Tensor]:
    """W(a) = (1 - a) W_a + a W_b under the mask. The ends are W_a and W_b exactly, and a tensor
    equal in both is taken as it is (so identical copies give an exactly flat path)."""
    out = {}
    for k, x in wa.items():
        y = wb[k]
        if not x.is_floating_point() or a == 0.0 or torch.equal(x, y):
            w = x
        elif a == 1.0:
            w = y
        else:
            w = (1.0 - a) * x + a * y
        out[k] = w * mask[k] if k in mask else w
    return out


def interpolate_pair(run_a: RunDir, run_b: RunDir, *, points: int = 30, bn_reset: bool = False,
                     bn_batches: int = 20, data_root: str | None = None, eval_batch: int = 4096,
                     device: str = "cpu", data_workers: int | None = None
                     ) -> tuple[pd.DataFrame, pd.DataFrame, float]:
    """Loss and error along the straight line from run_a's to run_b's final weights.

    Returns (rows: alpha, split, metric, value), (per-example train losses at a=0, 0.5, 1 and the
    barrier), and the seconds it took. Evaluation uses the function training uses, on
    ``device``; for a streamed dataset (ImageNet) the train split is its fixed evaluation sample
    and ``example`` indexes that sample.
    """
    import pandas as pd

    from ..spec import Spec

    if points < 2:
        raise SpecError(f"--points must be at least 2, got {points}")
    started = time.time()
    spec = Spec.from_dict(run_a.spec_doc()["spec"])
    dev, dtype = resolve_device(device), dtype_of(spec)
    total_a, total_b = run_a.summary()["iterations"], run_b.summary()["iterations"]
    ta, tb = run_a.load(total_a), run_b.load(total_b)
    wa = {k[6:]: v.to(dev) for k, v in ta.items() if k.startswith("model/")}
    wb = {k[6:]: v.to(dev) for k, v in tb.items() if k.startswith("model/")}
    mask = {k[5:]: v.to(dev) for k, v in ta.items() if k.startswith("mask/")}
    data = load_data(spec.data, data_root)
    # evaluated as the copies were: by the vectorised engine's arithmetic for its runs, so that the
    # path's endpoints are the copies' own final metrics, bit for bit
    stacked = run_a.spec_doc().get("engine") == "vectorised"
    model = create_model(spec.model, data.input_shape, data.num_classes, seed=0).to(dev, dtype)
    model = model if stacked else place(model, dev, dtype)  # as trained
    opts = TrainOptions(eval_batch=eval_batch, data_workers=data_workers)
    bs, seed = spec.data.batch_size, spec.seeds.data_order
    if getattr(data, "streaming", False):
        from ..data import imagenet

        def batches(split):
            return streamed_batches(data, split, dev, dtype, opts)

        def bn_inputs():  # the first training batches of copy a, centre-cropped
            for t in range(bn_batches):
                x, _ = imagenet.load_train_batch(data, t, bs, seed, "none", 0)
                yield imagenet.normalise(x.to(dev), dtype)
    else:
        splits = {"train": (data.inputs("train").to(dev, dtype), data.y_train.to(dev)),
                  "test": (data.inputs("test").to(dev, dtype), data.y_test.to(dev))}

        def batches(split):
            return tensor_batches(*splits[split], eval_batch)

        def bn_inputs():  # the first training batches of copy a
            x = splits["train"][0]
            return (x[batch_indices(t, len(x), bs, seed).to(dev)] for t in range(bn_batches))
    alphas = [i / (points - 1) for i in range(points)]
    rows, per_example = [], {}

    for a in sorted(set(alphas) | {0.5}):
        model.load_state_dict(path_weights(wa, wb, mask, a))
        if bn_reset:
            reset_batchnorm(model, bn_inputs())
        for split in ("train", "test"):
            if stacked:
                loss, acc, ex = evaluate_like_vectorised(model, *splits[split])
            else:
                loss, acc, ex = evaluate_batches(model, batches(split))
            err = 1.0 - acc
            if a in alphas:
                rows.append({"alpha": a, "split": split, "metric": "loss", "value": loss})
                rows.append({"alpha": a, "split": split, "metric": "error", "value": err})
            if split == "train" and a in (0.0, 0.5, 1.0):
                per_example[a] = ex.cpu()
    ex = pd.DataFrame({"example": range(len(per_example[0.0])), "loss_a": per_example[0.0].numpy(),
                       "loss_mid": per_example[0.5].numpy(), "loss_b": per_example[1.0].numpy()})
    ex["barrier"] = ex["loss_mid"] - 0.5 * (ex["loss_a"] + ex["loss_b"])
    return pd.DataFrame(rows), ex, time.time() - started


def _summary(path: pd.DataFrame) -> list[dict]:
    out = []
    for split in ("train", "test"):
        err = path[(path.split == split) & (path.metric == "error")].sort_values("alpha")
        ends = 0.5 * (err.value.iloc[0] + err.value.iloc[-1])
        out.append({"alpha": None, "split": split, "metric": "instability", "value": err.value.max() - ends})
        loss = path[(path.split == split) & (path.metric == "loss")].sort_values("alpha")
        out.append({"alpha": None, "split": split, "metric": "loss_barrier",
                    "value": loss.value.max() - 0.5 * (loss.value.iloc[0] + loss.value.iloc[-1])})
    return out


def _analysis_dir(root: Path, key: str) -> Path:
    return root / "instability" / key


def load_per_example(root, key: str) -> pd.DataFrame:
    """The per-example barrier table of one interpolation (``analysis`` column of the results)."""
    return read_table(_analysis_dir(Path(root), key) / "per_example.csv", f"instability record {key}",
                      ("example", "loss_a", "loss_mid", "loss_b", "barrier"))


def instability(study, levels: list[int], at=None, *, copies: int = 2, points: int = 30, replicates: int | None = None,
                bn_reset: bool = False, bn_batches: int = 20, baselines: tuple[str, ...] = (),
                options: TrainOptions | None = None) -> pd.DataFrame:
    """Instability of every (replicate, rewind step k, level[, baseline]) of a lottery study.

    Returns the tidy rows (path points and summaries) of every pair, also written to the store.
    """
    import pandas as pd

    check_range("--copies", copies, 2, MAX_COPIES)
    check_range("--points (the two ends and the points between)", points, 2, MAX_POINTS)
    check_range("--bn-batches", bn_batches, 1, 10**6)
    if replicates is not None:
        check_range("--replicates", replicates, 1, MAX_REPLICATES)
    for level in levels:
        check_range("--levels", level, 0, MAX_LEVELS)
    opts = options or TrainOptions(quiet=True)
    points_list = list(study.start_points(levels, replicates, at, options=opts))
    for b in baselines:
        lv = [lv for lv in levels if lv >= 1]
        if lv:
            points_list += study.start_points(lv, replicates, at, branch=b, options=opts)
    members, owners = [], []
    for pt in points_list:
        for c in range(copies):
            members.append(Member(copy_spec(pt.spec, c), kind="copy", preset=study.preset, index=len(members),
                                  init=pt.weights, mask=pt.mask, start=pt.start, origin={**pt.labels, "copy": c}))
            owners.append(pt)
    groups: dict[tuple, list[int]] = {}
    for i, m in enumerate(members):
        s = m.spec
        groups.setdefault((s.data, s.model, s.train), []).append(i)
    runs: list[RunDir | None] = [None] * len(members)
    for idx in groups.values():
        for i, run in zip(idx, train_population([members[i] for i in idx], study.store, opts)):
            runs[i] = run
    frames = []
    for p_i, pt in enumerate(points_list):
        copy_runs = runs[p_i * copies:(p_i + 1) * copies]
        for (i, a), (j, b) in itertools.combinations(enumerate(copy_runs), 2):
            if a.diverged or b.diverged:
                frames.append(_diverged_pair(pt, f"{i}-{j}", bn_reset))
                continue
            frames.append(_pair(study, pt, f"{i}-{j}", a, b, points, bn_reset, bn_batches, opts))
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _diverged_pair(pt, pair: str, bn_reset: bool) -> pd.DataFrame:
    """A pair with a diverged copy has no path: NaN instability rows with status "diverged"."""
    import pandas as pd

    notice(f"instability: copy pair {pair} at level {pt.labels['level']}, rewind {pt.labels['rewind_step']}, "
           f"replicate {pt.labels['replicate']} has a diverged copy; no path is interpolated")
    out = pd.DataFrame([{"alpha": None, "split": split, "metric": metric, "value": float("nan")}
                        for split in ("train", "test") for metric in ("instability", "loss_barrier")])
    for k_, v in {**pt.labels, "pair": pair, "bn_reset": bn_reset}.items():
        out[k_] = v
    out["kind"], out["status"] = "instability", "diverged"
    return out


def _pair(study, pt, pair: str, a: RunDir, b: RunDir, points: int, bn_reset: bool, bn_batches: int,
          opts: TrainOptions) -> pd.DataFrame:
    import pandas as pd

    settings = {"a": a.key, "b": b.key, "points": points, "bn_reset": bn_reset,
                "bn_batches": bn_batches if bn_reset else 0}
    key = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    folder = _analysis_dir(study.store.root, key)
    rows_path = folder / "rows.csv"
    labels = {**pt.labels, "pair": pair, "bn_reset": bn_reset}
    if not rows_path.exists():
        path_rows, ex, seconds = interpolate_pair(a, b, points=points, bn_reset=bn_reset, bn_batches=bn_batches,
                                                  data_root=opts.data_root, eval_batch=opts.eval_batch,
                                                  device=opts.device, data_workers=opts.data_workers)
        path = pd.concat([path_rows, pd.DataFrame(_summary(path_rows))], ignore_index=True)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / "per_example.csv", ex.to_csv(index=False))
        atomic_write_text(folder / "settings.json", json.dumps({**settings, "seconds": round(seconds, 3)}, indent=1))
        atomic_write_text(rows_path, path.to_csv(index=False))  # last: its presence marks completion
    # the same values and types whether computed now or before
    path = read_table(rows_path, f"instability record {key}", ("alpha", "split", "metric", "value"))
    # labels live in the study record, so one interpolation can serve several studies
    study._update_record(instability={key: labels})
    out = path.copy()
    out.insert(0, "run", key)
    for k_, v in labels.items():
        out[k_] = v
    out["kind"] = "instability"
    return out
