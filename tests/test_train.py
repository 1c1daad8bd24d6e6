import os
import subprocess
import sys
import textwrap
import time

import pytest
import torch

import rewind
from rewind.spec import Spec
from rewind.store import CheckpointError, Store
from rewind.train import Member, TrainOptions, lr_at
from rewind.exec import train_population

SMALL = {"train.steps": "120it", "train.eval_every": "40it", "train.checkpoints": "50it"}


def small_spec(**over):
    return rewind.get_preset("mnist1d_mlp").spec.replace(**{**SMALL, **over})


@pytest.fixture
def quiet():
    """This module tests the sequential loop (the vectorised engine: test_vectorised.py)."""
    return TrainOptions(quiet=True, engine="sequential")


def final_weights(run):
    return run.weights(run.summary()["iterations"])


def assert_same(a, b):
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_same_spec_same_bits_in_two_stores(tmp_path, quiet):
    spec = small_spec()
    [a] = train_population([Member(spec)], Store(tmp_path / "a"), quiet)
    [b] = train_population([Member(spec)], Store(tmp_path / "b"), quiet)
    assert a.key == b.key == spec.hash
    assert_same(final_weights(a), final_weights(b))
    assert a.metrics().equals(b.metrics())


def test_seeds_are_separate(store, quiet):
    base = small_spec()
    other_order = small_spec(**{"seeds.data_order": 1})
    other_init = small_spec(**{"seeds.init": 1})
    a, b, c = train_population([Member(base), Member(other_order), Member(other_init)], store, quiet)
    assert_same(a.weights(0), b.weights(0))                 # data order does not touch init
    assert not torch.equal(final_weights(a)["out.weight"], final_weights(b)["out.weight"])
    assert not torch.equal(a.weights(0)["out.weight"], c.weights(0)["out.weight"])


def test_run_layout_checkpoints_and_metrics(store, quiet):
    [run] = train_population([Member(small_spec())], store, quiet)
    assert run.done and run.checkpoint_steps() == [0, 50, 120]
    assert not (run.path / "resume.safetensors").exists()
    tensors = run.load(50)
    assert any(k.startswith("optim/") for k in tensors)      # optimizer state travels with weights
    m = run.metrics()
    assert sorted(m.step.unique()) == [0, 40, 80, 120]
    assert set(m.split) == {"train", "test"} and set(m.metric) == {"loss", "accuracy"}
    acc = m[(m.metric == "accuracy") & (m.split == "train")].set_index("step").value
    assert acc[120] > acc[0] + 0.2
    spec_doc = run.spec_doc()
    assert rewind.Spec.from_dict(spec_doc["spec"]) == small_spec()


def test_a_finished_run_is_not_trained_again(store):
    calls = []
    opts = TrainOptions(quiet=True, engine="sequential", on_iteration=lambda run, it: calls.append(it))
    train_population([Member(small_spec())], store, opts)
    n = len(calls)
    assert n == 120
    train_population([Member(small_spec())], store, opts)
    assert len(calls) == n


class Crash(Exception):
    pass


