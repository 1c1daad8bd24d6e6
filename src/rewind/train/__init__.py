"""The population trainer."""
from .loop import Member, TrainOptions, train_population
from .optim import lr_at, make_optimizer

__all__ = ["Member", "TrainOptions", "lr_at", "make_optimizer", "train_population"]
