"""All metrics of a store as one tidy table."""
from __future__ import annotations

import pandas as pd

from .runs import METRIC_FIELDS, Store

COLUMNS = ["run", "kind", "preset", "member", "seed", "step", "split", "metric", "value"]


def results_table(store: Store) -> pd.DataFrame:
    frames = []
    for run in store.runs():
        if not run.done:
            continue
        m = run.metrics()
        if m.empty:
            continue
        meta = run.meta()
        spec = run.spec_doc().get("spec", {})
        m.insert(0, "run", run.key)
        m.insert(1, "kind", meta.get("kind"))
        m.insert(2, "preset", meta.get("preset"))
        m.insert(3, "member", meta.get("member", 0))
        m.insert(4, "seed", spec.get("seeds", {}).get("init"))
        frames.append(m)
    if not frames:
        return pd.DataFrame(columns=COLUMNS)
    df = pd.concat(frames, ignore_index=True)
    extra = [c for c in df.columns if c not in COLUMNS]
    return df[COLUMNS + extra].sort_values(["run", "step", "split", "metric"], kind="stable").reset_index(drop=True)


assert set(METRIC_FIELDS) <= set(COLUMNS)
