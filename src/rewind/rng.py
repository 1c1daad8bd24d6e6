"""Seed derivation. Every random stream is a pure function of (seed, purpose, index).

Nothing in rewind touches the global generators of Python, NumPy or torch: a
stream for epoch e of the data order is derived from (data_order seed, e), so a
resumed run needs no saved generator state to continue identically.
"""
from __future__ import annotations

import numpy as np
import torch

# Stable purpose codes: changing one changes every run that uses it.
INIT, DATA_ORDER, AUGMENT, PRUNE, SPLIT, PRETRAIN, HEAD, SYNTHETIC = 1, 2, 3, 4, 5, 6, 7, 8


def derive_seed(*parts: int) -> int:
    words = np.random.SeedSequence([int(p) for p in parts]).generate_state(2, dtype=np.uint32)
    return (int(words[0]) << 31) ^ int(words[1])


def generator(*parts: int) -> torch.Generator:
    g = torch.Generator()
    g.manual_seed(derive_seed(*parts))
    return g


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    return torch.randperm(n, generator=generator(DATA_ORDER, seed, epoch))
