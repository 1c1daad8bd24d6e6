"""K small convolutional ReLU networks at once: im2col and batched matmuls, hand-differentiated.

For the vectorised engine's convolutional nets without BatchNorm (MNIST-1D's 1-D CNN, the digits
CNN). Activations are kept channels-last, [K, B, *spatial, C], so each convolution is one unfold
(a view), one copy into columns [K, B*positions, C_in*k...] and one bmm with the members' weights
[K, C_out, C_in*k...]; no permutes between layers. The backward pass is the same bmm's transposed
and a strided scatter-add of the columns' gradient back onto the input (k or k*k adds), with no
autograd graph. Max-pooling keeps the index of each window's first maximum, as torch's kernel does.

A model describes itself as a list of ops: ("conv", weight name, bias name, kernel, stride,
padding), ("relu",), ("maxpool2",), then the classifier ("linear", weight, bias), whose weight
torch flattens channel-major and which is permuted here to the channels-last order.
"""
from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from .stacked import cross_entropy_backward


def _pad(h: torch.Tensor, p: int, nd: int) -> torch.Tensor:
    return F.pad(h, (0, 0) + (p, p) * nd) if p else h


def _columns(h: torch.Tensor, k: int, s: int, p: int, nd: int) -> tuple[torch.Tensor, tuple[int, ...]]:
    """Columns [K, B*positions, C*k^nd] of channels-last h [K, B, *spatial, C], and the output's
    spatial shape."""
    hp = _pad(h, p, nd)
    for d in range(nd):
        hp = hp.unfold(2 + d, k, s)          # [K, B, *out, C, k...]
    out = tuple(hp.shape[2:2 + nd])
    kk, b = hp.shape[0], hp.shape[1]
    return hp.reshape(kk, b * math.prod(out), -1), out


def _fold(dcols: torch.Tensor, in_shape: tuple, k: int, s: int, p: int, nd: int, out: tuple) -> torch.Tensor:
    """The gradient of the input of _columns: each kernel offset's slice added back, strided."""
    kk, b, c = in_shape[0], in_shape[1], in_shape[-1]
    spatial = in_shape[2:2 + nd]
    d = dcols.view(kk, b, *out, c, *([k] * nd))
    grad = dcols.new_zeros(kk, b, *(n + 2 * p for n in spatial), c)
    for offset in (range(k) if nd == 1 else [(i, j) for i in range(k) for j in range(k)]):
        offs = (offset,) if nd == 1 else offset
        index = [slice(None), slice(None)] + [slice(o, o + s * (n - 1) + 1, s) for o, n in zip(offs, out)]
        grad[tuple(index)] += d[(Ellipsis, *offs)]
    if p:
        grad = grad[(slice(None), slice(None), *[slice(p, p + n) for n in spatial])]
    return grad


def _linear_weight(w: torch.Tensor, spatial: tuple, c: int) -> torch.Tensor:
    """Classifier weight [K, classes, C*S] (torch's channel-major flatten) as [K, classes, S*C]."""
    kk, classes = w.shape[:2]
    return w.view(kk, classes, c, *spatial).movedim(2, -1).reshape(kk, classes, -1)


