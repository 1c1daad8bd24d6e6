"""The population trainer."""
from .loop import MAX_ITERATIONS, Member, TrainOptions, check_spec
from .optim import lr_at, make_optimizer

__all__ = ["MAX_ITERATIONS", "Member", "TrainOptions", "check_spec", "lr_at", "make_optimizer"]
