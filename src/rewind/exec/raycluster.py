"""The Ray executor: populations and plans trained as Ray tasks on a cluster (or on this machine).

Each task trains one part of a population on one worker, with the engine the whole population
would use (vectorised parts are stacked; sequential members go one per task), and writes its runs
to the store, which every node must see at the same path (a shared file system). A task whose
worker dies is retried by Ray; the retry resumes the run from its last resume point, and the
vectorised engine's result is bit-identical to an uninterrupted run. A driver that dies leaves
finished runs in the store: the same command, run again, trains only what is missing.

Ray is optional (``pip install 'rewind[ray]'``): it is imported only when ``executor="ray"``.
"""
from __future__ import annotations

import collections
import dataclasses
import functools
import logging
import os
import socket
import threading
import uuid
from pathlib import Path

from ..spec import SpecError
from ..store import Store, notice
from ..train.member import TrainOptions
from .local import refuse_main_registrations
from .population import Engines, by_group, split_stacks, with_engine

TASK_RETRIES = 3          # retries of a task whose worker process or node died
PROBE_TIMEOUT_S = 120.0   # a node that cannot run the store probe in this time is reported
_checked_stores: set[tuple[str, str]] = set()
SUBMITTED: collections.Counter = collections.Counter()  # run key -> tasks submitted for it by this process


class ExecutorError(SpecError):
    """The cluster cannot run the work as asked (said in one line, before anything is written)."""


def _ray():
    try:
        import ray
    except ImportError:
        raise ExecutorError("--executor ray: Ray is not installed in this environment; "
                            "install it with pip install 'rewind[ray]'") from None
    return ray


def connect(opts: TrainOptions, root: str | os.PathLike):
    """Connect to (or start) the Ray cluster ``opts.ray_address`` names, and check that it can run
    the tasks asked for and that every node sees the store ``root``. Returns the ray module."""
    ray = _ray()
    if opts.cpus_per_task < 1:
        raise ExecutorError(f"--cpus-per-task: {opts.cpus_per_task} is not allowed; give 1 or more")
    if opts.gpus_per_task < 0:
        raise ExecutorError(f"--gpus-per-task: {opts.gpus_per_task} is not allowed; give 0 or more")
    if not ray.is_initialized():
        address = opts.ray_address
        if address not in (None, "auto", "local"):
            _check_reachable(address)
            _check_gcs(address, f"--ray-address {address}")
        elif not os.environ.get("RAY_ADDRESS"):
            address = _current_cluster(address)
        try:
            ray.init(address=address, logging_level=logging.WARNING, include_dashboard=False
                     if address in (None, "local") else None, configure_logging=True)
        except Exception as e:  # noqa: BLE001 - Ray raises several kinds; all mean the same to the user
            first = (str(e).strip().splitlines() or [type(e).__name__])[0]
            if address == "auto":
                raise ExecutorError("--ray-address auto: no running Ray cluster was found from this machine "
                                    f"({first}); start one with `ray start --head`, or leave --ray-address out "
                                    "to start Ray here") from None
            raise ExecutorError(f"--ray-address {address or '(none)'}: could not connect to Ray ({first})") from None
    resources = ray.cluster_resources()
    if opts.gpus_per_task > 0 and resources.get("GPU", 0) < opts.gpus_per_task:
        raise ExecutorError(f"--gpus-per-task {opts.gpus_per_task:g}: the Ray cluster has "
                            f"{resources.get('GPU', 0):g} GPUs (it has {resources.get('CPU', 0):g} CPUs); "
                            "leave --gpus-per-task out to train on CPUs")
    biggest = max((n["Resources"].get("CPU", 0) for n in ray.nodes() if n.get("Alive")), default=0)
    if opts.cpus_per_task > biggest:
        raise ExecutorError(f"--cpus-per-task {opts.cpus_per_task}: no node of the Ray cluster has that many "
                            f"CPUs (the largest has {biggest:g})")
    _check_store(ray, Path(root))
    return ray


def _check_reachable(address: str) -> None:
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise ExecutorError(f"--ray-address {address}: give auto or HOST:PORT (e.g. 10.0.0.1:6379)")
    try:
        socket.create_connection((host, int(port)), timeout=3).close()
    except OSError as e:
        raise ExecutorError(f"--ray-address {address}: nothing answers there ({e.strerror or e}); start the head "
                            "node with `ray start --head --port PORT`, or check the address") from None