def forward(ops: list, params: dict, x: torch.Tensor, nd: int, shared: bool = False,
            keep: list | None = None) -> torch.Tensor:
    """Logits [K, B, classes] of inputs x [K, B, C, *spatial] (or [K, B, L] for 1-D; [B, ...] for
    every member when ``shared``). ``keep`` collects what the backward pass needs."""
    k = params[ops[-1][1]].shape[0]
    if shared:
        x = x.unsqueeze(0).expand(k, *x.shape)
    if nd == 1 and x.dim() == 3:
        h = x.unsqueeze(-1)                                   # [K, B, L, 1]
    else:
        h = x.movedim(2, -1)                                  # [K, B, *spatial, C]
    for op in ops:
        kind = op[0]
        if kind == "conv":
            _, w, b, ks, s, p = op
            cols, out = _columns(h, ks, s, p, nd)
            if keep is not None:
                keep.append((h.shape, cols, out))
            weight = params[w].reshape(k, params[w].shape[1], -1)
            h = (torch.bmm(cols, weight.transpose(1, 2)) + params[b].unsqueeze(1)).view(k, h.shape[1], *out, -1)
        elif kind == "relu":
            h = torch.relu_(h)
            if keep is not None:
                keep.append(h)
        elif kind == "maxpool2":
            kk, b, hh, ww, c = h.shape
            win = h.view(kk, b, hh // 2, 2, ww // 2, 2, c).permute(0, 1, 2, 4, 6, 3, 5).reshape(kk, b, hh // 2, ww // 2, c, 4)
            value, index = win.max(-1)
            if keep is not None:
                keep.append((h.shape, index))
            h = value
        else:  # linear
            _, w, b = op
            spatial, c = tuple(h.shape[2:-1]), h.shape[-1]
            flat = h.reshape(k, h.shape[1], -1)
            if keep is not None:
                keep.append((flat, spatial, c))
            h = torch.bmm(flat, _linear_weight(params[w], spatial, c).transpose(1, 2)) + params[b].unsqueeze(1)
    return h


@torch.no_grad()
def grad(ops: list, params: dict, x: torch.Tensor, y: torch.Tensor, grads: dict, nd: int) -> torch.Tensor:
    """Write into ``grads`` the gradient of sum_k mean_b cross_entropy(f_k(x[k, b]), y[k, b]);
    return the K members' mean losses."""
    keep: list = []
    out = forward(ops, params, x, nd, keep=keep)
    k = out.shape[0]
    losses, d = cross_entropy_backward(out, y)
    for i in range(len(ops) - 1, -1, -1):
        op, saved = ops[i], keep[i]
        if op[0] == "linear":
            _, w, b = op
            flat, spatial, c = saved
            gw = torch.bmm(d.transpose(1, 2), flat)             # [K, classes, S*C]
            grads[w].view(k, gw.shape[1], c, *spatial).copy_(gw.view(k, gw.shape[1], *spatial, c).movedim(-1, 2))
            torch.sum(d, 1, out=grads[b])
            d = torch.bmm(d, _linear_weight(params[w], spatial, c)).view(k, flat.shape[1], *spatial, c)
        elif op[0] == "relu":
            d = torch.ops.aten.threshold_backward(d, saved, 0)
        elif op[0] == "maxpool2":
            shape, index = saved
            kk, b, hh, ww, c = shape
            win = d.new_zeros(*index.shape, 4).scatter_(-1, index.unsqueeze(-1), d.unsqueeze(-1))
            d = win.view(kk, b, hh // 2, ww // 2, c, 2, 2).permute(0, 1, 2, 5, 3, 6, 4).reshape(shape)
        else:  # conv
            _, w, b, ks, s, p = op
            in_shape, cols, out_sp = saved
            dm = d.reshape(k, -1, d.shape[-1])                  # [K, B*positions, C_out]
            torch.bmm(dm.transpose(1, 2), cols, out=grads[w].view(k, grads[w].shape[1], -1))
            torch.sum(dm, 1, out=grads[b])
            if i > 0:
                weight = params[w].reshape(k, params[w].shape[1], -1)
                d = _fold(torch.bmm(dm, weight), tuple(in_shape), ks, s, p, nd, out_sp)
    return losses


class ConvStack:
    """Mixin for convolutional ReLU nets without BatchNorm: the vectorised engine's batched forward
    and hand-written backward through im2col and bmm (models/stacked_conv.py). ``conv_ops()`` lists
    the net's ops; ``spatial_dims`` is 1 or 2."""

    spatial_dims = 1

    @property
    def hand_differentiated(self) -> bool:
        return not getattr(self, "batchnorm", False)

    def stacked_forward(self, params, x, shared: bool = False, buffers=None):
        if not self.hand_differentiated:
            return None
        return forward(self.conv_ops(), params, x, self.spatial_dims, shared)

    def stacked_grad(self, params, x, y, grads):
        if not self.hand_differentiated:
            return None
        return grad(self.conv_ops(), params, x, y, grads, self.spatial_dims)

