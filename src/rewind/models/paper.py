"""The papers' models: LeNet, Conv-2/4/6, CIFAR ResNets and VGGs, ImageNet ResNets.

Architectures follow the papers' descriptions (Frankle & Carbin 2019; He et al.
2016; Simonyan & Zisserman 2015 with BatchNorm, as used by Frankle et al.).
CIFAR ResNets use a 1x1 convolution with BatchNorm on shortcuts that change
shape (as open_lth does); parameter counts are pinned in tests.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

from . import stacked, stacked_conv
from .base import RewindModel, register_model


def _w(channels: int, width: float) -> int:
    return max(1, int(round(channels * width)))


class LeNet(stacked.ReLUStack, RewindModel):
    """Fully connected LeNet: inputs flattened, ReLU hidden layers of the given widths."""

    hidden_layers = "fc"

    def __init__(self, in_features: int, widths: tuple[int, ...], num_classes: int):
        super().__init__()
        dims = (in_features, *widths)
        self.fc = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
        self.out = nn.Linear(dims[-1], num_classes)

    def forward(self, x):
        x = x.flatten(1)
        for layer in self.fc:
            x = F.relu(layer(x))
        return self.out(x)


class ConvNet(RewindModel):
    """Conv-2/4/6: pairs of 3x3 convs followed by 2x2 max-pool, then FC 256-256-classes."""

    def __init__(self, in_shape: tuple[int, ...], plan: list, num_classes: int, width: float = 1.0):
        super().__init__()
        c, h, w = in_shape
        convs = []
        for item in plan:
            if item == "M":
                h, w = h // 2, w // 2
                convs.append(nn.MaxPool2d(2))
            else:
                convs.append(nn.Conv2d(c, _w(item, width), 3, padding=1))
                convs.append(nn.ReLU())
                c = _w(item, width)
        self.features = nn.Sequential(*convs)
        self.fc = nn.ModuleList([nn.Linear(c * h * w, 256), nn.Linear(256, 256)])
        self.out = nn.Linear(256, num_classes)

    def forward(self, x):
        x = self.features(x).flatten(1)
        for layer in self.fc:
            x = F.relu(layer(x))
        return self.out(x)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, c_in: int, c_out: int, stride: int, dim: int = 2):
        super().__init__()
        conv, norm = (nn.Conv1d, nn.BatchNorm1d) if dim == 1 else (nn.Conv2d, nn.BatchNorm2d)
        self.conv1 = conv(c_in, c_out, 3, stride, 1, bias=False)
        self.bn1 = norm(c_out)
        self.conv2 = conv(c_out, c_out, 3, 1, 1, bias=False)
        self.bn2 = norm(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(conv(c_in, c_out, 1, stride, bias=False), norm(c_out))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, c_in: int, planes: int, stride: int):
        super().__init__()
        c_out = planes * 4
        self.conv1 = nn.Conv2d(c_in, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, c_out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(c_out)
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            self.shortcut = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return F.relu(out + self.shortcut(x))


class CifarResNet(RewindModel):
    """ResNet-(6n+2) in the shape of He et al.'s CIFAR network: a 3x3 stem, 3 stages of n basic
    blocks with BatchNorm (channels w / 2w / 4w, stride 2 into stages 2 and 3, a 1x1 convolution
    with BatchNorm on shortcuts that change shape), global average pooling, a linear classifier.
    ``dim`` 2 is the paper's network for images; ``dim`` 1 the same network of 1-D convolutions for
    signals such as MNIST-1D (inputs [B, L] or [B, C, L]).

    :meth:`stacked_forward` runs K members at once for the vectorised engine: member k's channels
    are the k-th block of K*C channels, every convolution is one grouped convolution (groups=K),
    and every BatchNorm one batch_norm over K*C channels, which is exactly per-member statistics."""

    def __init__(self, depth: int, in_channels: int, num_classes: int, width: float = 1.0,
                 stages: tuple[int, int, int] | None = None, dim: int = 2):
        super().__init__()
        if depth < 8 or (depth - 2) % 6:
            raise ValueError(f"model.depth: a ResNet's depth must be 6n+2 with n >= 1 (8, 14, 20, 26, 32, ...), "
                             f"got {depth}")
        n = (depth - 2) // 6
        self.dim, self.n = dim, n
        widths = list(stages) if stages is not None else [_w(16, width), _w(32, width), _w(64, width)]
        self.widths = tuple(widths)   # every BatchNorm's channels are one of these (stack_size)
        conv, norm = (nn.Conv1d, nn.BatchNorm1d) if dim == 1 else (nn.Conv2d, nn.BatchNorm2d)
        self.conv = conv(in_channels, widths[0], 3, 1, 1, bias=False)
        self.bn = norm(widths[0])
        blocks, c = [], widths[0]
        for stage, w in enumerate(widths):
            for i in range(n):
                blocks.append(BasicBlock(c, w, 2 if stage > 0 and i == 0 else 1, dim))
                c = w
        self.blocks = nn.Sequential(*blocks)
        self.out = nn.Linear(c, num_classes)

    def forward(self, x):
        if self.dim == 1 and x.dim() == 2:
            x = x.unsqueeze(1)
        x = F.relu(self.bn(self.conv(x)))
        x = self.blocks(x)
        return self.out(x.mean(dim=tuple(range(2, x.dim()))))

    def stack_size(self, k: int) -> int:
        """At least 2, and a number of members whose channels fill every BatchNorm's channels in
        whole runs of 8: PyTorch's channels-last BatchNorm backward computes the channels past the
        last multiple of 8 in a separate loop that rounds otherwise (torch 2.13, AVX-512, measured:
        at width 4, the last member of a stack of 3 or 5 had other bits than at any other place).
        A width that is a multiple of 8 (the testbed's) never pads beyond a lone member."""
        k = super().stack_size(k)
        while any(k * w % 8 for w in self.widths):   # called every step: no walk over the modules
            k += 1
        return k

    def stacked_forward(self, params, x, shared: bool = False, buffers=None):
        """Outputs [K, B, classes] of K members; params [K, ...] each, buffers the members'
        BatchNorm statistics [K, C] (updated in place in training mode); x [K, B, ...], or
        [B, ...] for every member when ``shared``."""
        if buffers is None:
            return None
        k = params["out.weight"].shape[0]
        if shared:
            x = x.unsqueeze(1) if self.dim == 1 and x.dim() == 2 else x
            h, groups = x, 1   # every member reads the same channels: one ordinary convolution
        else:
            x = x.unsqueeze(2) if self.dim == 1 and x.dim() == 3 else x
            b = x.shape[1]
            h, groups = x.transpose(0, 1).reshape(b, -1, *x.shape[3:]), k
        # channels-last 2-D convolutions, a 1-D one being of height 1: grouped convolutions ran 2x
        # faster in this layout than channels-first on CPU (models/stacked_conv.py); ResNet-8 on
        # MNIST-1D, K = 8: 307-330 -> 433-450 model-steps/s (2 cores)
        h = (h.unsqueeze(2) if self.dim == 1 else h).contiguous(memory_format=torch.channels_last)

        def conv_(h, name, module, groups=k):
            stride, padding = stacked_conv.geometry(module)
            weight = stacked_conv.grouped_weight(params[f"{name}.weight"], module)
            return F.conv2d(h, weight, None, stride, padding, 1, groups)

        def bn(h, name):
            if self.training:
                buffers[f"{name}.num_batches_tracked"].add_(1)
            return F.batch_norm(h, buffers[f"{name}.running_mean"].view(-1), buffers[f"{name}.running_var"].view(-1),
                                params[f"{name}.weight"].reshape(-1), params[f"{name}.bias"].reshape(-1),
                                self.training, 0.1, 1e-5)

        h = F.relu(bn(conv_(h, "conv", self.conv, groups), "bn"))
        for i, block in enumerate(self.blocks):
            p = f"blocks.{i}"
            out = F.relu(bn(conv_(h, f"{p}.conv1", block.conv1), f"{p}.bn1"))
            out = bn(conv_(out, f"{p}.conv2", block.conv2), f"{p}.bn2")
            short = h if not len(block.shortcut) else bn(conv_(h, f"{p}.shortcut.0", block.shortcut[0]),
                                                         f"{p}.shortcut.1")
            h = F.relu(out + short)
        pooled = h.mean(dim=tuple(range(2, h.dim())))          # [B, K*C]
        pooled = pooled.reshape(pooled.shape[0], k, -1).transpose(0, 1)  # [K, B, C]
        return torch.baddbmm(params["out.bias"].unsqueeze(1), pooled, params["out.weight"].transpose(1, 2))


VGG_PLANS = {
    11: [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    13: [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512],
    16: [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512],
    19: [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M", 512, 512, 512, 512],
}


class CifarVGG(RewindModel):
    """VGG with BatchNorm for 32x32 inputs: the plan's convs, global average pool, one linear layer."""

    def __init__(self, depth: int, in_channels: int, num_classes: int, width: float = 1.0):
        super().__init__()
        layers, c = [], in_channels
        for item in VGG_PLANS[depth]:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(c, _w(item, width), 3, padding=1), nn.BatchNorm2d(_w(item, width)), nn.ReLU()]
                c = _w(item, width)
        self.features = nn.Sequential(*layers)
        self.out = nn.Linear(c, num_classes)

    def forward(self, x):
        return self.out(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))


class ImageNetResNet(RewindModel):
    """ResNet-18/50 for 224x224 inputs (7x7 stem, max-pool, 4 stages)."""

    PLANS = {18: (BasicBlock, [2, 2, 2, 2]), 34: (BasicBlock, [3, 4, 6, 3]), 50: (Bottleneck, [3, 4, 6, 3])}

    def __init__(self, depth: int, in_channels: int, num_classes: int, width: float = 1.0):
        super().__init__()
        block, counts = self.PLANS[depth]
        c = _w(64, width)
        self.conv = nn.Conv2d(in_channels, c, 7, 2, 3, bias=False)
        self.bn = nn.BatchNorm2d(c)
        blocks = []
        for stage, count in enumerate(counts):
            planes = _w(64 * 2 ** stage, width)
            for i in range(count):
                blocks.append(block(c, planes, 2 if stage > 0 and i == 0 else 1))
                c = planes * block.expansion
        self.blocks = nn.Sequential(*blocks)
        self.out = nn.Linear(c, num_classes)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.bn(self.conv(x))), 3, 2, 1)
        return self.out(F.adaptive_avg_pool2d(self.blocks(x), 1).flatten(1))


