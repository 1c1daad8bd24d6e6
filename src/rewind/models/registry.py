from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from .. import rng
from ..spec import ModelSpec

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
        """Whether :meth:`stacked_grad` works for this instance (models/stacked.ReLUStack)."""
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


def registered_models() -> list[str]:
    from . import small  # noqa: F401  (registers the models)

    return sorted(_REGISTRY)


def known_model(name: str) -> bool:
    from .paper import is_paper_model

    return name in registered_models() or is_paper_model(name)


def model_names() -> list[str]:
    from .paper import PAPER_MODEL_NAMES

    return registered_models() + list(PAPER_MODEL_NAMES)


def initialise(model: nn.Module, method: str, seed: int) -> None:
    """Seeded initialisation, in module order, from one generator."""
    g = rng.generator(rng.INIT, seed)
    if hasattr(model, "initialise_own"):   # models whose theory fixes the initialisation (models/theory.py)
        with torch.no_grad():
            model.initialise_own(g)
        return
    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, (nn.Linear, nn.Conv1d, nn.Conv2d)):
                if method == "kaiming_normal":
                    nn.init.kaiming_normal_(mod.weight, nonlinearity="relu", generator=g)
                elif method == "kaiming_uniform":
                    nn.init.kaiming_uniform_(mod.weight, nonlinearity="relu", generator=g)
                elif method == "xavier_normal":
                    nn.init.xavier_normal_(mod.weight, generator=g)
                else:
                    raise ValueError(f"model.init: unknown initialisation {method!r}")
                if mod.bias is not None:
                    mod.bias.zero_()
            elif isinstance(mod, (nn.BatchNorm1d, nn.BatchNorm2d)):
                mod.reset_running_stats()
                mod.weight.fill_(1.0)
                mod.bias.zero_()


def create_model(spec: ModelSpec, input_shape: tuple[int, ...], num_classes: int, seed: int = 0,
                 initialise_weights: bool = True) -> RewindModel:
    from .paper import build_paper_model

    if spec.name in registered_models():
        model = _REGISTRY[spec.name](spec, tuple(input_shape), num_classes)
    else:
        model = build_paper_model(spec, tuple(input_shape), num_classes)
        if model is None:
            raise ValueError(f"model.name: unknown model {spec.name!r}; known: {', '.join(model_names())}")
    if initialise_weights:   # skipped for shapes-only models on the meta device (seeded normal_ there
        initialise(model, spec.init, seed)   # goes through torch's Python refs, which import dynamo: 1.4 s)
    return model