GCS_PROBE_S = 3.0   # a live cluster's GCS answers in milliseconds (the client itself gives up after 5 s)


def _check_gcs(address: str, what: str) -> None:
    """Ask the cluster's GCS for its id, quietly and briefly: something else listening at the
    address (a proxy, a web server) made ray.init retry for 20-40 s with a screenful of warnings.
    Skipped where this Ray has no GcsClient to ask with."""
    try:
        from ray._raylet import GcsClient
    except ImportError:
        return
    answer: dict = {}

    def ask():
        try:
            GcsClient(address=address.removeprefix("ray://"))
            answer["ok"] = True
        except Exception as e:  # noqa: BLE001 - any failure to answer means the same to the user
            answer["error"] = (str(e).strip().splitlines() or [type(e).__name__])[0]

    err = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)   # the client's own retry warnings
            thread = threading.Thread(target=ask, daemon=True)
            thread.start()
            thread.join(GCS_PROBE_S)
    finally:
        os.dup2(err, 2)
        os.close(err)
    if not answer.get("ok"):
        why = answer.get("error") or f"no answer in {GCS_PROBE_S:g} s"
        raise ExecutorError(f"{what}: no Ray cluster answers there ({why}); start one with `ray start --head`, "
                            "or check the address")


def _current_cluster(address: str | None) -> str | None:
    """What to pass to ray.init for ``--ray-address`` auto or none, given the cluster that Ray's
    current-cluster file names (``ray start`` writes it, ``ray stop`` removes it): a file left by
    processes that were killed named a dead cluster, and ray.init waited on it without end. With
    no address, a dead one is said in one line and Ray starts here; with auto, it is refused."""
    try:
        from ray._common.utils import get_ray_address_file
    except ImportError:
        return address
    path = Path(get_ray_address_file(None))
    try:
        recorded = path.read_text().strip()
    except OSError:
        return address   # none: auto fails in one line (no cluster), none starts Ray here
    if not recorded:
        return address
    try:
        _check_reachable(recorded)
        _check_gcs(recorded, f"the Ray cluster {recorded}")
    except ExecutorError:
        if address == "auto":
            raise ExecutorError(f"--ray-address auto: {path} names a Ray cluster at {recorded} that no longer "
                                "answers (a `ray start` whose processes ended); start the cluster again, or run "
                                "`ray stop` to remove that file") from None
        notice(f"{path} names a Ray cluster at {recorded} that no longer answers (a `ray start` whose processes "
               "ended); starting Ray on this machine instead (`ray stop` removes that file)")
        return "local"
    return address


def _probe(marker: str) -> tuple[str, str | None]:
    """Run on one node: does it see the driver's marker file in the store, and can it write there?"""
    where = f"{socket.gethostname()} ({os.uname().nodename})"
    path = Path(marker)
    if not path.exists():
        return where, "does not see it"
    test = path.with_name(path.name + f".{os.getpid()}.w")
    try:
        test.write_text("ok")
        test.unlink()
    except OSError as e:
        return where, f"cannot write there ({e.strerror or e})"
    return where, None


def _check_store(ray, root: Path) -> None:
    """Every alive node with CPUs runs a probe: the store must be visible and writable from each."""
    root = root.resolve()
    key = (ray.get_runtime_context().get_job_id(), str(root))
    if key in _checked_stores:
        return
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    created = []
    for p in [root, *root.parents]:
        if p.exists():
            break
        created.append(p)
    try:
        root.mkdir(parents=True, exist_ok=True)
        marker = root / f".rewind-probe-{uuid.uuid4().hex}"
        marker.write_text("probe\n")
    except OSError as e:
        raise ExecutorError(f"--root {root}: cannot write the store here ({e.strerror or e})") from None
    try:
        probe = ray.remote(num_cpus=0, max_retries=0)(_probe)
        nodes = [n for n in ray.nodes() if n.get("Alive") and n["Resources"].get("CPU", 0) > 0]
        refs = [probe.options(scheduling_strategy=NodeAffinitySchedulingStrategy(n["NodeID"], soft=False))
                .remote(str(marker)) for n in nodes]
        try:
            answers = ray.get(refs, timeout=PROBE_TIMEOUT_S)
        except Exception as e:  # noqa: BLE001 - timeout or a node lost during the probe
            raise ExecutorError(f"--root {root}: the Ray nodes did not all answer the store check "
                                f"({str(e).splitlines()[0] if str(e) else type(e).__name__})") from None
        for node, (where, problem) in zip(nodes, answers):
            if problem:
                raise ExecutorError(f"--root {root}: Ray node {node.get('NodeManagerAddress')} {where} {problem}; "
                                    "the store must be a directory that every node sees at the same path "
                                    "(a shared file system)")
    finally:
        marker.unlink(missing_ok=True)
        for p in created:
            try:
                p.rmdir()
            except OSError:
                break
    _checked_stores.add(key)


