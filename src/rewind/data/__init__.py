"""Datasets held in memory as tensors and batched by index; the registry of what data.name may be."""
from .core import InMemoryData, batch_indices, iterations_per_epoch, load_data, require_in_memory
from .registry import DATASETS, register_dataset

__all__ = ["DATASETS", "InMemoryData", "batch_indices", "iterations_per_epoch", "load_data", "register_dataset",
           "require_in_memory"]
