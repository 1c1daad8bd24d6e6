"""Run directories.

One directory per run, named by the run's key (the content hash of its spec
and starting point)::

    <root>/<key>/spec.json              what was asked for (canonical)
    <root>/<key>/meta.json              how it was asked for (kind, preset, member)
    <root>/<key>/step_<it>.safetensors  weights (+ optimizer state) at step <it>
    <root>/<key>/metrics.csv            step, split, metric, value
    <root>/<key>/DONE                   the run's record: a summary, the size and SHA-256 of
                                        every other file, and a checksum of itself
    <root>/<key>/resume.safetensors     last resume point (deleted when done)

Every file is written atomically; a lock file serialises training of one run
across processes. A run is finished only when its record reads back and every
file matches it: a reader checks the record, ``spec.json``, ``meta.json`` and the
metrics on every read (cheap), the checkpoints' sizes on every read and their
contents when it loads them (:meth:`RunDir.load`) or when ``rewind verify`` asks.
A damaged run is never reported as a result; training it again first moves its
files aside to ``<root>/.damaged/<key>/<time>/`` (nothing is deleted).
"""
from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

if TYPE_CHECKING:
    import torch

from ..errors import RewindWarning, notice  # noqa: F401  (re-exported by the store)
from .io import CheckpointError, atomic_write_text, load_checkpoint, save_checkpoint
from .records import RUN_META, RUN_RECORD, RUN_SPEC, RecordDamaged, read_record

KEY_RE = re.compile(r"^[0-9a-f]{16}$")
RECORD_FORMAT = "rewind-run-2"  # DONE with file checksums; older records carry none
# Files of a run that are not covered by its record: the lock, the record itself, and work in progress.
_UNRECORDED = ("DONE", ".lock", "resume.safetensors", "metrics.partial.csv", "probes.partial.csv")


class RunDamaged(RecordDamaged):
    """A finished run whose files do not match its record (it has been moved aside)."""


