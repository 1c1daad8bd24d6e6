"""Per-example data scores ("Deep learning on a data diet", Paul et al. 2021), averaged over replicates.

- ``el2n``: ||softmax(f(x)) - onehot(y)||_2 of the network at step ``at``;
- ``grand``: ||grad_theta loss(f(x), y)||_2 over all parameters at step ``at`` (the authors score
  at initialisation, ``at = 0it``), in batches, with no Python loop over examples: for networks
  of Linear and Conv layers from one backward pass, each layer's per-example gradient being the
  product of its output gradient and its input; for other networks (BatchNorm, ...) per-example
  gradients from torch.func (vmap of grad over a functional call);
- ``forgetting``: forgetting events (Toneva et al. 2019) up to ``at``, counted on the whole
  training set evaluated after every epoch (a transition correct -> wrong between consecutive
  evaluations); examples never classified correctly get one more than the number of evaluations
  (they rank as the most forgettable, as in Toneva et al.).

All in evaluation mode on the un-augmented training set in its fixed order (the authors' code).
Replicate r is the spec's replicate r (every seed shifted by r); its weights at ``at`` come from
the run of the full spec when the store has it with a checkpoint there, and otherwise from a run
of the spec stopped at ``at`` (the learning rate does not depend on the length, so the weights are
the same). A score set is content-addressed: ``<store>/scores/<key>/scores.csv`` with columns
example, label, method, at, replicate, score (one row per example and replicate).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pandas as pd
import torch
from torch.nn import functional as F

from ..store.records import read_table
from ..data import load_data, require_in_memory
from ..data.core import data_root
from ..data.subsets import score_path
from ..models import create_model
from ..spec import MAX_REPLICATES, ProbeSpec, PruneSpec, Spec, SpecError, check_range, replicate_spec
from ..step import Step
from ..store import Store, atomic_write_text
from ..train import Member, TrainOptions, check_spec
from ..exec import train_population
from ..exec.population import with_engine
from ..train.member import dtype_of

METHODS = ("el2n", "grand", "forgetting")


@dataclasses.dataclass
class ScoreSet:
    """Scores of one method at one step over R replicates of a spec."""

    spec: Spec
    method: str
    at: Step
    replicates: int = 10
    preset: str | None = None
    store: Store = dataclasses.field(default_factory=Store)
    data_root: str | None = None

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise SpecError(f"--method: {self.method!r} is not allowed; choose one of: {', '.join(METHODS)}")
        check_range("--replicates", self.replicates, 1, MAX_REPLICATES)
        data, self.ipe, self.total = check_spec(self.spec, TrainOptions(data_root=self.data_root))
        require_in_memory(data, "scoring examples")
        self.at_it = self.at.iterations(self.ipe)
        if self.at_it > self.total:
            raise SpecError(f"--at: {self.at} ({self.at_it}it) is after the end of training ({self.spec.train.steps})")
        if self.method == "forgetting" and self.at_it < self.ipe:
            raise SpecError(f"--at: forgetting events are counted over epochs; {self.at} is less than one epoch "
                            f"({self.ipe}it)")
        if self.spec.pretrain.kind:
            raise SpecError("pretrain.kind: scores are computed for ordinary training; give a recipe without "
                            "pretraining")

    @property
    def key(self) -> str:
        doc = f"{self.spec.canonical_json()}|{self.method}|at={self.at_it}|replicates={self.replicates}"
        return hashlib.sha256(doc.encode()).hexdigest()[:16]

    @property
    def path(self) -> Path:
        return self.store.root / "scores" / self.key

    def _epochs(self) -> list[int]:
        return [e * self.ipe for e in range(1, self.at_it // self.ipe + 1)]

    def _points(self) -> list[int]:
        """The iterations whose weights the score needs."""
        return [0, *self._epochs()] if self.method == "forgetting" else [self.at_it]

    def stopped_spec(self, replicate: int) -> Spec:
        """Replicate r's spec stopped at ``at`` with checkpoints where the score needs them."""
        spec = replicate_spec(self.spec, replicate)
        points = tuple(Step(0, p) for p in self._points() if 0 < p < self.at_it)
        milestones = tuple(m for m in spec.train.milestones if m.iterations(self.ipe) < self.at_it)
        train = dataclasses.replace(spec.train, steps=Step(0, self.at_it), checkpoints=points, eval_at=(),
                                    milestones=milestones)
        return dataclasses.replace(spec, train=train, prune=PruneSpec(), probe=ProbeSpec())

    def weights(self, options: TrainOptions | None = None) -> list[dict[int, dict[str, torch.Tensor]]]:
        """For each replicate, {iteration: weights} at the points the score needs (training what the
        store lacks, as one population)."""
        opts = options or TrainOptions(quiet=True, data_root=self.data_root)
        data = load_data(self.spec.data, opts.data_root)
        out: list[dict | None] = [None] * self.replicates
        if self.at_it == 0:
            return [{0: create_model(self.spec.model, data.input_shape, data.num_classes,
                                     seed=replicate_spec(self.spec, r).seeds.init).state_dict()}
                    for r in range(self.replicates)]
        missing = []
        full_runs = with_engine([Member(replicate_spec(self.spec, r)) for r in range(self.replicates)], opts)
        for r in range(self.replicates):
            full = self.store.run(full_runs[r].key)   # the full run, trained by the engine opts choose
            if full.done and not full.diverged and set(self._points()) <= set(full.checkpoint_steps()):
                out[r] = {p: full.weights(p) for p in self._points()}
            else:
                missing.append(r)
        members = [Member(self.stopped_spec(r), kind="score-run", preset=self.preset, index=r) for r in missing]
        for r, run in zip(missing, train_population(members, self.store, opts)):
            if run.diverged:
                raise SpecError(f"replicate {r} diverged before {self.at} (run {run.key}); its scores do not exist")
            out[r] = {p: run.weights(p) for p in self._points()}
        return out

    def compute(self, options: TrainOptions | None = None) -> pd.DataFrame:
        """The score table (from the store if computed before). The mean scores also go to the data
        root, where a data spec's ``subset_score`` finds them (data/subsets.py)."""
        opts = options or TrainOptions(quiet=True, data_root=self.data_root)
        table = self.path / "scores.csv"
        df = read_table(table, f"score set {self.key}", ("example", "label", "method", "at", "replicate", "score")) \
            if table.exists() else self._compute(opts)
        annotation = score_path(data_root(opts.data_root or self.data_root), self.key)
        if not annotation.exists():
            annotation.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(annotation, mean_scores(df).to_csv(index=False))
        return df

    def _compute(self, opts: TrainOptions) -> pd.DataFrame:
        table = self.path / "scores.csv"
        data = load_data(self.spec.data, opts.data_root)
        dtype = dtype_of(self.spec)
        x, y = data.inputs("train", dtype), data.y_train
        frames = []
        for r, points in enumerate(self.weights(opts)):
            model = create_model(self.spec.model, data.input_shape, data.num_classes).to(dtype)
            if self.method == "forgetting":
                correct = []
                for p in self._points():
                    model.load_state_dict(points[p])
                    correct.append(predictions(model, x, opts.eval_batch) == y)
                score = forgetting_events(torch.stack(correct)).double()
            else:
                model.load_state_dict(points[self.at_it])
                fn = el2n if self.method == "el2n" else grand
                score = fn(model, x, y, data.num_classes)
            frames.append(pd.DataFrame({"example": range(len(y)), "label": y.numpy(), "method": self.method,
                                        "at": self.at_it, "replicate": r, "score": score.numpy()}))
        df = pd.concat(frames, ignore_index=True)
        self.path.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path / "meta.json", json.dumps(
            {"key": self.key, "spec": self.spec.to_dict(), "preset": self.preset, "method": self.method,
             "at": str(self.at), "at_iterations": self.at_it, "replicates": self.replicates}, indent=1) + "\n")
        atomic_write_text(table, df.to_csv(index=False))  # last: its presence means complete
        return df


