"""All metrics of a store as one tidy table.

Runs that belong to lottery studies are labelled by each study's record (a run
shared by two studies, such as a dense run, appears once per study); other
runs by the meta.json written when they were first trained.
"""
from __future__ import annotations

import json

import pandas as pd

from .runs import Store

COLUMNS = ["run", "kind", "preset", "member", "seed", "step", "split", "metric", "value"]
LABELS = ["study", "replicate", "level", "density", "rewind_step", "rewind_iteration", "branch", "branch_params",
          "copy", "pair", "alpha", "bn_reset", "layer", "model", "device", "precision", "engine"]


def _study_records(store: Store) -> list[dict]:
    folder = store.root / "studies"
    if not folder.is_dir():
        return []
    records = []
    for path in sorted(folder.glob("*.json")):
        try:
            records.append(json.loads(path.read_text()))
        except json.JSONDecodeError:
            continue
    return records


def _instability_frames(store: Store, runs: dict) -> list[pd.DataFrame]:
    """Interpolation rows (kind "instability"): step is the copies' final iteration, member
    and seed those of the first copy, metrics loss/error along the path (alpha) and the
    summaries instability and loss_barrier (alpha empty)."""
    frames = []
    for rec in _study_records(store):
        for key, labels in rec.get("instability", {}).items():
            path = store.root / "instability" / key / "rows.csv"
            if not path.exists():
                continue
            df = pd.read_csv(path)
            settings = json.loads((path.parent / "settings.json").read_text())
            first = runs.get(settings["a"])
            spec = first.spec_doc().get("spec", {}) if first else {}
            df.insert(0, "run", key)
            df.insert(1, "kind", "instability")
            df.insert(2, "preset", rec.get("preset"))
            df.insert(3, "member", 0)
            df.insert(4, "seed", spec.get("seeds", {}).get("init"))
            df.insert(5, "step", first.summary().get("iterations") if first else None)
            for col in LABELS:
                if col != "alpha":
                    df[col] = labels.get(col) if col != "study" else rec["key"]
            df["device"] = first.summary().get("device") if first else None
            df["engine"] = first.summary().get("engine") if first else None
            df["precision"] = spec.get("train", {}).get("precision", "float32")
            frames.append(df)
    return frames


def _linear_frames(store: Store) -> list[pd.DataFrame]:
    """Network-against-linear-model rows (kind "linear"): model is network, linear or both
    (output_distance)."""
    frames = []
    folder = store.root / "linear"
    for rows in sorted(folder.glob("*/rows.csv")) if folder.is_dir() else []:
        meta = json.loads((rows.parent / "meta.json").read_text())
        df = pd.read_csv(rows)
        df.insert(0, "run", rows.parent.name)
        df.insert(1, "kind", "linear")
        df.insert(2, "preset", meta.get("preset"))
        df.insert(3, "member", meta.get("replicate", 0))
        df.insert(4, "seed", meta["spec"]["seeds"]["init"])
        df["replicate"] = meta.get("replicate", 0)
        df["device"] = meta.get("device", "cpu")
        df["engine"] = "linear"
        df["precision"] = meta["spec"]["train"].get("precision", "float32")
        frames.append(df)
    return frames


def results_table(store: Store) -> pd.DataFrame:
    frames = []
    runs = {run.key: run for run in store.runs() if run.done}
    labelled: dict[str, list[dict]] = {}
    for rec in _study_records(store):
        for key, labels in rec.get("runs", {}).items():
            labelled.setdefault(key, []).append({**labels, "preset": rec.get("preset"), "study": rec["key"]})
    metrics_cache = {}

    def run_rows(run):
        m = run.metrics()
        probes = run.path / "probes.csv"
        if probes.exists():
            m = pd.concat([m, pd.read_csv(probes)], ignore_index=True)
        return m

    for key, run in runs.items():
        meta = run.meta()
        spec = run.spec_doc().get("spec", {})
        for labels in labelled.get(key, [meta]):
            m = metrics_cache.get(key)
            if m is None:
                m = metrics_cache[key] = run_rows(run)
            if m.empty:
                continue
            m = m.copy()
            m.insert(0, "run", key)
            m.insert(1, "kind", labels.get("kind"))
            m.insert(2, "preset", labels.get("preset", meta.get("preset")))
            m.insert(3, "member", meta.get("member", 0))
            m.insert(4, "seed", spec.get("seeds", {}).get("init"))
            for col in LABELS:
                if col not in ("layer", "model", "device", "precision", "engine"):
                    m[col] = labels.get(col)
            m["device"] = run.summary().get("device")
            m["engine"] = run.summary().get("engine")
            m["precision"] = spec.get("train", {}).get("precision", "float32")
            for col in ("layer", "model"):
                if col not in m.columns:
                    m[col] = None
            frames.append(m)
    frames.extend(_instability_frames(store, runs))
    frames.extend(_linear_frames(store))
    if not frames:
        return pd.DataFrame(columns=COLUMNS + LABELS)
    df = pd.concat(frames, ignore_index=True)
    return df.reindex(columns=COLUMNS + LABELS).sort_values(["study", "run", "step", "split", "metric"], kind="stable",
                                            na_position="first").reset_index(drop=True)
