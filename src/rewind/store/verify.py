"""``rewind verify``: check every checksum of a store, like ``git fsck``.

Runs are reported as ok (done or diverged, every file matching its record), damaged
(a file named, and what is wrong with it), or unfinished (started or partial: a
resume point, which is verified when training resumes). Study records and the
instability and linear-model caches are checked for readability. ``repair`` moves
damaged runs aside (``<root>/.damaged/``; the next command that needs them trains them
again), and removes what interrupted writes left behind: temporary files and the
resume point of a run killed after it was recorded as done.
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from .runs import Store


def _caches(store: Store) -> list[tuple[Path, list[str]]]:
    """(folder or file, the files in it that must read back) for the store's derived records."""
    out = []
    studies = store.root / "studies"
    for path in sorted(studies.glob("*.json")) if studies.is_dir() else []:
        out.append((path, [path.name]))
    for kind, names in (("instability", ["settings.json", "rows.csv"]), ("linear", ["meta.json", "rows.csv"])):
        folder = store.root / kind
        for sub in sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []:
            if (sub / "rows.csv").exists() or (sub / names[0]).exists():
                out.append((sub, names))
    return out


def _readable(path: Path) -> str | None:
    try:
        text = path.read_bytes().decode()
        if path.suffix == ".json":
            if not isinstance(json.loads(text), dict):
                return "not a JSON object"
        else:
            import io

            pd.read_csv(io.StringIO(text))
    except FileNotFoundError:
        return "missing"
    except Exception as e:  # noqa: BLE001 - any failure to parse is damage to report
        return f"not readable ({type(e).__name__})"
    return None


def verify_store(store: Store, repair: bool = False) -> list[dict]:
    """One row per run and derived record: {what, key, status, problem, action}."""
    rows = []
    for run in store.runs():
        health = run.health(deep=True)
        row = {"what": "run", "key": run.key, "status": health.status, "problem": health.problem, "action": ""}
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
        for name in names:
            path = where if where.is_file() else where / name
            why = _readable(path)
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

