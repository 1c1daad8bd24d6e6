"""The early-phase paper's pretraining grid (section 5): IMP rewound to the end of pretraining on
altered data, for each kind x pretraining length, beside the supervised reference (k = 0 and
rewinding to each length), as one tidy table. (Members get their pretraining, and sparse
pretraining its masks, in lottery/study.py: pretrain_members.)"""
from __future__ import annotations

import dataclasses

import pandas as pd

from ..spec import MAX_LEVELS, MAX_REPLICATES, Spec, SpecError, check_range
from ..step import Step
from ..store import Store
from ..train import TrainOptions
from .study import Study

PRETRAIN_STUDY_KINDS = ("random-labels", "rotation", "transform", "blur", "subset", "sparse")


@dataclasses.dataclass
class PretrainGrid:
    """The paper's grid: for each kind and pretraining length s, a lottery study rewound to the
    end of pretraining; beside it the supervised reference, one study rewound to 0 and to each s.
    ``sparse`` is run twice, with the reference study's IMP mask at ``sparse_level`` (its chain
    rewound to the longest s) and with a random mask of the same per-layer densities."""

    spec: Spec
    kinds: tuple[str, ...]
    steps: tuple[Step, ...]
    levels: int
    replicates: int = 3
    preset: str | None = None
    store: Store = dataclasses.field(default_factory=Store)
    params: dict = dataclasses.field(default_factory=dict)  # pretrain.<field> for the kinds that read it
    sparse_level: int | None = None
    data_root: str | None = None
    variants: list[tuple[str, dict]] | None = None  # (label, pretrain.* fields) instead of kinds x params

    def __post_init__(self) -> None:
        check_range("--levels", self.levels, 1, MAX_LEVELS)
        check_range("--replicates", self.replicates, 1, MAX_REPLICATES)
        unknown = [k for k in self.kinds if k not in PRETRAIN_STUDY_KINDS]
        if self.variants is None and (unknown or not self.kinds):
            raise SpecError(f"--kinds: {', '.join(unknown) or 'none given'}; choose from {', '.join(PRETRAIN_STUDY_KINDS)}")
        if self.spec.pretrain.kind:
            raise SpecError("--set pretrain.*: the grid sets pretraining itself; give a recipe without it")
        self.steps = tuple(sorted(set(self.steps), key=lambda s: (s.ep, s.it)))
        self.reference = Study(self.spec, tuple({Step(0, 0), *self.steps}), self.preset, self.store, self.data_root)
        if self.sparse_level is None:
            self.sparse_level = self.levels
        check_range("--sparse-level", self.sparse_level, 1, MAX_LEVELS)
        self.lengths = [s for s in self.steps if s.iterations(self.reference.ipe) > 0]
        if not self.lengths:
            raise SpecError("--steps: give at least one pretraining length above 0it, e.g. 0it,200it,1ep")
        self.studies = {}  # (label, step) -> Study; every spec is built (and checked) before training
        variants = self.variants if self.variants is not None else [
            (label, {"pretrain.kind": kind, **extra}) for kind in self.kinds for label, extra in self._variants(kind)]
        for label, fields in variants:
            for s in self.lengths:
                spec = self.spec.replace(**{**fields, "pretrain.steps": str(s)})
                self.studies[(label, str(s))] = Study(spec, (s,), self.preset, self.store, self.data_root)

    def _variants(self, kind: str) -> list[tuple[str, dict]]:
        from ..spec import PRETRAIN_PARAMS

        own = {f"pretrain.{k}": v for k, v in self.params.items() if k in PRETRAIN_PARAMS[kind] or k in ("seed", "lr")}
        if kind != "sparse":
            return [(kind, own)]
        src = {"pretrain.study": self.reference.key, "pretrain.level": self.sparse_level}
        return [("sparse-imp", {**own, **src, "pretrain.mask": "imp"}),
                ("sparse-random", {**own, **src, "pretrain.mask": "random"})]

    def run(self, options: TrainOptions | None = None) -> pd.DataFrame:
        """Train (or find) every study of the grid; return :meth:`table`."""
        self.reference.run(max(self.levels, self.sparse_level), replicates=self.replicates, options=options)
        for study in self.studies.values():
            study.run(self.levels, replicates=self.replicates, options=options)
        return self.table()

    def table(self) -> pd.DataFrame:
        """Final test accuracy of every subnetwork: one row per (kind, pretraining length, level,
        replicate). kind 'supervised' is the reference study (length 0it is k = 0, the others
        rewinding to that iteration of ordinary training); level 0 is the dense network."""
        frames = []
        ref = self.reference.table()
        ref = ref[(ref["branch"] == "none") & (ref["split"] == "test") & (ref["metric"] == "accuracy")]
        ref = ref[(ref["level"] <= self.levels)]
        for s in self.steps:
            k_it = s.iterations(self.reference.ipe)
            part = ref[(ref["rewind_iteration"] == k_it) | (ref["level"] == 0)].assign(kind="supervised",
                                                                                      pretrain_steps=str(s))
            frames.append(part.drop_duplicates(["run", "level", "replicate"]))
        for (label, s), study in self.studies.items():
            t = study.table()
            t = t[(t["branch"] == "none") & (t["split"] == "test") & (t["metric"] == "accuracy")]
            frames.append(t.assign(kind=label, pretrain_steps=s))
        df = pd.concat(frames, ignore_index=True)
        df["pretrain_iterations"] = [Step.parse(s).iterations(self.reference.ipe) for s in df["pretrain_steps"]]
        cols = ["kind", "pretrain_steps", "pretrain_iterations", "level", "density", "replicate", "value", "run",
                "study", "pretrain_params"]
        return df[cols].rename(columns={"value": "test_accuracy"}).sort_values(
            ["kind", "pretrain_iterations", "level", "replicate"]).reset_index(drop=True)


def diet_variants(sizes: list[int], orders: list[str], score: str | None, balance: bool = False) -> list[tuple[str, dict]]:
    """Pretraining on subsets ("Lottery tickets on a data diet"): one variant per (order, size),
    labelled ORDER-SIZE; easiest and hardest rank by the score set ``score``."""
    bad = [o for o in orders if o not in ("random", "easiest", "hardest")]
    if bad or not orders:
        raise SpecError(f"--orders: {', '.join(bad) or 'none given'}; choose from random, easiest, hardest")
    if not sizes:
        raise SpecError("--sizes: give the subset sizes, e.g. 100,400,1000")
    out = []
    for order in orders:
        for size in sizes:
            fields = {"pretrain.kind": "subset", "pretrain.size": size, "pretrain.order": order,
                      "pretrain.balance": balance}
            if order != "random":
                fields["pretrain.score"] = score
            out.append((f"{order}-{size}", fields))
    return out
