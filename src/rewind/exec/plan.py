"""Plans: work whose members become ready as earlier work finishes, handed to an executor.

A plan answers two questions: which members are ready now (``ready()``, each a ``Work``: a tag
the plan knows it by, the member, and the group of members that form one population, such as
"the levels of a lottery study"), and what follows when one finishes (``done(tag, run)``). The
local executor trains everything ready at once as one population per group, then asks again:
for a lottery study that is level by level, every chain stacked. A cluster executor (Ray) submits
ready work as tasks and calls ``done`` as each task finishes, so a chain moves on to its next
level as soon as its previous one is done, whatever the other chains are doing.

The engine of a group is chosen once, from the first population of the group that becomes ready
(for a lottery study: level 1 of every chain), and kept for the group's later members; a
member's result then does not depend on how the executor happened to batch it.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable, Protocol

from ..store import RunDir, Store
from ..train.loop import Member, TrainOptions


@dataclass
class Work:
    tag: Hashable
    member: Member
    group: str = "population"


class Plan(Protocol):
    def ready(self) -> list[Work]: ...

    def done(self, tag: Hashable, run: RunDir) -> None: ...


class Engines:
    """The engine chosen for each group of a plan, decided when the group first becomes ready."""

    def __init__(self, opts: TrainOptions):
        self.opts, self.chosen = opts, {}

    def options(self, group: str, members: list[Member]) -> TrainOptions:
        from .population import fixed_engine

        if group not in self.chosen:
            self.chosen[group] = fixed_engine(members, self.opts)
        return self.chosen[group]


def by_group(work: list[Work]) -> dict[str, list[Work]]:
    groups: dict[str, list[Work]] = {}
    for w in work:
        groups.setdefault(w.group, []).append(w)
    return groups


def run_plan(plan, store: Store, opts: TrainOptions):
    """Train a plan to the end with the executor ``opts.executor`` names; returns the plan."""
    if opts.executor == "ray":
        from .raycluster import run_plan_on_ray

        run_plan_on_ray(plan, store, opts)
        return plan
    from .population import train_here

    engines = Engines(opts)
    while True:
        work = plan.ready()
        if not work:
            return plan
        for group, items in by_group(work).items():
            members = [w.member for w in items]
            for w, run in zip(items, train_here(members, store, engines.options(group, members))):
                plan.done(w.tag, run)