CONV_PLANS = {"conv2": [64, 64, "M"], "conv4": [64, 64, "M", 128, 128, "M"],
              "conv6": [64, 64, "M", 128, 128, "M", 256, 256, "M"]}


def _image(spec, input_shape):
    if len(input_shape) != 3:
        raise ValueError(f"model.name: {spec.name} needs image inputs (C, H, W), the data has shape {input_shape}")
    return input_shape


@register_model(r"lenet(_\d+)+", pattern=True, examples=("lenet_300_100", "lenet_N_M..."))
def lenet(spec, input_shape, num_classes):
    """LeNet: fully connected ReLU layers of the widths in the name (lenet_300_100)."""
    return LeNet(math.prod(input_shape), tuple(int(w) for w in spec.name.split("_")[1:]), num_classes)


def _conv(name):
    @register_model(name)
    def build(spec, input_shape, num_classes):
        return ConvNet(_image(spec, input_shape), CONV_PLANS[spec.name], num_classes, spec.width)

    build.__doc__ = f"{name[:-1].capitalize()}-{name[-1]} (Frankle & Carbin): conv blocks, then three linear layers."
    return build


for _name in CONV_PLANS:
    _conv(_name)


def _resnet_depth_ok(name: str) -> bool:
    depth = int(name.rsplit("_", 1)[1])
    return depth > 2 and (depth - 2) % 6 == 0


