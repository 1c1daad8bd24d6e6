"""The run store: content-addressed run directories, atomic writes, locks, resume."""
from .io import CheckpointError, atomic_write_text, load_checkpoint, save_checkpoint, tensor_digest
from .runs import RunDir, Store, default_root

__all__ = [
    "CheckpointError", "RunDir", "Store", "atomic_write_text", "default_root",
    "load_checkpoint", "save_checkpoint", "tensor_digest",
]
