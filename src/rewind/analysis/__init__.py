"""Analyses of trained runs: instability (linear mode connectivity)."""
from .instability import instability, interpolate_pair, load_per_example, path_weights, reset_batchnorm

__all__ = ["instability", "interpolate_pair", "load_per_example", "path_weights", "reset_batchnorm"]
