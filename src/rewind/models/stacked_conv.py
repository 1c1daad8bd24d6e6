"""K small ReLU convolutional networks at once: grouped channels-last convolutions, and a
hand-written backward pass.

Used by the vectorised engine for the 1-D CNN (without BatchNorm) and the digits CNN: convs
with ReLUs, an optional 2x2 max-pool, then the linear classifier ``out``. The K members'
channels sit side by side in one tensor, member k owning channels [k*C, (k+1)*C), and each
conv is one grouped convolution (groups = K) in the channels-last layout, a 1-D conv being a
2-D one of height 1. The backward pass calls the kernels autograd would call
(``convolution_backward``, ``threshold_backward`` on the ReLU outputs, the max-pool's backward)
without building a graph.

Why this layout (2 CPU cores, torch 2.13, K = 16 members of the 1-D CNN, benchmarks/
conv_stacking.py): one grouped conv layer forward + backward took 7.0 ms in the channels-first
layout that torch.func.vmap produces, 3.4 ms channels-last, 5.3 ms as im2col + bmm; the whole
gradient took 24-34 ms through vmap and autograd, 14.5-18 ms through autograd in this layout
(whose ReLU backward meets tensors of mixed layouts and ran 3x slower than here), 10.2-11.9
ms by hand, against 31.7-32.3 ms for 16 separate autograd passes.

Unlike the fully connected stacks (models/stacked.py), a stack of one member runs other
convolution kernels than a stack of two or more (the library picks its kernels by the number of
groups) and rounds differently; the vectorised engine therefore never computes a member alone
(it pads a lone member with a copy of itself), and from two members on each member's bits are its
own whatever its companions, their number and the thread count. (Until 2026-12-06 that failed for
convolutions of fewer than 32 channels in all: the bias gradient's column sum rounded by the number
of columns, so a digits CNN of 4 or 8 channels had other bits in stacks of 2-3 than of 4 or more;
:func:`column_sums`.)
"""
from __future__ import annotations

import torch
from torch.nn import functional as F

from . import stacked


