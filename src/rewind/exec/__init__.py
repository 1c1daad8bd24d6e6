"""Executors: where populations are trained."""
from .local import run_parallel

__all__ = ["run_parallel"]
