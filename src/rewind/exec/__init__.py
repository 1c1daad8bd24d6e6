"""Executors: where the trainer's populations run (this process, or worker processes), and the
plans above single runs that they execute (pretraining as two runs). train/ does not import exec/."""
from .local import run_parallel
from .population import VECTORISE_MAX_PARAMS, choose_engine, train_population
from .pretrain import with_pretraining

__all__ = ["run_parallel", "VECTORISE_MAX_PARAMS", "choose_engine", "train_population", "with_pretraining"]
