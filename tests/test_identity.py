"""One key, one result: a run's key names one set of bits, whichever engine, population, repair or
process produced it (issue: one key, one result)."""
import dataclasses
import hashlib
import json
import subprocess
import sys

import pytest
import torch

import rewind
from rewind.exec import train_population
from rewind.lottery import Study
from rewind.step import parse_steps
from rewind.store import Store
from rewind.train import Member, TrainOptions

SHORT = {"train.steps": "24it", "train.eval_every": "12it", "train.milestones": ""}
# the four kinds of stack: hand-differentiated MLP, hand-differentiated conv net, a conv net with
# BatchNorm that goes through vmap and autograd, and the testbed's ResNet (autograd through its own
# stacked forward)
MODELS = {
    "mlp": ("mnist1d_mlp", {}),
    "digits_cnn": ("digits_cnn", {"model.widths": "4,8"}),
    "conv_bn": ("mnist1d_conv", {"model.widths": "4,4", "model.batchnorm": True}),
    "resnet": ("mnist1d_resnet", {"model.widths": "4"}),
}


def spec_of(name, **over):
    preset, extra = MODELS[name]
    return rewind.get_preset(preset).spec.replace(**{**SHORT, **extra, **over})


def members_of(spec, n):
    return [Member(spec.replace(**{"seeds.init": i, "seeds.data_order": i, "seeds.augment": i})) for i in range(n)]


def files_digest(run) -> dict[str, str]:
    """sha256 of each checkpoint and of the metrics (the record holds times and hosts)."""
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(run.path.iterdir())
            if p.suffix == ".safetensors" or p.name == "metrics.csv"}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_a_members_bits_do_not_depend_on_its_companions_their_number_or_order(tmp_path, name):
    """The vectorised engine never computes a member alone (a lone one beside a copy of itself),
    and from two members on each member's bits are its own: alone, first of two, last of three,
    fourth of six."""
    spec = spec_of(name)
    a, b, c, *more = members_of(spec, 6)
    opts = TrainOptions(quiet=True, threads=1)
    alone = train_population([a], Store(tmp_path / "1"), opts)[0]
    first = train_population([a, b], Store(tmp_path / "2"), opts)[0]
    last = train_population([c, b, a], Store(tmp_path / "3"), opts)[2]
    fourth = train_population([c, b, more[0], a, *more[1:]], Store(tmp_path / "6"), opts)[3]
    assert alone.summary()["engine"] == "vectorised(K=1)" and last.summary()["engine"] == "vectorised(K=3)"
    assert fourth.summary()["engine"] == "vectorised(K=6)"
    assert alone.key == first.key == last.key == fourth.key
    assert files_digest(alone) == files_digest(first) == files_digest(last) == files_digest(fourth)


def test_a_population_larger_than_the_chunk_is_stacked_in_near_equal_parts_with_the_same_bits(tmp_path):
    """5 members at most 4 at a time are stacks of 2 and 3 (not 4 and a lone member beside a copy of
    itself), and each member's files are those of the 5 stacked at once."""
    spec = spec_of("digits_cnn")
    members = members_of(spec, 5)
    whole = train_population(members, Store(tmp_path / "whole"), TrainOptions(quiet=True, threads=1, chunk=16))
    parts = train_population(members, Store(tmp_path / "parts"), TrainOptions(quiet=True, threads=1, chunk=4))
    assert [r.summary()["engine"] for r in whole] == ["vectorised(K=5)"] * 5
    assert [r.summary()["engine"] for r in parts] == ["vectorised(K=2)"] * 2 + ["vectorised(K=3)"] * 3
    assert [files_digest(r) for r in parts] == [files_digest(r) for r in whole]


def test_even_chunks():
    from rewind.train.vectorised import even_chunks

    assert [len(c) for c in even_chunks(list(range(17)), 16)] == [8, 9]
    assert [len(c) for c in even_chunks(list(range(33)), 16)] == [11, 11, 11]
    assert [len(c) for c in even_chunks(list(range(16)), 16)] == [16]
    assert [len(c) for c in even_chunks(list(range(3)), 1)] == [1, 1, 1]
    assert even_chunks([], 16) == []
    assert sum(even_chunks(list(range(29)), 4), []) == list(range(29))


@pytest.mark.parametrize("name", ["mlp", "digits_cnn"])
def test_hand_differentiated_stacks_do_not_depend_on_the_thread_count(tmp_path, name):
    spec = spec_of(name)
    a, b = members_of(spec, 2)
    one = train_population([a, b], Store(tmp_path / "1"), TrainOptions(quiet=True, threads=1))
    two = train_population([b, a], Store(tmp_path / "2"), TrainOptions(quiet=True, threads=2))
    assert files_digest(one[0]) == files_digest(two[1])


