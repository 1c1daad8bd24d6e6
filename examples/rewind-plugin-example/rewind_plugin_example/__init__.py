"""An example rewind plugin: everything a researcher may bring, each one registration."""
from __future__ import annotations

import numpy as np
import torch
from torch import nn

import rewind
from rewind import (BranchInput, BranchOutput, Measurement, RewindModel, ScoreInput, Test, register_branch,
                    register_claim, register_command, register_criterion, register_dataset, register_model)


class BottleneckMLP(RewindModel):
    """ReLU layers of widths w, w/4, w: a narrow middle (its prunable tensors are the three linear
    weights and the classifier's; biases are never pruned)."""

    def __init__(self, inputs: int, width: int, classes: int):
        super().__init__()
        self.hidden = nn.Sequential(nn.Linear(inputs, width), nn.ReLU(), nn.Linear(width, max(1, width // 4)), nn.ReLU(),
                                    nn.Linear(max(1, width // 4), width), nn.ReLU())
        self.out = nn.Linear(width, classes)   # the classifier is named "out": output_fraction applies to it

    def forward(self, x):
        return self.out(self.hidden(x.flatten(1)))


@register_model("bottleneck_mlp")
def bottleneck_mlp(spec, input_shape, num_classes):
    """An MLP with a bottleneck: widths w, w/4, w (w = model.widths[0])."""
    return BottleneckMLP(int(np.prod(input_shape)), spec.widths[0], num_classes)


def make_blobs(seed: int = 0, train: int = 600, test: int = 200, features: int = 16, classes: int = 4):
    """Gaussian blobs: one centre per class, unit noise."""
    g = np.random.default_rng(seed)
    centres = g.normal(scale=1.5, size=(classes, features))
    y = g.integers(0, classes, train + test)
    x = (centres[y] + g.normal(size=(train + test, features))).astype(np.float32)
    return x[:train], y[:train], x[train:], y[train:]


@register_dataset("blobs")
def blobs(spec, root):
    """Four Gaussian blobs in 16 dimensions, 600/200 examples (seed: data.generator_seed)."""
    x_train, y_train, x_test, y_test = make_blobs(spec.generator_seed)
    return torch.from_numpy(x_train), torch.from_numpy(y_train), torch.from_numpy(x_test), torch.from_numpy(y_test)


@register_criterion("normalised_magnitude")
def normalised_magnitude(inp: ScoreInput) -> dict:
    """|w| over the RMS of the layer's kept weights: global ranking without the layers' scales."""
    out = {}
    for name, mask in inp.mask.items():
        w = inp.weights[name].abs()
        kept = w[mask]
        rms = kept.pow(2).mean().sqrt() if kept.numel() else torch.tensor(1.0)
        out[name] = w / rms.clamp_min(1e-12)
    return out


@register_branch("scale")
def scale(inp: BranchInput, factor: float = 0.5) -> BranchOutput:
    """W_k with its prunable weights multiplied by --factor (default 0.5)."""
    weights = {k: (v * factor if k in inp.mask else v) for k, v in inp.weights.items()}
    return BranchOutput(weights, inp.mask, inp.spec)


@register_claim("X1", "A bottleneck MLP learns the blobs", "rewind-plugin-example (a demonstration, not a paper)",
                "Trained for 300 iterations, the bottleneck MLP classifies four Gaussian blobs far above chance (25%).",
                "Test accuracy minus 25 points, per replicate, > 0.", "none: the claim is about this toy task")
def x1(ctx) -> Measurement:
    spec = ctx.spec(rewind.get_preset("mnist1d_mlp").spec.replace(**{
        "data.name": "blobs", "data.batch_size": 50, "model.name": "bottleneck_mlp", "model.widths": "32",
        "train.steps": "300it", "train.milestones": "", "train.lr": 0.05}))
    runs = rewind.train(spec, replicates=ctx.replicates, root=ctx.store.root, options=ctx.options)
    acc = [100 * r.summary()["final"]["test_accuracy"] for r in runs]
    return Measurement([Test("test accuracy above chance", [a - 25 for a in acc], ">", 0.0)],
                       summary=f"test accuracy {np.mean(acc):.1f}%", setting=f"blobs, {ctx.replicates} replicate(s)")


@register_command("blobs-info", help="the blobs dataset: examples per class", example="rewind blobs-info")
def blobs_info(args) -> int:
    _, y, _, y_test = make_blobs()
    for c in range(4):
        print(f"class {c}: {int((y == c).sum())} train, {int((y_test == c).sum())} test")
    return 0
