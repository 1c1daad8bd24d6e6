"""Independent jobs in parallel worker processes on one machine.

Each worker runs with one torch thread. This is only used for vectorised
populations: their results do not depend on the number of threads (checked
bit for bit in the tests), whereas the sequential engine's float32 results do
(MKL splits small matrix products differently with 1 and 2 threads). So a
population split across workers ends bit-identical to the same parts trained
one after another in one process.
"""
from __future__ import annotations

import dataclasses
import multiprocessing


def _init_worker() -> None:
    import torch

    torch.set_num_threads(1)


def _train_part(members, root: str, opts) -> list[str]:
    from ..store import Store
    from ..train.vectorised import train_vectorised

    return [run.key for run in train_vectorised(members, Store(root), opts)]


def run_parallel(parts: list, store, opts) -> list:
    """Train each part (a list of members) with the vectorised engine in its own worker process;
    returns the parts' run directories in order. Callbacks do not cross processes."""
    worker_opts = dataclasses.replace(opts, on_iteration=None, on_event=None, workers=1, threads=1, executor="local")
    ctx = multiprocessing.get_context("spawn")  # no fork of a process holding torch threads
    with ctx.Pool(len(parts), initializer=_init_worker) as pool:
        keys = pool.starmap(_train_part, [(part, str(store.root), worker_opts) for part in parts])
    return [[store.run(k) for k in ks] for ks in keys]