def train_task(members, root: str, opts: TrainOptions, plugins: list[str] = ()) -> list[str]:
    """One Ray task: train a part of a population on this worker (with the driver's plugins
    loaded: their files or modules must be visible on every node); returns the runs' keys."""
    import warnings

    from ..plugins import load_plugins
    from ..store import RewindWarning
    from .population import train_here

    load_plugins(plugins)
    warnings.simplefilter("ignore", RewindWarning)  # the driver said them already, once
    return [run.key for run in train_here(members, Store(root), opts)]


@functools.lru_cache(maxsize=None)
def _remote():
    return _ray().remote(max_retries=TASK_RETRIES)(train_task)


def task_options(opts: TrainOptions) -> TrainOptions:
    """What a task trains with: here, with its own threads (its CPUs unless --threads says), on
    its GPU when it has one; callbacks stay with the driver."""
    return dataclasses.replace(opts, executor="local", workers=1, on_iteration=None, on_event=None,
                               threads=opts.threads or opts.cpus_per_task,
                               data_root=opts.data_root or os.environ.get("REWIND_DATA"),
                               device="cuda" if opts.gpus_per_task > 0 else opts.device)


def run_plan_on_ray(plan, store: Store, opts: TrainOptions) -> None:
    """Submit the plan's ready work as tasks; as each task ends, tell the plan and submit what
    became ready."""
    ray = connect(opts, store.root)
    remote = _remote().options(num_cpus=opts.cpus_per_task, num_gpus=opts.gpus_per_task or None)
    resources = ray.cluster_resources()
    slots = int(resources.get("CPU", 1) // opts.cpus_per_task)
    if opts.gpus_per_task > 0:
        slots = min(slots, int(resources.get("GPU", 0) // opts.gpus_per_task))
    engines, base, root = Engines(opts), task_options(opts), str(store.root.resolve())
    from ..plugins import requested

    plugins = requested()
    inflight: dict = {}
    while True:
        work = plan.ready()
        for group, items in by_group(work).items():
            refuse_main_registrations([w.member for w in items], "a Ray worker")
            chosen = engines.options(group, [w.member for w in items])
            for w, m in zip(items, with_engine([w.member for w in items], chosen)):
                w.member = m   # the engine is part of the key
            todo = []
            for w in items:  # what is in the store already is not sent anywhere
                run = store.run(w.member.key)
                if run.done:
                    plan.done(w.tag, run)
                else:
                    todo.append(w)
            if chosen.engine == "vectorised":
                parts = split_stacks(todo, opts, slots)
            else:
                parts = [[w] for w in todo]
            task = dataclasses.replace(base, engine=chosen.engine)
            for part in filter(None, parts):
                inflight[remote.remote([w.member for w in part], root, task, plugins)] = part
                SUBMITTED.update(w.member.key for w in part)
        if not inflight:
            if work:
                continue   # work that was already in the store made more work ready
            return
        finished, _ = ray.wait(list(inflight), num_returns=1)
        for ref in finished:
            part = inflight.pop(ref)
            for w, key in zip(part, _result(ray, ref, part)):
                run = store.run(key)
                if run.diverged:  # the task's own notice stayed on its worker
                    notice(f"run {key} diverged (its training loss was not finite); stored as diverged")
                plan.done(w.tag, run)


def _result(ray, ref, part) -> list[str]:
    try:
        return ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        cause = getattr(e, "cause", None)
        raise (cause if isinstance(cause, Exception) else e) from None
    except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError, ray.exceptions.RayError) as e:
        keys = ", ".join(w.member.key for w in part)
        raise ExecutorError(f"--executor ray: the task training runs {keys} failed {TASK_RETRIES + 1} times "
                            f"({type(e).__name__}); finished runs are in the store: run the command again to "
                            "resume") from None
