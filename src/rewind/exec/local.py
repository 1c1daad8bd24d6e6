"""Independent jobs in parallel worker processes on one machine.

Each worker runs with ``--threads`` torch threads (default one); the workers are kept between
populations (one pool per thread count and plugin list) and stop with the process. Only vectorised populations are
split, into parts that leave every member's bits unchanged (population.split_stacks): the
hand-differentiated MLPs' results depend neither on the stack nor on the thread count (checked bit
for bit in the tests); autograd stacks depend on the thread count but not on their companions: they
are cut into one part per worker (parts no larger than ``--chunk``), and match one process run with
the same ``--threads``.
"""
from __future__ import annotations

import atexit
import dataclasses
import multiprocessing
import os


def _init_worker(threads: int, plugins: list[str], parent: int) -> None:
    import threading

    import torch

    from ..plugins import load_plugins

    threading.Thread(target=_exit_with, args=(parent,), daemon=True).start()
    torch.set_num_threads(threads)
    load_plugins(plugins)   # the caller's plugins: what the members' specs name is registered here too


def _exit_with(parent: int, every: float = 1.0) -> None:
    """A kept worker ends when the process that started it is gone (killed by a signal, it runs
    no exit handler: the workers would otherwise wait on their queue for ever)."""
    import time

    while os.getppid() == parent:
        time.sleep(every)
    os._exit(1)


def _train_part(members, root: str, opts) -> list[str]:
    from ..store import Store
    from ..train.vectorised import train_vectorised

    return [run.key for run in train_vectorised(members, Store(root), opts)]


_POOLS: dict = {}   # (processes, threads, plugins) -> a pool kept for the process's life


def _pool(key: tuple[int, int, tuple[str, ...]]):
    """Worker processes kept between populations: a reproduction trains hundreds of small
    populations, and a fresh pair of processes (torch imported, data loaded) cost about two
    seconds of both cores each time. Kept per thread count and plugin list; started with `spawn`
    (no fork of a process holding torch threads). ``key``: (processes, threads, plugins)."""
    from concurrent.futures import ProcessPoolExecutor

    if key not in _POOLS:
        size, threads, plugins = key
        ctx = multiprocessing.get_context("spawn")
        _POOLS[key] = ProcessPoolExecutor(size, mp_context=ctx, initializer=_init_worker,
                                          initargs=(threads, list(plugins), os.getpid()))
    return _POOLS[key]


def worker_pool(processes: int, threads: int):
    """A kept pool of ``processes`` worker processes of ``threads`` torch threads each, with this
    process's plugins loaded (what ``rewind reproduce`` measures claims in, several at a time)."""
    from ..plugins import requested

    return _pool((processes, threads, tuple(requested())))


def close_pools(wait: bool = True) -> None:
    """Stop the kept worker processes (they also stop when this process exits)."""
    while _POOLS:
        _POOLS.popitem()[1].shutdown(wait=wait, cancel_futures=True)


# At exit, the kept pools are let go while the interpreter is whole: a pool still referenced when the
# modules are torn down is collected after concurrent.futures' own globals are gone, and its manager
# thread's callback printed "Exception ignored in: ... weakref_cb: 'NoneType' object has no attribute
# 'util'" (seen once at the end of a test run; the exit status was 0).
atexit.register(close_pools, wait=False)


def run_parallel(parts: list, store, opts, slots: int | None = None) -> list:
    """Train each part (a list of members) with the vectorised engine in worker processes (``slots``
    of them, kept for the next population; default one per part); returns the parts' run
    directories in order. Callbacks do not cross processes."""
    from concurrent.futures.process import BrokenProcessPool

    from ..plugins import requested
    from ..spec import SpecError

    refuse_main_registrations([m for part in parts for m in part], "--executor processes (and --workers)")
    worker_opts = dataclasses.replace(opts, on_iteration=None, on_event=None, workers=1, threads=opts.threads or 1,
                                      executor="local")
    key = (max(len(parts), slots or 0), worker_opts.threads, tuple(requested()))
    for attempt in (0, 1):
        kept = key in _POOLS
        try:
            pool = _pool(key)
            keys = list(pool.map(_train_part, parts, [str(store.root)] * len(parts), [worker_opts] * len(parts)))
            break
        except BrokenProcessPool:
            # a worker that died breaks the pool at once: it is dropped, and a kept pool (whose worker may
            # have been killed while idle) is started afresh once; a fresh one that breaks is not respawned
            _POOLS.pop(key, None)
            if kept and attempt == 0:
                continue
            raise SpecError("--executor processes: a worker process died (it could not start: run the script as "
                            "a file with an `if __name__ == \"__main__\":` guard, and register your own code in a "
                            "module or file given by --plugin or REWIND_PLUGINS; or it was killed)") from None
    return [[store.run(k) for k in ks] for ks in keys]


def refuse_main_registrations(members, where: str) -> None:
    """A population naming a model, dataset or criterion registered in __main__ (a notebook, python -c,
    a script on standard input) cannot be trained by other processes: they cannot import __main__.
    Refused in one line, before any worker starts."""
    from ..data.registry import DATASETS
    from ..models import find_model
    from ..prune import CRITERIA
    from ..spec import SpecError

    for m in members[:1]:
        spec = m.spec
        entries = (("model.name", spec.model.name, find_model(spec.model.name)),
                   ("data.name", spec.data.name, DATASETS.get(spec.data.name)),
                   ("prune.criterion", spec.prune.criterion, CRITERIA.get(spec.prune.criterion)))
        for field, value, entry in entries:
            if entry is not None and entry.group == "__main__":
                raise SpecError(f"{field}: {value!r} is registered in __main__ (a notebook, python -c or standard "
                                f"input), which {where} cannot import; put it in a module or file and load it with "
                                "--plugin or REWIND_PLUGINS, or train with the local executor")
