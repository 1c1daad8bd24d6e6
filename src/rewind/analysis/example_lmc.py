"""Per-example linear mode connectivity ("Lottery tickets on a data diet", Paul et al. 2022): the
share of training examples whose barrier between two copies trained from W_k is small, at each k,
against the accuracy of IMP rewound to k.

The barrier of an example is the one instability analysis stores for every pair of copies
(analysis/instability.py, per_example.csv): its loss at the midpoint of the two copies' final
weights minus the mean of its losses at the two ends, in evaluation mode on the un-augmented
training set (the authors' definition: midpoint only). An example counts as linearly connected
when its barrier is below ``threshold`` (nats; the papers give no value we could check, so the
default 0.05 is ours and the table is given for several).
"""
from __future__ import annotations

import pandas as pd

from ..spec import SpecError
from .instability import load_per_example

DEFAULT_THRESHOLDS = (0.01, 0.05, 0.1)


def example_lmc(study, thresholds=DEFAULT_THRESHOLDS, level: int = 0) -> pd.DataFrame:
    """One row per (pair of copies, threshold) at ``level`` of the study's instability analyses:
    replicate, rewind_step, rewind_iteration, pair, threshold, fraction (of training examples
    below it), examples."""
    rec = study.record()
    rows = []
    for key, labels in rec.get("instability", {}).items():
        if labels.get("level") != level or labels.get("branch", "none") != "none" or labels.get("bn_reset"):
            continue
        try:
            ex = load_per_example(study.store.root, key)
        except FileNotFoundError:
            continue
        for t in thresholds:
            rows.append({"replicate": labels["replicate"], "rewind_step": labels["rewind_step"],
                         "rewind_iteration": labels["rewind_iteration"], "pair": labels["pair"], "threshold": t,
                         "fraction": float((ex["barrier"] < t).mean()), "examples": len(ex)})
    if not rows:
        raise SpecError(f"--study {study.key}: no instability analysis of level {level} to read; run rewind "
                        f"instability --study {study.key} --at K1,K2,... --levels {level} first")
    return pd.DataFrame(rows)


def lmc_against_imp(study, imp_level: int, thresholds=DEFAULT_THRESHOLDS, level: int = 0):
    """(per-k table, correlations): the mean connected fraction and the mean test accuracy of IMP
    at ``imp_level`` rewound to k, per k; and per threshold the Spearman correlation between the
    two over (replicate, k) pairs, with n."""
    lmc = example_lmc(study, thresholds, level)
    acc = study.table()
    acc = acc[(acc["branch"] == "none") & (acc["level"] == imp_level) & (acc["split"] == "test")
              & (acc["metric"] == "accuracy")]
    if acc.empty:
        raise SpecError(f"--imp-level: study {study.key} has no IMP runs at level {imp_level}")
    acc = acc.groupby(["replicate", "rewind_iteration"], as_index=False)["value"].mean()
    per_rep = lmc.groupby(["threshold", "replicate", "rewind_iteration", "rewind_step"], as_index=False)["fraction"].mean()
    joined = per_rep.merge(acc, on=["replicate", "rewind_iteration"]).rename(columns={"value": "imp_accuracy"})
    per_k = joined.groupby(["threshold", "rewind_iteration", "rewind_step"], as_index=False).agg(
        fraction=("fraction", "mean"), fraction_std=("fraction", "std"), imp_accuracy=("imp_accuracy", "mean"),
        imp_accuracy_std=("imp_accuracy", "std"), n=("fraction", "count"))
    corr = [{"threshold": t, "spearman": g["fraction"].corr(g["imp_accuracy"], method="spearman"), "n": len(g)}
            for t, g in joined.groupby("threshold")]
    return per_k.sort_values(["threshold", "rewind_iteration"]).reset_index(drop=True), pd.DataFrame(corr)