@pytest.mark.parametrize("name", ["mlp", "digits_cnn"])
def test_each_engine_names_its_own_runs(tmp_path, name):
    """The engines round differently; the same spec trained by each gives different keys, so no
    store can answer one engine's request with the other's bits."""
    spec = spec_of(name)
    members = members_of(spec, 2)
    seq = train_population(members, Store(tmp_path), TrainOptions(quiet=True, engine="sequential"))
    vec = train_population(members, Store(tmp_path), TrainOptions(quiet=True, engine="vectorised"))
    for s, v in zip(seq, vec):
        assert s.summary()["engine"] == "sequential" and v.summary()["engine"].startswith("vectorised")
        assert s.key != v.key
        assert s.key == Member(json_spec(s)).key          # the sequential engine keeps the spec's hash
        assert v.spec_doc()["engine"] == "vectorised" and "engine" not in s.spec_doc()
        if files_digest(s) == files_digest(v):   # equal bits may share a key; these do not
            pytest.fail("the engines gave equal bits: the test needs another setting")
    assert len(Store(tmp_path).runs()) == 4


def json_spec(run):
    return rewind.Spec.from_dict(run.spec_doc()["spec"])


def test_a_run_whose_record_names_another_engine_than_its_key_is_damaged(tmp_path, capsys):
    """A store written before keys named the engine holds vectorised runs under the sequential
    engine's key: such a run is damaged (not returned), and training it again gives the
    sequential bits."""
    spec = spec_of("mlp")
    store = Store(tmp_path)
    [vec] = train_population([Member(spec)], store, TrainOptions(quiet=True, engine="vectorised"))
    fresh = train_population([Member(spec)], Store(tmp_path / "fresh"), TrainOptions(quiet=True,
                                                                                      engine="sequential"))[0]
    old = store.run(spec.hash)   # the key the sequential engine names
    old.path.mkdir()
    for p in vec.path.iterdir():
        if p.name != ".lock":
            (old.path / p.name).write_bytes(p.read_bytes())
    doc = json.loads((old.path / "spec.json").read_text())
    doc.pop("engine")
    doc.pop("start")
    doc["key"] = old.key
    (old.path / "spec.json").write_text(json.dumps(doc, sort_keys=True, indent=1) + "\n")
    _rerecord(old)
    health = old.health()
    assert health.status == "damaged" and "vectorised engine" in health.problem
    with pytest.warns(rewind.store.RewindWarning, match="damaged"):
        [again] = train_population([Member(spec)], store, TrainOptions(quiet=True, engine="sequential"))
    assert again.key == old.key and again.done
    assert files_digest(again) == files_digest(fresh)


def _rerecord(run) -> None:
    """Rewrite a run's DONE so that its checksums match its files again (as an old store's would)."""
    from rewind.store.runs import _record_digest, file_sha256

    record = json.loads((run.path / "DONE").read_text())
    record["files"] = {name: {"bytes": (run.path / name).stat().st_size, "sha256": file_sha256(run.path / name)}
                       for name in record["files"]}
    record["record_sha256"] = _record_digest(record)
    (run.path / "DONE").write_text(json.dumps(record, sort_keys=True, indent=1) + "\n")


def _study(root, name, **over):
    spec = spec_of(name, **{"prune.fraction": 0.5, **over})
    return Study(spec, parse_steps("0it,8it"), None, Store(root))


@pytest.mark.parametrize("name", ["mlp", "conv_bn"])
def test_a_damaged_member_of_a_vectorised_study_is_repaired_to_a_fresh_stores_bits(tmp_path, name):
    """Damage the last level's run of one chain (its final checkpoint) and rerun the study: the
    repaired run has the bits of a fresh store's, though it now trains alone."""
    opts = TrainOptions(quiet=True, threads=1)
    fresh = _study(tmp_path / "fresh", name).run(2, replicates=2, options=opts)
    study = _study(tmp_path / "store", name)
    first = study.run(2, replicates=2, options=opts)
    assert {k: r.key for k, r in first.items()} == {k: r.key for k, r in fresh.items()}
    # a flipped byte in level 1's final weights (found when level 2's mask is pruned from them) and a
    # truncated checkpoint of another chain's level 2 (found by its size)
    flipped, cut = first[(1, "8it", 1)], first[(0, "0it", 2)]
    assert flipped.summary()["engine"] == "vectorised(K=4)"
    data = bytearray(flipped.checkpoint_path(24).read_bytes())
    data[-5] ^= 0xFF
    flipped.checkpoint_path(24).write_bytes(bytes(data))
    cut.checkpoint_path(24).write_bytes(cut.checkpoint_path(24).read_bytes()[:-8])
    with pytest.warns(rewind.store.RewindWarning, match="damaged"):
        again = _study(tmp_path / "store", name).run(2, replicates=2, options=opts)
    for victim in (flipped, cut):
        key = next(k for k, r in first.items() if r.key == victim.key)
        assert again[key].key == victim.key and again[key].summary()["engine"] == "vectorised(K=1)"
    for k, run in fresh.items():
        assert files_digest(again[k]) == files_digest(run), k
    # one chain asked for alone is the study's chain (the same runs, nothing trained)
    chain = _study(tmp_path / "store", name).chain(1, parse_steps("8it")[0], 2, options=opts)
    assert chain[(1, "8it", 2)].key == first[(1, "8it", 2)].key


