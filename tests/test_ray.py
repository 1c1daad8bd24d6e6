"""The Ray executor on a real two-node cluster on this machine (``ray start --head`` and a second
``ray start --address``, one CPU each, on 127.0.0.1): a lottery study ends with the local
executor's results, a worker killed mid-task is retried and ends bit-identical, a driver killed
mid-study is started again and trains only what is missing, and bad input is one line, exit 2."""
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'rewind[ray]'; make test installs it)")

import rewind  # noqa: E402
from rewind.exec import train_population  # noqa: E402
from rewind.store import Store  # noqa: E402
from rewind.store.results import results_table  # noqa: E402
from rewind.train import Member, TrainOptions  # noqa: E402

RAY = str(Path(sys.executable).with_name("ray"))
ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0", "OMP_NUM_THREADS": "1"}
STUDY = ["lottery", "--preset", "mnist1d_mlp", "--rewind", "0it,20it", "--replicates", "2", "--quiet"]
VARYING = ["engine", "threads", "member"]  # how and where it ran, not what it computed


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict:
    return {**os.environ, **ENV}


def _cmdlines() -> dict[int, str]:
    out = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                out[int(p.name)] = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                pass
    return out


def _stop_cluster(port: int) -> None:
    """Stop this test's nodes only (not `ray stop`, which stops every Ray on the machine): the
    processes that name its port or its session directory; their workers follow their raylets."""
    import re

    procs = _cmdlines()
    sessions = {m.group(0) for c in procs.values() if f":{port}" in c or f"={port}" in c
                for m in re.finditer(r"/tmp/ray/session_[^/ ]+", c)}
    ours = [pid for pid, c in procs.items() if pid != os.getpid() and (f":{port}" in c or f"={port}" in c
                                                                        or any(s in c for s in sessions))]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in ours:
            try:
                os.kill(pid, sig)
            except ProcessLookupError:
                pass
        deadline = time.time() + 10
        while time.time() < deadline and any(_alive(pid) for pid in ours):
            time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(")")[-1].split()[0] != "Z"  # zombies are gone
    except OSError:
        return False


@pytest.fixture(scope="module")
def cluster():
    """Head and one worker node, one CPU each, on the loopback address."""
    old = {k: os.environ.get(k) for k in ENV}
    os.environ.update(ENV)
    port = _free_port()
    address = f"127.0.0.1:{port}"
    try:
        subprocess.run([RAY, "start", "--head", "--num-cpus", "1", "--port", str(port), "--node-ip-address",
                        "127.0.0.1", "--include-dashboard", "false"], env=_env(), check=True, capture_output=True)
        subprocess.run([RAY, "start", "--address", address, "--num-cpus", "1", "--node-ip-address", "127.0.0.1"],
                       env=_env(), check=True, capture_output=True)
        yield address
    finally:
        if ray.is_initialized():
            ray.shutdown()
        _stop_cluster(port)
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def cli(*args, check=True, **kw) -> subprocess.CompletedProcess:
    p = subprocess.run([sys.executable, "-m", "rewind", *args], env=_env(), capture_output=True, text=True, **kw)
    if check:
        assert p.returncode == 0, p.stderr
    return p


def table(root) -> "object":
    df = results_table(Store(root)).drop(columns=VARYING)
    return df.sort_values(["run", "step", "split", "metric"]).reset_index(drop=True)


def test_lottery_study_on_ray_equals_the_local_executor(cluster, tmp_path):
    """The CLI with the local executor, and the same study from Python on the cluster."""
    from rewind.exec import raycluster
    from rewind.lottery import Study
    from rewind.step import parse_steps

    args = [*STUDY, "--levels", "3", "--baselines", "reinit", "--set", "train.steps=60it"]
    cli(*args, "--root", str(tmp_path / "local"))
    spec = rewind.get_preset("mnist1d_mlp").spec.replace(**{"train.steps": "60it"})
    study = Study(spec, tuple(parse_steps("0it,20it")), "mnist1d_mlp", Store(tmp_path / "ray"))
    opts = TrainOptions(quiet=True, executor="ray", ray_address=cluster)
    before = dict(raycluster.SUBMITTED)
    study.run(3, replicates=2, options=opts)
    study.branch("reinit", [1, 2, 3], replicates=2, options=opts)
    local, on_ray = table(tmp_path / "local"), table(tmp_path / "ray")
    assert len(local) > 0
    assert local.equals(on_ray)  # every metric of every run, bit for bit
    runs = Store(tmp_path / "ray").runs()
    assert len(runs) == len(Store(tmp_path / "local").runs()) == 2 + 2 * 2 * 3 * 2  # dense + IMP + reinit
    sent = {k: n - before.get(k, 0) for k, n in raycluster.SUBMITTED.items() if n > before.get(k, 0)}
    assert sorted(sent) == sorted(r.key for r in runs) and set(sent.values()) == {1}  # each run sent once
    workers = {(r.summary()["host"], r.summary()["pid"]) for r in runs}
    assert len(workers) >= 2 and os.getpid() not in {pid for _, pid in workers}  # trained by the cluster
    assert not list((tmp_path / "ray").glob(".rewind-probe-*"))