def describe(table: pd.DataFrame) -> dict:
    """The scores averaged over replicates: their mean and 10/50/90% quantiles, and (with 2+
    replicates) the split-half reliability: the Spearman correlation between the means of the
    first and the second half of the replicates (``halves`` says which)."""
    mean = mean_scores(table)["score"]
    q = mean.quantile([0.1, 0.5, 0.9])
    out = {"examples": len(mean), "mean": float(mean.mean()), "q10": float(q[0.1]), "median": float(q[0.5]),
           "q90": float(q[0.9]), "split_half": None, "halves": None}
    replicates = sorted(table["replicate"].unique())
    if len(replicates) >= 2:
        wide = table.pivot(index="example", columns="replicate", values="score")
        half = len(replicates) // 2
        a, b = wide.iloc[:, :half].mean(axis=1), wide.iloc[:, half:].mean(axis=1)
        out["split_half"] = float(a.corr(b, method="spearman"))
        out["halves"] = (f"{replicates[0]}-{replicates[half - 1]}", f"{replicates[half]}-{replicates[-1]}")
    return out


def mean_scores(table: pd.DataFrame) -> pd.DataFrame:
    """One row per example: its label and the score averaged over replicates."""
    return table.groupby(["example", "label"], as_index=False)["score"].mean()


@torch.no_grad()
def predictions(model, x: torch.Tensor, batch: int = 4096) -> torch.Tensor:
    model.eval()
    return torch.cat([model(x[i:i + batch]).argmax(1) for i in range(0, len(x), batch)])


