"""``rewind reproduce``: measure the selected claims, judge them, write claims.csv and the page."""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from ..spec import MAX_REPLICATES, check_range
from ..store.io import probe_output
from ..store import Store, atomic_write_text
from ..train import TrainOptions
from .registry import Claim, Context, Measurement, select_claims
from ..report.common import only_formats
from .page import claims_page
from .verdict import INCONCLUSIVE, RULE, looks_for  # noqa: F401  (RULE re-exported)

DEFAULT_CAP = 10   # --max-replicates

@dataclass
class ClaimResult:
    claim: Claim
    measurement: Measurement
    verdict: str
    seconds: float
    replicates: int = 3                  # the look at which the verdict was reached (or the cap)
    looks: tuple[int, ...] = (3,)
    trail: tuple[tuple[int, str], ...] = ()   # (replicates, verdict) at each look taken
    changes: dict = field(default_factory=dict)   # spec fields the reproduction changed: (claim's, used)
    seeds: str = ""

    def row(self) -> dict:
        m = self.measurement
        return {"claim": self.claim.id, "title": self.claim.title, "paper": self.claim.paper,
                "measured": m.summary, "verdict": self.verdict, "replicates": self.replicates,
                "looks": " -> ".join(f"{n}: {v}" for n, v in self.trail), "seeds": self.seeds,
                "setting": m.setting, "changed": "; ".join(f"{k} {a} -> {b}" for k, (a, b) in sorted(self.changes.items())),
                "tests": " | ".join(t.describe() for t in m.tests), "studies": " ".join(m.studies),
                "paper_scale": self.claim.paper_scale, "seconds": round(self.seconds, 1)}


@dataclass
class Reproduction:
    results: list[ClaimResult]
    table: pd.DataFrame       # one row per claim
    tests: pd.DataFrame       # one row per test
    page: Path
    csv: Path
    seconds: float


def _record(store: Store, result: ClaimResult, ctx: Context) -> None:
    """<root>/claims/<id>-<hash>/result.json: what ``rewind results`` shows as kind "claim"."""
    setting = {"replicates": result.replicates, "quick": ctx.quick, "seed_offset": ctx.seed_offset,
               "overrides": {k: str(v) for k, v in ctx.overrides.items()}}
    key = hashlib.sha256(json.dumps({"claim": result.claim.id, **setting}, sort_keys=True).encode()).hexdigest()[:12]
    folder = store.root / "claims" / f"{result.claim.id}-{key}"
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"claim": result.claim.id, "title": result.claim.title, "verdict": result.verdict, **setting,
           "looks": list(result.looks), "setting": result.measurement.setting, "studies": result.measurement.studies,
           "tests": [t.row() for t in result.measurement.tests], "seconds": round(result.seconds, 3)}
    atomic_write_text(folder / "result.json", json.dumps(doc, indent=1, sort_keys=True) + "\n")


def seeds_used(ctx: Context, n: int) -> str:
    first = ctx.seed_offset
    return f"replicate r uses the preset's seeds + {first} + r, r = 0-{n - 1}" if first else \
        f"replicate r uses the preset's seeds + r, r = 0-{n - 1}"


def _measure(claim: Claim, ctx: Context, store: Store) -> ClaimResult:
    """Judge ``claim`` at each look of ``ctx.looks`` until its verdict is no longer inconclusive."""
    t0 = time.time()
    ctx.log(f"{claim.id}: {claim.title}")
    trail = []
    ctx.changes, ctx.shortened = {}, {}
    for n in ctx.looks:
        ctx.replicates = n
        m = claim.measure(ctx)
        for t in m.tests:
            t.at(ctx.looks)
        verdict = claim.verdict_of(m)
        trail.append((n, verdict))
        if verdict != INCONCLUSIVE:
            break
        if n != ctx.looks[-1]:
            ctx.log(f"{claim.id}: inconclusive at {n} replicates ({m.summary}); measuring more")
    result = ClaimResult(claim, m, verdict, time.time() - t0, n, ctx.looks, tuple(trail), dict(ctx.changes),
                         seeds_used(ctx, n))
    _record(store, result, ctx)
    ctx.log(f"{claim.id}: {result.verdict} at {n} replicates ({result.seconds:.0f} s): {m.summary}")
    return result


def _root_label(root: Path) -> str:
    """The store as the page names it: relative to the working directory when inside it, else ROOT."""
    try:
        return str(Path(root).resolve().relative_to(Path.cwd().resolve())) or "."
    except ValueError:
        return "ROOT"


def reproduce(claims: str | None = None, replicates: int | None = None, root=None, out: str | Path = "reproduce",
              quick: bool = False, overrides: dict[str, Any] | None = None, options: TrainOptions | None = None,
              data_root: str | None = None, log: Callable[[str], None] | None = None, seed_offset: int = 0,
              max_replicates: int | None = None) -> Reproduction:
    """Measure and judge ``claims`` ('C1,C3'; None: all), write ``out``/claims.csv, tests.csv and
    index.html. Each claim is judged at ``replicates`` (default 3) and, while inconclusive, again at
    5 and 10 replicates up to ``max_replicates`` (default 10; ``quick``: no further looks, and
    shallower, shorter settings). ``seed_offset`` shifts every seed of every run (a fresh seed set)."""
    selected = select_claims(claims)
    probe_output(out, "--out", "dir")   # refused now, not after hours of training
    reps = replicates if replicates is not None else (2 if quick else 3)
    check_range("--replicates", reps, 2, MAX_REPLICATES)
    cap = max_replicates if max_replicates is not None else (reps if quick else max(reps, DEFAULT_CAP))
    check_range("--max-replicates", cap, reps, MAX_REPLICATES)
    check_range("--seed-offset", seed_offset, 0, 10**9)
    if overrides:
        from ..api import apply_overrides
        from ..spec import Spec

        apply_overrides(Spec(), overrides)  # an unknown field or a bad value is refused before anything runs
    out = Path(out)
    store = Store(root)
    ctx = Context(store=store, replicates=reps, quick=quick, options=options or TrainOptions(quiet=True),
                  figures=out / "figures", overrides=dict(overrides or {}), data_root=data_root,
                  log=log or (lambda message: None), seed_offset=seed_offset, looks=looks_for(reps, cap),
                  root_label=_root_label(store.root))
    started = time.time()
    results = []
    for claim in selected:
        with only_formats("svg"):
            results.append(_measure(claim, ctx, store))
    table = pd.DataFrame([r.row() for r in results])
    tests = pd.DataFrame([{"claim": r.claim.id, **t.row(rates=True)} for r in results for t in r.measurement.tests])
    out.mkdir(parents=True, exist_ok=True)
    csv = out / "claims.csv"
    atomic_write_text(csv, table.to_csv(index=False))
    atomic_write_text(out / "tests.csv", tests.to_csv(index=False))
    seconds = time.time() - started
    page = claims_page(out, results, ctx, seconds, tests)
    return Reproduction(results, table, tests, page, csv, seconds)