def _ray_task_pids() -> list[int]:
    return [pid for pid, c in _cmdlines().items() if c.startswith("ray::train_task")]


def test_a_worker_killed_mid_task_is_retried_and_ends_bit_identical(cluster, tmp_path):
    spec = rewind.get_preset("mnist1d_mlp").spec.replace(**{"train.steps": "3000it", "train.eval_every": "1000it"})
    members = [Member(spec.replace(**{"seeds.init": i, "seeds.data_order": i})) for i in range(2)]
    local = train_population(members, Store(tmp_path / "local"), TrainOptions(quiet=True))  # stacked, this process
    keys = [r.key for r in local]   # the members' keys name their engine
    store = Store(tmp_path / "ray")
    opts = TrainOptions(quiet=True, executor="ray", ray_address=cluster, resume_every=100)
    result, killed = {}, []
    worker = threading.Thread(target=lambda: result.update(runs=train_population(members, store, opts)))
    worker.start()
    deadline = time.time() + 120
    while not killed and time.time() < deadline and worker.is_alive():
        if any((store.run(k).path / "resume.safetensors").exists() for k in keys):
            pids = _ray_task_pids()
            if pids:
                os.kill(pids[0], signal.SIGKILL)
                killed.append(pids[0])
        time.sleep(0.05)
    worker.join(300)
    assert killed, "no task was running with a resume point to kill"
    assert not worker.is_alive() and len(result["runs"]) == 2
    for k in keys:
        a, b = store.run(k), Store(tmp_path / "local").run(k)
        assert a.done and a.summary()["pid"] != killed[0]
        wa, wb = a.load(3000), b.load(3000)
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
        assert a.metrics().equals(b.metrics())