@pytest.mark.parametrize("optimizer,crash_at", [("sgd", 37), ("sgd", 100), ("adam", 64)])
def test_an_interrupted_run_resumes_to_identical_bits(tmp_path, optimizer, crash_at):
    over = {"train.optimizer": optimizer, "train.milestones": "60it", "train.warmup": "10it"}
    if optimizer == "adam":
        over["train.lr"] = 0.001
    spec = small_spec(**over)
    [ref] = train_population([Member(spec)], Store(tmp_path / "ref"), TrainOptions(quiet=True, engine="sequential"))

    def crash(run, it):
        if it == crash_at:
            raise Crash

    store = Store(tmp_path / "crash")
    with pytest.raises(Crash):
        train_population([Member(spec)], store, TrainOptions(quiet=True, engine="sequential", resume_every=25,
                                                             on_iteration=crash))
    run = store.run(spec.hash)
    assert run.status == "partial" and not run.done
    # what a process killed in the middle of writing its resume point leaves: removed on resuming
    (run.path / ".resume.safetensors.k9x2.tmp").write_bytes(b"half a checkpoint")
    seen = []
    train_population([Member(spec)], store, TrainOptions(quiet=True, engine="sequential", resume_every=25,
                                                         on_iteration=lambda r, it: seen.append(it)))
    assert seen[0] == ((crash_at - 1) // 25) * 25 + 1  # restarted from the last resume point before the crash
    assert_same(final_weights(run), final_weights(ref))
    assert_same(run.load(120), ref.load(120))          # optimizer state too
    assert run.metrics().equals(ref.metrics())
    assert not list(run.path.glob(".*.tmp"))


_WORKER = textwrap.dedent("""
    import os, sys
    import rewind
    from rewind.store import Store
    from rewind.train import Member, TrainOptions
    from rewind.exec import train_population
    spec = rewind.get_preset("mnist1d_mlp").spec.replace(**{"train.steps": sys.argv[2], "train.eval_every": "100it"})
    log = sys.argv[3] if len(sys.argv) > 3 else None
    def mark(run, it):
        if log and it == 1:
            with open(log, "a") as fh:
                fh.write(f"{os.getpid()}\\n")
    train_population([Member(spec)], Store(sys.argv[1]),
                     TrainOptions(quiet=True, engine="sequential", on_iteration=mark,
                                  resume_every=int(os.environ.get("RESUME_EVERY", "500"))))
""")


def _spawn(*args, env=None):
    return subprocess.Popen([sys.executable, "-c", _WORKER, *map(str, args)],
                            env={**os.environ, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def test_kill_9_then_resume_matches_an_uninterrupted_run(tmp_path):
    steps = "1500it"
    ref_root, root = tmp_path / "ref", tmp_path / "killed"
    assert _spawn(ref_root, steps).wait(120) == 0
    spec = rewind.get_preset("mnist1d_mlp").spec.replace(**{"train.steps": steps, "train.eval_every": "100it"})
    ref = Store(ref_root).run(spec.hash)
    run = Store(root).run(spec.hash)
    kills = 0
    for _ in range(3):  # kill it a few times at whatever point it has reached
        proc = _spawn(root, steps, env={"RESUME_EVERY": "50"})
        deadline = time.time() + 60
        while time.time() < deadline and not (run.path / "resume.safetensors").exists() and proc.poll() is None:
            time.sleep(0.01)
        time.sleep(0.05 + 0.1 * kills)
        if proc.poll() is None:
            proc.kill()
            kills += 1
        proc.wait()
        if run.done:
            break
    assert kills >= 1
    assert _spawn(root, steps, env={"RESUME_EVERY": "50"}).wait(120) == 0
    assert run.done
    assert_same(final_weights(run), final_weights(ref))
    assert run.metrics().equals(ref.metrics())
    assert not list(run.path.glob(".*.tmp"))


def test_two_processes_never_train_one_run_twice(tmp_path):
    log = tmp_path / "log"
    procs = [_spawn(tmp_path / "runs", "800it", log) for _ in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    assert len(log.read_text().split()) == 1
    [run] = Store(tmp_path / "runs").runs()
    assert run.done


def test_corrupt_checkpoint_is_refused(store, quiet):
    [run] = train_population([Member(small_spec())], store, quiet)
    path = run.checkpoint_path(50)
    data = bytearray(path.read_bytes())
    data[-5] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="checksum"):
        run.load(50)
    with pytest.raises(CheckpointError, match="has no checkpoint at 7it"):
        run.load(7)


def test_learning_rate_schedule():
    t = Spec().replace(**{"train.lr": 1.0, "train.warmup": "4it", "train.milestones": "10it,1ep", "train.gamma": 0.5}).train
    ipe = 20
    assert [lr_at(t, i, ipe) for i in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert lr_at(t, 9, ipe) == 1.0 and lr_at(t, 10, ipe) == 0.5 and lr_at(t, 20, ipe) == 0.25


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_masked_weights_stay_exactly_zero(store, optimizer):
    spec = small_spec(**{"train.optimizer": optimizer, "train.lr": 0.5, "train.momentum": 0.99,
                         "train.nesterov": True, "train.weight_decay": 0.1})
    model_ref = rewind.models.create_model(spec.model, (40,), 10, seed=0)
    g = torch.Generator().manual_seed(0)
    mask = {n: torch.rand(p.shape, generator=g) < 0.3 for n, p in model_ref.named_parameters() if n in model_ref.prunable()}
    [run] = train_population([Member(spec, mask=mask)], store, TrainOptions(quiet=True, engine="sequential"))
    assert run.key != spec.hash   # the mask is part of the run's identity
    for step in run.checkpoint_steps():
        w = run.weights(step)
        for n, m in mask.items():
            assert torch.count_nonzero(w[n][~m]) == 0
            assert torch.count_nonzero(w[n][m]) == m.sum()


def test_members_of_a_population_must_share_the_schedule(store, quiet):
    with pytest.raises(ValueError, match="share"):
        train_population([Member(small_spec()), Member(small_spec(**{"train.lr": 0.2}))], store, quiet)


@pytest.mark.parametrize("engine", ["sequential", "vectorised"])
def test_skipping_evaluation_changes_nothing_but_the_metrics(tmp_path, engine):
    members = [Member(small_spec()), Member(small_spec(**{"seeds.init": 1}))]
    ref = train_population(members, Store(tmp_path / "a"), TrainOptions(quiet=True, engine=engine))
    bare = train_population(members, Store(tmp_path / "b"), TrainOptions(quiet=True, engine=engine, evaluate=False))
    for a, b in zip(ref, bare):
        assert_same(final_weights(a), final_weights(b))
        assert b.metrics().empty and not a.metrics().empty


@pytest.mark.parametrize("engine", ["sequential", "vectorised"])
def test_evaluating_the_test_split_only_records_the_same_test_rows(tmp_path, engine):
    both = [Member(small_spec(**{"seeds.init": i})) for i in range(2)]
    only = [Member(m.spec.replace(**{"train.eval_splits": "test"})) for m in both]
    assert only[0].spec.hash != both[0].spec.hash and "eval_splits" not in both[0].spec.canonical_json()
    ref = train_population(both, Store(tmp_path / "a"), TrainOptions(quiet=True, engine=engine))
    test = train_population(only, Store(tmp_path / "b"), TrainOptions(quiet=True, engine=engine))
    for a, b in zip(ref, test):
        assert_same(final_weights(a), final_weights(b))
        ma, mb = a.metrics(), b.metrics()
        assert set(ma["split"]) == {"train", "test"} and set(mb["split"]) == {"test"}
        assert ma[ma["split"] == "test"].reset_index(drop=True).equals(mb.reset_index(drop=True))


@pytest.mark.parametrize("value, message", [("", "at least one"), ("test,test", "once"), ("val", "unknown split")])
def test_bad_eval_splits_are_refused_by_name(value, message):
    with pytest.raises(rewind.SpecError, match=f"train.eval_splits.*{message}"):
        small_spec(**{"train.eval_splits": value})


def test_the_thread_count_is_recorded_and_a_fixed_count_reproduces_the_bits(tmp_path):
    import torch

    from rewind.train import TrainOptions

    before = torch.get_num_threads()
    try:
        overrides = {"train.steps": "60it"}
        runs = [rewind.train("mnist1d_mlp", overrides, root=tmp_path / f"r{i}",
                             options=TrainOptions(quiet=True, engine="sequential", threads=1)) for i in range(2)]
        assert [r.summary()["threads"] for r in runs] == [1, 1]
        assert torch.equal(runs[0].weights(60)["out.weight"], runs[1].weights(60)["out.weight"])
        assert set(rewind.results(tmp_path / "r0")["threads"]) == {1}
    finally:
        torch.set_num_threads(before)


def _optimize(spec, make, dtype, steps=12, reload_at=6):
    """A small net trained by ``make(spec.train, params)`` with a changing learning rate, its
    optimizer rebuilt from its saved tensors half way (as a resumed run does)."""
    from rewind.train.optim import load_optimizer_tensors, optimizer_tensors

    g = torch.Generator().manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 7), torch.nn.ReLU(), torch.nn.Linear(7, 3)).to(dtype)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=dtype))
    opt = make(spec.train, model.parameters())
    for t in range(steps):
        x, y = torch.randn(8, 5, generator=g, dtype=dtype), torch.randint(0, 3, (8,), generator=g)
        for group in opt.param_groups:
            group["lr"] = spec.train.lr * (1 + t % 3) / 3
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        opt.step()
        if t == reload_at:
            saved = {k: v.clone() for k, v in optimizer_tensors(opt).items()}
            opt = make(spec.train, model.parameters())
            load_optimizer_tensors(opt, saved)
    return [p.detach() for p in model.parameters()], optimizer_tensors(opt)


