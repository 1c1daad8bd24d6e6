"""Datasets held in memory as tensors and batched by index."""
from .core import InMemoryData, batch_indices, iterations_per_epoch, load_data, require_in_memory

__all__ = ["InMemoryData", "batch_indices", "iterations_per_epoch", "load_data", "require_in_memory"]
