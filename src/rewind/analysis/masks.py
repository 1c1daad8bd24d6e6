"""What masks have in common: per-layer densities, and the overlap (Jaccard index, |A & B| / |A | B|)
between the masks of lottery studies across rewind steps, replicates, levels and criteria.

Each mask is the one a level's run trained under (plain IMP or pruning with a criterion; branches
are left out). Two masks are compared when they have the same number of weights kept (the same
level of one study, or the same target density in two studies, to 0.5 points): an overlap means
something only against its chance value, the Jaccard index of two independent random masks with
those per-layer densities, p q / (p + q - p q), which every row carries beside it.

Cached under ``<root>/masks/<key>/`` (rows.csv, meta.json; key: the studies' keys and their
runs), and shown by ``rewind results`` as kind ``mask``.
"""
from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path

import pandas as pd

from ..spec import SpecError
from ..store import atomic_write_text
from ..store.records import read_table

COLUMNS = ["study", "criterion", "replicate", "rewind_step", "level", "density", "run", "layer", "metric", "value",
           "other_study", "other_criterion", "other_replicate", "other_rewind_step", "other_level", "other_run",
           "differs", "chance"]


def _masks(study) -> list[dict]:
    """The masks of a study's IMP (or criterion) runs at levels >= 1."""
    table = study.table()
    runs = table[(table["branch"] == "none") & (table["level"] > 0)].drop_duplicates("run")
    out = []
    for r in runs.itertuples():
        run = study.store.run(r.run)
        if not run.done or run.diverged:
            continue
        tensors = run.load(study.total)
        mask = {k[5:]: v for k, v in tensors.items() if k.startswith("mask/")}
        out.append({"study": study.key, "criterion": study.spec.prune.criterion, "replicate": int(r.replicate),
                    "rewind_step": r.rewind_step, "level": int(r.level), "density": float(r.density), "run": r.run,
                    "mask": mask})
    return out


def _differs(a: dict, b: dict) -> str:
    return "+".join(k for k in ("study", "rewind_step", "replicate", "level") if a[k] != b[k]) or "same"


def compare_masks(studies, tolerance: float = 0.005) -> pd.DataFrame:
    """Tidy rows: per mask, per layer and overall ("all"), its density; per pair of masks with
    the same density (to ``tolerance``), their Jaccard index and its chance value."""
    masks = [m for s in studies for m in _masks(s)]
    if not masks:
        raise SpecError("--study: no trained subnetworks (levels >= 1) in these studies; run rewind lottery first")
    rows = []
    for m in masks:
        label = {k: m[k] for k in ("study", "criterion", "replicate", "rewind_step", "level", "density", "run")}
        for layer, t in [*m["mask"].items(), ("all", None)]:
            kept = sum(int(v.sum()) for v in m["mask"].values()) if t is None else int(t.sum())
            size = sum(v.numel() for v in m["mask"].values()) if t is None else t.numel()
            rows.append({**label, "layer": layer, "metric": "density", "value": kept / size})
    for a, b in itertools.combinations(masks, 2):
        if abs(a["density"] - b["density"]) > tolerance or a["mask"].keys() != b["mask"].keys():
            continue
        label = {k: a[k] for k in ("study", "criterion", "replicate", "rewind_step", "level", "density", "run")}
        other = {f"other_{k}": b[k] for k in ("study", "criterion", "replicate", "rewind_step", "level", "run")}
        both = union = 0
        chance_num = chance_den = 0.0
        for layer in a["mask"]:
            ma, mb = a["mask"][layer], b["mask"][layer]
            i, u = int((ma & mb).sum()), int((ma | mb).sum())
            p, q = float(ma.float().mean()), float(mb.float().mean())
            chance = p * q / (p + q - p * q) if p + q > 0 else 0.0
            rows.append({**label, **other, "layer": layer, "metric": "jaccard", "value": i / u if u else 1.0,
                         "differs": _differs(a, b), "chance": chance})
            both, union = both + i, union + u
            chance_num, chance_den = chance_num + p * q * ma.numel(), chance_den + (p + q - p * q) * ma.numel()
        rows.append({**label, **other, "layer": "all", "metric": "jaccard", "value": both / union if union else 1.0,
                     "differs": _differs(a, b), "chance": chance_num / chance_den if chance_den else 0.0})
    return pd.DataFrame(rows).reindex(columns=COLUMNS)


def mask_analysis(studies, root) -> tuple[str, pd.DataFrame]:
    """The comparison of ``studies``' masks, computed once and cached (key: the studies and their
    runs). Returns (key, rows)."""
    runs = sorted({m for s in studies for m in s.record().get("runs", {})})
    key = hashlib.sha256(json.dumps({"studies": sorted(s.key for s in studies), "runs": runs}).encode()).hexdigest()[:16]
    folder = Path(root) / "masks" / key
    path = folder / "rows.csv"
    if not path.exists():
        rows = compare_masks(studies)
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write_text(folder / "meta.json", json.dumps({"key": key, "studies": sorted(s.key for s in studies)},
                                                           indent=1, sort_keys=True) + "\n")
        atomic_write_text(path, rows.to_csv(index=False))   # last: its presence marks completion
    return key, read_table(path, f"mask record {key}", ("study", "layer", "metric", "value"))


def overlap_summary(rows: pd.DataFrame) -> pd.DataFrame:
    """Mean Jaccard index of the whole masks (layer "all") and its chance value, per (what differs,
    level, criterion pair), over the pairs."""
    j = rows[(rows["metric"] == "jaccard") & (rows["layer"] == "all")]
    if j.empty:
        return pd.DataFrame(columns=["differs", "criterion", "other_criterion", "level", "jaccard", "chance", "pairs"])
    return (j.groupby(["differs", "criterion", "other_criterion", "level"], dropna=False)
            .agg(jaccard=("value", "mean"), chance=("chance", "mean"), pairs=("value", "count")).reset_index())
