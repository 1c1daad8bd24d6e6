"""Training on a subset of the training set, chosen at random or by a score set (data diets).

A score set (analysis/scores.py, ``rewind scores``) also leaves its mean scores in the data
root, ``<data root>/scores/<key>.csv`` (example, label, score): a dataset annotation that a data
spec names by key. Rankings: ``easiest`` keeps the lowest mean scores, ``hardest`` the highest,
``band`` the highest after skipping the ``subset_offset`` very hardest (the 2021 paper); ties are
broken by example index (lower first). ``subset_balance`` ranks within each class and keeps
size // classes per class (the first size % classes classes one more; a band skips
offset // classes of each class). The test set is whole.
The subset enters the spec's hash through the score set's key (a content address: the same key
always selects the same examples).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from .. import rng
from ..spec import DataSpec, SpecError

SUBSET_STREAM = 8  # rng purpose code of random subsets


def score_path(root: Path, key: str) -> Path:
    return Path(root) / "scores" / f"{key}.csv"


def load_scores(root: Path, key: str, labels: torch.Tensor) -> torch.Tensor:
    """Mean score per training example (float64, in example order) of score set ``key``."""
    import pandas as pd

    path = score_path(root, key)
    if not path.exists():
        raise SpecError(f"data.subset_score: no score set {key!r} in {path.parent} (rewind scores computes one and "
                        "prints its key)")
    df = pd.read_csv(path).sort_values("example")
    if len(df) != len(labels) or not torch.equal(torch.tensor(df["label"].to_numpy()), labels.cpu()):
        raise SpecError(f"data.subset_score: score set {key} was computed on other training data "
                        f"({len(df)} examples) than this spec's ({len(labels)})")
    return torch.tensor(df["score"].to_numpy(), dtype=torch.float64)


def size_of(spec: DataSpec, n: int) -> int:
    size = spec.subset_size or round(spec.subset_fraction * n)
    if size < 1 or size + spec.subset_offset > n:
        what = f"{spec.subset_size:,}" if spec.subset_size else f"{spec.subset_fraction} of {n:,} = {size:,}"
        raise SpecError(f"data.subset_size: {what} examples"
                        + (f" after skipping {spec.subset_offset:,}" if spec.subset_offset else "")
                        + f" do not fit in the {n:,} training examples")
    return size


def ranked(order_key: torch.Tensor, idx: torch.Tensor, take: int, skip: int = 0) -> torch.Tensor:
    """The ``take`` entries of ``idx`` with the lowest ``order_key`` after the ``skip`` lowest;
    ties by index (stable sort of index-ordered entries)."""
    order = torch.sort(order_key[idx], stable=True).indices
    return idx[order[skip:skip + take]]


def choose(scores: torch.Tensor | None, labels: torch.Tensor, spec: DataSpec, classes: int) -> torch.Tensor:
    """Sorted indices of the examples kept."""
    n = len(labels)
    size = size_of(spec, n)
    if spec.subset == "random":
        key = torch.rand(n, generator=rng.generator(SUBSET_STREAM, spec.subset_seed), dtype=torch.float64)
    else:  # rank so that the first entries are the ones kept
        key = scores if spec.subset == "easiest" else -scores
    skip = spec.subset_offset if spec.subset == "band" else 0
    if not spec.subset_balance:
        return ranked(key, torch.arange(n), size, skip).sort().values
    parts = []
    for c in range(classes):
        members = (labels == c).nonzero().flatten()
        take = size // classes + (1 if c < size % classes else 0)
        if take + skip // classes > len(members):
            raise SpecError(f"data.subset_size: class {c} has {len(members)} examples, fewer than the {take} a "
                            "balanced subset keeps of it")
        parts.append(ranked(key, members, take, skip // classes))
    return torch.cat(parts).sort().values


def select(data, spec: DataSpec, root: Path):
    """``data`` with its training set cut to the subset ``spec`` names (``indices``: the kept
    examples' indices in the full training set)."""
    if getattr(data, "streaming", False):
        raise SpecError(f"data.subset: {data.name} is streamed from files; subsets need a dataset in memory")
    scores = None if spec.subset == "random" else load_scores(root, spec.subset_score, data.y_train)
    idx = choose(scores, data.y_train, spec, data.num_classes)
    out = dataclasses.replace(data, x_train=data.x_train[idx], y_train=data.y_train[idx])
    out.indices = idx
    return out
