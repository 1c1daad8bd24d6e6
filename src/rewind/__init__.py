"""rewind: lottery-ticket and early-phase-of-training experiments, reproducibly."""
import os as _os

# MKL (torch's CPU BLAS) may pick kernels by the memory alignment of its inputs, so the same product
# can round differently from one process to the next (the fault suite's kill-and-resume test saw a
# vectorised run's metrics differ between a fresh process and a long-lived one). Its conditional
# numerical reproducibility mode removes that; it must be set before MKL starts, so it is set here,
# before torch is imported (a user's own setting wins; a process that imported torch first keeps
# MKL's default). Cost measured: none beyond noise on the MNIST-1D presets.
_os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")
from .api import make_spec, replicate_spec, results, train
from .presets import PRESETS, get_preset
from .spec import DataSpec, ModelSpec, PruneSpec, SeedSpec, Spec, SpecError, TrainSpec
from .step import Step
from .store import Store
from .train import Member, TrainOptions, train_population

__version__ = "0.1.0"

__all__ = [
    "DataSpec", "Member", "ModelSpec", "PRESETS", "PruneSpec", "SeedSpec", "Spec", "SpecError", "Step",
    "Store", "TrainOptions", "TrainSpec", "get_preset", "make_spec", "replicate_spec", "results", "train",
    "train_population",
]
