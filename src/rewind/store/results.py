"""All metrics of a store as one tidy table.

Runs that belong to lottery studies are labelled by each study's record (a run
shared by two studies, such as a dense run, appears once per study); other
runs by the meta.json written when they were first trained.
"""
from __future__ import annotations

import dataclasses
import json

import pandas as pd

from .records import (CLAIM_RESULT, INSTABILITY_SETTINGS, LINEAR_META, MASKS_META, SCORES_META, STUDY,
                      RecordDamaged, read_record)
from .runs import RunDamaged, Store, notice

COLUMNS = ["run", "kind", "preset", "member", "seed", "step", "split", "metric", "value"]
LABELS = ["study", "replicate", "level", "density", "rewind_step", "rewind_iteration", "branch", "branch_params",
          "copy", "pair", "alpha", "bn_reset", "layer", "model", "device", "precision", "engine", "threads", "ddp", "status",
          "pretrain", "pretrain_steps", "pretrain_params", "example", "linear_model", "linear_params", "claim", "test",
          "verdict", "claim_verdict", "criterion"]
# columns read from each run's spec rather than from the labels a study or command gave it
FROM_SPEC = ("layer", "model", "device", "precision", "engine", "threads", "ddp", "status", "pretrain", "pretrain_steps",
             "pretrain_params", "criterion")


def run_columns(record: dict) -> dict:
    """How a run was trained, from its DONE record: device, engine, threads, and ddp (the number of
    data-parallel processes; None for one process)."""
    return {"device": record.get("device"), "engine": record.get("engine"), "threads": record.get("threads"),
            "ddp": (record.get("ddp") or {}).get("world_size")}


def pretrain_columns(spec: dict) -> dict:
    """pretrain (the kind), pretrain_steps and pretrain_params (the other fields that differ from
    their defaults, as JSON) of a spec's canonical dict; None for runs without pretraining."""
    p = spec.get("pretrain") or {}
    if not p.get("kind"):
        return {"pretrain": None, "pretrain_steps": None, "pretrain_params": None}
    from ..spec import PretrainSpec

    defaults = dataclasses.asdict(PretrainSpec())
    params = {k: v for k, v in p.items() if k not in ("kind", "steps") and v != defaults.get(k)}
    return {"pretrain": p["kind"], "pretrain_steps": p.get("steps"),
            "pretrain_params": json.dumps(params, sort_keys=True) if params else None}


class _Damage(dict):
    """{what: problem} collected while reading a store; every entry is also a warning."""

    def add(self, what: str, problem: str) -> None:
        self[what] = problem
        notice(f"{what} is damaged ({problem}); left out of the results (rewind verify --repair moves it aside)")


def _read_json(path, schema) -> dict:
    """A derived record checked against its schema (store/records.py); ValueError if damaged."""
    try:
        return read_record(path, schema, "record")
    except RecordDamaged as e:
        raise ValueError(str(e).split(" is damaged ", 1)[-1].strip("()")) from None


def _read_csv(path) -> pd.DataFrame:
    import io

    return pd.read_csv(io.StringIO(path.read_bytes().decode()))


def _study_records(store: Store, damage: _Damage | None = None) -> list[dict]:
    folder = store.root / "studies"
    if not folder.is_dir():
        return []
    records = []
    for path in sorted(folder.glob("*.json")):
        try:
            records.append(_read_json(path, STUDY))
        except (OSError, ValueError) as e:
            if damage is not None:
                damage.add(f"study record {path}", str(e) or type(e).__name__)
    return records


def _instability_frames(store: Store, runs: dict, damage: _Damage) -> list[pd.DataFrame]:
    """Interpolation rows (kind "instability"): step is the copies' final iteration, member
    and seed those of the first copy, metrics loss/error along the path (alpha) and the
    summaries instability and loss_barrier (alpha empty)."""
    frames = []
    for rec in _study_records(store):
        for key, labels in rec.get("instability", {}).items():
            path = store.root / "instability" / key / "rows.csv"
            if not path.exists():
                continue
            try:
                df = _read_csv(path)
                settings = _read_json(path.parent / "settings.json", INSTABILITY_SETTINGS)
                first = runs.get(settings["a"])
            except (OSError, ValueError, KeyError) as e:
                damage.add(f"instability record {path.parent}", str(e) or type(e).__name__)
                continue
            spec = first.spec_doc().get("spec", {}) if first else {}
            df.insert(0, "run", key)
            df.insert(1, "kind", "instability")
            df.insert(2, "preset", rec.get("preset"))
            df.insert(3, "member", 0)
            df.insert(4, "seed", spec.get("seeds", {}).get("init"))
            record = first.summary() if first else {}
            df.insert(5, "step", record.get("iterations"))
            for col in LABELS:
                if col != "alpha":
                    df[col] = labels.get(col) if col != "study" else rec["key"]
            for col, v in run_columns(record).items():
                df[col] = v
            df["precision"] = spec.get("train", {}).get("precision", "float32")
            df["status"] = "done"
            for col, v in pretrain_columns(spec).items():
                df[col] = v
            frames.append(df)
    return frames


