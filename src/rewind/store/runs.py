"""Run directories.

One directory per run, named by the run's key (the content hash of its spec
and starting point)::

    <root>/<key>/spec.json              what was asked for (canonical)
    <root>/<key>/meta.json              how it was asked for (kind, preset, member)
    <root>/<key>/step_<it>.safetensors  weights (+ optimizer state) at step <it>
    <root>/<key>/metrics.csv            step, split, metric, value
    <root>/<key>/DONE                   completion marker with a summary
    <root>/<key>/resume.safetensors     last resume point (deleted when done)

Every file is written atomically; a lock file serialises training of one run
across processes.
"""
from __future__ import annotations

import contextlib
import csv
import io
import json
import os
from pathlib import Path
from typing import Iterator

import torch

from .io import CheckpointError, atomic_write_text, load_checkpoint, save_checkpoint

METRIC_FIELDS = ("step", "split", "metric", "value")


def default_root(explicit: str | os.PathLike | None = None) -> Path:
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("REWIND_ROOT") or "runs")


def rows_to_csv(rows: list[dict]) -> str:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=METRIC_FIELDS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({k: (repr(r[k]) if k == "value" else r[k]) for k in METRIC_FIELDS})
    return buf.getvalue()


def csv_to_rows(text: str) -> list[dict]:
    return [
        {"step": int(r["step"]), "split": r["split"], "metric": r["metric"], "value": float(r["value"])}
        for r in csv.DictReader(io.StringIO(text))
    ]


class RunDir:
    def __init__(self, root: Path, key: str):
        self.root = Path(root)
        self.key = key
        self.path = self.root / key

    # ---- state --------------------------------------------------------
    @property
    def done(self) -> bool:
        return (self.path / "DONE").exists()

    @property
    def status(self) -> str:
        if self.done:
            return "done"
        if (self.path / "resume.safetensors").exists():
            return "partial"
        return "new" if not (self.path / "spec.json").exists() else "started"

    def summary(self) -> dict:
        try:
            return json.loads((self.path / "DONE").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def spec_doc(self) -> dict:
        return json.loads((self.path / "spec.json").read_text())

    def meta(self) -> dict:
        try:
            return json.loads((self.path / "meta.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    # ---- writing ------------------------------------------------------
    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """An exclusive lock held while this process trains the run (blocks others)."""
        import fcntl

        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / ".lock", "a+") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def write_spec(self, spec_doc: dict, meta: dict) -> None:
        spec_path = self.path / "spec.json"
        text = json.dumps(spec_doc, sort_keys=True, indent=1) + "\n"
        if spec_path.exists():
            if json.loads(spec_path.read_text()) != spec_doc:
                raise RuntimeError(f"{spec_path} holds another spec than this run's: the store is damaged")
        else:
            atomic_write_text(spec_path, text)
        if not (self.path / "meta.json").exists():
            atomic_write_text(self.path / "meta.json", json.dumps(meta, sort_keys=True, indent=1) + "\n")

    def checkpoint_path(self, iteration: int) -> Path:
        return self.path / f"step_{iteration}.safetensors"

    def save_checkpoint(self, iteration: int, tensors: dict[str, torch.Tensor]) -> None:
        save_checkpoint(self.checkpoint_path(iteration), tensors, run=self.key, step=iteration)

    def checkpoint_steps(self) -> list[int]:
        steps = []
        for p in self.path.glob("step_*.safetensors"):
            try:
                steps.append(int(p.stem.split("_", 1)[1]))
            except ValueError:
                continue
        return sorted(steps)

    def load(self, iteration: int) -> dict[str, torch.Tensor]:
        """All tensors of the checkpoint at ``iteration`` (``model/…``, ``mask/…``, ``optim/…``)."""
        path = self.checkpoint_path(iteration)
        if not path.exists():
            have = ", ".join(f"{s}it" for s in self.checkpoint_steps()) or "none"
            raise CheckpointError(f"run {self.key} has no checkpoint at {iteration}it (it has: {have})")
        tensors, _ = load_checkpoint(path, run=self.key)
        return tensors

    def weights(self, iteration: int) -> dict[str, torch.Tensor]:
        return {k[len("model/"):]: v for k, v in self.load(iteration).items() if k.startswith("model/")}

    def save_resume(self, iteration: int, tensors: dict[str, torch.Tensor], rows: list[dict]) -> None:
        # Rows first: a kill between the two writes leaves rows ahead of the
        # resume point, which load_resume trims, never behind it.
        atomic_write_text(self.path / "metrics.partial.csv", rows_to_csv(rows))
        save_checkpoint(self.path / "resume.safetensors", tensors, run=self.key, step=iteration)

    def load_resume(self) -> tuple[int, dict[str, torch.Tensor], list[dict]] | None:
        path = self.path / "resume.safetensors"
        if not path.exists():
            return None
        try:
            tensors, meta = load_checkpoint(path, run=self.key)
            rows = csv_to_rows((self.path / "metrics.partial.csv").read_text())
        except (CheckpointError, FileNotFoundError, ValueError, KeyError):
            return None  # a damaged resume point is ignored: the run restarts from scratch
        iteration = int(meta["step"])
        return iteration, tensors, [r for r in rows if r["step"] < iteration]

    def finish(self, rows: list[dict], summary: dict) -> None:
        atomic_write_text(self.path / "metrics.csv", rows_to_csv(rows))
        atomic_write_text(self.path / "DONE", json.dumps(summary, sort_keys=True, indent=1) + "\n")
        for name in ("resume.safetensors", "metrics.partial.csv"):
            with contextlib.suppress(FileNotFoundError):
                (self.path / name).unlink()

    def metrics(self):
        import pandas as pd

        path = self.path / ("metrics.csv" if self.done else "metrics.partial.csv")
        if not path.exists():
            return pd.DataFrame(columns=list(METRIC_FIELDS))
        return pd.DataFrame(csv_to_rows(path.read_text()), columns=list(METRIC_FIELDS))


class Store:
    def __init__(self, root: str | os.PathLike | None = None):
        self.root = default_root(root)

    def run(self, key: str) -> RunDir:
        return RunDir(self.root, key)

    def runs(self) -> list[RunDir]:
        if not self.root.is_dir():
            return []
        return [RunDir(self.root, p.name) for p in sorted(self.root.iterdir()) if (p / "spec.json").exists()]
