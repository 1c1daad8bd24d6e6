"""The Python API: the same operations as the command line."""
from __future__ import annotations

import os
from typing import Any

from .presets import get_preset
from .spec import MAX_REPLICATES, Spec, apply_overrides, check_range, flatten, load_toml, replicate_spec  # noqa: F401
from .store import RunDir, Store
from .train import Member, TrainOptions
from .exec import train_population


def make_spec(preset: str | Spec = "mnist1d_mlp", overrides: dict[str, Any] | None = None,
              config: str | os.PathLike | None = None) -> tuple[Spec, str | None]:
    """A spec from a preset (or a Spec), a TOML file of overrides, then dotted overrides."""
    if isinstance(preset, Spec):
        spec, name = preset, None
    else:
        name = preset
        spec = get_preset(preset).spec
    if config is not None:
        spec = apply_overrides(spec, {k: v for k, v in flatten(load_toml(str(config))).items()
                                      if k not in ("preset", "plugins")})
    if overrides:
        spec = apply_overrides(spec, overrides)
    return spec, name


def replicate_members(spec: Spec, preset: str | None, replicates: int, kind: str = "train") -> list[Member]:
    """R members of one population: replicate r has every seed shifted by r."""
    check_range("replicates", replicates, 1, MAX_REPLICATES)
    return [Member(replicate_spec(spec, r), kind=kind, preset=preset, index=r) for r in range(replicates)]


def train(preset: str | Spec = "mnist1d_mlp", overrides: dict[str, Any] | None = None, *,
          replicates: int | None = None, config: str | None = None, root: str | os.PathLike | None = None,
          quiet: bool = True, options: TrainOptions | None = None, name: str | None = None) -> RunDir | list[RunDir]:
    """Train a preset (or spec) and return its run; with ``replicates=R``, a list of R runs.

    A run already in the store is returned without training. A spec with a ``pretrain`` section
    first trains (or finds) its pretraining runs; the runs returned start where pretraining ended.
    ``name`` labels the runs (the preset column of ``results``) when ``preset`` is a Spec.
    """
    spec, preset_name = make_spec(preset, overrides, config)
    name = preset_name or name
    count = 1 if replicates is None else int(replicates)
    check_range("replicates", count, 1, MAX_REPLICATES)
    opts = options or TrainOptions(quiet=quiet)
    store = Store(root)
    members = replicate_members(spec, name, count)
    if spec.pretrain.kind:
        from .lottery.study import pretrain_members

        members = pretrain_members(members, store, opts)
    runs = train_population(members, store, opts)
    return runs[0] if replicates is None else runs


def results(root: str | os.PathLike | None = None):
    """Every finished run's metrics as one tidy pandas DataFrame."""
    from .store.results import results_table

    return results_table(Store(root))


def summary(root: str | os.PathLike | None = None):
    """One row per finished run: what it is (kind, preset, study, replicate, level, density, rewind
    step, branch, criterion, engine, status) and its final test accuracy and loss; the compact view
    of :func:`results` (which has every metric at every step, tidy)."""
    table = results(root)
    runs = table[table["kind"].isin(["train", "lottery", "branch", "copy", "early", "pretrain", "critical", "score-run",
                                     "diet"]) & (table["split"] == "test")]
    if runs.empty:
        return runs.reindex(columns=["run", "kind", "preset", "study", "test_accuracy", "test_loss"])
    last = runs[runs["step"] == runs.groupby("run")["step"].transform("max")]
    keys = ["run", "kind", "preset", "study", "replicate", "level", "density", "rewind_step", "branch", "criterion",
            "engine", "status", "step"]
    index = [k for k in keys if k in last.columns]
    wide = last.drop_duplicates(index + ["metric"]).set_index(index + ["metric"])["value"].unstack("metric").reset_index()
    wide.columns.name = None
    return wide.rename(columns={"accuracy": "test_accuracy", "loss": "test_loss"}).dropna(axis=1, how="all")
