"""Facts about the process and the machine it runs on (ground floor: no rewind import, no torch):
the cores it may use, whether it is one rank of a torchrun world, and the process-wide settings
that ``import rewind`` makes (:func:`process_settings`)."""
from __future__ import annotations

import os


def usable_cpus() -> int:
    """Cores this process may run on: its CPU affinity, and the cgroup's CPU quota when there is one."""
    n = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        with open("/sys/fs/cgroup/cpu.max") as fh:
            quota, period = fh.read().split()[:2]
        if quota != "max":
            n = min(n, max(1, int(int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, n)


def launched() -> bool:
    """Whether this process is one rank of a torchrun launch with more than one process."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1


def silent_rank() -> bool:
    """Whether this process is a rank of a torchrun world other than rank 0 (which alone prints
    and writes the store)."""
    return launched() and os.environ.get("RANK", "0") != "0"
