"""rewind: lottery-ticket and early-phase-of-training experiments, reproducibly."""
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
