"""Iterative magnitude pruning with rewinding, as a plan over content-addressed runs.

For each replicate r the dense run (level 0) is trained once and saves its
weights at every rewind step. Each rewind step k then has its own chain:
level L's mask is pruned from level L-1's final weights and mask, the surviving
weights are set to the dense weights at k, and training resumes at k with the
same schedule and a fresh optimizer. Every member of a level (all replicates
and rewind steps) is trained as one population. Runs are content-addressed, so
asking for more levels (or replicates) trains only what is missing.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from .. import rng
from ..models import create_model
from ..prune.criteria import ScoreInput, get_criterion, prune as prune_with
from ..prune.masks import Mask, density, full_mask, random_mask
from ..spec import MAX_LEVELS, MAX_REPLICATES, PruneSpec, Spec, SpecError, check_range, replicate_spec
from ..step import Step
from ..store import RunDamaged, RunDir, Store, atomic_write_text, notice
from ..store.records import STUDY, RecordDamaged, read_record
from ..train import Member, TrainOptions, check_spec
from ..exec import Work, run_plan, train_population, with_pretraining
from ..exec.population import population_key
from .branches import BranchInput, coerce_params, get_branch


def _retrain_damaged(method):
    """A finished run whose checkpoint turns out damaged when loaded is moved aside (RunDamaged):
    go through the plan again, which trains it again and uses the new one."""
    @functools.wraps(method)
    def wrapper(*args, **kwargs):
        for attempt in range(3):
            try:
                return method(*args, **kwargs)
            except RunDamaged:
                if attempt == 2:
                    raise
    return wrapper


@dataclass
class StartPoint:
    key: tuple                      # (replicate, rewind step, level)
    spec: Spec
    weights: dict[str, torch.Tensor]
    mask: Mask | None
    start: int                      # iteration
    labels: dict


@dataclass
class Study:
    """A lottery study: a base spec and the rewind steps; levels and replicates can grow."""

    spec: Spec
    rewind_steps: tuple[Step, ...]
    preset: str | None = None
    store: Store = dataclasses.field(default_factory=Store)
    data_root: str | None = None    # where its dataset's files are (default: $REWIND_DATA, ~/.cache/rewind/data)

    def __post_init__(self) -> None:
        if not self.rewind_steps:
            raise SpecError("--rewind: give at least one rewind step, e.g. 0it,100it,500it")
        self.rewind_steps = tuple(sorted(set(self.rewind_steps), key=lambda s: (s.ep, s.it)))
        # everything checkable is checked before the dense run is trained
        data, self.ipe, self.total = check_spec(self.spec, TrainOptions(data_root=self.data_root))
        self._input_shape, self._classes = data.input_shape, data.num_classes
        for k in self.rewind_steps:
            if k.iterations(self.ipe) >= self.total:
                raise SpecError(f"--rewind: {k} is not before the end of training ({self.spec.train.steps})")
        its = [k.iterations(self.ipe) for k in self.rewind_steps]
        if self.spec.pretrain.kind:
            k_pre = self.spec.pretrain.steps.iterations(self.ipe)
            early = [str(k) for k, i in zip(self.rewind_steps, its) if i < k_pre]
            if early:
                raise SpecError(f"--rewind: {', '.join(early)} is before the end of pretraining "
                                f"({self.spec.pretrain.steps}); a study with pretraining rewinds to its end or later")
        if len(set(its)) != len(its):
            raise SpecError(f"--rewind: {', '.join(map(str, self.rewind_steps))} name the same iteration twice")

    # ---- identity ------------------------------------------------------
    @property
    def key(self) -> str:
        doc = self.spec.canonical_json() + "|rewind=" + ",".join(str(k.iterations(self.ipe)) for k in self.rewind_steps)
        return hashlib.sha256(doc.encode()).hexdigest()[:16]

    @property
    def record_path(self) -> Path:
        return self.store.root / "studies" / f"{self.key}.json"

    def record(self) -> dict:
        """The study's record (store/records.STUDY); RecordDamaged (exit 1) names the file."""
        try:
            return read_record(self.record_path, STUDY, f"study {self.key}")
        except FileNotFoundError:
            return {"key": self.key, "spec": self.spec.to_dict(), "preset": self.preset,
                    "rewind_steps": [str(k) for k in self.rewind_steps], "levels": 0, "replicates": 0,
                    "branches": [], "runs": {}, "instability": {}}

    @contextlib.contextmanager
    def _record_lock(self):
        import fcntl

        self.record_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.record_path.with_suffix(".lock"), "a+") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def _update_record(self, **changes: Any) -> None:
        from ..host import silent_rank

        if silent_rank():
            return  # under DDP, rank 0 writes the store
        with self._record_lock():
            rec = self.record()
            for k, v in changes.items():
                if k == "branch":
                    if v not in rec["branches"]:
                        rec["branches"].append(v)
                elif k in ("runs", "instability"):
                    rec.setdefault(k, {}).update(v)
                else:
                    rec[k] = max(rec.get(k, 0), v)
            atomic_write_text(self.record_path, json.dumps(rec, indent=1, sort_keys=True) + "\n")

    @classmethod
    def load(cls, key_prefix: str, store: Store, data_root: str | None = None) -> "Study":
        folder = store.root / "studies"
        matches = sorted(folder.glob(f"{key_prefix}*.json")) if folder.is_dir() else []
        if len(matches) != 1:
            known = ", ".join(p.stem for p in sorted(folder.glob("*.json"))) if folder.is_dir() else ""
            what = "no study" if not matches else "several studies"
            raise SpecError(f"--study: {what} in {folder} match {key_prefix!r}; studies: {known or 'none'}")
        rec = read_record(matches[0], STUDY, f"study {matches[0].stem}")
        study = cls(Spec.from_dict(rec["spec"]), tuple(Step.parse(s) for s in rec["rewind_steps"]), rec.get("preset"),
                    store, data_root)
        if study.key != matches[0].stem or rec["key"] != study.key:
            raise RecordDamaged(f"study {matches[0].stem}: {matches[0]} is damaged (it holds the record of study "
                                f"{rec['key']}, whose spec and rewind steps hash to {study.key})")
        return study

    # ---- members -------------------------------------------------------
    def dense_spec(self, replicate: int) -> Spec:
        """Level 0 of replicate r. Pruning fields do not affect dense training, so they are reset:
        studies that differ only in how they prune share their dense runs."""
        spec = replicate_spec(self.spec, replicate)
        ckpts = tuple(sorted(set(spec.train.checkpoints) | set(self.rewind_steps), key=lambda s: (s.ep, s.it)))
        return dataclasses.replace(spec, prune=PruneSpec(),
                                   train=dataclasses.replace(spec.train, checkpoints=ckpts))

    def level_spec(self, replicate: int) -> Spec:
        return replicate_spec(self.spec, replicate)

    def _labels(self, replicate: int, level: int, rewind: Step | None, branch: str, mask: Mask | None,
                params: dict | None = None) -> dict:
        return {
            "study": self.key, "replicate": replicate, "level": level,
            "rewind_step": None if rewind is None else str(rewind),
            "rewind_iteration": None if rewind is None else rewind.iterations(self.ipe),
            "branch": branch, "density": 1.0 if mask is None else density(mask),
            "branch_params": json.dumps(params, sort_keys=True) if params else None,
        }

    def _opts(self, options: TrainOptions | None) -> TrainOptions:
        opts = options or TrainOptions(quiet=True)
        if opts.data_root is None and self.data_root is not None:
            opts = dataclasses.replace(opts, data_root=self.data_root)
        return opts

    def dense_runs(self, replicates: int, options: TrainOptions | None = None) -> list[RunDir]:
        return self._dense(range(replicates), self._opts(options))

    def _dense(self, reps, opts: TrainOptions) -> list[RunDir]:
        """Level 0 of the replicates ``reps``; with pretraining, they start where it ended."""
        members = [Member(self.dense_spec(r), kind="lottery", preset=self.preset, index=i,
                          origin=self._labels(r, 0, None, "none", None)) for i, r in enumerate(reps)]
        if self.spec.pretrain.kind:
            members = pretrain_members(members, self.store, opts, replicates=list(reps))
        return train_population(members, self.store, opts)

    def initial_weights(self, replicate: int, dense: RunDir) -> dict[str, torch.Tensor]:
        """W_0 of a replicate: the dense run's first checkpoint, or with pretraining (whose dense
        run starts at its end) the seeded initialisation."""
        if self.spec.pretrain.kind:
            return self._model(seed=self.level_spec(replicate).seeds.init).state_dict()
        return dense.weights(0)

    def template(self):
        """One model of the study's architecture, built once (pruning asks about every tensor)."""
        if not hasattr(self, "_template"):
            self._template = self._model()
        return self._template

    def kind_of(self, name: str) -> str:
        return self.template().layer_kind(name)

    def _model(self, seed: int = 0):
        return create_model(self.spec.model, self._input_shape, self._classes, seed=seed)

    def _pruned(self, prev: RunDir, level: int, replicate: int, rewind: Step, dense: RunDir) -> Mask:
        """Level ``level``'s mask, from the mask of ``prev`` (level - 1's run of the chain (replicate,
        rewind)) and the scores of ``prune.criterion`` on the weights ``prune.score_at`` names: the
        final weights of ``prev`` (IMP), or W_k under prev's mask (``dense`` holds W_k and W_0).
        Remembered for the life of this object (a finished run's weights do not change)."""
        memo = self.__dict__.setdefault("_masks", {})
        if (prev.key, level) not in memo:
            p = self.spec.prune
            criterion = get_criterion(p.criterion)
            mask = self._mask_of(prev)
            k_it = rewind.iterations(self.ipe)
            weights = prev.weights(self.total) if p.score_at == "end" else \
                {n: (w * mask[n] if n in mask else w) for n, w in dense.weights(k_it).items()}
            spec = self.level_spec(replicate)
            model = None
            if criterion.data or criterion.iterative:
                model = self._model()
                model.load_state_dict({n: (w * mask[n] if n in mask else w) for n, w in weights.items()})
            g = rng.generator(rng.PRUNE, spec.seeds.prune, level, k_it, zlib.crc32(b"criterion"))
            inp = ScoreInput(weights, mask, model, g, self.initial_weights(replicate, dense)
                             if p.criterion == "magnitude_init" else None,
                             self._criterion_batches(spec) if criterion.data else None, tuple(self._input_shape))
            memo[(prev.key, level)] = prune_with(criterion, inp, p, self.kind_of, level=level)
        return dict(memo[(prev.key, level)])

    def _criterion_batches(self, spec: Spec):
        """The training batches a criterion with gradients scores (prune.batches of them, drawn with
        the replicate's pruning seed)."""
        from ..data import batch_indices, load_data

        data = load_data(spec.data, self.data_root)
        x, y = data.inputs("train"), data.y_train

        def batches():
            for t in range(spec.prune.batches):
                idx = batch_indices(t, len(y), spec.data.batch_size, spec.seeds.prune)
                yield x[idx], y[idx]
        return batches

    def _mask_of(self, run: RunDir) -> Mask:
        tensors = run.load(self.total)
        mask = {k[5:]: v for k, v in tensors.items() if k.startswith("mask/")}
        return mask or full_mask(self.template())

    def chain(self, replicate: int, rewind: Step, levels: int, options: TrainOptions | None = None) -> list[RunDir]:
        """Runs of levels 0..levels of one chain (trains whatever is missing, level by level)."""
        return self.run(levels, replicates=replicate + 1, options=options, only=(replicate, rewind))

    @_retrain_damaged
    def run(self, levels: int, replicates: int = 1, options: TrainOptions | None = None,
            only: tuple[int, Step] | None = None) -> dict[tuple[int, str, int], RunDir]:
        """Train (or find) every level up to ``levels`` for every replicate and rewind step.

        Returns {(replicate, rewind step, level): run}; level 0 appears under every rewind step.
        """
        check_range("--levels", levels, 0, MAX_LEVELS)
        check_range("--replicates", replicates, 1, MAX_REPLICATES)
        opts = self._opts(options)
        reps = range(replicates) if only is None else [only[0]]
        rewinds = self.rewind_steps if only is None else (only[1],)
        dense = dict(zip(reps, self._dense(reps, opts)))
        out = {(r, str(k), 0): dense[r] for r in reps for k in rewinds}
        index = {dense[r].key: {"kind": "lottery", **self._labels(r, 0, None, "none", None)} for r in reps}
        # A diverged run ends its chain: there are no final weights to prune from (said once per chain).
        ended = {(r, str(k)) for r in reps for k in rewinds if dense[r].diverged}
        rewound = {(r, str(k)): dense[r].weights(k.iterations(self.ipe)) for r in reps for k in rewinds
                   if (r, str(k)) not in ended}
        run_plan(_Levels(self, reps, rewinds, levels, out, index, ended, rewound), self.store, opts)
        for r, k in sorted(ended):
            last = max(lv for (r2, k2, lv) in out if (r2, k2) == (r, k))
            if last < levels:
                notice(f"study {self.key}: replicate {r}, rewind {k} diverged at level {last}; "
                       f"levels {last + 1}-{levels} of that chain are not trained")
        if only is None:
            self._update_record(levels=levels, replicates=replicates, runs=index)
        else:
            self._update_record(runs=index)
        return out

    def mask(self, replicate: int, rewind: Step, level: int) -> Mask:
        """The IMP mask of a level (needs levels 0..level-1 finished)."""
        if level == 0:
            return full_mask(self.template())
        runs = self.chain(replicate, rewind, level - 1)
        prev = runs[(replicate, str(rewind), level - 1)]
        return self._pruned(prev, level, replicate, rewind, runs[(replicate, str(rewind), 0)])

    # ---- branches ------------------------------------------------------
    @_retrain_damaged
    def start_points(self, levels: list[int], replicates: int | None = None, rewinds: tuple[Step, ...] | None = None,
                     branch: str | None = None, params: dict | None = None,
                     options: TrainOptions | None = None) -> list["StartPoint"]:
        """Where training starts for (replicate, rewind step, level), optionally through a branch.

        Level 0 is the dense network at step k (no mask); level L >= 1 is W_k under the
        level's IMP mask. Trains whatever IMP levels these need.
        """
        bk = get_branch(branch) if branch else None
        full = coerce_params(bk, params or {}) if bk else {}
        rec = self.record()
        reps = range(replicates if replicates is not None else max(1, rec["replicates"]))
        rewinds = tuple(rewinds) if rewinds else self.rewind_steps
        unknown = [str(k) for k in rewinds if k not in self.rewind_steps]
        if unknown:
            raise SpecError(f"rewind steps {', '.join(unknown)} are not the study's "
                            f"({', '.join(map(str, self.rewind_steps))})")
        if bk and min(levels) < 1:
            raise SpecError(f"--levels: branches start at level 1 (level 0 is the dense network), got {sorted(levels)}")
        chains = self.run(max(max(levels) - 1, 0), replicates=len(reps), options=options)
        points = []
        for level in sorted(levels):
            for r in reps:
                dense = chains[(r, str(rewinds[0]), 0)]
                for k in rewinds:
                    k_it = k.iterations(self.ipe)
                    if level > 0 and ((r, str(k), level - 1) not in chains or chains[(r, str(k), level - 1)].diverged):
                        continue  # the chain diverged before this level (run() said so)
                    spec, weights = self.level_spec(r), dense.weights(k_it)
                    mask = None
                    if level > 0:
                        prev = chains[(r, str(k), level - 1)]
                        mask = self._pruned(prev, level, r, k, dense)
                    if bk:
                        g = rng.generator(rng.PRUNE, spec.seeds.prune, level, k_it, zlib.crc32(branch.encode()))
                        inp = BranchInput(weights=weights, mask=mask, generator=g, init_weights=self.initial_weights(r, dense),
                                          fresh=lambda s: self._model(seed=s).state_dict(), spec=spec)
                        out = bk.fn(inp, **full)
                        spec, weights, mask = out.spec, out.weights, out.mask
                    labels = self._labels(r, level, k, branch or "none", mask, full if bk else None)
                    points.append(StartPoint((r, str(k), level), spec, weights, mask, k_it, labels))
        return points

    @_retrain_damaged
    def branch(self, kind: str, levels: list[int], params: dict | None = None, replicates: int | None = None,
               rewinds: tuple[Step, ...] | None = None, options: TrainOptions | None = None) -> dict:
        """Train branch ``kind`` at each level for every replicate and rewind step of the study."""
        full = coerce_params(get_branch(kind), params or {})
        points = self.start_points(levels, replicates, rewinds, kind, full, options)
        groups: dict[tuple, list[tuple[tuple, Member]]] = {}
        for pt in points:
            member = Member(pt.spec, kind="branch", preset=self.preset, init=pt.weights, mask=pt.mask,
                            start=pt.start, origin=pt.labels)
            # one population for every replicate and rewind step (only seeds, weights and masks differ)
            groups.setdefault(population_key(pt.spec), []).append((pt.key, member))
        result, index = {}, {}
        opts = self._opts(options)
        for items in groups.values():
            for i, (_, m) in enumerate(items):
                m.index = i
            for (key, m), run in zip(items, train_population([m for _, m in items], self.store, opts)):
                result[key] = run
                index[run.key] = {"kind": "branch", **m.origin}
        self._update_record(branch={"kind": kind, "params": {k: v for k, v in full.items() if v is not None},
                                    "levels": sorted(levels)}, runs=index)
        return result

    # ---- results ---------------------------------------------------------
    def _repr_html_(self) -> str:
        """A notebook shows the study: its key and recipe, and the accuracy table."""
        import html

        from ..report.lottery import lottery_summary

        rec = self.record()
        head = (f"<p><b>study {self.key}</b> ({html.escape(self.preset or '-')}; rewind "
                f"{', '.join(map(str, self.rewind_steps))}; {rec['levels']} levels, {rec['replicates']} replicate(s); "
                f"{html.escape(self.spec.model.name)} on {html.escape(self.spec.data.name)}, criterion "
                f"{html.escape(self.spec.prune.criterion)})</p>")
        if not rec["runs"]:
            return head + "<p>nothing trained yet: study.run(levels, replicates)</p>"
        s = lottery_summary(self.table())
        s = s.assign(density=(100 * s["density"]).round(2), mean=(100 * s["mean"]).round(2),
                     std=(100 * s["std"]).round(2)).rename(columns={"density": "density %", "mean": "test acc %",
                                                                    "std": "std"})
        return head + s.to_html(index=False)

    def table(self):
        """Final metrics of every lottery and branch run of the study: one row per run and metric (tidy)."""
        from ..store.results import results_table

        df = results_table(self.store, keys=set(self.record().get("runs", {})), analyses=False)
        df = df[(df["study"] == self.key) & df["kind"].isin(["lottery", "branch"])]
        df = self._one_engine(df)
        # A diverged run has no final metrics: it shows as NaN rows with status "diverged", so that
        # summaries count it instead of silently averaging over the members that survived.
        div = df[df["status"] == "diverged"]
        div = div[div["step"] == div.groupby("run")["step"].transform("min")].assign(step=self.total, value=float("nan"))
        return pd.concat([df[df["step"] == self.total], div], ignore_index=True)

    def _one_engine(self, df):
        """The rows of one engine. Engines round differently, so runs of one cell trained by two of
        them (a study run once with --engine sequential, once without) are two results: the table
        keeps the engine auto chooses for the study and says how many runs it left out (all of
        them are in ``rewind results``)."""
        family = df["engine"].fillna("sequential").str.replace(r"\(K=\d+\)$", "", regex=True)
        if family.nunique() < 2:
            return df
        from ..exec.population import choose_engine

        keep = choose_engine([Member(self.spec)], self._opts(None))
        kept = df[family == keep]
        notice(f"study {self.key} holds runs of several engines ({', '.join(sorted(family.unique()))}); its table "
               f"shows the {keep} engine's ({kept['run'].nunique()} runs) and leaves out "
               f"{df['run'].nunique() - kept['run'].nunique()} (rewind results lists them all)")
        return kept

    def instability_table(self):
        """Every interpolation of the study: path points (alpha) and summaries (instability)."""
        from ..store.results import results_table

        df = results_table(self.store)
        return df[(df["study"] == self.key) & (df["kind"] == "instability")].reset_index(drop=True)


