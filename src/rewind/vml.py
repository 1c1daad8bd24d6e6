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

import torch

# the float functions torch hands to VML (aten/src/ATen/cpu/vml.h, with MKL)
FUNCTIONS = ("acos", "asin", "atan", "cos", "erf", "erfc", "erfinv", "exp", "log", "log10", "log2", "sin",
             "sqrt", "tan", "tanh", "trunc")


def start() -> None:
    """One call of each VML function on the calling thread (64 elements: torch runs unary kernels
    on several threads only from 2,048 elements)."""
    for dtype in (torch.float32, torch.float64):
        x = torch.full((64,), 0.5, dtype=dtype)
        for name in FUNCTIONS:
            getattr(torch, name)(x)
