"""Atomic file writes and verified safetensors checkpoints."""
from __future__ import annotations

import errno
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# torch and safetensors are imported where tensors are written or read: listing a store, its
# records and results (`rewind ls`, `results`, `verify` of records) does not start torch

FORMAT = "rewind-checkpoint-1"


class CheckpointError(RuntimeError):
    """A checkpoint that is damaged, foreign or from another run."""


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_FILE_MODE = 0o666 & ~_umask()  # what open() would give: mkstemp's 0600 would hide a shared store from its group


def _atomic(path: str | os.PathLike, write) -> None:
    """Call ``write(tmp)`` on a temporary file beside ``path``, fsync it, then rename it over ``path``
    (with the permissions an ordinary file would get under the process's umask)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        os.chmod(tmp, _FILE_MODE)
        write(tmp)
        with open(tmp, "rb") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    _atomic(path, lambda tmp: Path(tmp).write_bytes(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def tensor_digest(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes, in name order."""
    import torch

    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().cpu().contiguous().reshape(-1)
        h.update(name.encode())
        h.update(str(t.dtype).encode())
        h.update(json.dumps(list(tensors[name].shape)).encode())
        h.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def save_checkpoint(path: str | os.PathLike, tensors: dict[str, torch.Tensor], **meta: str) -> None:
    from safetensors import SafetensorError
    from safetensors.torch import save_file

    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    metadata = {"format": FORMAT, "sha256": tensor_digest(tensors), **{k: str(v) for k, v in meta.items()}}

    def write(tmp):
        try:
            save_file(tensors, tmp, metadata=metadata)
        except SafetensorError as e:  # safetensors reports OS failures (a full disk) as its own error
            code = errno.ENOSPC if "No space left" in str(e) else errno.EIO
            raise OSError(code, os.strerror(code), str(path)) from e
        canonical_header(tmp)

    _atomic(path, write)


def canonical_header(path: str | os.PathLike) -> None:
    """Rewrite a safetensors file's header in place with its metadata in sorted order.

    safetensors keeps the metadata in a hash map whose order changes from process to process, so
    two checkpoints of identical tensors differed byte for byte (12-16 distinct file hashes per
    member across 20 stores). The tensors' entries and data are already in a fixed order; only
    the metadata's keys move, so the sorted header has the same length and the data stay put."""
    with open(path, "r+b") as fh:
        size = int.from_bytes(fh.read(8), "little")
        raw = fh.read(size)
        header = json.loads(raw)
        meta = header.pop("__metadata__", None)
        out = {} if meta is None else {"__metadata__": dict(sorted(meta.items()))}
        out.update(header)
        text = json.dumps(out, separators=(",", ":"), ensure_ascii=False).encode()
        if len(text) > size:  # cannot happen for a header safetensors wrote (same strings, reordered)
            raise CheckpointError(f"{path}: cannot rewrite the safetensors header in place")
        fh.seek(8)
        fh.write(text + b" " * (size - len(text)))


def load_checkpoint(path: str | os.PathLike, *, run: str | None = None) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Load and verify a checkpoint; refuse damaged files and files of another run."""
    from safetensors import SafetensorError, safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"no checkpoint at {path}")
    try:

        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
        tensors = load_file(str(path))
    except (SafetensorError, OSError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: not a readable safetensors file ({e})") from None
    if metadata.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a rewind checkpoint (format {metadata.get('format')!r})")
    if tensor_digest(tensors) != metadata.get("sha256"):
        raise CheckpointError(f"{path}: checksum mismatch, the file is damaged")
    if run is not None and metadata.get("run") != run:
        raise CheckpointError(f"{path}: belongs to run {metadata.get('run')!r}, not {run!r}")
    return tensors, metadata


def probe_output(path: str | os.PathLike, flag: str, kind: str = "file") -> Path:
    """Refuse an output path before any work (a SpecError naming ``flag``), writing nothing that
    stays: ``kind`` is "file" (--csv), "dir" (--out) or "stem" (--plot PATH: PATH.png and
    PATH.svg). The nearest folder that exists must be a folder where a file can be created (a
    temporary file is made there and removed); missing folders are made when the output is written."""
    from ..spec import SpecError

    p = Path(path)
    if not str(path).strip():
        raise SpecError(f"{flag}: give a path")
    targets = [p.with_name(p.name + ".png"), p.with_name(p.name + ".svg")] if kind == "stem" else [p]
    for t in targets:
        if kind == "dir" and t.exists() and not t.is_dir():
            raise SpecError(f"{flag} {path}: a file stands there; give a directory")
        if kind != "dir" and t.is_dir():
            raise SpecError(f"{flag} {path}: {t} is a directory; give a file path")
    folder = p if kind == "dir" else p.parent
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if existing.exists() and not existing.is_dir():
        raise SpecError(f"{flag} {path}: {existing} is a file, so no folder can be made there")
    try:
        fd, tmp = tempfile.mkstemp(dir=existing, prefix=".rewind-probe-")
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise SpecError(f"{flag} {path}: cannot write in {existing} ({e.strerror or e}); choose a path you can "
                        "write to") from None
    return p
