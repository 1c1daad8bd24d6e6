"""Data-parallel training (torchrun, Gloo, 2 CPU processes): equal to one process training the
same global batches (float64, 1e-10), BatchNorm statistics of the global batch, only rank 0
writing, a killed run resumed identical to an uninterrupted one, a lottery study's levels."""
import os
import signal
import subprocess
import sys
import time

import pytest
import torch

import rewind
from rewind.store import Store

F64 = ["--set", "train.precision=float64"]


def cli(*args, check=True, **kw):
    p = subprocess.run([sys.executable, "-m", "rewind", *args], capture_output=True, text=True, **kw)
    if check:
        assert p.returncode == 0, p.stderr[-3000:]
    return p


def _max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a if a[k].is_floating_point())


def test_two_ranks_equal_one_process_on_the_same_global_batches(tmp_path):
    """ResNet-8 with BatchNorm, batch 128 (the last batch of each epoch has 32 rows: 16 per rank)."""
    args = ["train", "--preset", "mnist1d_resnet", "--set", "train.steps=50it", *F64, "--quiet"]
    cli(*args, "--root", str(tmp_path / "one"), "--engine", "sequential")  # DDP trains sequentially
    cli(*args, "--root", str(tmp_path / "ddp"), "--ddp", "2")
    (one,), (ddp,) = Store(tmp_path / "one").runs(), Store(tmp_path / "ddp").runs()
    assert one.key == ddp.key  # the same run: how it was trained is not part of what it is
    assert _max_difference(one.load(50), ddp.load(50)) < 1e-10  # weights, BN statistics, momentum
    assert (one.metrics()["value"] - ddp.metrics()["value"]).abs().max() < 1e-10
    record = ddp.summary()
    assert record["ddp"] == {"world_size": 2, "backend": "gloo", "batchnorm": "sync"}
    assert set(rewind.results(tmp_path / "ddp")["ddp"]) == {2}  # a column of `rewind results`
    assert rewind.results(tmp_path / "one")["ddp"].isna().all()
    # per-rank statistics are another computation, and measurably so
    cli(*args, "--root", str(tmp_path / "local"), "--ddp", "2", "--ddp-batchnorm", "local")
    (local,) = Store(tmp_path / "local").runs()
    assert _max_difference(one.load(50), local.load(50)) > 1e-4
    assert local.summary()["ddp"]["batchnorm"] == "local"


def _kill_group_when(proc: subprocess.Popen, ready, timeout: float = 120) -> bool:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if ready():
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return True
        time.sleep(0.02)
    proc.wait()
    return False


def test_a_killed_ddp_run_resumes_identical_to_an_uninterrupted_one(tmp_path):
    # the MLP with BatchNorm (synchronised statistics, running buffers in the resume point): resuming
    # is the subject here, the first test covers the ResNet (this test took 56 s with it, 39 s so)
    args = ["train", "--preset", "mnist1d_mlp", "--set", "model.batchnorm=true", "--set", "train.steps=160it",
            "--resume-every", "30", "--quiet", "--ddp", "2"]
    cli(*args, "--root", str(tmp_path / "whole"))
    (whole,) = Store(tmp_path / "whole").runs()
    root = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "rewind", *args, "--root", str(root)], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    resume = root / whole.key / "resume.safetensors"
    assert _kill_group_when(proc, resume.exists), "the run ended before a resume point was written"
    assert not (root / whole.key / "DONE").exists()
    cli(*args, "--root", str(root))
    run = Store(root).run(whole.key)
    a, b = whole.load(160), run.load(160)
    assert all(torch.equal(a[k], b[k]) for k in a)  # float32, bit for bit
    assert whole.metrics().equals(run.metrics())


