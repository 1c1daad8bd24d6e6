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


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_the_mmap_threshold_is_fixed_unless_the_user_chose():
    """rewind fixes glibc's mmap threshold at import (rewind/__init__.py; its effect on peak memory is
    measured by benchmarks/memory.py: 427 MB against ~475 MB for the LeNet run); REWIND_MALLOC=default
    and a user's own MALLOC_MMAP_THRESHOLD_ leave glibc's policy alone."""
    script = "import rewind; print(rewind._MMAP_THRESHOLD_FIXED)"

    def fixed(extra):
        env = {k: v for k, v in os.environ.items() if k not in ("REWIND_MALLOC", "MALLOC_MMAP_THRESHOLD_")}
        out = subprocess.run([sys.executable, "-c", script], env={**env, **extra}, capture_output=True, text=True,
                             check=True)
        return out.stdout.split()[-1]

    assert fixed({}) == "True"
    assert fixed({"REWIND_MALLOC": "default"}) == "False"
    assert fixed({"MALLOC_MMAP_THRESHOLD_": "262144"}) == "False"


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_freed_heap_is_kept_so_training_steps_do_not_fault_their_pages_in_again():
    """Fixing the mmap threshold also froze glibc's trim threshold at 128 KiB: each step's freed
    tensors at the top of the heap went back to the system and were faulted in again on the next
    step (the 1-D CNN trained 20% slower; rewind/__init__.py). rewind keeps up to 4 MiB of free heap.
    Counted as minor page faults over 200 rounds of a step-like pattern: six 512 KiB tensors
    allocated, then all freed (measured: 0 under rewind's policy, 147,200 with the threshold alone,
    96,000 under glibc's default)."""
    script = ("import resource, torch, rewind\n"
              "def step():\n"
              "    tensors = [torch.ones(128 * 1024) for _ in range(6)]\n"
              "for _ in range(20): step()\n"
              "before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
              "for _ in range(200): step()\n"
              "print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)")

    def faults(extra):
        env = {k: v for k, v in os.environ.items()
               if k not in ("REWIND_MALLOC", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")}
        out = subprocess.run([sys.executable, "-c", script], env={**env, **extra}, capture_output=True, text=True,
                             check=True)
        return int(out.stdout.split()[-1])

    assert faults({}) < 2000                                      # rewind's policy: the pages stay
    assert faults({"MALLOC_MMAP_THRESHOLD_": "1048576"}) > 50000  # the threshold alone: ~736 faults a round
