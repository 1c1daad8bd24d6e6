import pytest
import torch

import rewind
from rewind.store import Store
from rewind.train import Member, TrainOptions
from rewind.exec import train_population
from rewind.train.vectorised import train_vectorised


def test_worker_processes_give_the_bits_of_serial_execution(tmp_path):
    spec = rewind.get_preset("mnist1d_mlp").spec.replace(**{"train.steps": "80it", "train.eval_every": "40it"})
    members = [Member(spec.replace(**{"seeds.init": i, "seeds.data_order": i})) for i in range(4)]
    parallel = train_population(members, Store(tmp_path / "par"), TrainOptions(quiet=True, workers=2))
    serial_store = Store(tmp_path / "ser")
    for part in (members[0::2], members[1::2]):   # the same parts, one after another, in this process
        train_vectorised(part, serial_store, TrainOptions(quiet=True))
    for p in parallel:
        s = serial_store.run(p.key)
        assert p.done and p.summary()["engine"] == "vectorised(K=2)"
        a, b = p.load(80), s.load(80)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
        assert p.metrics().equals(s.metrics())


@pytest.mark.parametrize("n, chunk", [(3, 2), (4, 16), (5, 2)])
def test_autograd_stacks_split_across_processes_keep_their_bits(tmp_path, n, chunk):
    """A population stacked through autograd (here a conv net with BatchNorm: vmap) is cut into one
    part per worker, each stacked at most ``chunk`` members at a time; a member's bits depend on the
    thread count but not on its companions, so worker processes with the same thread count give the
    bits of one process. (The hand-differentiated conv nets split anyhow, as the MLPs do.)"""
    spec = rewind.get_preset("mnist1d_conv").spec.replace(**{"train.steps": "40it", "train.eval_every": "20it",
                                                             "model.batchnorm": True, "model.widths": "8,8"})
    members = [Member(spec.replace(**{"seeds.init": i, "seeds.data_order": i})) for i in range(n)]
    here = train_population(members, Store(tmp_path / "here"), TrainOptions(quiet=True, threads=1, chunk=chunk,
                                                                             engine="vectorised"))
    split = train_population(members, Store(tmp_path / "split"),
                             TrainOptions(quiet=True, threads=1, chunk=chunk, engine="vectorised",
                                          executor="processes", workers=2))
    assert {r.summary()["pid"] for r in split} != {r.summary()["pid"] for r in here}  # trained elsewhere
    assert len({r.summary()["pid"] for r in split}) == 2
    assert max(int(r.summary()["engine"][len("vectorised(K="):-1]) for r in split) <= min(chunk, -(-n // 2))
    for a, b in zip(here, split):
        assert a.key == b.key
        wa, wb = a.load(40), b.load(40)
        assert all(torch.equal(wa[k], wb[k]) for k in wa)
        assert a.metrics().equals(b.metrics())


def test_worker_processes_are_kept_between_populations_and_replaced_when_killed(tmp_path):
    import os
    import signal

    from rewind.exec.local import _POOLS, close_pools

    spec = rewind.get_preset("mnist1d_mlp").spec.replace(**{"train.steps": "20it", "train.eval_every": "0it"})
    opts = TrainOptions(quiet=True, workers=2)

    def population(first):
        members = [Member(spec.replace(**{"seeds.init": i, "seeds.data_order": i})) for i in range(first, first + 4)]
        return {r.summary()["pid"] for r in train_population(members, Store(tmp_path), opts)}

    def workers():
        (pool,) = _POOLS.values()
        return set(pool._processes)

    close_pools()
    try:
        trained = population(0)
        kept = workers()
        assert trained <= kept and os.getpid() not in trained
        assert population(10) <= kept and workers() == kept    # the same processes trained the next population
        os.kill(next(iter(kept)), signal.SIGKILL)              # a worker killed while idle
        assert population(20) <= workers() != kept             # is replaced: the population still trains
    finally:
        close_pools()


def test_kept_workers_end_when_their_process_is_killed(tmp_path):
    """Killed by a signal, a process runs no exit handler; its kept workers notice and end."""
    import os
    import subprocess
    import sys
    import textwrap
    import time

    script = tmp_path / "kept.py"
    script.write_text(textwrap.dedent(f'''
        import time
        import rewind
        from rewind.exec import train_population
        from rewind.exec.local import _POOLS
        from rewind.store import Store
        from rewind.train import Member, TrainOptions

        if __name__ == "__main__":
            spec = rewind.get_preset("mnist1d_mlp").spec.replace(**{{"train.steps": "10it", "train.eval_every": "0it"}})
            members = [Member(spec.replace(**{{"seeds.init": i}})) for i in range(4)]
            train_population(members, Store({str(tmp_path / "runs")!r}), TrainOptions(quiet=True, workers=2))
            (pool,) = _POOLS.values()
            print(" ".join(map(str, pool._processes)), flush=True)
            time.sleep(600)
    '''))
    p = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        workers = [int(x) for x in p.stdout.readline().split()]
        assert len(workers) >= 1
        p.kill()
        p.wait(timeout=30)
        deadline = time.time() + 30

        def alive(pid):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return False
            with open(f"/proc/{pid}/stat") as f:   # a zombie is gone for our purpose
                return f.read().split()[2] != "Z"

        while any(alive(w) for w in workers) and time.time() < deadline:
            time.sleep(0.5)
        assert not any(alive(w) for w in workers)
    finally:
        p.kill()
