"""rewind: lottery-ticket and early-phase-of-training experiments, reproducibly.

``import rewind`` makes a few process-wide settings, each for a measured reason, before torch is
imported (``rewind.process_settings()`` lists them with what they are for); the names below are
imported when first used, so ``import rewind`` and the commands that train nothing (`rewind ls`,
`results`, `--help`) do not start torch.
"""
import os as _os
import sys as _sys
import types as _types

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

_vml.start_with_torch()  # before any parallel kernel calls MKL's vector math (rewind/vml.py)
from .errors import DataError, RewindWarning  # noqa: E402
from .presets import PRESETS, get_preset  # noqa: E402
from .spec import DataSpec, ModelSpec, PruneSpec, SeedSpec, Spec, SpecError, TrainSpec  # noqa: E402
from .step import Step  # noqa: E402
from .store import Store  # noqa: E402

__version__ = "0.1.0"

# name -> module that defines it, imported on first use (PEP 562)
_LAZY = {
    "make_spec": "api", "replicate_spec": "api", "results": "api", "summary": "api",
    "Member": "train", "TrainOptions": "train", "train_population": "exec", "Study": "lottery",
    "prune_at": "lottery.pai",
    # extending rewind (docs/extending.md): one public way to register each kind of thing
    "register_model": "models", "RewindModel": "models", "register_dataset": "data",
    "register_criterion": "prune", "ScoreInput": "prune", "register_branch": "lottery",
    "BranchInput": "lottery", "BranchOutput": "lottery", "register_alteration": "data.alter",
    "register_claim": "reproduce", "register_shared": "reproduce",
    "Measurement": "reproduce", "Test": "reproduce.verdict",
    "register_command": "cli.registry", "load_plugins": "plugins",
}


def train(*args, **kwargs):
    """Train a preset (or spec) and return its run (or runs): :func:`rewind.api.train`."""
    from .api import train as run

    return run(*args, **kwargs)


class _Package(_types.ModuleType):
    """``rewind.train`` is the function above; the subpackage of the same name (the trainer) is
    ``import rewind.train.loop`` / ``from rewind.train import Member``, as it always was. Importing
    it must not replace the function (Python sets a package's attribute to each subpackage)."""

    def __setattr__(self, name, value):
        if name == "train" and isinstance(value, _types.ModuleType):
            return
        super().__setattr__(name, value)


_sys.modules[__name__].__class__ = _Package


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'rewind' has no attribute {name!r}")


def process_settings() -> list[dict]:
    """What ``import rewind`` changed in this process, each with its value here and why (the
    reasons are measured: see the modules named). Set ``REWIND_OMP_POLICY=torch`` or
    ``REWIND_MALLOC=default`` (or your own MKL_CBWR, GOMP_SPINCOUNT or OMP_WAIT_POLICY,
    MALLOC_MMAP_THRESHOLD_) before importing rewind to keep the defaults."""
    return [
        {"setting": "MKL_CBWR", "value": _os.environ.get("MKL_CBWR"), "where": "rewind/__init__.py",
         "why": "MKL's conditional numerical reproducibility: the same product rounds the same way in every "
                "process"},
        {"setting": "GOMP_SPINCOUNT", "value": _os.environ.get("GOMP_SPINCOUNT"), "where": "rewind/__init__.py",
         "why": "waiting OpenMP threads sleep soon: two torch processes on the same cores took 33x as long "
                "spinning against each other (benchmarks/concurrency.py)"},
        {"setting": "glibc malloc thresholds", "value": _alloc.settings(), "where": "rewind/alloc.py",
         "why": "keep freed multi-MiB tensors on the heap instead of returning them to the kernel every step"},
        {"setting": "MKL vector math started on one thread", "value": "torch" in _sys.modules,
         "where": "rewind/vml.py",
         "why": "the first VML call made from two threads at once computed exp with 1e-4 relative error in "
                "~1 fresh process in 25; one call on one thread (when torch is imported) prevents it"},
        {"setting": "training-loop hooks", "value": "rewind.analysis.probes", "where": "rewind/train/hooks.py",
         "why": "early-phase probes attach to the sequential loop as a LoopHook, loaded when a run asks for them"},
    ]


__all__ = [
    "BranchInput", "BranchOutput", "DataError", "DataSpec", "Measurement", "Member", "ModelSpec", "PRESETS",
    "PruneSpec", "RewindModel", "RewindWarning", "ScoreInput", "SeedSpec", "Spec", "SpecError", "Step", "Store",
    "Study", "Test", "TrainOptions", "TrainSpec", "get_preset", "load_plugins", "make_spec", "process_settings",
    "prune_at", "register_alteration", "register_branch", "register_claim", "register_command",
    "register_criterion", "register_dataset", "register_model", "register_shared", "replicate_spec", "results", "summary", "train", "train_population",
]