def _linear_frames(store: Store, damage: _Damage) -> list[pd.DataFrame]:
    """Network-against-linear-model rows (kind "linear"): model is network, linear or both
    (output_distance)."""
    frames = []
    folder = store.root / "linear"
    for rows in sorted(folder.glob("*/rows.csv")) if folder.is_dir() else []:
        try:
            meta = _read_json(rows.parent / "meta.json", LINEAR_META)
            df = _read_csv(rows)
        except (OSError, ValueError, KeyError, TypeError) as e:
            damage.add(f"linear-model record {rows.parent}", str(e) or type(e).__name__)
            continue
        df.insert(0, "run", rows.parent.name)
        df.insert(1, "kind", "linear")
        df.insert(2, "preset", meta.get("preset"))
        df.insert(3, "member", meta.get("replicate", 0))
        df.insert(4, "seed", meta["spec"]["seeds"]["init"])
        df["replicate"] = meta.get("replicate", 0)
        df["device"] = meta.get("device", "cpu")
        df["engine"] = "linear"
        df["linear_model"] = meta.get("linear_model", "offset")
        df["linear_params"] = json.dumps(meta["options"], sort_keys=True) if "options" in meta else None
        df["precision"] = meta["spec"]["train"].get("precision", "float32")
        df["status"] = "done"
        frames.append(df)
    return frames


def _score_frames(store: Store, damage: _Damage) -> list[pd.DataFrame]:
    """Per-example score rows (kind "scores"): member and replicate the replicate, step the
    iteration scored, metric the method, example the training example's index."""
    frames = []
    folder = store.root / "scores"
    for table in sorted(folder.glob("*/scores.csv")) if folder.is_dir() else []:
        try:
            meta = _read_json(table.parent / "meta.json", SCORES_META)
            df = _read_csv(table)
            out = pd.DataFrame({"run": table.parent.name, "kind": "scores", "preset": meta.get("preset"),
                                "member": df["replicate"], "seed": meta["spec"]["seeds"]["init"] + df["replicate"],
                                "step": df["at"], "split": "train", "metric": df["method"], "value": df["score"],
                                "replicate": df["replicate"], "example": df["example"]})
        except (OSError, ValueError, KeyError, TypeError) as e:
            damage.add(f"score set {table.parent}", str(e) or type(e).__name__)
            continue
        out["engine"], out["status"] = "scores", "done"
        frames.append(out)
    return frames


def _claim_frames(store: Store, damage: _Damage) -> list[pd.DataFrame]:
    """Judged claims of ``rewind reproduce`` (kind "claim"): per test, rows with metric mean,
    ci_low, ci_high and n; ``verdict`` is the test's, ``claim_verdict`` the claim's; member is the
    number of replicates the claim was measured with."""
    frames = []
    folder = store.root / "claims"
    for path in sorted(folder.glob("*/result.json")) if folder.is_dir() else []:
        try:
            doc = _read_json(path, CLAIM_RESULT)
            rows = [{"run": path.parent.name, "kind": "claim", "preset": None, "member": int(doc["replicates"]),
                     "seed": None, "step": None, "split": None, "metric": metric, "value": float(t[field]),
                     "claim": doc["claim"], "test": t["test"], "verdict": t["verdict"],
                     "claim_verdict": doc["verdict"], "status": "done"}
                    for t in doc["tests"] for metric, field in (("mean", "mean"), ("ci_low", "low"),
                                                                ("ci_high", "high"), ("n", "n"))]
        except (OSError, ValueError, KeyError, TypeError) as e:
            damage.add(f"claim record {path.parent}", str(e) or type(e).__name__)
            continue
        if not rows:  # a claim without tests (it could not be measured) still shows its verdict
            rows = [{"run": path.parent.name, "kind": "claim", "member": int(doc["replicates"]), "metric": "tests",
                     "value": 0.0, "claim": doc["claim"], "claim_verdict": doc["verdict"], "status": "done"}]
        frames.append(pd.DataFrame(rows))
    return frames


