"""Independent jobs in parallel worker processes on one machine.

Each worker runs with ``--threads`` torch threads (default one). Only vectorised populations are
split, into parts that leave every member's bits unchanged (population.split_stacks): the
hand-differentiated MLPs' results depend neither on the stack nor on the thread count (checked bit
for bit in the tests); autograd stacks are cut into the chunks one process would stack, and match
one process run with the same ``--threads``.
"""
from __future__ import annotations

import dataclasses
import multiprocessing


def _init_worker(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _train_part(members, root: str, opts) -> list[str]:
    from ..store import Store
    from ..train.vectorised import train_vectorised

    return [run.key for run in train_vectorised(members, Store(root), opts)]


def run_parallel(parts: list, store, opts) -> list:
    """Train each part (a list of members) with the vectorised engine in its own worker process;
    returns the parts' run directories in order. Callbacks do not cross processes."""
    worker_opts = dataclasses.replace(opts, on_iteration=None, on_event=None, workers=1, threads=opts.threads or 1, executor="local")
    ctx = multiprocessing.get_context("spawn")  # no fork of a process holding torch threads
    # one part per process (maxtasksperchild): else a worker that finishes early takes the next part
    # while another worker is still starting, and two parts share a process
    with ctx.Pool(len(parts), initializer=_init_worker, initargs=(worker_opts.threads,), maxtasksperchild=1) as pool:
        keys = pool.starmap(_train_part, [(part, str(store.root), worker_opts) for part in parts])
    return [[store.run(k) for k in ks] for ks in keys]
