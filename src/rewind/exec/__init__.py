"""Executors: where the trainer's populations run (this process, worker processes, or a Ray
cluster), and the plans above single runs that they execute (pretraining as two runs, lottery
studies as chains of levels). train/ does not import exec/."""
from .local import run_parallel
from .plan import Plan, run_plan, train_population
from .population import EXECUTORS, VECTORISE_MAX_PARAMS, Work, choose_engine
from .pretraining_plan import with_pretraining

__all__ = ["run_parallel", "Plan", "Work", "run_plan", "EXECUTORS", "VECTORISE_MAX_PARAMS", "choose_engine",
           "train_population", "with_pretraining"]
