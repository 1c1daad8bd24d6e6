"""``rewind verify``: check every checksum of a store, like ``git fsck``.

Runs are reported as ok (done or diverged, every file matching its record), damaged
(a file named, and what is wrong with it), or unfinished (started or partial: a
resume point, which is verified when training resumes). Study records and the
instability and linear-model caches are checked for readability. ``repair`` moves
damaged runs aside (``<root>/.damaged/``; the next command that needs them trains them
again), and removes what interrupted writes left behind: temporary files and the
resume point of a run killed after it was recorded as done. Records are checked against the
schemas the readers use (records.py), so what ``results`` or ``report`` cannot read is reported.
"""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from .records import (CLAIM_RESULT, INSTABILITY_SETTINGS, LINEAR_META, MASKS_META, SCORES_META, STUDY,
                      RecordDamaged, read_record)
from .runs import Store


# the derived records: (folder under the root, its entries, files of an entry: schema or "csv")
_DERIVED = (
    ("studies", "*.json", None, {"": STUDY}),
    ("instability", "*", "rows.csv", {"settings.json": INSTABILITY_SETTINGS, "rows.csv": "csv"}),
    ("linear", "*", "rows.csv", {"meta.json": LINEAR_META, "rows.csv": "csv"}),
    ("scores", "*", "scores.csv", {"meta.json": SCORES_META, "scores.csv": "csv"}),
    ("claims", "*", "result.json", {"result.json": CLAIM_RESULT}),
    ("masks", "*", "rows.csv", {"meta.json": MASKS_META, "rows.csv": "csv"}),
)


def _caches(store: Store) -> list[tuple[Path, dict]]:
    """(file or folder, {file name: schema}) for the store's derived records: what ``results``,
    ``report`` and the commands read, with the schemas they read them with (records.py)."""
    out = []
    for kind, pattern, marker, files in _DERIVED:
        folder = store.root / kind
        if not folder.is_dir():
            continue
        for p in sorted(folder.glob(pattern)):
            if marker is None and p.is_file():
                out.append((p, {p.name: files[""]}))
            elif marker is not None and p.is_dir() and not p.is_symlink() and any((p / n).exists() for n in files):
                out.append((p, files))
    return out


def _readable(path: Path, schema) -> str | None:
    try:
        if schema == "csv":
            import io

            pd.read_csv(io.StringIO(path.read_bytes().decode()))
        else:
            read_record(path, schema, "record")
    except FileNotFoundError:
        return "missing"
    except RecordDamaged as e:
        return str(e).split(" is damaged ", 1)[-1].strip("()")
    except Exception as e:  # noqa: BLE001 - any failure to parse is damage to report
        return f"not readable ({type(e).__name__})"
    return None


def verify_store(store: Store, repair: bool = False) -> list[dict]:
    """One row per run and derived record: {what, key, status, problem, action}."""
    rows = []
    for run in store.runs():
        health = run.health(deep=True)
        row = {"what": "run", "key": run.key, "status": health.status, "problem": health.problem, "action": ""}
        if run.link_problem():   # nothing is moved, removed or written through a symbolic link
            row["action"] = "left alone (a symbolic link)" if repair else ""
            rows.append(row)
            continue
        if health.status in ("new", "started", "partial"):
            row["status"] = "unfinished"
            if (run.path / "metrics.csv").exists():
                row["problem"] = ("metrics.csv but no DONE record: killed while finishing, or DONE was deleted; "
                                  "the next command that needs the run trains it again")
        stale = run.interrupted_writes()
        if health.finished and (run.path / "resume.safetensors").exists():
            stale += [run.path / n for n in ("resume.safetensors", "metrics.partial.csv", "probes.partial.csv")
                      if (run.path / n).exists()]
        if stale:
            # a process that holds the run's lock is training it and may be writing these right now
            with run.lock(wait=False) as held:
                names = ", ".join(p.name for p in stale)
                row["problem"] = row["problem"] or (f"left over by an interrupted write: {names}" if held
                                                    else f"a process is training this run (writing {names})")
                if repair and held and health.status != "damaged":
                    for p in stale:
                        p.unlink(missing_ok=True)
                    row["action"] = f"removed {names}"
                elif repair and not held:
                    row["action"] = "left alone: a process is training this run"
        if repair and health.status == "damaged":
            with run.lock():
                if run.health(deep=True).status == "damaged":
                    row["action"] = f"moved to {run.quarantine(health.problem or 'damaged')}"
        rows.append(row)
    for where, names in _caches(store):
        problems = []
        for name, schema in names.items():
            path = where if where.is_file() else where / name
            why = _readable(path, schema)
            if why:
                problems.append(f"{name}: {why}")
        row = {"what": where.parent.name, "key": where.stem if where.is_file() else where.name,
               "status": "damaged" if problems else "ok", "problem": "; ".join(problems) or None, "action": ""}
        if problems and repair:
            dest = store.root / ".damaged" / where.parent.name
            dest.mkdir(parents=True, exist_ok=True)
            target = dest / where.name
            while target.exists():
                target = target.with_name(target.name + "_")
            where.replace(target)
            row["action"] = f"moved to {target} (recomputed when asked for)"
        rows.append(row)
    for row in rows:
        if row["status"] in ("done", "diverged"):
            row["status"] = "ok" if row["status"] == "done" else "ok (diverged)"
    return rows

