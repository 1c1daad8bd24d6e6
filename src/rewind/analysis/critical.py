"""Critical periods (Achille et al. 2019, cited by the early-phase paper): a deficit (blurred
inputs, random labels, a subset...) during the first P iterations of ordinary training, removed
after; the final accuracy against P shows whether an early deficit does lasting harm.

Each P is one spec with ``pretrain.deficit`` set (train/pretraining_run.py): the deficit run and the
run that continues from it with the same optimizer state are together one ordinary run whose
data changes at P. P = 0 is ordinary training.
"""
from __future__ import annotations

import pandas as pd

from ..spec import MAX_REPLICATES, Spec, SpecError, check_range, replicate_spec
from ..step import Step
from ..store import Store
from ..train import Member, TrainOptions, check_spec
from ..exec import train_population, with_pretraining


def deficit_spec(spec: Spec, kind: str, until: Step, params: dict | None = None) -> Spec:
    """``spec`` with the deficit ``kind`` during its first ``until`` iterations (none when 0)."""
    if not (until.ep or until.it):
        return spec
    extra = {f"pretrain.{k}": v for k, v in (params or {}).items()}
    return spec.replace(**{"pretrain.kind": kind, "pretrain.steps": str(until), "pretrain.deficit": True, **extra})


def critical_periods(spec: Spec, kind: str, untils: list[Step], replicates: int = 3, preset: str | None = None,
                     store: Store | None = None, options: TrainOptions | None = None,
                     params: dict | None = None) -> pd.DataFrame:
    """Final test accuracy of each replicate for each deficit length: columns deficit,
    deficit_until, deficit_iterations, replicate, test_accuracy, test_loss, run."""
    store = store or Store()
    opts = options or TrainOptions(quiet=True)
    check_range("--replicates", replicates, 1, MAX_REPLICATES)
    if spec.pretrain.kind:
        raise SpecError("--set pretrain.*: the deficit is set by --deficit; give a recipe without pretraining")
    if not untils:
        raise SpecError("--until: give the deficit lengths, e.g. 0it,1ep,4ep")
    deficit_spec(spec, kind, Step(0, 1), params)  # the kind and its parameters checked, even if every length is 0it
    _, ipe, total = check_spec(spec, opts)
    specs = [deficit_spec(spec, kind, u, params) for u in untils]  # all checked before anything trains
    for u in untils:
        if u.iterations(ipe) >= total:
            raise SpecError(f"--until: {u} is not before the end of training ({spec.train.steps})")
    rows = []
    for u, s in zip(untils, specs):
        members = [Member(replicate_spec(s, r), kind="critical", preset=preset, index=r) for r in range(replicates)]
        if s.pretrain.kind:
            check_spec(s, opts)
            members = with_pretraining(members, store, opts)
        for r, run in enumerate(train_population(members, store, opts)):
            final = run.summary().get("final", {})
            rows.append({"deficit": kind, "deficit_until": str(u), "deficit_iterations": u.iterations(ipe),
                         "replicate": r, "test_accuracy": final.get("test_accuracy", float("nan")),
                         "test_loss": final.get("test_loss", float("nan")), "run": run.key})
    return pd.DataFrame(rows)


def critical_summary(table: pd.DataFrame) -> pd.DataFrame:
    """Final test accuracy per deficit length: mean, std and count over replicates, by length."""
    g = table.groupby(["deficit_until", "deficit_iterations"])["test_accuracy"]
    return g.agg(["mean", "std", "count"]).reset_index().sort_values("deficit_iterations")