@register_model(r"cifar_resnet_(\d+)", pattern=True, accepts=_resnet_depth_ok,
                examples=("cifar_resnet_20", "cifar_resnet_32", "cifar_resnet_56", "cifar_resnet_110",
                          "cifar_resnet_<6n+2>"))
def cifar_resnet(spec, input_shape, num_classes):
    """He et al.'s CIFAR ResNet-(6n+2) with BatchNorm (model.width scales the channels)."""
    return CifarResNet(int(spec.name.rsplit("_", 1)[1]), _image(spec, input_shape)[0], num_classes, spec.width)


@register_model(r"cifar_vgg_(11|13|16|19)", pattern=True,
                examples=("cifar_vgg_11", "cifar_vgg_13", "cifar_vgg_16", "cifar_vgg_19"))
def cifar_vgg(spec, input_shape, num_classes):
    """VGG-11/13/16/19 for CIFAR with BatchNorm."""
    return CifarVGG(int(spec.name.rsplit("_", 1)[1]), _image(spec, input_shape)[0], num_classes, spec.width)


@register_model(r"imagenet_resnet_(18|34|50)", pattern=True,
                examples=("imagenet_resnet_18", "imagenet_resnet_34", "imagenet_resnet_50"))
def imagenet_resnet(spec, input_shape, num_classes):
    """ImageNet ResNet-18/34/50."""
    return ImageNetResNet(int(spec.name.rsplit("_", 1)[1]), _image(spec, input_shape)[0], num_classes, spec.width)
