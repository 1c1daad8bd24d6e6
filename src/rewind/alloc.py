"""glibc's allocator policy for rewind's processes (imported by rewind/__init__.py before torch).

glibc serves blocks above its mmap threshold with mmap: returned to the system when freed, faulted
in (and zeroed) afresh when allocated again. By default it raises that threshold, up to 32 MiB,
each time such a block is freed, and the trim threshold (free heap kept at the top) with it.

- **Between trainings and in one-model training**: the threshold is fixed at 1 MiB. Loading a
  dataset frees blocks of tens of MiB; under glibc's default policy later evaluation chunks then
  lived on the heap and stayed resident (the LeNet-300-100 run peaked at ~475-511 MB instead of
  ~427-448; benchmarks/memory.py). Fixing it also fixes the trim threshold, at 128 KiB, so every
  training step gave its freed pages back and faulted them in again (the 1-D CNN trained 20% slower
  than under glibc's default), so up to 4 MiB of free heap is kept.
- **While a population trains stacked** (:func:`roomy`): the threshold and the trim threshold are
  32 MiB. A stack's activations and flat gradients are several MiB a step; at 1 MiB each of them
  was faulted in afresh every step: K = 16 of the 1-D CNN trained at 292-304 model-steps/s against
  844-873, the digits CNN at 329 against 717-748 (benchmarks/population.py), the LeNet sweep of
  benchmarks/openlth.py took 42.7 s against 24.6 (same machine, same session). A stacked population's working
  set is what it is either way; the heap it leaves is trimmed to 4 MiB at the top by the next
  free there. (A 32 MiB threshold for everything was tried: the LeNet run's peak RSS then varied
  from 403 to 562 MB between identical runs.)

- **Full-batch work on tensors above 32 MiB** (:func:`heap_only`; the linear-model comparisons of
  analysis/linear_model/hu.py): glibc will not raise its mmap threshold above 32 MiB, so at
  d = 100, m = 4,096 every 64 MiB activation of every step was mmapped and faulted in afresh; even
  at m = 1,024 (16 MiB) under the fixed 1 MiB threshold. For the duration no block is mmapped and
  up to 1 GiB of free heap is kept; the heap is trimmed after. benchmarks/linear_alloc.py (one
  thread, 4,000 examples): a comparison step at d = 100, m = 4,096 246 ms against 498 under the
  fixed threshold; at d = 25, m = 1,024 47 ms against 104 (the same rows, bit for bit).

REWIND_MALLOC=default, or the user's own MALLOC_MMAP_THRESHOLD_, leaves glibc's policy alone
everywhere (and a user's MALLOC_TRIM_THRESHOLD_ is kept). Linux with glibc only.
"""
from __future__ import annotations

import contextlib
import os

M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_MMAP_MAX = -1, -3, -4
MMAP_MAX = 65536                            # glibc's default number of mmapped blocks
HEAP_KEEP = 1 << 30                         # free heap kept while heap_only() is in force
THRESHOLD, KEEP = 1 << 20, 4 << 20          # between and in one-model trainings
ROOMY = 32 << 20                            # while a population trains stacked

_libc = None
_settings: dict | None = None   # what rewind last set (None: glibc's or the user's policy)


def _mallopt(param: int, value: int) -> bool:
    return bool(_libc is not None and _libc.mallopt(param, value))


def _set(threshold: int, keep: int) -> bool:
    global _settings
    trim = None if "MALLOC_TRIM_THRESHOLD_" in os.environ else keep   # the user's own is kept
    if trim is not None and not _mallopt(M_TRIM_THRESHOLD, trim):
        return False
    if not _mallopt(M_MMAP_THRESHOLD, threshold):
        return False
    _settings = {"mmap_threshold": threshold, "trim_threshold": trim}
    return True


def settings() -> dict | None:
    """The thresholds rewind set in this process (trim_threshold None: the user's), or None where
    glibc's or the user's policy is in force."""
    return None if _settings is None else dict(_settings)


def fix_policy() -> bool:
    """Apply rewind's policy to this process; whether glibc accepted it."""
    global _libc
    if os.environ.get("REWIND_MALLOC") == "default" or "MALLOC_MMAP_THRESHOLD_" in os.environ:
        return False
    try:
        import ctypes
        import platform

        if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
            return False
        _libc = ctypes.CDLL("libc.so.6")
    except (OSError, AttributeError, ValueError):
        return False
    if not _set(THRESHOLD, KEEP):
        _libc = None
        return False
    return True


@contextlib.contextmanager
def roomy():
    """32 MiB thresholds for the duration (a stacked population's steps); the fixed policy after.
    Does nothing where rewind's policy is not in force."""
    active = _libc is not None and _set(ROOMY, ROOMY)
    try:
        yield
    finally:
        if active:
            _set(THRESHOLD, KEEP)


@contextlib.contextmanager
def heap_only():
    """No block mmapped for the duration, and up to 1 GiB of free heap kept: large tensors that a
    loop allocates and frees every step are reused instead of faulted in afresh. The fixed policy
    after, and the heap's free memory given back. Does nothing where rewind's policy is not in force."""
    active = _libc is not None and _mallopt(M_MMAP_MAX, 0)
    if active and not _set(ROOMY, HEAP_KEEP):
        _mallopt(M_MMAP_MAX, MMAP_MAX)
        active = False
    try:
        yield
    finally:
        if active:
            _mallopt(M_MMAP_MAX, MMAP_MAX)
            _set(THRESHOLD, KEEP)
            _libc.malloc_trim(0)