class _Levels:
    """The levels of a study's chains as a plan: level L of chain (replicate r, rewind step k) is
    ready when level L-1 of that chain is done (its mask is pruned from that run). Every level
    belongs to one group, so the local executor trains each level of every chain as one
    population, and a cluster executor moves each chain on as soon as it can."""

    def __init__(self, study: "Study", reps, rewinds, levels: int, out: dict, index: dict, ended: set,
                 rewound: dict):
        self.study, self.levels, self.out, self.index, self.ended, self.rewound = \
            study, levels, out, index, ended, rewound
        self.origins: dict = {}
        self.next = {(r, k): 1 for r in reps for k in rewinds if (r, str(k)) not in ended}

    def ready(self) -> list[Work]:
        s, work = self.study, []
        for (r, k), level in sorted(self.next.items(), key=lambda item: (item[0][0], item[0][1].ep, item[0][1].it)):
            if level is None or level > self.levels:
                continue
            mask = s._pruned(self.out[(r, str(k), level - 1)], level, r, k, self.out[(r, str(k), 0)])
            member = Member(s.level_spec(r), kind="lottery", preset=s.preset, index=len(work),
                            init=self.rewound[(r, str(k))], mask=mask, start=k.iterations(s.ipe),
                            origin=s._labels(r, level, k, "none", mask))
            work.append(Work((r, k, level), member, "levels"))
            self.origins[(r, k, level)] = member.origin
            self.next[(r, k)] = None  # in flight
        return work

    def done(self, tag, run: RunDir) -> None:
        r, k, level = tag
        self.out[(r, str(k), level)] = run
        self.index[run.key] = {"kind": "lottery", **self.origins.pop(tag)}
        if run.diverged:
            self.ended.add((r, str(k)))
        else:
            self.next[(r, k)] = level + 1