@torch.no_grad()
def el2n(model, x: torch.Tensor, y: torch.Tensor, classes: int, batch: int = 4096) -> torch.Tensor:
    """||softmax(f(x)) - onehot(y)||_2 per example (float64), in evaluation mode."""
    model.eval()
    out = []
    for i in range(0, len(y), batch):
        p = F.softmax(model(x[i:i + batch]).double(), dim=1)
        out.append((p - F.one_hot(y[i:i + batch], classes).double()).norm(dim=1))
    return torch.cat(out)


def _layer_norms_apply(model) -> bool:
    """Whether every parameter belongs to a Linear or an ungrouped Conv1d/Conv2d layer."""
    from torch import nn

    for mod in model.modules():
        own = list(mod.parameters(recurse=False))
        if not own:
            continue
        if isinstance(mod, nn.Linear):
            continue
        if isinstance(mod, (nn.Conv1d, nn.Conv2d)) and mod.groups == 1 and isinstance(mod.padding, tuple):
            continue
        return False
    return True


def _grand_by_layers(model, x: torch.Tensor, y: torch.Tensor, batch: int) -> torch.Tensor:
    """GraNd for networks of Linear and Conv layers without materialising per-example gradients of
    the whole network: each layer's per-example weight gradient is the product of its output
    gradient and its input (Linear: ||grad W||^2 = ||delta||^2 ||a||^2; Conv: delta times the
    unfolded input patches, one batched matmul), from one backward pass of the summed loss."""
    from torch import nn

    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d))]
    inputs, outputs = {}, {}

    def keep(mod, args, out):
        inputs[mod], outputs[mod] = args[0].detach(), out

    hooks = [m.register_forward_hook(keep) for m in layers]
    try:
        result = []
        for i in range(0, len(y), batch):
            xb, yb = x[i:i + batch], y[i:i + batch]
            loss = F.cross_entropy(model(xb), yb, reduction="sum")  # example j's gradient is its own
            grads = torch.autograd.grad(loss, [outputs[m] for m in layers])
            total = torch.zeros(len(yb), dtype=torch.float64, device=x.device)
            for m, delta in zip(layers, grads):
                a = inputs[m]
                if isinstance(m, nn.Linear):
                    total += (delta.double().pow(2).sum(1) * a.double().pow(2).sum(1))
                    if m.bias is not None:
                        total += delta.double().pow(2).sum(1)
                    continue
                if isinstance(m, nn.Conv1d):  # as a 2-D convolution of height 1
                    a, delta = a.unsqueeze(2), delta.unsqueeze(2)
                    k, pad, stride, dil = (1, *m.kernel_size), (0, *m.padding), (1, *m.stride), (1, *m.dilation)
                else:
                    k, pad, stride, dil = m.kernel_size, m.padding, m.stride, m.dilation
                patches = F.unfold(a, k, dilation=dil, padding=pad, stride=stride)    # [B, in*k, T]
                d = delta.flatten(2)                                                  # [B, out, T]
                g = torch.bmm(d, patches.transpose(1, 2))                             # [B, out, in*k]
                total += g.flatten(1).pow(2).sum(1).double()  # (vector_norm over two dims looped per example)
                if m.bias is not None:
                    total += d.sum(2).double().pow(2).sum(1)
            result.append(total.sqrt())
        return torch.cat(result)
    finally:
        for h in hooks:
            h.remove()


def grand(model, x: torch.Tensor, y: torch.Tensor, classes: int, batch: int = 256) -> torch.Tensor:
    """||grad of the example's cross-entropy w.r.t. every parameter||_2 per example (float64),
    in evaluation mode: layer by layer for networks of Linear and Conv layers, otherwise from
    vmap(grad) over a functional call of the model."""
    from torch.func import functional_call, grad, vmap

    model.eval()
    if _layer_norms_apply(model):
        return _grand_by_layers(model, x, y, batch)
    params = {n: p.detach() for n, p in model.named_parameters()}
    buffers = {n: b.detach() for n, b in model.named_buffers()}

    def loss(p, xi, yi):
        return F.cross_entropy(functional_call(model, (p, buffers), (xi.unsqueeze(0),)), yi.unsqueeze(0))

    per_example = vmap(grad(loss), in_dims=(None, 0, 0))
    out = []
    for i in range(0, len(y), batch):
        g = per_example(params, x[i:i + batch], y[i:i + batch])
        # float64 norms without a float64 copy of the per-example gradients (8x faster on CPU)
        out.append(sum(torch.linalg.vector_norm(v, dim=tuple(range(1, v.dim())), dtype=torch.float64) ** 2
                       for v in g.values()).sqrt())
    return torch.cat(out)


def forgetting_events(correct: torch.Tensor) -> torch.Tensor:
    """correct: [evaluations, examples] bool -> forgetting events per example (correct at one
    evaluation, wrong at the next); examples never correct get evaluations + 1."""
    events = (correct[:-1] & ~correct[1:]).sum(0)
    never = ~correct.any(0)
    return torch.where(never, torch.full_like(events, correct.shape[0] + 1), events)
