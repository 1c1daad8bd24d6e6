"""Model registry: ``create_model(spec, input_shape, num_classes, seed)`` over every registered
model: the small ones (small.py), the papers' (paper.py, by name pattern), and plugins'
(``rewind.register_model``)."""
from __future__ import annotations

import torch
from torch import nn

from .. import rng
from ..spec import ModelSpec, SpecError, register_identity, register_model_catalogue
from . import small, paper  # noqa: F401,I001  (register their models: the small ones first)
from .base import MODELS, ModelEntry, RewindModel, find_model, register_model  # noqa: F401  (re-exported)


def registered_models() -> list[str]:
    """Exact names and the examples of the patterns: what model.name may be."""
    out = []
    for entry in MODELS.values():
        out.extend(entry.examples or (entry.name,))
    return out


def known_model(name: str) -> bool:
    return find_model(name) is not None


register_model_catalogue(known_model, registered_models)  # spec.py checks model.name against it


def _identity(spec) -> dict[str, str]:
    entry = find_model(spec.model.name)
    return {"model.name": entry.digest} if entry is not None and entry.digest else {}


register_identity(_identity)   # a plugin's model: its code is part of what its runs are


def initialise(model: nn.Module, method: str, seed: int) -> None:
    """Seeded initialisation, in module order, from one generator."""
    g = rng.generator(rng.INIT, seed)
    if hasattr(model, "initialise_own"):   # models whose theory fixes the initialisation (small.TwoLayer)
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
    entry = find_model(spec.name)
    if entry is None:
        from ..plugins import load_plugins

        load_plugins(export=False)   # a worker process asked for a plugin's model: load what it was told to
        entry = find_model(spec.name)
    if entry is None:
        raise ValueError(f"model.name: unknown model {spec.name!r}; known: {', '.join(registered_models())} "
                         "(a plugin's model needs --plugin or REWIND_PLUGINS)")
    try:
        model = entry.builder(spec, tuple(input_shape), num_classes)
    except (ValueError, SpecError):   # a builder's own refusal ("needs image inputs"): it names the field
        raise
    except Exception as e:  # noqa: BLE001 - a plugin's builder may fail any way: said in one line
        raise SpecError(f"model.name: building {spec.name!r} failed ({type(e).__name__}: "
                        f"{(str(e).splitlines() or [''])[0]})") from None
    if not isinstance(model, RewindModel):
        raise ValueError(f"model.name: {spec.name}'s builder returned a {type(model).__name__}, not a RewindModel "
                         "(subclass rewind.models.RewindModel: it declares which tensors are prunable)")
    if initialise_weights:   # skipped for shapes-only models on the meta device (seeded normal_ there
        initialise(model, spec.init, seed)   # goes through torch's Python refs, which import dynamo: 1.4 s)
    return model


def place(model: nn.Module, device, dtype: torch.dtype | None = None) -> nn.Module:
    """``model`` on ``device`` (in ``dtype``), in the memory layout its convolutions run fastest in
    there: channels-last for models with 2-D convolutions on the CPU (one training step at the
    recipe's batch, 2 cores, torch 2.13: ResNet-20 on CIFAR-10 545 -> 348 ms, Conv-2 149 -> 125 ms,
    the digits CNN 2.12 -> 1.95 ms). The layout changes the order of the convolution's sums, so
    training and every tool that must reproduce its numbers exactly (the instability path's
    endpoints) place models through here. Elsewhere the layout is left as it is (not measured)."""
    model = model.to(device) if dtype is None else model.to(device, dtype)
    if torch.device(device).type == "cpu" and any(p.dim() == 4 for p in model.parameters()):
        model = model.to(memory_format=torch.channels_last)
    return model


def shapes_only(spec: ModelSpec, input_shape: tuple[int, ...], num_classes: int) -> RewindModel:
    """The model built for its shapes and names only: on the meta device (no memory, whatever the
    width), or, for a (plugin's) builder that computes with tensors, on the CPU, uninitialised."""
    try:
        with torch.device("meta"):
            return create_model(spec, input_shape, num_classes, seed=0, initialise_weights=False)
    except SpecError:
        return create_model(spec, input_shape, num_classes, seed=0, initialise_weights=False)
