"""What the layers above attach to the sequential loop: a :class:`LoopHook` (analysis/probes.py's
probes are one) sees the weights before each step and the masked gradients after each backward
pass, asks for extra evaluations, says where a resume point may be written and what it carries."""
from __future__ import annotations

from typing import Callable

import torch


class LoopHook:
    """What a layer above attaches to the sequential loop (analysis/probes.py's ProbeHook is one):
    it sees the weights before each step and the masked gradients after each backward pass, asks
    for extra evaluations, says where a resume point may be written and what it carries, and
    finishes when training ends. The loop itself knows nothing of what is measured."""

    evaluations: frozenset = frozenset()    # iterations at which the loop also evaluates

    def at(self, iteration: int, params: dict[str, torch.Tensor]) -> None:
        """Before the step at ``iteration`` (and once more at the end of training)."""

    def gradients(self, iteration: int, params: dict[str, torch.Tensor]) -> None:
        """After the backward pass of the step at ``iteration`` (gradients masked), before the update."""

    def may_resume_at(self, iteration: int) -> bool:
        return True

    def state(self) -> dict[str, torch.Tensor]:
        """Tensors carried by a resume point (given back to the factory on resumption)."""
        return {}

    def finish(self, diverged: bool) -> None:
        """After the last step (``diverged``: the loss became non-finite)."""


# Factories (member, run, model, ipe, total, iteration, resumed tensors or None) -> LoopHook | None,
# registered by the layers above when they are imported. The modules named here are imported by
# name when the first run trains (the loop does not import the layers above it; like a plugin).
LOOP_HOOKS: list[Callable] = []


HOOK_MODULES = ["rewind.analysis.probes"]


def register_loop_hook(factory: Callable) -> Callable:
    LOOP_HOOKS.append(factory)
    return factory


def loop_hooks(member, run, model, ipe: int, total: int, iteration: int, tensors) -> list[LoopHook]:
    """The hooks the registered factories attach to this member's training (probes, ...)."""
    import importlib

    for name in HOOK_MODULES:
        importlib.import_module(name)
    hooks = [h for f in LOOP_HOOKS if (h := f(member, run, model, ipe, total, iteration, tensors)) is not None]
    if member.spec.probe.schedule and not hooks:
        raise RuntimeError("probe.schedule is set but no probe hook is registered (import rewind.analysis.probes)")
    return hooks
