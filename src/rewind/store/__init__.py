"""The run store: content-addressed run directories, atomic writes, locks, resume, verification."""
from .io import CheckpointError, atomic_write_text, load_checkpoint, save_checkpoint, tensor_digest
from .records import RecordDamaged
from .runs import Health, RewindWarning, RunDamaged, RunDir, Store, default_root, notice

__all__ = [
    "CheckpointError", "Health", "RecordDamaged", "RewindWarning", "RunDamaged", "RunDir", "Store", "atomic_write_text",
    "default_root", "load_checkpoint", "notice", "save_checkpoint", "tensor_digest",
]
