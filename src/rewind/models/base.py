"""The base of every model: RewindModel (which tensors may be pruned) and the table that
register_model fills. A leaf of the models package: small.py and paper.py build on it, and
registry.py (create_model) imports them all."""
from __future__ import annotations

from typing import Callable

from torch import nn

_REGISTRY: dict[str, Callable[..., "RewindModel"]] = {}


class RewindModel(nn.Module):
    """A model that declares which of its tensors may be pruned.

    Prunable tensors are the weights of conv and linear layers; biases and
    normalisation parameters are never pruned. ``output_layer`` names the
    classifier so presets can exclude it or prune it at its own rate.
    """

    output_layer: str = "out"

    def stacked_grad(self, params, x, y, grads):
        """Gradients for K members at once without autograd, written into ``grads``; models
        that can (ReLU networks of Linear layers, models/stacked.py) return the K mean losses."""
        return None

    @property
    def hand_differentiated(self) -> bool:
        """Whether :meth:`stacked_grad` works for this instance (models/stacked.ReLUStack,
        models/stacked_conv.ConvReLUStack)."""
        return False

    @property
    def stack_invariant(self) -> bool:
        """Whether a member's result in the vectorised engine is the same bits whatever it is
        stacked with and however many threads run it (so a population may be split anyhow)."""
        return False

    @property
    def stacks_alone_alike(self) -> bool:
        """Whether a member alone in a stack computes the bits it computes beside others (the
        vectorised engine pads lone members of other models with a copy: train/vectorised.py)."""
        return False

    def prunable(self) -> list[str]:
        names = []
        for mod_name, mod in self.named_modules():
            if isinstance(mod, (nn.Linear, nn.Conv1d, nn.Conv2d)):
                names.append(f"{mod_name}.weight")
        return names

    def layer_kind(self, name: str) -> str:
        """'conv', 'fc' or 'output' for a prunable tensor (for per-type pruning rates)."""
        if name.startswith(self.output_layer + "."):
            return "output"
        mod = self.get_submodule(name.rsplit(".", 1)[0])
        return "conv" if isinstance(mod, (nn.Conv1d, nn.Conv2d)) else "fc"


def register_model(name: str):
    def deco(fn):
        _REGISTRY[name] = fn
        return fn
    return deco
