"""rewind: lottery-ticket and early-phase-of-training experiments, reproducibly."""
import os as _os

# MKL (torch's CPU BLAS) may pick kernels by the memory alignment of its inputs, so the same product
# can round differently from one process to the next (the fault suite's kill-and-resume test saw a
# vectorised run's metrics differ between a fresh process and a long-lived one). Its conditional
# numerical reproducibility mode removes that; it must be set before MKL starts, so it is set here,
# before torch is imported (a user's own setting wins; a process that imported torch first keeps
# MKL's default). Cost measured: none beyond noise on the MNIST-1D presets and on LeNet's products.
# (The differing metrics it was set for turned out to come mostly from MKL's vector math: rewind/vml.py.)
_os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")
# OpenMP threads that wait for work spin (libgomp: 300,000 spins) before they sleep. Two torch processes
# on the same cores then spend their time spinning against each other (two LeNet runs at once took 33x
# as long as one). Unless the user chose a wait policy, waiting threads spin briefly and then sleep;
# REWIND_OMP_POLICY=torch keeps the runtime's default. benchmarks/concurrency.py measures both.
if _os.environ.get("REWIND_OMP_POLICY", "yield") != "torch" and not (
        "GOMP_SPINCOUNT" in _os.environ or "OMP_WAIT_POLICY" in _os.environ):
    _os.environ["GOMP_SPINCOUNT"] = "10000"


from . import alloc as _alloc  # glibc allocator policy (rewind/alloc.py): set before torch is imported

_MMAP_THRESHOLD_FIXED = _alloc.fix_policy()  # whether glibc accepted it (tests read this)
from . import vml as _vml

_vml.start()  # before any parallel kernel calls MKL's vector math (rewind/vml.py)
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