def test_a_lottery_study_trains_its_trunk_and_levels_data_parallel(tmp_path):
    args = ["lottery", "--preset", "mnist1d_mlp", "--levels", "2", "--rewind", "10it", "--set", "train.steps=40it",
            *F64, "--quiet"]
    one = cli(*args, "--root", str(tmp_path / "one"))
    ddp = cli(*args, "--root", str(tmp_path / "ddp"), "--ddp", "2")
    assert ddp.stdout == one.stdout  # the table, printed once (by rank 0)
    runs = Store(tmp_path / "ddp").runs()
    assert len(runs) == 3 and all(r.summary()["ddp"]["world_size"] == 2 for r in runs)
    # levels start from the dense weights at 10it, which agree to rounding, so their keys (content
    # digests) differ: match the runs by level
    by_level = {r.meta()["level"]: r for r in Store(tmp_path / "one").runs()}
    for r in runs:
        twin = by_level[r.meta()["level"]]
        assert _max_difference(r.load(40), twin.load(40)) < 1e-10
    assert len(list((tmp_path / "ddp" / "studies").glob("*.json"))) == 1


@pytest.mark.parametrize("extra, words", [
    (["instability", "--preset", "mnist1d_mlp", "--at", "0it"], "train and lottery"),
    (["train", "--preset", "mnist1d_mlp", "--executor", "ray"], "--executor"),
    (["train", "--preset", "mnist1d_mlp", "--ddp", "0"], "--ddp"),
])
def test_bad_ddp_input_is_one_line(tmp_path, extra, words):
    args = extra + (["--ddp", "2"] if "--ddp" not in extra else [])
    p = cli(*args, "--root", str(tmp_path / "s"), check=False)
    assert p.returncode == 2 and words in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert not (tmp_path / "s").exists()
    with pytest.raises(rewind.SpecError, match="torchrun"):
        rewind.train("mnist1d_mlp", {"train.steps": "10it"}, root=tmp_path / "s",
                     options=rewind.TrainOptions(quiet=True, ddp=True))
    with pytest.raises(rewind.SpecError, match="probe.schedule"):  # probes are taken in one process
        rewind.train("mnist1d_mlp", {"train.steps": "10it", "probe.schedule": "1it:3it,5it", "probe.until": "10it"},
                     root=tmp_path / "s", options=rewind.TrainOptions(quiet=True, ddp=True))
    assert not (tmp_path / "s").exists()


def _relative_difference(a: dict, b: dict) -> float:
    """Largest difference of any tensor, relative to that tensor's largest entry."""
    assert a.keys() == b.keys()
    return max(((a[k].double() - b[k].double()).abs().max() / a[k].double().abs().max().clamp_min(1e-300)).item()
               for k in a if a[k].is_floating_point())


def test_streamed_image_folders_train_data_parallel(tmp_path):
    """ImageNet-format folders: each rank reads only its share of every batch (random-resized
    crops drawn for the whole batch) and of the evaluation files; float64, equal to one process to
    rounding. This tiny ResNet-18 (16 px, batch 6) ends in BatchNorm over 6 values at 1x1, which
    amplifies rounding about 70x a step (measured: 1.2e-13 relative after one step, 9e-12 after
    two), so it is compared after two steps, relative to each tensor's scale."""
    from test_imagenet import write_imagenet

    data = write_imagenet(tmp_path / "data", per_class=6)
    args = ["train", "--preset", "imagenet_resnet_50", "--set", "model.name=imagenet_resnet_18",
            "--set", "model.width=0.125", "--set", "data.image_size=16", "--set", "data.batch_size=6",
            "--set", "train.steps=2it", "--set", "train.warmup=0it", "--set", "train.milestones=",
            "--set", "train.eval_every=1it", *F64, "--data-workers", "0", "--data-root", str(data), "--quiet"]
    cli(*args, "--root", str(tmp_path / "one"))
    cli(*args, "--root", str(tmp_path / "ddp"), "--ddp", "2")
    (one,), (ddp,) = Store(tmp_path / "one").runs(), Store(tmp_path / "ddp").runs()
    assert one.key == ddp.key and ddp.summary()["ddp"]["world_size"] == 2
    assert _relative_difference(one.load(2), ddp.load(2)) < 1e-10
    a, b = one.metrics(), ddp.metrics()
    assert len(a) == len(b) == 12 and ((a["value"] - b["value"]).abs() / a["value"].abs().clip(lower=1)).max() < 1e-10
