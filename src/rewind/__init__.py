"""rewind: lottery-ticket and early-phase-of-training experiments, reproducibly."""
import os as _os

# MKL (torch's CPU BLAS) may pick kernels by the memory alignment of its inputs, so the same product
# can round differently from one process to the next (the fault suite's kill-and-resume test saw a
# vectorised run's metrics differ between a fresh process and a long-lived one). Its conditional
# numerical reproducibility mode removes that; it must be set before MKL starts, so it is set here,
# before torch is imported (a user's own setting wins; a process that imported torch first keeps
# MKL's default). Cost measured: none beyond noise on the MNIST-1D presets.
_os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")
# OpenMP threads that wait for work spin (libgomp: 300,000 spins) before they sleep. Two torch processes
# on the same cores then spend their time spinning against each other (two LeNet runs at once took 33x
# as long as one). Unless the user chose a wait policy, waiting threads spin briefly and then sleep;
# REWIND_OMP_POLICY=torch keeps the runtime's default. benchmarks/concurrency.py measures both.
if _os.environ.get("REWIND_OMP_POLICY", "yield") != "torch" and not (
        "GOMP_SPINCOUNT" in _os.environ or "OMP_WAIT_POLICY" in _os.environ):
    _os.environ["GOMP_SPINCOUNT"] = "10000"


def _fixed_mmap_threshold(size: int = 1 << 20, keep: int = 4 << 20) -> bool:
    """glibc serves allocations above its mmap threshold with mmap, returned to the system when
    freed, but raises the threshold (up to 32 MiB) each time such a block is freed, after which
    large blocks live on the heap and stay resident when freed. Loading a dataset frees a few
    blocks of tens of MiB, so every later evaluation chunk and activation stayed resident: the
    LeNet-300-100 run peaked at ~475 MB instead of ~433 (benchmarks/memory.py). Setting the
    threshold fixes it at ``size``; allocations below it (a training batch's tensors) are as
    before. Fixing it also fixes glibc's trim threshold, at 128 KiB: every free at the top of the
    heap gave its pages back and the next training step faulted them in again (the 1-D CNN's
    sequential training 20% slower than under glibc's default policy), so up to ``keep`` bytes of
    free heap are kept. (A 32 MiB threshold made the LeNet sweep of benchmarks/openlth.py 1.6x
    faster, but the same run's peak RSS then varied from 403 to 562 MB: not taken.)
    REWIND_MALLOC=default, or the user's own MALLOC_MMAP_THRESHOLD_, keeps glibc's policy (and a
    user's MALLOC_TRIM_THRESHOLD_ is kept)."""
    if _os.environ.get("REWIND_MALLOC") == "default" or "MALLOC_MMAP_THRESHOLD_" in _os.environ:
        return False
    try:
        import ctypes
        import platform

        if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
            return False
        libc = ctypes.CDLL("libc.so.6")
        if "MALLOC_TRIM_THRESHOLD_" not in _os.environ and not libc.mallopt(-1, keep):  # M_TRIM_THRESHOLD
            return False
        return bool(libc.mallopt(-3, size))  # M_MMAP_THRESHOLD
    except (OSError, AttributeError, ValueError):
        return False


_MMAP_THRESHOLD_FIXED = _fixed_mmap_threshold()  # whether glibc accepted it (tests read this)
from .api import make_spec, replicate_spec, results, train
from .presets import PRESETS, get_preset
from .spec import DataSpec, ModelSpec, PruneSpec, SeedSpec, Spec, SpecError, TrainSpec
from .step import Step
from .store import Store
from .train import Member, TrainOptions
from .exec import train_population
from .analysis import probes as _probes  # noqa: F401  (attaches probes to the training loop: a LoopHook)

__version__ = "0.1.0"

__all__ = [
    "DataSpec", "Member", "ModelSpec", "PRESETS", "PruneSpec", "SeedSpec", "Spec", "SpecError", "Step",
    "Store", "TrainOptions", "TrainSpec", "get_preset", "make_spec", "replicate_spec", "results", "train",
    "train_population",
]
