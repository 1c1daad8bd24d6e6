"""K fully connected ReLU networks at once: batched matmuls, and a hand-written backward pass.

Used by the vectorised engine for every model that is a stack of Linear layers with
ReLUs between them (MNIST-1D's MLP, LeNet). ``layers`` names each layer's weight and
bias; parameters are [K, out, in] and [K, out].

The backward pass computes the gradient of sum over members of each member's mean
cross-entropy, the quantity autograd differentiates in the engine's general path, with
the same operations autograd would run (bmm for weight and input gradients, a
threshold on the ReLU outputs), but without the autograd graph, and with a softmax
built from elementwise operations: on CPU, torch's softmax and cross-entropy kernels
over a last dimension of 10 classes took 0.5-1 ms for 64 x 100 rows, 5-10x the
elementwise version (measured, torch 2.13, 2 cores).
"""
from __future__ import annotations

import torch

Layers = list[tuple[str, str]]


class ReLUStack:
    """Mixin for models that are Linear layers with ReLUs between them: the ModuleList named
    by ``hidden_layers``, then the classifier ``out``. Gives them the vectorised engine's batched
    forward and hand-written backward (not with BatchNorm: those go through vmap and autograd)."""

    hidden_layers = "hidden"

    @property
    def hand_differentiated(self) -> bool:
        return not getattr(self, "batchnorm", False)

    @property
    def stack_invariant(self) -> bool:
        return self.hand_differentiated   # each member's matmuls are its own (tests/test_exec.py)

    @property
    def stacks_alone_alike(self) -> bool:
        return self.hand_differentiated   # a stack of one runs the same batched matmuls

    def _layers(self) -> Layers:
        n = len(getattr(self, self.hidden_layers))
        return [(f"{self.hidden_layers}.{i}.weight", f"{self.hidden_layers}.{i}.bias") for i in range(n)] + \
            [("out.weight", "out.bias")]

    def stacked_forward(self, params: dict[str, torch.Tensor], x: torch.Tensor, shared: bool = False,
                        buffers=None):
        """K members at once with batched matmuls. params: [K, ...] each; x: [K, B, ...], or
        [B, ...] for all members when ``shared``. Returns [K, B, classes], or None with BatchNorm."""
        return forward(self._layers(), params, x, shared) if self.hand_differentiated else None

    def stacked_grad(self, params, x, y, grads) -> torch.Tensor | None:
        """Gradients of K members' losses without autograd (see :func:`grad`); returns the members'
        losses, or None with BatchNorm."""
        if not self.hand_differentiated:
            return None
        return grad(self._layers(), params, x, y, grads)


def loss_and_grad(out: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The K members' mean cross-entropies of logits ``out`` [K, B, C] (overwritten) with labels
    ``y`` [K, B], and d loss / d logits = (softmax - onehot) / B; the loss comes almost free."""
    k, b, c = out.shape
    z = out.sub_(out.amax(-1, keepdim=True))
    picked = z.gather(-1, y.unsqueeze(-1)).squeeze(-1)
    p = z.exp_()
    total = p.sum(-1, keepdim=True)
    losses = (total.squeeze(-1).log() - picked).mean(1)
    p.div_(total)
    flat = p.view(k * b, c)
    flat.scatter_add_(1, y.reshape(-1, 1), torch.full((k * b, 1), -1.0, dtype=p.dtype, device=p.device))
    return losses, p.div_(b)


def forward(layers: Layers, params: dict[str, torch.Tensor], x: torch.Tensor, shared: bool = False,
            keep: list | None = None) -> torch.Tensor:
    """Outputs [K, B, classes] for inputs [K, B, ...] (or [B, ...] for every member when
    ``shared``). ``keep`` collects each layer's input, for :func:`grad`."""
    k = params[layers[-1][0]].shape[0]
    h = x.flatten(1) if shared else x.flatten(2)
    last = len(layers) - 1
    for i, (w, b) in enumerate(layers):
        if keep is not None:
            keep.append(h)
        if h.dim() == 2:
            # one input for every member (evaluation): the first layer as one matrix product with
            # all members' weights stacked, [B, K*out] (LeNet-300-100, K = 4, 4,096 rows: 29 ms
            # against 39 for the batched product of the input repeated K times; 2 cores)
            weight = params[w].reshape(-1, params[w].shape[-1])
            h = torch.addmm(params[b].reshape(-1), h, weight.T).view(len(h), k, -1).transpose(0, 1)
        else:
            # bmm then a broadcast add is faster than baddbmm on CPU (measured, torch 2.13)
            h = torch.bmm(h, params[w].transpose(1, 2)) + params[b].unsqueeze(1)
        if i < last:
            h = torch.relu_(h)
    return h


@torch.no_grad()
def grad(layers: Layers, params: dict[str, torch.Tensor], x: torch.Tensor, y: torch.Tensor,
         grads: dict[str, torch.Tensor]) -> torch.Tensor:
    """Write into ``grads`` (tensors shaped like ``params``) the gradient of
    sum_k mean_b cross_entropy(f_k(x[k, b]), y[k, b]); return the K members' mean losses."""
    inputs: list[torch.Tensor] = []
    out = forward(layers, params, x, keep=inputs)
    losses, d = loss_and_grad(out, y)
    for i in range(len(layers) - 1, -1, -1):
        w, bias = layers[i]
        torch.bmm(d.transpose(1, 2), inputs[i], out=grads[w])
        torch.sum(d, 1, out=grads[bias])
        if i > 0:
            # inputs[i] is the ReLU output of layer i - 1: zero exactly where the ReLU was off
            d = torch.ops.aten.threshold_backward(torch.bmm(d, params[w]), inputs[i], 0)
    return losses
