"""The OpenMP wait policy `import rewind` sets, and the thread count it allows."""
import os
import platform
import subprocess
import sys

import pytest

from rewind.train.loop import usable_cpus


def _env_after_import(**env):
    base = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY", "REWIND_OMP_POLICY")}
    out = subprocess.run([sys.executable, "-c", "import os, rewind; print(os.environ.get('GOMP_SPINCOUNT'))"],
                         env={**base, **env}, capture_output=True, text=True, check=True)
    return out.stdout.strip()


@pytest.mark.parametrize("env,expected", [
    ({}, "10000"),                                # rewind's policy: spin briefly, then sleep
    ({"GOMP_SPINCOUNT": "77"}, "77"),             # the user's choice wins
    ({"OMP_WAIT_POLICY": "ACTIVE"}, "None"),      # a chosen wait policy is left alone
    ({"REWIND_OMP_POLICY": "torch"}, "None"),     # the runtime's default on request
])
def test_wait_policy_is_set_before_torch_loads_unless_the_user_chose(env, expected):
    assert _env_after_import(**env) == expected


def test_usable_cpus_follows_the_affinity(monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert usable_cpus() == 1
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)))
    assert 1 <= usable_cpus() <= 64


_RETAINED = r"""
import numpy as np
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS"):
            return int(line.split()[1]) / 1024
import rewind, torch
a = np.ones(40 << 20, dtype=np.uint8); del a   # a large block freed, as loading a dataset does
base = rss()
live = []
for _ in range(5):   # evaluation chunks: a large block freed, a small one kept after it
    t = torch.ones(12 << 20, dtype=torch.uint8); t.add_(1); del t
    live.append(torch.ones(1 << 20, dtype=torch.uint8))
print(rss() - base)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_freed_large_blocks_return_to_the_system():
    """rewind fixes glibc's mmap threshold (rewind/__init__.py): after a large block was freed,
    freed evaluation-sized blocks no longer stay resident; REWIND_MALLOC=default shows the
    difference (glibc's adaptive threshold keeps them on the heap)."""
    def retained(extra):
        env = {**os.environ, **extra}
        env.pop("MALLOC_MMAP_THRESHOLD_", None)
        out = subprocess.run([sys.executable, "-c", _RETAINED], env=env, capture_output=True, text=True, check=True)
        return float(out.stdout.split()[-1])

    ours, glibc = retained({}), retained({"REWIND_MALLOC": "default"})
    assert ours < 10 and glibc > ours + 8, (ours, glibc)