def test_a_driver_killed_mid_study_finishes_without_retraining(cluster, tmp_path):
    args = [*STUDY, "--levels", "4", "--set", "train.steps=400it"]
    root = tmp_path / "ray"
    driver = subprocess.Popen([sys.executable, "-m", "rewind", *args, "--root", str(root), "--executor", "ray",
                               "--ray-address", cluster], env=_env(), stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and driver.poll() is None and len(list(root.glob("*/DONE"))) < 5:
        time.sleep(0.02)
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    before = {p.parent.name: p.stat().st_mtime_ns for p in root.glob("*/DONE")}
    assert 5 <= len(before) < 2 + 2 * 2 * 4, "the driver was not killed mid-study"
    cli(*args, "--root", str(root), "--executor", "ray", "--ray-address", cluster)
    after = {p.parent.name: p.stat().st_mtime_ns for p in root.glob("*/DONE")}
    assert {k: after[k] for k in before} == before  # finished runs were not trained again
    assert len(after) == 2 + 2 * 2 * 4
    cli(*args, "--root", str(tmp_path / "local"))
    assert table(tmp_path / "local").equals(table(root))


def _refused(p: subprocess.CompletedProcess, *words) -> None:
    assert p.returncode == 2, p.stderr
    lines = [ln for ln in p.stderr.splitlines() if "warning:" not in ln and ln.strip()]
    assert len(lines) == 1, p.stderr
    for w in words:
        assert w in lines[0], lines[0]


def test_bad_input_is_one_line_and_writes_nothing(cluster, tmp_path):
    root = tmp_path / "store"
    base = [*STUDY, "--levels", "1", "--set", "train.steps=60it", "--root", str(root), "--executor", "ray"]
    _refused(cli(*base, "--ray-address", f"127.0.0.1:{_free_port()}", check=False), "--ray-address",
             "nothing answers")
    _refused(cli(*base, "--ray-address", cluster, "--gpus-per-task", "1", check=False), "--gpus-per-task",
             "0 GPUs")
    _refused(cli(*base, "--ray-address", cluster, "--cpus-per-task", "8", check=False), "--cpus-per-task")
    _refused(cli(*base[:-2], "--ray-address", cluster, check=False), "--ray-address", "--executor ray")
    no_ray = ("import sys; sys.modules['ray'] = None; from rewind.cli import main; "
              f"sys.exit(main({[*base, '--ray-address', cluster]!r}))")
    p = subprocess.run([sys.executable, "-c", no_ray], env=_env(), capture_output=True, text=True)
    _refused(p, "Ray is not installed", "rewind[ray]")
    assert not root.exists()
    with pytest.raises(rewind.SpecError, match="executor"):
        train_population([], Store(root), TrainOptions(executor="slurm"))


def test_a_store_that_a_node_cannot_see_is_refused(cluster, tmp_path):
    """A third node in its own mount namespace, with a tmpfs over the store's parent: it runs on
    the same machine but does not see the store (as a node without the shared file system)."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare(1) is missing: cannot make a node that does not see the store")
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    node = subprocess.run(["unshare", "-m", "sh", "-c", f"mount -t tmpfs tmpfs '{hidden}' && exec '{RAY}' start "
                           f"--address {cluster} --num-cpus 1 --node-ip-address 127.0.0.1"],
                          env=_env(), capture_output=True, text=True)
    if node.returncode != 0:
        pytest.skip(f"cannot start a node in its own mount namespace here (needs CAP_SYS_ADMIN): "
                    f"{node.stderr.strip().splitlines()[-1:] or node.returncode}")
    root = hidden / "store"
    p = cli(*STUDY, "--levels", "1", "--set", "train.steps=60it", "--root", str(root), "--executor", "ray",
            "--ray-address", cluster, check=False)
    _refused(p, "--root", "does not see it", "shared file system")
    assert not root.exists()


def test_an_address_where_something_else_answers_is_refused_in_seconds(tmp_path):
    """A port where another server listens (here a web server; in some networks a proxy answers
    every address) made ray.init retry for 20-40 s with a screenful of warnings."""
    import http.server

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.SimpleHTTPRequestHandler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        started = time.time()
        p = cli("train", "--set", "train.steps=20it", "--root", str(tmp_path / "s"), "--executor", "ray",
                "--ray-address", f"127.0.0.1:{server.server_address[1]}", check=False, timeout=60)
        assert time.time() - started < 20
    finally:
        server.shutdown()
    _refused(p, "--ray-address", "no Ray cluster answers there")
    assert not (tmp_path / "s").exists()


def test_a_stale_current_cluster_file_is_said_in_one_line(tmp_path):
    """`ray start` writes the address of its cluster to ray_current_cluster; when its processes are
    killed the file stays, and ray.init waited on the dead cluster without end (a lottery waited
    13 minutes). Now: with no address Ray starts here after one warning line; with auto, one line
    naming the file, exit 2."""
    import tempfile

    short = Path(tempfile.mkdtemp(prefix="rw", dir="/tmp"))   # Ray's socket paths must stay short
    env = {**_env(), "TMPDIR": str(short)}
    port = _free_port()
    try:
        subprocess.run([RAY, "start", "--head", "--num-cpus", "1", "--port", str(port), "--node-ip-address",
                        "127.0.0.1", "--include-dashboard", "false"], env=env, check=True, capture_output=True)
        _stop_cluster(port)
        _kill_matching(str(short))
        assert (short / "ray" / "ray_current_cluster").read_text().strip().endswith(f":{port}")
        base = [sys.executable, "-m", "rewind", "train", "--set", "train.steps=20it", "--quiet", "--executor", "ray"]
        started = time.time()
        p = subprocess.run([*base, "--root", str(tmp_path / "a")], env=env, capture_output=True, text=True,
                           timeout=180)
        assert p.returncode == 0, p.stderr
        assert "no longer answers" in p.stderr and "starting Ray on this machine" in p.stderr
        assert time.time() - started < 90 and len(Store(tmp_path / "a").runs()) == 1
        p = subprocess.run([*base, "--ray-address", "auto", "--root", str(tmp_path / "b")], env=env,
                           capture_output=True, text=True, timeout=60)
        _refused(p, "--ray-address auto", "ray_current_cluster", "no longer answers")
        assert not (tmp_path / "b").exists()
    finally:
        _kill_matching(str(short))
        shutil.rmtree(short, ignore_errors=True)


def _kill_matching(text: str) -> None:
    for pid, c in _cmdlines().items():
        if text in c and pid != os.getpid():
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
