"""Small models for the embedded datasets (MNIST-1D, digits)."""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from ..spec import ModelSpec
from . import stacked, stacked_conv
from .base import RewindModel, register_model


def _norms(kind, widths, batchnorm: bool) -> nn.ModuleList:
    return nn.ModuleList(kind(w) if batchnorm else nn.Identity() for w in widths)


class MLP(stacked.ReLUStack, RewindModel):
    def __init__(self, in_features: int, widths: tuple[int, ...], num_classes: int, batchnorm: bool = False):
        super().__init__()
        dims = (in_features, *widths)
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.norms = _norms(nn.BatchNorm1d, widths, batchnorm)
        self.batchnorm = batchnorm
        self.out = nn.Linear(dims[-1], num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        for layer, norm in zip(self.hidden, self.norms):
            x = F.relu(norm(layer(x)))
        return self.out(x)


class Conv1dNet(stacked_conv.ConvReLUStack, RewindModel):
    """1-D CNN for MNIST-1D: a stride-1 conv, then stride-2 convs, then a linear classifier."""

    def __init__(self, length: int, widths: tuple[int, ...], num_classes: int, batchnorm: bool = False):
        super().__init__()
        convs, c_in = [], 1
        for i, w in enumerate(widths):
            stride = 1 if i == 0 else 2
            convs.append(nn.Conv1d(c_in, w, kernel_size=5 if i == 0 else 3, stride=stride, padding=2 if i == 0 else 1))
            length = length if i == 0 else math.floor((length + 2 - 3) / 2) + 1
            c_in = w
        self.convs = nn.ModuleList(convs)
        self.norms = _norms(nn.BatchNorm1d, widths, batchnorm)
        self.batchnorm = batchnorm
        self.out = nn.Linear(c_in * length, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.reshape(x.shape[0], 1, -1)
        for conv, norm in zip(self.convs, self.norms):
            x = F.relu(norm(conv(x)))
        return self.out(x.flatten(1))


class DigitsCNN(stacked_conv.ConvReLUStack, RewindModel):
    """Two 3x3 convs, 2x2 max-pool, linear classifier (8x8 inputs)."""

    def __init__(self, in_channels: int, side: int, widths: tuple[int, ...], num_classes: int):
        super().__init__()
        convs, c_in = [], in_channels
        for w in widths:
            convs.append(nn.Conv2d(c_in, w, kernel_size=3, padding=1))
            c_in = w
        self.convs = nn.ModuleList(convs)
        self.out = nn.Linear(c_in * (side // 2) ** 2, num_classes)

    pool = True

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            x = F.relu(conv(x))
        return self.out(F.max_pool2d(x, 2).flatten(1))


@register_model("mlp")
def _mlp(spec: ModelSpec, input_shape, num_classes):
    return MLP(math.prod(input_shape), spec.widths, num_classes, spec.batchnorm)


@register_model("conv1d")
def _conv1d(spec: ModelSpec, input_shape, num_classes):
    if len(input_shape) != 1:
        raise ValueError(f"model.name: conv1d needs 1-D inputs, the data has shape {input_shape}")
    return Conv1dNet(input_shape[0], spec.widths, num_classes, spec.batchnorm)


@register_model("digits_cnn")
def _digits_cnn(spec: ModelSpec, input_shape, num_classes):
    if len(input_shape) != 3:
        raise ValueError(f"model.name: digits_cnn needs image inputs (C, H, W), the data has shape {input_shape}")
    if spec.batchnorm:
        raise ValueError("model.batchnorm: digits_cnn has no BatchNorm variant; use mlp or conv1d")
    return DigitsCNN(input_shape[0], input_shape[1], spec.widths, num_classes)


@register_model("resnet")
def _resnet(spec: ModelSpec, input_shape, num_classes):
    """ResNet-(6n+2) of CIFAR shape for the embedded data: 1-D convolutions for signals (MNIST-1D),
    2-D for images (digits). ``model.widths`` is w (stages w, 2w, 4w) or the three stage widths."""
    from .paper import CifarResNet, _w  # the CIFAR network, with 1-D or 2-D convolutions (it checks the depth)

    if len(spec.widths) not in (1, 3):
        raise ValueError(f"model.widths: resnet takes one width w (stages w, 2w, 4w) or three stage widths, "
                         f"got {len(spec.widths)} values")
    if len(input_shape) not in (1, 2, 3):
        raise ValueError(f"model.name: resnet needs 1-D signals or images, the data has shape {input_shape}")
    stages = tuple(spec.widths) if len(spec.widths) == 3 else (spec.widths[0], 2 * spec.widths[0], 4 * spec.widths[0])
    in_channels = 1 if len(input_shape) == 1 else input_shape[0]
    return CifarResNet(spec.depth, in_channels, num_classes, stages=tuple(_w(s, spec.width) for s in stages),
                       dim=1 if len(input_shape) <= 2 else 2)


_ACTIVATIONS = {"relu": torch.relu, "tanh": torch.tanh, "softplus": F.softplus, "linear": lambda z: z}


class TwoLayer(RewindModel):
    """f(x) = v . phi(W x / sqrt(d)) / sqrt(m): Hu et al.'s (2020) two-layer network in the NTK
    parametrisation, no biases, W (m x d) and v (m) standard Gaussian at initialisation."""

    def __init__(self, in_features: int, width: int, num_classes: int, activation: str):
        super().__init__()
        self.hidden = nn.Linear(in_features, width, bias=False)
        self.out = nn.Linear(width, num_classes, bias=False)
        self.activation = activation
        self._phi = _ACTIVATIONS[activation]

    def initialise_own(self, g: torch.Generator) -> None:
        for p in (self.hidden.weight, self.out.weight):
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float32).to(p.dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1)
        h = self._phi(self.hidden(x) / math.sqrt(self.hidden.in_features))
        return self.out(h) / math.sqrt(self.out.in_features)


@register_model("two_layer")
def _two_layer(spec: ModelSpec, input_shape, num_classes):
    if len(spec.widths) != 1:
        raise ValueError(f"model.widths: two_layer has one hidden width m, got {len(spec.widths)} values")
    return TwoLayer(math.prod(input_shape), spec.widths[0], num_classes, spec.activation)
