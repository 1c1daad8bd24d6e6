"""The base of every model: RewindModel (which tensors may be pruned) and the one registry of
models (exact names and name patterns) that register_model fills. A leaf of the models package:
small.py and paper.py register theirs, and registry.py (create_model) imports them all."""
from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from typing import Callable

from torch import nn


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

    def stack_size(self, k: int) -> int:
        """How many members the vectorised engine computes in order to compute ``k`` of this model
        (the extra ones copies of the first, their results dropped): more than ``k`` where a
        member's bits would otherwise depend on the size of its stack. By default a lone member is
        computed beside a copy of itself unless :attr:`stacks_alone_alike`."""
        return 2 if k == 1 and not self.stacks_alone_alike else k

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


@dataclass(frozen=True)
class ModelEntry:
    """A registered model: an exact name, or a name pattern (a regular expression that the whole
    name must match, with examples to list), and the builder ``fn(spec, input_shape, num_classes)``."""

    name: str
    builder: Callable[..., "RewindModel"]
    pattern: re.Pattern | None = None
    examples: tuple[str, ...] = ()
    accepts: Callable[[str], bool] | None = None   # a further check of a name the pattern matches
    doc: str = ""
    group: str = "rewind"
    digest: str = ""

    def matches(self, name: str) -> bool:
        if self.pattern is None:
            return name == self.name
        return bool(self.pattern.fullmatch(name)) and (self.accepts is None or self.accepts(name))


MODELS: dict[str, ModelEntry] = {}


def register_model(name: str, *, pattern: bool = False, examples: tuple[str, ...] = (), accepts=None):
    """Decorator: ``@register_model("my_net")`` over ``builder(spec, input_shape, num_classes)``,
    which returns a :class:`RewindModel`; ``pattern=True`` makes ``name`` a regular expression
    (``lenet(_[0-9]+)+``) with ``examples`` to list. A name (or pattern) that is taken is refused."""
    from ..plugins import origin_of
    from ..spec import SpecError

    def deco(fn):
        if name in MODELS:
            raise SpecError(f"register_model: a model named {name!r} is already registered (by {MODELS[name].group})")
        where = origin_of(fn)
        MODELS[name] = ModelEntry(name, fn, re.compile(name) if pattern else None, tuple(examples) or
                                  (() if pattern else (name,)), accepts, (inspect.getdoc(fn) or "").split("\n")[0],
                                  where.group, where.digest)
        return fn
    return deco


def find_model(name: str) -> ModelEntry | None:
    """The entry whose name or pattern matches ``name`` (exact names first)."""
    if name in MODELS and MODELS[name].pattern is None:
        return MODELS[name]
    for entry in MODELS.values():
        if entry.pattern is not None and entry.matches(name):
            return entry
    return None