def _mask_frames(store: Store, damage: _Damage) -> list[pd.DataFrame]:
    """Mask comparisons (kind "mask", analysis/masks.py): metric density (per mask and layer) or
    jaccard (per pair of masks; ``pair`` names the other run and what differs, the chance overlap
    is the row's ``example``-free companion metric ``jaccard_chance``)."""
    frames = []
    folder = store.root / "masks"
    for rows_path in sorted(folder.glob("*/rows.csv")) if folder.is_dir() else []:
        try:
            _read_json(rows_path.parent / "meta.json", MASKS_META)
            df = _read_csv(rows_path)
            base = pd.DataFrame({"run": df["run"], "kind": "mask", "preset": None, "member": df["replicate"],
                                 "seed": None, "step": None, "split": None, "metric": df["metric"], "value": df["value"],
                                 "study": df["study"], "replicate": df["replicate"], "level": df["level"],
                                 "density": df["density"], "rewind_step": df["rewind_step"], "layer": df["layer"],
                                 "criterion": df["criterion"],
                                 "pair": (df["differs"].fillna("") + ":" + df["other_run"].fillna("")).where(
                                     df["metric"] == "jaccard")})
        except (OSError, ValueError, KeyError, TypeError) as e:
            damage.add(f"mask record {rows_path.parent}", str(e) or type(e).__name__)
            continue
        chance = base[df["metric"] == "jaccard"].assign(metric="jaccard_chance", value=df.loc[df["metric"] == "jaccard",
                                                                                          "chance"])
        base["status"] = chance["status"] = "done"
        frames += [base, chance]
    return frames


def results_table(store: Store, keys: set[str] | None = None, analyses: bool = True) -> pd.DataFrame:
    """Every finished run's metrics, tidy. Damaged runs and records are left out, each with a
    warning; ``table.attrs["damaged"]`` maps what was left out to its problem. ``keys`` limits the
    runs read to those keys (a study's table reads only its own runs); ``analyses=False`` leaves
    out the rows that are not runs' metrics (instability, linear model, scores, claims)."""
    frames, label_rows = [], []
    damage = _Damage()
    runs, health = {}, {}
    for run in (store.runs() if keys is None else [store.run(k) for k in sorted(keys) if store.run(k).path.is_dir()]):
        h = run.health()
        if h.status == "damaged":
            damage.add(f"run {run.key}", h.problem)
        elif h.finished:
            runs[run.key], health[run.key] = run, h
    labelled: dict[str, list[dict]] = {}
    for rec in _study_records(store, damage):
        for key, labels in rec.get("runs", {}).items():
            labelled.setdefault(key, []).append({**labels, "preset": rec.get("preset"), "study": rec["key"]})

    def run_rows(run):
        m = run.metrics(health[run.key])
        probes = run.path / "probes.csv"
        if probes.exists():
            m = pd.concat([m, pd.read_csv(probes)], ignore_index=True)
        return m

    for key, run in runs.items():
        meta, record = run.meta(), run.summary()
        try:
            spec = run.spec_doc().get("spec", {})
            base = run_rows(run)
        except (RunDamaged, OSError, ValueError) as e:  # changed since its health was read
            damage.add(f"run {key}", str(e))
            continue
        for labels in labelled.get(key, [meta]):
            if base.empty:
                continue
            # the run's labels, one row of their own, joined to its metrics once at the end
            row = {"run": key, "kind": labels.get("kind"), "preset": labels.get("preset", meta.get("preset")),
                   "member": meta.get("member", 0), "seed": spec.get("seeds", {}).get("init")}
            row.update({col: labels.get(col) for col in LABELS if col not in FROM_SPEC})
            row.update(pretrain_columns(spec))
            row.update(run_columns(record))
            row["precision"] = spec.get("train", {}).get("precision", "float32")
            row["status"] = health[key].status
            if row["kind"] in ("lottery", "branch") and labels.get("level"):   # pruned subnetworks: what chose the mask
                row["criterion"] = (spec.get("prune") or {}).get("criterion", "magnitude")
            m = base.drop(columns=[c for c in row if c in base.columns]).assign(_label=len(label_rows))
            label_rows.append(row)
            frames.append(m)
    if frames:
        metrics = pd.concat(frames, ignore_index=True)
        frames = [metrics.join(pd.DataFrame(label_rows), on="_label").drop(columns="_label")]
    if analyses:
        frames.extend(_instability_frames(store, runs, damage))
        frames.extend(_linear_frames(store, damage))
        frames.extend(_score_frames(store, damage))
        frames.extend(_claim_frames(store, damage))
        frames.extend(_mask_frames(store, damage))
    if not frames:
        df = pd.DataFrame(columns=COLUMNS + LABELS)
    else:
        df = pd.concat(frames, ignore_index=True)
        df = df.reindex(columns=COLUMNS + LABELS).sort_values(["study", "run", "step", "split", "metric"], kind="stable",
                                                 na_position="first").reset_index(drop=True)
    df.attrs["damaged"] = dict(damage)
    return df
