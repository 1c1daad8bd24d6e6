"""MKL's vector math library (VML) started on one thread before torch calls it from several.

On the CPU, torch computes exp, log, sqrt, tanh and a few other functions of float tensors with
VML, each thread of a parallel kernel calling it on its share of the elements. When the first VML
call of a process ran on two threads at once, the main thread's share could come from a far less
accurate routine: relative errors up to 1.5e-4 in ``exp`` instead of ~1e-7. Measured here (torch
2.13, 2 threads): 11 of 260 fresh processes training an MNIST-1D MLP population recorded
different metrics from its first evaluation's ``exp``; 2 of 40 trained a population of 4 without
a first evaluation to different weights (the first call was then a training step's softmax); 5 of
20 bare torch processes whose first call was an exp of 8,000 elements got it wrong. Only the first
call of a process is at risk (five other functions called next never were), so one call of each
function on one thread when rewind is imported prevents it: 0 of 100, 0 of 40 and 0 of 20
processes differed after that.
"""
from __future__ import annotations

import importlib.abc
import importlib.util
import sys

# the float functions torch hands to VML (aten/src/ATen/cpu/vml.h, with MKL)
FUNCTIONS = ("acos", "asin", "atan", "cos", "erf", "erfc", "erfinv", "exp", "log", "log10", "log2", "sin",
             "sqrt", "tan", "tanh", "trunc")


def start() -> None:
    """One call of each VML function on the calling thread (64 elements: torch runs unary kernels
    on several threads only from 2,048 elements)."""
    import torch

    for dtype in (torch.float32, torch.float64):
        x = torch.full((64,), 0.5, dtype=dtype)
        for name in FUNCTIONS:
            getattr(torch, name)(x)


class _AfterTorch(importlib.abc.MetaPathFinder):
    """Runs :func:`start` as soon as torch has been imported (by whichever module imports it first),
    so that ``import rewind`` need not import torch itself: a command that trains nothing starts
    without it, and a process that trains makes VML's first call on one thread all the same."""

    def find_spec(self, name, path=None, target=None):
        if name != "torch":
            return None
        sys.meta_path[:] = [f for f in sys.meta_path if f is not self]   # once
        spec = importlib.util.find_spec("torch")
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        run = spec.loader.exec_module

        def exec_module(module):
            run(module)
            start()

        spec.loader.exec_module = exec_module
        return spec


def start_with_torch() -> None:
    """:func:`start` now if torch is imported already, else right after it is."""
    if "torch" in sys.modules:
        start()
    elif not any(isinstance(f, _AfterTorch) for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterTorch())
