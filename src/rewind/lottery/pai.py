"""Pruning at a step k with a criterion, then training the masked network: the comparison the
early-phase literature runs first (Frankle, Dziugaite, Roy & Carbin 2021).

Each (criterion, density) is a one-level lottery study whose spec has ``prune.criterion`` set,
``prune.score_at = rewind`` (the weights at k are scored: pruning at initialisation when k = 0)
and ``prune.fraction = 1 - density``; so its runs, tables, figures, branches and instability
analyses are a lottery study's. ``shuffle`` adds each mask shuffled within its layers (the
``random-prune`` branch, layerwise: the same per-layer counts), ``reinit`` its weights drawn
afresh: the two ablations that do not hurt pruning at initialisation in the paper.
"""
from __future__ import annotations

import dataclasses

import pandas as pd

from ..spec import Spec, SpecError, check_range
from ..step import Step
from ..store import Store
from ..train import TrainOptions
from .study import Study


@dataclasses.dataclass(frozen=True)
class PaICell:
    criterion: str
    density: float
    study: Study


def pai_studies(spec: Spec, criteria: list[str], densities: list[float], at: Step, preset: str | None,
                store: Store, data_root: str | None = None) -> list[PaICell]:
    """One study per (criterion, density), checked before anything trains."""
    from ..prune import get_criterion

    if not criteria or not densities:
        raise SpecError("--criteria and --densities: give at least one of each")
    for c in criteria:
        get_criterion(c)
    bad = [d for d in densities if not 0.0 < d < 1.0]
    if bad:
        raise SpecError(f"--densities: {bad[0]} is not allowed; densities lie strictly between 0 and 1")
    cells = []
    for c in criteria:
        for d in densities:
            s = spec.replace(**{"prune.criterion": c, "prune.score_at": "rewind", "prune.fraction": 1.0 - d})
            cells.append(PaICell(c, d, Study(s, (at,), preset, store, data_root)))
    return cells


def prune_at(spec: Spec, criteria: list[str], densities: list[float], at: Step = Step(0, 0),
             replicates: int = 3, preset: str | None = None, store: Store | None = None,
             options: TrainOptions | None = None, shuffle: bool = True, reinit: bool = False,
             data_root: str | None = None) -> pd.DataFrame:
    """Train every (criterion, density) cell, and its ablations; one row per trained subnetwork:
    criterion, density (the target), variant (pruned, shuffled, reinit), replicate, test_accuracy,
    run, study."""
    store = store or Store()
    check_range("--replicates", replicates, 1, 10_000)
    cells = pai_studies(spec, criteria, densities, at, preset, store, data_root)
    rows = []
    for cell in cells:
        cell.study.run(1, replicates=replicates, options=options)
        variants = [("shuffled", "random-prune", {"scope": "layerwise"})] if shuffle else []
        if reinit:
            variants.append(("reinit", "reinit", {}))
        for _, branch, params in variants:
            cell.study.branch(branch, [1], params, replicates=replicates, options=options)
        table = cell.study.table()
        table = table[(table["level"] == 1) & (table["split"] == "test") & (table["metric"] == "accuracy")]
        names = {"none": "pruned", **{b: v for v, b, _ in variants}}
        for r in table.itertuples():
            rows.append({"criterion": cell.criterion, "density": cell.density, "variant": names.get(r.branch, r.branch),
                         "replicate": r.replicate, "test_accuracy": r.value, "run": r.run, "study": cell.study.key})
    return pd.DataFrame(rows, columns=["criterion", "density", "variant", "replicate", "test_accuracy", "run",
                                       "study"])


def pai_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Mean, std and n of the test accuracy per (criterion, density, variant)."""
    return table.groupby(["criterion", "density", "variant"])["test_accuracy"].agg(["mean", "std", "count"]) \
        .reset_index()
