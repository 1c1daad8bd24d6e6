"""Generated data for the theory experiments: Gaussian inputs labelled by a fixed teacher.

``gaussian``: inputs x ~ N(0, I_d) (d = ``data.dim``), so the data are centred with
||x||^2 about d, the setting of Hu et al. (2020). The label is the sign of a fixed
two-layer teacher, t(x) = sum_k a_k relu(w_k . x / sqrt(d)) with 8 hidden units
(w_k ~ N(0, I_d), a_k = +-1 alternately), thresholded at its median over the training
set, so the classes are balanced and the task is not linearly separable (a linear
model cannot reach 100%). Everything comes from one generator seeded by
``data.generator_seed``; 20,000 training and 2,000 test examples by default.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .. import rng
from ..spec import DataSpec
from .tensors import InMemoryData

TEACHER_WIDTH = 8


def gaussian(spec: DataSpec, root: Path) -> InMemoryData:
    n_train, n_test, d = spec.train_size or 20_000, spec.test_size or 2_000, spec.dim
    g = rng.generator(rng.SYNTHETIC, spec.generator_seed)
    w = torch.randn(TEACHER_WIDTH, d, generator=g, dtype=torch.float64)
    a = torch.tensor([(-1.0) ** k for k in range(TEACHER_WIDTH)], dtype=torch.float64)
    x = torch.randn(n_train + n_test, d, generator=g, dtype=torch.float64)
    t = torch.relu(x @ w.T / d ** 0.5) @ a
    y = (t > t[:n_train].median()).long()
    x = x.float()
    return InMemoryData("gaussian", x[:n_train], y[:n_train], x[n_train:], y[n_train:], num_classes=2)


def keep_classes(data: InMemoryData, classes: tuple[int, ...]) -> InMemoryData:
    """The examples of ``classes`` only, relabelled 0, 1, ... in the order given."""
    from ..spec import SpecError

    if getattr(data, "streaming", False):
        raise SpecError(f"data.classes: {data.name} is streamed from files; class selection needs a dataset in memory")
    bad = [c for c in classes if c >= data.num_classes]
    if bad:
        raise SpecError(f"data.classes: {data.name} has classes 0 to {data.num_classes - 1}, got {bad[0]}")
    lookup = torch.full((data.num_classes,), -1, dtype=torch.long)
    lookup[list(classes)] = torch.arange(len(classes))

    def part(x, y):
        keep = lookup[y] >= 0
        return x[keep], lookup[y[keep]]

    return InMemoryData(data.name, *part(data.x_train, data.y_train), *part(data.x_test, data.y_test),
                        num_classes=len(classes), pixels=data.pixels)