@dataclass(frozen=True)
class Health:
    """What a run directory holds: new, started, partial (a resume point), done, diverged, or
    damaged (``problem`` names the file and what is wrong with it)."""

    status: str
    problem: str | None = None

    @property
    def finished(self) -> bool:
        return self.status in ("done", "diverged")


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _record_digest(record: dict) -> str:
    body = {k: v for k, v in record.items() if k != "record_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()

SEQUENTIAL = "sequential"


def engine_of_record(record: dict) -> str:
    """The engine name (train/member.engine_name) of a finished run, from its DONE record."""
    engine = str(record.get("engine", SEQUENTIAL))
    ddp = record.get("ddp")
    if isinstance(ddp, dict) and ddp.get("batchnorm") == "local":
        engine += "+local-bn"
    return "vectorised" if engine.startswith("vectorised") else engine


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

    def _repr_html_(self) -> str:
        """A notebook shows the run: its key, status, final metrics and folder."""
        import html

        health = self.health()
        final = self.summary().get("final", {}) if health.finished else {}
        metrics = ", ".join(f"{k.replace('_', ' ')} {v:.4f}" for k, v in sorted(final.items()) if isinstance(v, float))
        return (f"<p><b>run {self.key}</b>: {health.status}" + (f" ({html.escape(health.problem)})" if health.problem
                                                               else "") + (f"; {metrics}" if metrics else "")
                + f"<br><code>{html.escape(str(self.path))}</code></p>")

    def __repr__(self) -> str:
        return f"RunDir({str(self.root)!r}, {self.key!r})"

    # ---- state --------------------------------------------------------
    @property
    def done(self) -> bool:
        """Finished (done or diverged) and matching its record."""
        return self.health().finished

    @property
    def diverged(self) -> bool:
        return self.health().status == "diverged"

    @property
    def status(self) -> str:
        return self.health().status

    def _json(self, name: str) -> dict:
        """spec.json, meta.json or DONE, checked against its schema (store/records.py)."""
        schema = {"DONE": RUN_RECORD, "spec.json": RUN_SPEC, "meta.json": RUN_META}[name]
        try:
            return read_record(self.path / name, schema, f"run {self.key}")
        except FileNotFoundError:
            raise RunDamaged(f"run {self.key}: {name} is missing") from None
        except RecordDamaged as e:
            raise RunDamaged(f"run {self.key}: {name} " + str(e).split(" is damaged ", 1)[-1]) from None
        except OSError as e:
            raise RunDamaged(f"run {self.key}: {name} is not readable ({e.strerror or type(e).__name__})") from None

    def link_problem(self) -> str | None:
        """What is wrong if the run's directory, or an entry in it, is a symbolic link: rewind never
        moves, removes or writes anything through one (it could lead out of the store)."""
        if self.path.is_symlink():
            return (f"its directory is a symbolic link to {os.path.realpath(self.path)}; rewind leaves it alone "
                    f"(remove the link, rm {self.path}, to train the run here)")
        if self.path.is_dir():
            for p in sorted(self.path.iterdir()):
                if p.is_symlink():
                    return (f"{p.name} is a symbolic link to {os.path.realpath(p)}; rewind leaves the run alone "
                            f"(remove the link, rm {p}, to train the run again)")
        return None

    def _refuse_links(self) -> None:
        why = self.link_problem()
        if why:
            raise RunDamaged(f"run {self.key}: {why}")

    def health(self, deep: bool = False) -> Health:
        """Check the run against its record. ``deep`` also hashes every checkpoint."""
        link = self.link_problem()
        if link:
            return Health("damaged", link)
        if not (self.path / "DONE").exists():
            if (self.path / "resume.safetensors").exists():
                return Health("partial")
            return Health("started" if (self.path / "spec.json").exists() else "new")
        try:
            record = self._json("DONE")
            files = record.get("files")
            if files is not None:
                if record.get("record_sha256") != _record_digest(record):
                    return Health("damaged", "DONE: checksum mismatch (the record was changed)")
                for name, want in sorted(files.items()):
                    path = self.path / name
                    if not path.exists():
                        return Health("damaged", f"{name}: missing")
                    if path.stat().st_size != want["bytes"]:
                        return Health("damaged", f"{name}: {path.stat().st_size} bytes, the record says {want['bytes']}")
                    if (deep or not name.endswith(".safetensors")) and file_sha256(path) != want["sha256"]:
                        return Health("damaged", f"{name}: checksum mismatch")
            doc = self._json("spec.json")
            if doc.get("key") != self.key:
                return Health("damaged", "spec.json: holds another run's spec")
            named, trained = doc.get("engine", SEQUENTIAL), engine_of_record(record)
            if named != trained:
                return Health("damaged", f"DONE: trained by the {trained} engine, but the run's key names the "
                                         f"{named} engine's result (a run stored before keys named the engine)")
            if files is None:  # a record from before checksums: check what can be checked
                self._json("meta.json")
                csv_to_rows((self.path / "metrics.csv").read_bytes().decode())
                if deep:
                    for step in self.checkpoint_steps():
                        load_checkpoint(self.checkpoint_path(step), run=self.key)
        except RunDamaged as e:
            return Health("damaged", str(e).split(": ", 1)[1])
        except FileNotFoundError as e:
            return Health("damaged", f"{Path(e.filename).name}: missing")
        except (UnicodeDecodeError, ValueError, KeyError, TypeError, csv.Error) as e:
            return Health("damaged", f"metrics.csv: not readable ({type(e).__name__})")
        except CheckpointError as e:
            return Health("damaged", str(e))
        status = record.get("status", "done")
        return Health(status if status in ("done", "diverged") else "damaged",
                      None if status in ("done", "diverged") else f"DONE: unknown status {status!r}")

    def summary(self) -> dict:
        """The record of a finished run ({} while unfinished or when the record is unreadable)."""
        try:
            return self._json("DONE")
        except RunDamaged:
            return {}

    def spec_doc(self) -> dict:
        return self._json("spec.json")

    def meta(self) -> dict:
        try:
            return self._json("meta.json")
        except RunDamaged:
            return {}

    def quarantine(self, reason: str) -> Path:
        """Move every file of the run (not its lock) to ``<root>/.damaged/<key>/<time>/`` with a
        note saying why; the caller holds the run's lock. A run reached through a symbolic link is
        never moved (RunDamaged says so)."""
        self._refuse_links()
        dest = self._aside_dir()
        for p in sorted(self.path.iterdir()) if self.path.is_dir() else []:
            if p.name != ".lock":
                os.replace(p, dest / p.name)
        (dest / "REASON").write_text(reason + "\n")
        return dest

    def _aside_dir(self) -> Path:
        """A new folder ``<root>/.damaged/<key>/<UTC time>/`` for files moved out of the run."""
        dest = self.root / ".damaged" / self.key / time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        while dest.exists():
            dest = dest.with_name(dest.name + "_")
        dest.mkdir(parents=True)
        return dest

    def reset_if_damaged(self) -> None:
        """Before training (under the lock): a damaged run is moved aside and said so, in one line;
        the temporary files of writes that a killed process left unfinished are removed (every
        write into a run is made under its lock, so none of them is still being written)."""
        health = self.health()
        if health.status == "damaged":
            dest = self.quarantine(health.problem or "damaged")
            notice(f"run {self.key} was damaged ({health.problem}); moved its files to {dest} and training it again")
        for p in self.interrupted_writes():
            p.unlink(missing_ok=True)

    def interrupted_writes(self) -> list[Path]:
        """Temporary files of atomic writes (``.<name>.<random>.tmp``) left in the run's folder."""
        return [p for p in self.path.glob(".*.tmp") if p.is_file()] if self.path.is_dir() else []

    # ---- writing ------------------------------------------------------
    @contextlib.contextmanager
    def lock(self, wait: bool = True) -> Iterator[bool]:
        """An exclusive lock held while this process trains the run. ``wait=False`` does not block:
        it yields False (and holds nothing) when another process holds the lock."""
        import fcntl

        self._refuse_links()   # the lock file and every write after it would go through the link
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / ".lock", "a+") as fh:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
                held = True
            except BlockingIOError:
                held = False
            try:
                yield held
            finally:
                if held:
                    fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def write_spec(self, spec_doc: dict, meta: dict) -> None:
        """Write spec.json and meta.json of an unfinished run (the caller holds the lock). The spec
        goes last: its presence is what lists a run, so a failed write leaves nothing half-made."""
        spec_path = self.path / "spec.json"
        try:
            ok = spec_path.exists() and self._json("spec.json") == spec_doc and \
                isinstance(self._json("meta.json"), dict)
        except RunDamaged:
            ok = False
        if not ok and spec_path.exists():
            dest = self.quarantine("spec.json or meta.json of an unfinished run did not match the run")
            notice(f"run {self.key}: spec.json or meta.json was damaged; moved the run's files to {dest} "
                   "and starting it again")
        if not ok:
            atomic_write_text(self.path / "meta.json", json.dumps(meta, sort_keys=True, indent=1) + "\n")
            atomic_write_text(spec_path, json.dumps(spec_doc, sort_keys=True, indent=1) + "\n")

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
        recorded = path.name in self.summary().get("files", {})
        if not path.exists() and not recorded:
            have = ", ".join(f"{s}it" for s in self.checkpoint_steps()) or "none"
            raise CheckpointError(f"run {self.key} has no checkpoint at {iteration}it (it has: {have})")
        try:
            tensors, _ = load_checkpoint(path, run=self.key)
        except CheckpointError as e:
            if not (recorded or self.done):
                raise
            # A finished run's checkpoint that does not load: the run is damaged. Move it aside
            # (under its lock, once) so that the command that asked trains it again.
            with self.lock():
                if self.health().finished:
                    dest = self.quarantine(str(e))
                    notice(f"run {self.key} was damaged ({path.name} does not load); moved its files to {dest}")
            raise RunDamaged(f"run {self.key}: {path.name} is damaged ({e}); it was moved aside and is "
                             "trained again when asked for") from None
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
            rows = csv_to_rows((self.path / "metrics.partial.csv").read_bytes().decode())
            iteration = int(meta["step"])
        except (CheckpointError, OSError, ValueError, KeyError, UnicodeDecodeError, csv.Error) as e:
            # A damaged resume point: the run restarts from its start, and the files are kept aside.
            dest = self._aside_dir()
            for name in ("resume.safetensors", "metrics.partial.csv", "probes.partial.csv"):
                with contextlib.suppress(FileNotFoundError):
                    os.replace(self.path / name, dest / name)
            notice(f"run {self.key}: its resume point is damaged ({type(e).__name__}); moved it to {dest} "
                   "and training the run from its start")
            return None
        return iteration, tensors, [r for r in rows if r["step"] < iteration]

    def finish(self, rows: list[dict], summary: dict, hook=None) -> None:
        """Write the metrics, then the record (DONE) with every file's size and checksum.
        ``hook(event)`` is called between the writes (fault-injection tests)."""
        atomic_write_text(self.path / "metrics.csv", rows_to_csv(rows))
        if hook is not None:
            hook("metrics-written")
        files = {}
        for p in sorted(self.path.iterdir()):
            if p.is_file() and p.name not in _UNRECORDED and not p.name.startswith("."):
                files[p.name] = {"bytes": p.stat().st_size, "sha256": file_sha256(p)}
        record = {**summary, "format": RECORD_FORMAT, "files": files}
        record["record_sha256"] = _record_digest(record)
        atomic_write_text(self.path / "DONE", json.dumps(record, sort_keys=True, indent=1) + "\n")
        if hook is not None:
            hook("done-written")
        for name in ("resume.safetensors", "metrics.partial.csv", "probes.partial.csv"):
            with contextlib.suppress(FileNotFoundError):
                (self.path / name).unlink()

    def metrics(self, health: Health | None = None):
        """The run's metrics (a pandas DataFrame); ``health``: this run's, when the caller has just
        read it (results tables), so that its files are not hashed twice."""
        import pandas as pd

        health = health or self.health()
        if health.status == "damaged":
            raise RunDamaged(f"run {self.key}: {health.problem}; its metrics are not reported "
                             "(rewind verify --repair moves it aside, and the command that made it trains it again)")
        path = self.path / ("metrics.csv" if health.finished else "metrics.partial.csv")
        if not path.exists():
            return pd.DataFrame(columns=list(METRIC_FIELDS))
        try:
            rows = csv_to_rows(path.read_bytes().decode())
        except (UnicodeDecodeError, ValueError, KeyError, TypeError, csv.Error) as e:
            raise RunDamaged(f"run {self.key}: {path.name} is not readable ({type(e).__name__})") from None
        return pd.DataFrame(rows, columns=list(METRIC_FIELDS))


class Store:
    def __init__(self, root: str | os.PathLike | None = None):
        self.root = default_root(root)

    def run(self, key: str) -> RunDir:
        return RunDir(self.root, key)

    def runs(self) -> list[RunDir]:
        """Every run directory that holds more than a lock (damaged ones included: ask their health)."""
        if not self.root.is_dir():
            return []
        out = []
        for p in sorted(self.root.iterdir()):
            if KEY_RE.match(p.name) and p.is_dir() and any(
                    c.name != ".lock" and not c.name.endswith(".tmp") for c in p.iterdir()):
                out.append(RunDir(self.root, p.name))
        return out
