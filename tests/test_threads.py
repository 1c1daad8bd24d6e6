"""The OpenMP wait policy `import rewind` sets, and the thread count it allows."""
import os
import platform
import subprocess
import sys

import pytest

from rewind.host import usable_cpus


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


GLIBC_ONLY = pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc",
                                reason="glibc only")


def _stdout_with_malloc_env(script: str, **extra: str) -> list[str]:
    """Words a fresh Python prints running ``script``, with no allocator setting of the user's but ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("REWIND_MALLOC", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")}
    out = subprocess.run([sys.executable, "-c", script], env={**env, **extra}, capture_output=True, text=True,
                         check=True)
    return out.stdout.split()


@GLIBC_ONLY
def test_the_mmap_threshold_is_fixed_unless_the_user_chose():
    """rewind fixes glibc's mmap threshold at import (rewind/__init__.py; its effect on peak memory is
    measured by benchmarks/memory.py: 427 MB against ~475 MB for the LeNet run); REWIND_MALLOC=default
    and a user's own MALLOC_MMAP_THRESHOLD_ leave glibc's policy alone."""
    script = "import rewind; print(rewind._MMAP_THRESHOLD_FIXED)"

    def fixed(extra):
        return _stdout_with_malloc_env(script, **extra)[-1]

    assert fixed({}) == "True"
    assert fixed({"REWIND_MALLOC": "default"}) == "False"
    assert fixed({"MALLOC_MMAP_THRESHOLD_": "262144"}) == "False"


@GLIBC_ONLY
def test_the_policy_keeps_free_heap_and_respects_the_users_trim_threshold():
    """Fixing the mmap threshold also froze glibc's trim threshold at 128 KiB, so each step's freed
    pages at the top of the heap went back to the system and were faulted in again on the next step
    (the 1-D CNN trained 20% slower; rewind/alloc.py): rewind sets it to 4 MiB, unless the user set
    MALLOC_TRIM_THRESHOLD_. (Whether glibc then trims depends on what lies above the freed block, so
    the effect itself is counted in the stacked-training test below, where it does not.)"""
    script = "import rewind; from rewind import alloc; print(repr(alloc.settings()).replace(' ', ''))"

    def settings(extra):
        return _stdout_with_malloc_env(script, **extra)[-1]

    assert settings({}) == str({"mmap_threshold": 1 << 20, "trim_threshold": 4 << 20}).replace(" ", "")
    assert settings({"MALLOC_TRIM_THRESHOLD_": "131072"}) == \
        str({"mmap_threshold": 1 << 20, "trim_threshold": None}).replace(" ", "")
    assert settings({"REWIND_MALLOC": "default"}) == "None"


@GLIBC_ONLY
def test_stacked_training_keeps_its_multi_mib_tensors_on_the_heap_and_restores_the_policy_after():
    """A stacked population's tensors are MiBs a step; above the 1 MiB threshold each was faulted in
    afresh every step (the 1-D CNN's K = 16 population trained 2.6x slower). alloc.roomy(), which the
    vectorised engine trains in, serves them from the heap, and the fixed policy is back after it.
    Counted as minor page faults of 50 rounds of four 4 MiB tensors allocated, then freed."""
    script = ("import resource, torch, rewind\n"
              "from rewind import alloc\n"
              "def faults():\n"
              "    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
              "    for _ in range(50):\n"
              "        tensors = [torch.ones(1 << 20) for _ in range(4)]\n"
              "    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before\n"
              "outside = faults()\n"
              "with alloc.roomy():\n"
              "    faults()\n"
              "    inside, during = faults(), alloc.settings()\n"
              "print(during == {'mmap_threshold': 32 << 20, 'trim_threshold': 32 << 20},\n"
              "      alloc.settings() == {'mmap_threshold': 1 << 20, 'trim_threshold': 4 << 20}, outside, inside)")
    during, after, outside, inside = _stdout_with_malloc_env(script)[-4:]
    assert during == "True" and after == "True"   # 32 MiB while stacked, the fixed policy after
    assert int(outside) > 100_000                  # 4,096 pages a round, every round
    assert int(inside) < int(outside) // 10        # measured 0 or 8,160 (the heap grows once or not)
    # where the user chose glibc's policy, roomy() changes nothing
    assert _stdout_with_malloc_env(script, REWIND_MALLOC="default")[-4:-2] == ["False", "False"]



@GLIBC_ONLY
def test_heap_only_reuses_tensors_above_glibcs_largest_threshold_and_restores_the_policy_after():
    """The linear-model comparison's full-batch activations reach 64 MiB (d = 100, m = 4,096), above
    the 32 MiB that glibc's mmap threshold can be raised to, so even roomy() faulted each of them in
    afresh every step (1.7x slower). Inside alloc.heap_only() none is mmapped; after it, the fixed
    policy and glibc's mmap again. Counted as minor page faults of 10 rounds of two 48 MiB tensors."""
    script = ("import resource, torch, rewind\n"
              "from rewind import alloc\n"
              "def faults():\n"
              "    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt\n"
              "    for _ in range(10):\n"
              "        tensors = [torch.ones(12 << 20) for _ in range(2)]\n"
              "    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before\n"
              "with alloc.roomy():\n"
              "    roomy = faults()\n"
              "with alloc.heap_only():\n"
              "    faults()\n"
              "    inside, during = faults(), alloc.settings()\n"
              "print(during == {'mmap_threshold': 32 << 20, 'trim_threshold': 1 << 30},\n"
              "      alloc.settings() == {'mmap_threshold': 1 << 20, 'trim_threshold': 4 << 20}, roomy, inside, faults())")
    during, after, roomy, inside, again = _stdout_with_malloc_env(script)[-5:]
    assert during == "True" and after == "True"
    assert int(roomy) > 100_000                    # 2 x 12,288 pages a round, every round
    assert int(inside) < int(roomy) // 10          # served from the heap kept
    assert int(again) > 100_000                    # mmapped again after it
    assert _stdout_with_malloc_env(script, REWIND_MALLOC="default")[-5:-3] == ["False", "False"]


FIRST_PARALLEL_EXP = """
import importlib.util, sys, time
import torch
spec = importlib.util.spec_from_file_location("vml", sys.argv[1])   # rewind/vml.py in a bare torch
vml = importlib.util.module_from_spec(spec)                          # process, where the failure was
spec.loader.exec_module(vml)                                         # likeliest (5 of 20 without it)
vml.start()
time.sleep(0.05)   # the first call comes after a pause, as in real work
x = torch.linspace(-3, 0, 8000)
first = torch.exp(x)   # this process's first call of MKL's vector math, from two threads at once
one_thread = torch.cat([torch.exp(x[i:i + 1000]) for i in range(0, 8000, 1000)])
sys.exit(0 if torch.equal(first, one_thread) else 1)
"""


def test_the_first_parallel_call_of_mkls_vector_math_is_exact():
    """Without rewind/vml.py's one-thread start, this script's first exp computed the main thread's
    share with relative errors up to 1e-4 in 5 of 20 fresh processes (torch 2.13, 2 threads): eight
    processes catch that with probability ~0.9. The fault suite's exact metrics catch it too."""
    import rewind.vml

    env = {**os.environ, "OMP_NUM_THREADS": "2", "MKL_CBWR": "AUTO,STRICT", "GOMP_SPINCOUNT": "10000"}
    codes = [subprocess.run([sys.executable, "-c", FIRST_PARALLEL_EXP, rewind.vml.__file__], env=env).returncode
             for _ in range(8)]
    assert codes == [0] * 8


def test_import_rewind_starts_mkls_vector_math_on_one_thread():
    script = ("import threading, torch\n"
              "calls, exp = [], torch.exp\n"
              "torch.exp = lambda x: calls.append((x.numel(), threading.current_thread().name)) or exp(x)\n"
              "import rewind\n"
              "print(calls)")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.strip() == str([(64, "MainThread"), (64, "MainThread")])   # float32 and float64, below the grain
