"""The data-pruning experiment of "Deep learning on a data diet" (Paul et al. 2021): final test
accuracy against the fraction of training data kept, for random subsets and for the hardest
examples by each score (EL2N, GraNd, forgetting events), beside the full data.

Scores are score sets (analysis/scores.py) of the same recipe; each subset is a data spec
(data.subset, data/subsets.py) trained for the recipe's schedule, so with fewer examples the same
number of iterations is more epochs (the presets count iterations). The random subset of a given
size is the same for every replicate (data.subset_seed 0): replicates differ in init and order.
"""
from __future__ import annotations

import pandas as pd

from ..spec import MAX_REPLICATES, Spec, SpecError, check_range, replicate_spec
from ..step import Step
from ..store import Store
from ..train import Member, TrainOptions, check_spec
from ..exec import train_population
from .scores import METHODS, ScoreSet


def default_at(method: str, spec: Spec, ipe: int, total: int) -> Step:
    """Where the authors score: EL2N about 10% into training, GraNd at initialisation, forgetting
    events over the whole run."""
    if method not in METHODS:
        raise SpecError(f"--score-method: {method!r} is not allowed; choose one of: {', '.join(METHODS)}")
    return {"el2n": Step(0, total // 10), "grand": Step(0, 0), "forgetting": Step(0, total)}[method]


def data_diet(spec: Spec, keep: list[float], methods: list[str], replicates: int = 3, preset: str | None = None,
              store: Store | None = None, options: TrainOptions | None = None, score_replicates: int = 10,
              at: dict[str, Step] | None = None, subset: str = "hardest") -> pd.DataFrame:
    """Rows: method, keep, replicate, test_accuracy, run, score (the score set's key; '' for
    random and the full data, whose method is 'full' and keep 1.0)."""
    store = store or Store()
    opts = options or TrainOptions(quiet=True)
    check_range("--replicates", replicates, 1, MAX_REPLICATES)
    if spec.data.subset:
        raise SpecError("data.subset: the experiment chooses the subsets; give a recipe on the full data")
    bad = [k for k in keep if not 0 < k <= 1]
    if bad or not keep:
        raise SpecError(f"--keep: fractions must lie in (0, 1], got {', '.join(map(str, bad)) or 'none'}")
    unknown = [m for m in methods if m != "random" and m not in METHODS]
    if unknown or not methods:
        raise SpecError(f"--methods: {', '.join(unknown) or 'none given'}; choose from random, {', '.join(METHODS)}")
    if subset not in ("easiest", "hardest"):
        raise SpecError(f"--keep-which: {subset!r} is not allowed; choose hardest (the paper) or easiest")
    _, ipe, total = check_spec(spec, opts)
    sets = {m: ScoreSet(spec, m, (at or {}).get(m) or default_at(m, spec, ipe, total), score_replicates, preset,
                        store, opts.data_root) for m in methods if m != "random"}
    plan = [("full", 1.0, spec, "")]
    for m in methods:
        for k in keep:
            if m == "random":
                plan.append((m, k, spec.replace(**{"data.subset": "random", "data.subset_fraction": k}), ""))
            else:
                plan.append((m, k, None, sets[m].key))  # the spec needs the score set: built below
    rows = []
    for m, k, s, key in plan:
        if s is None:
            sets[m].compute(opts)
            s = spec.replace(**{"data.subset": subset, "data.subset_fraction": k, "data.subset_score": key})
        check_spec(s, opts)
        members = [Member(replicate_spec(s, r), kind="diet", preset=preset, index=r) for r in range(replicates)]
        for r, run in enumerate(train_population(members, store, opts)):
            final = run.summary().get("final", {})
            rows.append({"method": m, "keep": k, "replicate": r, "test_accuracy": final.get("test_accuracy"),
                         "run": run.key, "score": key})
    return pd.DataFrame(rows)


def diet_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Final test accuracy per (method, keep): mean, std and n over the trainings."""
    return table.groupby(["method", "keep"])["test_accuracy"].agg(["mean", "std", "count"]).reset_index()