_STUDY_SCRIPT = """
import sys, rewind
from rewind.lottery import Study
from rewind.step import parse_steps
spec = rewind.get_preset("mnist1d_mlp").spec.replace(**{"train.steps": "20it", "train.eval_every": "10it",
    "train.milestones": "", "train.checkpoints": "5it"})
Study(spec, parse_steps("0it,5it"), None, rewind.Store(sys.argv[1])).run(2, replicates=2)
rewind.train("digits_cnn", {"train.steps": "10it", "train.milestones": "", "model.widths": "4,8"}, root=sys.argv[1])
"""


def test_identical_runs_in_fresh_processes_have_identical_checkpoint_files(tmp_path):
    """safetensors orders a header's metadata differently in each process; checkpoints are written
    with it sorted, so identical content is identical bytes (sha256sum, rsync and DVC agree)."""
    for name in ("a", "b"):
        subprocess.run([sys.executable, "-c", _STUDY_SCRIPT, str(tmp_path / name)], check=True, timeout=300)
    a = {p.relative_to(tmp_path / "a"): hashlib.sha256(p.read_bytes()).hexdigest()
         for p in (tmp_path / "a").rglob("*.safetensors")}
    b = {p.relative_to(tmp_path / "b"): hashlib.sha256(p.read_bytes()).hexdigest()
         for p in (tmp_path / "b").rglob("*.safetensors")}
    assert len(a) >= 20 and a == b


def test_checkpoint_headers_are_sorted_and_load(tmp_path):
    from rewind.store.io import load_checkpoint, save_checkpoint

    t = {"b": torch.arange(3.0), "a": torch.ones(2, dtype=torch.float64)}
    save_checkpoint(tmp_path / "x.safetensors", t, run="r", step=3, zeta="z", alpha="a")
    raw = (tmp_path / "x.safetensors").read_bytes()
    n = int.from_bytes(raw[:8], "little")
    meta = json.loads(raw[8:8 + n])["__metadata__"]
    assert list(meta) == sorted(meta)
    loaded, m = load_checkpoint(tmp_path / "x.safetensors", run="r")
    assert all(torch.equal(loaded[k], t[k]) for k in t) and m["step"] == "3"


def test_members_of_one_spec_differ_only_by_engine(tmp_path):
    spec = spec_of("mlp")
    a, b = Member(spec), dataclasses.replace(Member(spec), engine="vectorised")
    assert a.key == spec.hash != b.key
    assert b.spec_doc()["engine"] == "vectorised"


def test_a_study_trained_by_two_engines_is_not_averaged_across_them(tmp_path):
    """A study run once with --engine sequential and once with auto holds two results per cell; its
    table shows the auto engine's, never both averaged (n stays the number of replicates)."""
    from rewind.report.lottery import lottery_summary

    study = _study(tmp_path, "mlp")
    study.run(1, replicates=2, options=TrainOptions(quiet=True, engine="sequential"))
    only_seq = lottery_summary(study.table())
    assert set(only_seq["n"]) == {2}
    study.run(1, replicates=2, options=TrainOptions(quiet=True))
    with pytest.warns(rewind.store.RewindWarning, match="several engines"):
        table = study.table()
    summary = lottery_summary(table)
    assert set(summary["n"]) == {2} and set(table["engine"].str.startswith("vectorised")) == {True}
    assert rewind.results(tmp_path).query("kind == 'lottery'")["run"].nunique() == 2 * (2 + 2 * 2)


def test_a_resnet_stack_is_padded_to_whole_runs_of_8_batchnorm_channels_and_the_testbed_never_is():
    from rewind.models import create_model

    def sizes(width):
        spec = rewind.get_preset("mnist1d_resnet").spec.replace(**{"model.widths": str(width)})
        model = create_model(spec.model, (40,), 10, seed=0)
        return [model.stack_size(k) for k in range(1, 10)]

    assert sizes(8) == [2, 2, 3, 4, 5, 6, 7, 8, 9]   # the testbed: only a lone member is padded
    assert sizes(4) == [2, 2, 4, 4, 6, 6, 8, 8, 10]
    assert sizes(6) == [4, 4, 4, 4, 8, 8, 8, 8, 12]
    conv = create_model(spec_of("digits_cnn").model, (1, 8, 8), 10, seed=0)
    assert [conv.stack_size(k) for k in (1, 2, 3)] == [2, 2, 3]
