"""``rewind reproduce``: measure the selected claims, judge them, write claims.csv and the page."""
from __future__ import annotations

import dataclasses
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


def parallel_slots(selected: list[Claim], opts: TrainOptions) -> int:
    """How many claims are measured at a time: ``--workers`` on this machine's CPUs (local executor),
    each claim in its own process of ``--threads`` threads (default 1), training its populations
    there, whole; otherwise (one worker, Ray, data-parallel, a GPU, a claim registered in
    __main__, which another process cannot import) one claim after another."""
    if opts.workers < 2 or len(selected) < 2 or opts.executor != "local" or opts.ddp or str(opts.device) != "cpu":
        return 1
    if any(getattr(c.measure, "__module__", "") == "__main__" for c in selected):
        return 1
    return min(opts.workers, len(selected))


def _measure_there(claim_id: str, fields: dict, root: str, verbose: bool) -> ClaimResult | None:
    """One claim measured in a worker process (rewind reproduce --workers N); None when the claim
    is not registered there (registered at run time by the caller, not by rewind or a plugin)."""
    from . import CLAIMS

    if claim_id not in CLAIMS:
        return None
    store = Store(root)
    ctx = Context(store=store, log=(lambda m: print(m, flush=True)) if verbose else (lambda m: None), **fields)
    with only_formats("svg"):
        result = _measure(CLAIMS[claim_id], ctx, store)
    result.measurement.decide = None   # the verdict is taken; a closure does not cross processes
    return dataclasses.replace(result, claim=None)   # the caller has the claim (a plugin's may not pickle)


def startable(waiting: list[Claim], done, selected_ids: set[str]) -> list[Claim]:
    """The claims of ``waiting`` (costliest first) whose ``after`` claims are done or not selected."""
    return [c for c in waiting if all(a not in selected_ids or a in done for a in c.after)]


def _measure_in_parallel(selected: list[Claim], ctx: Context, store: Store, slots: int,
                         verbose: bool) -> list[ClaimResult]:
    """Measure ``selected`` ``slots`` at a time, each in a worker process of ``--threads`` threads
    (default 1) that trains its populations whole. The work several claims share (SHARED) is done
    first with every worker; then the costliest claim whose ``after`` claims are done starts
    whenever a worker is free. A member's bits do not depend on its companions nor on the process
    that trains it at a given thread count, so every vectorised run is the run the one-at-a-time
    order trains with the same ``--threads``: only results that depend on the thread count (the
    sequential engine, the linear model) differ from a run whose main process has more threads."""
    from concurrent.futures import FIRST_COMPLETED, wait
    from concurrent.futures.process import BrokenProcessPool

    from ..exec.local import close_pools, worker_pool
    from ..spec import SpecError
    from .registry import SHARED

    ids = {c.id for c in selected}
    for shared in SHARED.values():
        if ids & shared.claims:
            ctx.log(f"{shared.name}, shared by {', '.join(c.id for c in selected if c.id in shared.claims)}")
            t0 = time.time()
            shared.train(ctx)
            ctx.shared_seconds[shared.name] = time.time() - t0
    threads = ctx.options.threads or 1
    opts = dataclasses.replace(ctx.options, workers=1, threads=threads, executor="local", on_iteration=None,
                               on_event=None)
    fields = {"replicates": ctx.replicates, "quick": ctx.quick, "options": opts, "figures": ctx.figures,
              "overrides": ctx.overrides, "data_root": ctx.data_root, "seed_offset": ctx.seed_offset,
              "looks": ctx.looks, "root_label": ctx.root_label}
    waiting = sorted(selected, key=lambda c: -c.cost)   # stable: equal costs in the papers' order
    running, done = {}, {}
    pool = worker_pool(slots, threads)
    try:
        while waiting or running:
            for claim in startable(waiting, done, ids):
                if len(running) == slots:
                    break
                running[pool.submit(_measure_there, claim.id, fields, str(store.root), verbose)] = claim
                waiting.remove(claim)
            if not running:
                raise SpecError("register_claim: the claims' 'after' lists form a cycle among "
                                + ", ".join(c.id for c in waiting))
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                claim = running.pop(future)
                result = future.result()
                if result is None:   # the workers do not know it: measured here, as a worker would
                    with only_formats("svg"):
                        result = _measure(claim, dataclasses.replace(ctx, options=opts), store)
                done[claim.id] = dataclasses.replace(result, claim=claim)
    except BrokenProcessPool:
        close_pools()
        raise SpecError("--workers: a worker process measuring a claim died (killed, or out of memory); "
                        "what it finished is in the store, and the same command goes on from there") from None
    return [done[c.id] for c in selected]


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
    slots = ctx.parallel = parallel_slots(selected, ctx.options)
    if slots > 1:
        results = _measure_in_parallel(selected, ctx, store, slots, verbose=log is not None)
    else:
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
