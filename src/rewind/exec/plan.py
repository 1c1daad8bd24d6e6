"""Plans: work whose members become ready as earlier work finishes, handed to an executor.

A plan answers two questions: which members are ready now (``ready()``, each a ``Work``: a tag
the plan knows it by, the member, and the group of members that form one population, such as
"the levels of a lottery study"), and what follows when one finishes (``done(tag, run)``). The
local executor trains everything ready at once as one population per group, then asks again:
for a lottery study that is level by level, every chain stacked. A cluster executor (Ray) submits
ready work as tasks and calls ``done`` as each task finishes, so a chain moves on to its next
level as soon as its previous one is done, whatever the other chains are doing.

The engine of a group is chosen once; it depends on the model, the data and the options, not on
how many members are ready, and a vectorised member's bits do not depend on its companions, so a
member's result (and its key, which names the engine) does not depend on how the executor
happened to batch it.
"""
from __future__ import annotations

from typing import Hashable, Protocol

from ..store import RunDir, Store
from ..train.member import Member, TrainOptions
from .population import Engines, Work, by_group, check_population, train_here


class Plan(Protocol):
    def ready(self) -> list[Work]: ...

    def done(self, tag: Hashable, run: RunDir) -> None: ...


def run_plan(plan, store: Store, opts: TrainOptions):
    """Train a plan to the end with the executor ``opts.executor`` names; returns the plan."""
    if opts.executor == "ray":
        from .raycluster import run_plan_on_ray

        run_plan_on_ray(plan, store, opts)
        return plan
    engines = Engines(opts)
    while True:
        work = plan.ready()
        if not work:
            return plan
        for group, items in by_group(work).items():
            members = [w.member for w in items]
            for w, run in zip(items, train_here(members, store, engines.options(group, members))):
                plan.done(w.tag, run)


def train_population(members: list[Member], store: Store | None = None,
                     options: TrainOptions | None = None) -> list[RunDir]:
    """Train every member (skipping finished ones) and return their run directories, in order."""
    store = store or Store()
    opts = options or TrainOptions()
    check_population(members, opts)
    if opts.executor == "ray":
        return run_plan(_Population(members), store, opts).runs
    return train_here(members, store, opts)


class _Population:
    """A plan of one population, all ready at once (how an executor trains a population)."""

    def __init__(self, members: list[Member]):
        self.members, self.runs, self._given = members, [None] * len(members), False

    def ready(self):
        if self._given:
            return []
        self._given = True
        return [Work(i, m, "population") for i, m in enumerate(self.members)]

    def done(self, tag: int, run: RunDir) -> None:
        self.runs[tag] = run