MASK_STREAM = 2  # rng.PRETRAIN streams: 0 and 1 alter the train and test splits, 2 draws random masks


def sparse_masks(spec: Spec, replicates: list[int], store: Store, opts: TrainOptions) -> list[Mask]:
    """The mask each replicate pretrains (pretrain.kind = sparse): level ``pretrain.level`` of the
    chain of replicate r rewound to the last rewind step of study ``pretrain.study`` (levels it
    lacks are trained), or a random mask with that mask's per-layer counts (``pretrain.mask =
    random``), drawn from pretrain.seed and the replicate's pruning seed."""
    p = spec.pretrain
    try:
        source = Study.load(p.study, store, opts.data_root)
    except SpecError as e:
        raise SpecError(f"pretrain.study: {str(e).removeprefix('--study: ')}") from None
    if source.spec.model != spec.model or source.spec.data != spec.data:
        raise SpecError(f"pretrain.study: study {source.key} trains another model or data "
                        f"({source.spec.model.name} on {source.spec.data.name}); its masks do not fit")
    k = source.rewind_steps[-1]
    masks = []
    for r in replicates:
        imp = source.mask(r, k, p.level)
        if p.mask == "random":  # spec is the replicate's: its seeds.prune is shifted already
            imp = random_mask(imp, rng.generator(rng.PRETRAIN, p.seed, MASK_STREAM, spec.seeds.prune))
        masks.append(imp)
    return masks


def pretrain_members(members: list[Member], store: Store, opts: TrainOptions,
                     replicates: list[int] | None = None) -> list[Member]:
    """``members`` (replicate ``replicates[i]`` each; default their index) starting where their
    pretraining ends, the pretraining trained or found in the store."""
    spec = members[0].spec
    masks = None
    if spec.pretrain.kind == "sparse":
        reps = replicates if replicates is not None else [m.index for m in members]
        masks = [sparse_masks(m.spec, [r], store, opts)[0] for m, r in zip(members, reps)]
    return with_pretraining(members, store, opts, masks)
