"""The trainer, by role: what a member is and how to train it (member.py), the set-up both engines
share (setup.py), evaluation (evaluate.py), what layers above attach (hooks.py), the sequential loop
(loop.py), the vectorised engine (vectorised.py), data parallelism (ddp.py), optimizers (optim.py),
what a pretraining run is (pretraining_run.py)."""
from .member import Member, TrainOptions
from .optim import lr_at, make_optimizer
from .setup import MAX_ITERATIONS, check_spec

__all__ = ["MAX_ITERATIONS", "Member", "TrainOptions", "check_spec", "lr_at", "make_optimizer"]