class ConvReLUStack:
    """Mixin for ReLU conv nets: ``convs`` (a ModuleList of Conv1d or Conv2d, each followed by a
    ReLU), a 2x2 max-pool after the last one when ``pool`` is set, then the classifier ``out``.
    Gives them the vectorised engine's stacked forward and hand-written backward (not with
    BatchNorm: those go through vmap and autograd)."""

    pool = False

    @property
    def stack_invariant(self) -> bool:
        # With two or more members (the engine pads a lone one), each member's grouped convolutions
        # are its own, at any thread count (measured for K = 2-17 at 1 and 2 threads;
        # tests/test_identity.py)
        return self.hand_differentiated

    @property
    def hand_differentiated(self) -> bool:
        plain = all(c.padding_mode == "zeros" and set(c.dilation) == {1} and c.groups == 1
                    and not isinstance(c.padding, str) for c in self.convs)
        return plain and not getattr(self, "batchnorm", False)

    def stacked_forward(self, params: dict[str, torch.Tensor], x: torch.Tensor, shared: bool = False,
                        buffers=None):
        """Outputs [K, B, classes]; params [K, ...] each; x [K, B, ...], or [B, ...] for every
        member when ``shared``. None with BatchNorm."""
        if not self.hand_differentiated:
            return None
        return self._forward(params, x, shared, None)

    def stacked_grad(self, params, x, y, grads) -> torch.Tensor | None:
        """Write into ``grads`` the gradient of sum_k mean_b cross_entropy(f_k(x[k, b]), y[k, b]);
        return the K members' mean losses. None with BatchNorm."""
        if not self.hand_differentiated:
            return None
        with torch.no_grad():
            keep: dict = {"inputs": [], "outputs": [], "weights": []}
            out = self._forward(params, x, False, keep)
            k, b, _ = out.shape
            losses, d = stacked.loss_and_grad(out, y)
            c, height, width = keep["shape"]
            g_out = torch.bmm(d.transpose(1, 2), keep["features"]).view(k, -1, height, width, c)
            grads["out.weight"].view(k, -1, c, height, width).copy_(g_out.permute(0, 1, 4, 2, 3))
            torch.sum(d, 1, out=grads["out.bias"])
            g = torch.bmm(d, keep["classifier"]).view(k, b, height, width, c)
            g = g.permute(1, 2, 3, 0, 4).contiguous().view(b, height, width, k * c).permute(0, 3, 1, 2)
            for i in range(len(self.convs) - 1, -1, -1):
                conv = self.convs[i]
                # the ReLU's output is zero exactly where it was off
                g = torch.ops.aten.threshold_backward(g, keep["outputs"][i], 0)
                # the bias gradient as a sum over the rows of the channels-last gradient (0.2 ms of the
                # 5.2 ms the library's backward takes with it for the digits CNN's second layer at K = 16);
                # before a max-pool that is the sum of the pooled gradient, which the pool's backward
                # only scatters, at a quarter of the reading
                column_sums(g.permute(0, 2, 3, 1).reshape(-1, g.shape[1]), grads[f"convs.{i}.bias"].view(-1))
                if self.pool and i == len(self.convs) - 1:
                    g = torch.ops.aten.max_pool2d_with_indices_backward(g, keep["pool_input"], [2, 2], [2, 2], [0, 0],
                                                                        [1, 1], False, keep["pool_indices"])
                stride, padding = geometry(conv)
                weight = keep["weights"][i]
                g_in, g_w, _ = torch.ops.aten.convolution_backward(
                    g, keep["inputs"][i], weight, None, stride, padding, [1, 1], False, [0, 0], k,
                    [i > 0, True, False])
                grads[f"convs.{i}.weight"].view(g_w.shape).copy_(g_w)
                g = g_in
        return losses

    def _forward(self, params, x, shared: bool, keep: dict | None) -> torch.Tensor:
        k = params["out.weight"].shape[0]
        first = self.convs[0]
        spatial = (1, x.shape[-1]) if isinstance(first, torch.nn.Conv1d) else tuple(x.shape[-2:])
        c_in = first.in_channels
        if shared:   # [B, ...] -> every member's channels read the same input
            b = x.shape[0]
            h = x.reshape(b, c_in, *spatial).permute(0, 2, 3, 1).unsqueeze(3).expand(b, *spatial, k, c_in)
        else:
            b = x.shape[1]
            h = x.reshape(k, b, c_in, *spatial).permute(1, 3, 4, 0, 2)
        h = h.contiguous().view(b, *spatial, k * c_in).permute(0, 3, 1, 2)   # [B, K*C, H, W], channels-last
        for i, conv in enumerate(self.convs):
            w = params[f"convs.{i}.weight"]
            weight = grouped_weight(w, conv)
            stride, padding = geometry(conv)
            if keep is not None:
                keep["inputs"].append(h)
                keep["weights"].append(weight)
            h = F.conv2d(h, weight, params[f"convs.{i}.bias"].reshape(-1), stride, padding, 1, k)
            if self.pool and i == len(self.convs) - 1:
                # max-pool, then ReLU: the same numbers as ReLU then max-pool (both are monotone and
                # the ReLU only selects), and the same gradient, at a quarter of the ReLU's cost
                if keep is not None:
                    keep["pool_input"] = h
                h, indices = torch.ops.aten.max_pool2d_with_indices(h, [2, 2], [2, 2])
                if keep is not None:
                    keep["pool_indices"] = indices
            h = torch.relu_(h)
            if keep is not None:
                keep["outputs"].append(h)
        _, kc, height, width = h.shape
        c = kc // k
        # member k's features ordered (height, width, channel), runs of channels as they lie in
        # memory, and the classifier's columns put in that order (its module flattens (channel,
        # height, width)): 40% of the time that moving the activations into the module's order took
        f = h.permute(0, 2, 3, 1).reshape(b, height, width, k, c).permute(3, 0, 1, 2, 4).reshape(k, b, -1)
        w = params["out.weight"]
        classifier = w.reshape(k, w.shape[1], c, height, width).permute(0, 1, 3, 4, 2).reshape(k, w.shape[1], -1)
        if keep is not None:
            keep.update(features=f, classifier=classifier, shape=(c, height, width))
        return torch.baddbmm(params["out.bias"].unsqueeze(1), f, classifier.transpose(1, 2))


COLUMN_BLOCK = 64


def column_sums(rows: torch.Tensor, out: torch.Tensor) -> None:
    """``out`` = the column sums of ``rows`` [N, K*C], each column's bits the same whatever the
    number of columns. torch's column-sum kernel rounds a column differently by how many columns
    there are and where the column sits among them (AVX-512, torch 2.13, measured against a
    1,024-column sum: 8-31 columns, odd multiples of 16, and columns past the last multiple of 64
    differed), so a digits CNN of 4 or 8 channels got other bits in a stack of 2-3 than in one of 4
    or more. Padded with zero columns to a multiple of 64, every column matched (N = 64-10,000,
    1-599 columns, 1 and 2 threads). A multiple of 32 columns matched unpadded (the 1-D CNN's 32
    channels and the digits CNN's 32, any K: their bits are as before), and is summed as it is."""
    n, c = rows.shape
    if c % 32 == 0:
        torch.sum(rows, 0, out=out)
        return
    padded = rows.new_zeros(n, -(-c // COLUMN_BLOCK) * COLUMN_BLOCK)
    padded[:, :c] = rows
    out.copy_(padded.sum(0)[:c])


def grouped_weight(w: torch.Tensor, conv) -> torch.Tensor:
    """K members' weights [K, out, in, *kernel] of ``conv`` as one grouped 2-D convolution's
    [K*out, in, kh, kw] weight, channels-last (a 1-D kernel has height 1)."""
    kernel = (1, *conv.kernel_size) if len(conv.kernel_size) == 1 else tuple(conv.kernel_size)
    return w.reshape(-1, w.shape[2], *kernel).contiguous(memory_format=torch.channels_last)


def geometry(conv) -> tuple[list[int], list[int]]:
    """Stride and padding of ``conv`` as a 2-D convolution (a 1-D one has height 1)."""
    if len(conv.stride) == 1:
        return [1, conv.stride[0]], [0, conv.padding[0]]
    return list(conv.stride), list(conv.padding)