@pytest.mark.parametrize("over", [
    {"train.momentum": 0.0}, {"train.momentum": 0.9}, {"train.nesterov": True, "train.weight_decay": 1e-3},
    {"train.optimizer": "adam", "train.lr": 1e-3}, {"train.optimizer": "adam", "train.lr": 1e-3, "train.weight_decay": 0.01}])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_the_optimizer_updates_and_saves_as_torch_optim_does(over, dtype):
    from rewind.train import make_optimizer

    def torch_optim(t, params):
        if t.optimizer == "sgd":
            return torch.optim.SGD(params, lr=t.lr, momentum=t.momentum, nesterov=t.nesterov, weight_decay=t.weight_decay)
        return torch.optim.Adam(params, lr=t.lr, betas=tuple(t.betas), weight_decay=t.weight_decay)

    spec = rewind.get_preset("mnist1d_mlp").spec.replace(**over)
    ours, ours_state = _optimize(spec, make_optimizer, dtype)
    theirs, their_state = _optimize(spec, torch_optim, dtype)
    assert all(torch.equal(a, b) for a, b in zip(ours, theirs))
    assert ours_state.keys() == their_state.keys() and (len(ours_state) > 0) == (over.get("train.momentum") != 0.0)
    assert all(torch.equal(ours_state[k], their_state[k]) and ours_state[k].dtype == their_state[k].dtype
               for k in ours_state)


def test_training_does_not_import_torch_dynamo():
    """torch.optim's classes import torch._dynamo when built, zeroed, stepped or saved (0.8-1.8 s of
    every training process's start on 2 cores); rewind's optimizer does not, nor does anything else."""
    script = ("import sys, tempfile, rewind\n"
              "for o in ('sgd', 'adam'):\n"
              "    rewind.train('mnist1d_mlp', {'train.steps': '3it', 'train.optimizer': o, 'train.milestones': ''},"
              " root=tempfile.mkdtemp(), options=rewind.TrainOptions(quiet=True, engine='sequential'))\n"
              "print('torch._dynamo' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
