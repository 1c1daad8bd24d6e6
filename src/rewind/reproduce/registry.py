"""Claims: what a paper says, how we measure it at embedded scale, and the rule that judges it.

A claim is one registered object (``register_claim``). Its ``measure`` function receives a
:class:`Context` (the store, the number of replicates, quick mode, figure folder, shared studies)
and returns a :class:`Measurement`: the judged tests (see ``verdict.py``), a display table,
figures, the study keys and the commands that recreate the studies. Studies go through the run
store, so a second ``rewind reproduce`` trains nothing.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from ..spec import SpecError
from ..store import Store
from ..train import TrainOptions
from .verdict import Test, combine


SEED_FIELDS = ("init", "data_order", "augment", "prune")


@dataclass
class Context:
    """What every claim's measurement shares. ``replicates`` is the current look's number of
    replicates (the runner raises it while a claim is inconclusive); ``looks`` the whole schedule."""

    store: Store
    replicates: int = 3
    quick: bool = False
    options: TrainOptions = field(default_factory=lambda: TrainOptions(quiet=True))
    figures: Path | None = None           # where figures are written (SVG inlined in the page)
    overrides: dict[str, Any] = field(default_factory=dict)  # applied to every claim's spec (first looks, tests)
    data_root: str | None = None
    log: Callable[[str], None] = lambda message: None
    seed_offset: int = 0                  # added to every seed (seeds.*) of every spec: a fresh seed set
    looks: tuple[int, ...] = (3,)
    root_label: str = "ROOT"              # how commands on the page name the store (never an absolute path)
    changes: dict[str, tuple[str, str]] = field(default_factory=dict)   # field -> (claim's value, used value)
    shortened: dict[str, str] = field(default_factory=dict)  # --quick: the testbed's shortened schedule (--set)
    parallel: int = 1                     # claims measured at a time (rewind reproduce --workers)
    shared_seconds: dict[str, float] = field(default_factory=dict)   # shared work done first -> its time
    _caches: dict[int, dict] = field(default_factory=dict)

    @property
    def cache(self) -> dict:
        """Studies shared by several claims, at the current number of replicates."""
        return self._caches.setdefault(self.replicates, {})

    def spec(self, base):
        """``base`` (a claim's spec) with the reproduction's changes: --set overrides and the seed
        offset. What changed is recorded in ``changes``, for the page."""
        from ..api import apply_overrides
        from ..spec import flatten

        spec = apply_overrides(base, self.overrides) if self.overrides else base
        if self.seed_offset:
            spec = spec.replace(**{f"seeds.{f}": getattr(spec.seeds, f) + self.seed_offset for f in SEED_FIELDS})
        before, after = flatten(base.to_dict()), flatten(spec.to_dict())
        for k in after:
            if before.get(k) != after[k]:
                self.changes[k] = (str(before.get(k)), str(after[k]))
        return spec

    def figure_path(self, name: str) -> Path:
        folder = self.figures or (self.store.root / "reproduce" / "figures")
        folder.mkdir(parents=True, exist_ok=True)
        return folder / name

    def set_flags(self) -> str:
        """--set flags of the reproduction's changes (overrides, shifted seeds) for a claim's preset."""
        out = [f"--set {k}={v}" for k, v in {**self.overrides, **self.shortened}.items()]
        if self.seed_offset:
            out += [f"--set seeds.{f}=<preset's + {self.seed_offset}>" for f in SEED_FIELDS]
        return "".join(" " + x for x in out)

    def flags(self) -> str:
        """The command-line flags that recreate this context's studies."""
        return f"--replicates {self.replicates} --root {self.root_label}{self.set_flags()}"


@dataclass
class Measurement:
    tests: list[Test]
    summary: str                              # the "measured" cell of the claims table
    setting: str                              # preset, replicates, levels: what was run
    table: pd.DataFrame | None = None         # shown under the claim
    figures: list[Path] = field(default_factory=list)   # SVG files
    studies: list[str] = field(default_factory=list)    # keys in the store
    commands: list[str] = field(default_factory=list)   # CLI commands that recreate the studies
    decide: Callable[[list[Test]], str] | None = None   # claims whose rule is not "every test holds"
    note: str = ""                            # what the verdict means at this scale


@dataclass(frozen=True)
class Claim:
    id: str
    title: str
    paper: str          # authors, year, title, figure or section
    statement: str      # the paper's sentence, with its number
    rule: str           # how it is measured and judged here
    measure: Callable[[Context], Measurement]
    paper_scale: str    # the preset (and hardware) that tests it at the paper's scale
    cost: float = 1.0   # about how many minutes it takes on 2 cores: claims measured several at a time
                        # start the costliest first (ordering only: no result depends on it)
    after: tuple[str, ...] = ()   # claims whose studies this one reads: measured in parallel, it starts
                                  # after them (else it would wait on their runs, or compute them twice)

    def verdict_of(self, m: Measurement) -> str:
        return m.decide(m.tests) if m.decide else combine(t.verdict for t in m.tests)


CLAIMS: dict[str, Claim] = {}


def register_claim(id: str, title: str, paper: str, statement: str, rule: str, paper_scale: str,
                   cost: float = 1.0, after: tuple[str, ...] = ()):
    """Decorator: register ``fn(ctx) -> Measurement`` as claim ``id``. ``cost`` (about how many
    minutes the claim takes) and ``after`` (claims whose studies it reads) only order the claims
    when several are measured at a time; no result depends on them."""
    def deco(fn):
        if id in CLAIMS:
            raise SpecError(f"register_claim: a claim {id} is already registered")
        CLAIMS[id] = Claim(id, title, paper, statement, rule, fn, paper_scale, float(cost), tuple(after))
        return fn
    return deco


@dataclass(frozen=True)
class Shared:
    name: str
    train: Callable[[Context], Any]
    claims: frozenset[str]


SHARED: dict[str, Shared] = {}


def register_shared(name: str, claims: tuple[str, ...]):
    """Decorator: register ``fn(ctx)`` as work that ``claims`` share (a study several claims read).
    When claims are measured several at a time, each in its own process, the shared work is done
    first, once, with every worker; otherwise each claim's process would wait on the runs another
    is training. Measuring without it gives the same results (the store holds one copy of a run)."""
    def deco(fn):
        SHARED[name] = Shared(name, fn, frozenset(claims))
        return fn
    return deco


def claim_ids() -> list[str]:
    """Registered claims in the papers' order (C1, C2, ..., C12), whatever order they were registered in."""
    return sorted(CLAIMS, key=lambda c: (int(c[1:]) if c[1:].isdigit() else 10**6, c))


def select_claims(text: str | None) -> list[Claim]:
    """'C1,C3' -> those claims in registry order; None -> all. An empty list ('' or ',') is refused:
    it asked for no claim, and must not start the whole reproduction."""
    if text is None:
        return [CLAIMS[c] for c in claim_ids()]
    wanted = [c.strip().upper() for c in text.split(",") if c.strip()]
    unknown = [c for c in wanted if c not in CLAIMS]
    if unknown or not wanted:
        raise SpecError(f"--claims: {', '.join(unknown) or 'none given'} not known; "
                        f"choose from {', '.join(claim_ids())}")
    return [CLAIMS[c] for c in claim_ids() if c in wanted]


__all__ = ["Context", "Measurement", "Claim", "CLAIMS", "register_claim", "claim_ids", "select_claims", "SHARED",
           "register_shared"]
