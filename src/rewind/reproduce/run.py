"""``rewind reproduce``: measure the selected claims, judge them, write claims.csv and the page."""
from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass
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
from .verdict import RULE  # noqa: F401  (re-exported)

@dataclass
class ClaimResult:
    claim: Claim
    measurement: Measurement
    verdict: str
    seconds: float

    def row(self) -> dict:
        m = self.measurement
        return {"claim": self.claim.id, "title": self.claim.title, "paper": self.claim.paper,
                "measured": m.summary, "verdict": self.verdict, "setting": m.setting,
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
    setting = {"replicates": ctx.replicates, "quick": ctx.quick,
               "overrides": {k: str(v) for k, v in ctx.overrides.items()}}
    key = hashlib.sha256(json.dumps({"claim": result.claim.id, **setting}, sort_keys=True).encode()).hexdigest()[:12]
    folder = store.root / "claims" / f"{result.claim.id}-{key}"
    folder.mkdir(parents=True, exist_ok=True)
    doc = {"claim": result.claim.id, "title": result.claim.title, "verdict": result.verdict, **setting,
           "setting": result.measurement.setting, "studies": result.measurement.studies,
           "tests": [t.row() for t in result.measurement.tests], "seconds": round(result.seconds, 3)}
    atomic_write_text(folder / "result.json", json.dumps(doc, indent=1, sort_keys=True) + "\n")


def _measure(claim: Claim, ctx: Context, store: Store) -> ClaimResult:
    t0 = time.time()
    ctx.log(f"{claim.id}: {claim.title}")
    m = claim.measure(ctx)
    result = ClaimResult(claim, m, claim.verdict_of(m), time.time() - t0)
    _record(store, result, ctx)
    ctx.log(f"{claim.id}: {result.verdict} ({result.seconds:.0f} s): {m.summary}")
    return result


def reproduce(claims: str | None = None, replicates: int | None = None, root=None, out: str | Path = "reproduce",
              quick: bool = False, overrides: dict[str, Any] | None = None, options: TrainOptions | None = None,
              data_root: str | None = None, log: Callable[[str], None] | None = None) -> Reproduction:
    """Measure and judge ``claims`` ('C1,C3'; None: all), write ``out``/claims.csv, tests.csv and
    index.html. Replicates default to 3 (1 with ``quick``, which also judges at a shallower level)."""
    selected = select_claims(claims)
    probe_output(out, "--out", "dir")   # refused now, not after hours of training
    reps = replicates if replicates is not None else (1 if quick else 3)
    check_range("--replicates", reps, 1, MAX_REPLICATES)
    if overrides:
        from ..api import apply_overrides
        from ..spec import Spec

        apply_overrides(Spec(), overrides)  # an unknown field or a bad value is refused before anything runs
    out = Path(out)
    store = Store(root)
    ctx = Context(store=store, replicates=reps, quick=quick, options=options or TrainOptions(quiet=True),
                  figures=out / "figures", overrides=dict(overrides or {}), data_root=data_root,
                  log=log or (lambda message: None))
    started = time.time()
    results = []
    for claim in selected:
        with only_formats("svg"):
            results.append(_measure(claim, ctx, store))
    table = pd.DataFrame([r.row() for r in results])
    tests = pd.DataFrame([{"claim": r.claim.id, **t.row()} for r in results for t in r.measurement.tests])
    out.mkdir(parents=True, exist_ok=True)
    csv = out / "claims.csv"
    atomic_write_text(csv, table.to_csv(index=False))
    atomic_write_text(out / "tests.csv", tests.to_csv(index=False))
    seconds = time.time() - started
    page = claims_page(out, results, ctx, seconds)
    return Reproduction(results, table, tests, page, csv, seconds)
