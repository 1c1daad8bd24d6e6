"""Pretraining on altered data (the early-phase paper, section 5): alterations, the head swap,
the two-run semantics, studies rewound to the pretrained weights, sparse pretraining, resume."""
import json

import pytest
import torch

import rewind
from rewind import rng
from rewind.cli import main
from rewind.data import load_data
from rewind.data.alter import alter, blur_tensor, group_element
from rewind.lottery import Study
from rewind.models import create_model
from rewind.spec import PretrainSpec, Spec, SpecError
from rewind.step import Step, parse_steps
from rewind.store import Store, tensor_digest
from rewind.train import Member, TrainOptions
from rewind.exec import train_population
from rewind.train.pretraining_run import after_pretraining, head_seed, pretraining_spec

SHORT = {"train.steps": "120it", "train.eval_every": "0it", "train.milestones": "60it", "model.widths": "24,24"}


def spec_of(preset="mnist1d_mlp", **over):
    return rewind.make_spec(preset, {**SHORT, **over})[0]


def params(**kw):
    return PretrainSpec(**kw)


# ---- alterations against per-example references ------------------------------------------------

def test_rotations_are_exact_quarter_turns_and_four_give_back_the_input():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(5, 2, 6, 6, generator=g)
    y = torch.arange(5)
    xr, yr, classes = alter("rotation", x, y, 10, params(kind="rotation", steps=Step(0, 1)), g, "train")
    assert classes == 4 and xr.shape == (20, 2, 6, 6)
    assert torch.equal(yr, torch.arange(4).repeat_interleave(5))
    for r in range(4):
        for e in range(5):
            ref = x[e]
            for _ in range(r):  # one counter-clockwise quarter turn, element by element
                ref = torch.stack([torch.tensor([[ref[c, j, 5 - i].item() for j in range(6)] for i in range(6)])
                                   for c in range(2)])
            assert torch.equal(xr[r * 5 + e], ref), (r, e)
    four = x
    for _ in range(4):
        four = torch.rot90(four, 1, dims=(-2, -1))
    assert torch.equal(four, x)


def test_the_1d_transforms_form_a_group_and_match_a_per_example_reference():
    x = torch.randn(4, 9, generator=torch.Generator().manual_seed(1))
    for a in range(4):
        for b in range(4):
            assert torch.equal(group_element(group_element(x, b), a), group_element(x, a ^ b))
        assert torch.equal(group_element(group_element(x, a), a), x)  # every element is its own inverse
    xt, yt, classes = alter("transform", x, torch.zeros(4, dtype=torch.long), 10,
                            params(kind="transform", steps=Step(0, 1)), None, "train")
    assert classes == 4 and torch.equal(yt, torch.arange(4).repeat_interleave(4))
    for g in range(4):
        for e in range(4):
            values = x[e].tolist()
            if g & 1:
                values = values[::-1]
            if g & 2:
                values = [-v for v in values]
            assert torch.equal(xt[g * 4 + e], torch.tensor(values)), (g, e)


@pytest.mark.parametrize("upsample", ["nearest", "linear"])
def test_blur_leaves_constants_alone_and_averages_blocks(upsample):
    const = torch.full((3, 1, 8, 8), 0.7, dtype=torch.float64)
    assert torch.allclose(blur_tensor(const, 4, upsample), const, atol=1e-15)
    const1 = torch.full((3, 40), -1.25, dtype=torch.float64)
    assert torch.allclose(blur_tensor(const1, 4, upsample), const1, atol=1e-15)
    x = torch.randn(2, 40, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    out = blur_tensor(x, 4, upsample)
    assert out.shape == x.shape
    if upsample == "nearest":  # each value is the mean of its block of 4, repeated
        for e in range(2):
            ref = [sum(x[e, 4 * (i // 4) + j].item() for j in range(4)) / 4 for i in range(40)]
            assert torch.allclose(out[e], torch.tensor(ref, dtype=torch.float64), atol=1e-12)
    img = torch.randn(2, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(3))
    out = blur_tensor(img, 2, upsample)
    assert out.shape == img.shape
    assert torch.allclose(out.mean((2, 3)), img.mean((2, 3)), atol=1e-12)  # blocks of equal size keep the mean
    if upsample == "nearest":
        for e, c, i, j in ((0, 0, 0, 0), (1, 2, 5, 6), (0, 1, 7, 3)):
            bi, bj = 2 * (i // 2), 2 * (j // 2)
            assert abs(out[e, c, i, j].item() - img[e, c, bi:bi + 2, bj:bj + 2].mean().item()) < 1e-12


def test_random_labels_are_fixed_per_example_and_reproducible_from_the_seed():
    x, y = torch.zeros(500, 3), torch.zeros(500, dtype=torch.long)
    p = params(kind="random-labels", steps=Step(0, 1))
    _, a, _ = alter("random-labels", x, y, 10, p, rng.generator(rng.PRETRAIN, 5, 0), "train")
    _, b, _ = alter("random-labels", x, y, 10, p, rng.generator(rng.PRETRAIN, 5, 0), "train")
    _, c, _ = alter("random-labels", x, y, 10, p, rng.generator(rng.PRETRAIN, 6, 0), "train")
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.min() >= 0 and a.max() <= 9 and len(set(a.tolist())) == 10


def test_a_pretraining_run_sees_each_example_with_one_label_in_every_epoch(tmp_path):
    """Random labels are drawn once: every batch of the pretraining run takes its labels from the
    same table, epoch after epoch (checked by recording the batches the model sees)."""
    spec = spec_of(**{"pretrain.kind": "random-labels", "pretrain.steps": "100it", "pretrain.seed": 3})
    data = load_data(spec.data)
    table = alter("random-labels", data.x_train, data.y_train, 10, spec.pretrain,
                  rng.generator(rng.PRETRAIN, 3, 0), "train")[1]
    seen: dict[tuple, int] = {}
    from rewind.train import loop

    real = loop.training_batches

    def batches(pr, sp, start, opts, part=None):
        if start >= 100:  # the training run, on the real labels
            yield from real(pr, sp, start, opts, part)
            return
        for xb, yb, n in real(pr, sp, start, opts, part):
            for row, label in zip(xb, yb):
                key = tuple(row[:5].tolist())
                assert seen.setdefault(key, int(label)) == int(label)
            yield xb, yb, n

    loop.training_batches = batches
    try:
        rewind.train(spec, root=tmp_path, options=TrainOptions(quiet=True, engine="sequential"))
    finally:
        loop.training_batches = real
    assert len(seen) == 4000  # 100 iterations of 100: 2.5 epochs, every example seen 2-3 times
    index = {tuple(data.x_train[i, :5].tolist()): int(table[i]) for i in range(4000)}
    assert all(index[k] == v for k, v in seen.items())


def test_subset_draws_exactly_size_distinct_examples_from_its_seed():
    x = torch.arange(100.0).view(100, 1)
    y = torch.arange(100)
    p = params(kind="subset", steps=Step(0, 1), size=30)
    xs, ys, _ = alter("subset", x, y, 10, p, rng.generator(rng.PRETRAIN, 0, 0), "train")
    assert len(ys) == 30 and len(set(ys.tolist())) == 30 and torch.equal(xs[:, 0].long(), ys)
    again = alter("subset", x, y, 10, p, rng.generator(rng.PRETRAIN, 0, 0), "train")[1]
    assert torch.equal(ys, again)
    xt, yt, _ = alter("subset", x, y, 10, p, rng.generator(rng.PRETRAIN, 0, 1), "test")
    assert torch.equal(yt, y)  # the test split is not subsampled


# ---- spec --------------------------------------------------------------------------------------

def test_a_spec_without_pretraining_hashes_as_before_and_bad_fields_are_refused():
    assert "pretrain" not in Spec().canonical_json()
    with pytest.raises(SpecError, match="pretrain.factor: set pretrain.kind"):
        spec_of(**{"pretrain.factor": 2})
    with pytest.raises(SpecError, match="pretrain.steps"):
        spec_of(**{"pretrain.kind": "blur"})
    with pytest.raises(SpecError, match="MNIST-1D is 1-D: use transform"):
        spec_of(**{"pretrain.kind": "rotation", "pretrain.steps": "10it"})
    with pytest.raises(SpecError, match="pretrain.size: not used by pretraining of kind blur"):
        spec_of(**{"pretrain.kind": "blur", "pretrain.steps": "10it", "pretrain.size": 3})
    with pytest.raises(SpecError, match="pretrain.study"):
        spec_of(**{"pretrain.kind": "sparse", "pretrain.steps": "10it", "pretrain.level": 1})


def test_the_pretraining_spec_is_shared_by_specs_that_differ_after_pretraining():
    a = spec_of(**{"pretrain.kind": "blur", "pretrain.steps": "50it"})
    b = a.replace(**{"train.steps": "200it", "prune.fraction": 0.5, "train.milestones": "100it"})
    assert pretraining_spec(a, 40) == pretraining_spec(b, 40)
    assert pretraining_spec(a, 40).train.steps == Step(0, 50)
    c = a.replace(**{"pretrain.steps": "1ep"})  # epochs are the real training set's: 40 iterations here
    assert pretraining_spec(c, 40).train.steps == Step(0, 40)


# ---- the head swap and the two-run semantics -----------------------------------------------------

def test_the_head_swap_keeps_every_other_tensor_and_draws_a_fresh_head_from_its_own_seed():
    spec = spec_of(**{"pretrain.kind": "transform", "pretrain.steps": "10it", "pretrain.seed": 4})
    pre = create_model(spec.model, (40,), 4, seed=11).state_dict()
    out = after_pretraining(spec, pre, {}, None, (40,), 10)
    fresh = create_model(spec.model, (40,), 10, seed=head_seed(spec)).state_dict()
    assert set(out) == set(fresh)
    for n, v in out.items():
        if n.startswith("out."):
            assert v.shape == fresh[n].shape and torch.equal(v, fresh[n])
        else:
            assert torch.equal(v, pre[n]), n
    assert out["out.weight"].shape == (10, 24)
    other = after_pretraining(spec.replace(**{"pretrain.seed": 5}), pre, {}, None, (40,), 10)
    assert not torch.equal(other["out.weight"], out["out.weight"])
    # the same distribution as the model's own initialisation (Kaiming normal, fan-in 24)
    big = create_model(spec.model.__class__(name="mlp", widths=(24, 400)), (40,), 4, seed=1).state_dict()
    head = after_pretraining(spec.replace(**{"model.widths": "24,400"}), big, {}, None, (40,), 10)["out.weight"]
    assert abs(head.std().item() - (2 / 400) ** 0.5) < 0.1 * (2 / 400) ** 0.5


def test_training_after_pretraining_is_ordinary_training_from_k_with_the_pretrained_weights(tmp_path):
    spec = spec_of(**{"pretrain.kind": "transform", "pretrain.steps": "30it", "train.precision": "float64"})
    opts = TrainOptions(quiet=True)
    run = rewind.train(spec, root=tmp_path, options=opts)
    record = run.summary()
    assert record["start"] == 30 and run.checkpoint_steps()[0] == 30
    pre = [r for r in Store(tmp_path).runs() if r.meta().get("kind") == "pretrain"]
    assert len(pre) == 1 and pre[0].summary()["iterations"] == 30
    w_pre = pre[0].weights(30)
    assert w_pre["out.weight"].shape == (4, 24)
    start = run.weights(30)
    for n, v in start.items():
        if not n.startswith("out."):
            assert torch.equal(v, w_pre[n]), n
    # the same as a plain run of the spec without pretraining, started at 30it from those weights:
    # learning rate, data order and length as if the first 30 iterations had been ordinary training
    plain = spec.replace(**{"pretrain.kind": "", "pretrain.steps": "0it"})
    ref = train_population([Member(plain, init=start, start=30)], Store(tmp_path / "ref"), opts)[0]
    assert tensor_digest(ref.weights(120)) == tensor_digest(run.weights(120))


def test_sequential_and_vectorised_pretraining_agree(tmp_path):
    over = {"pretrain.kind": "random-labels", "pretrain.steps": "40it", "train.precision": "float64",
            "train.steps": "60it", "train.milestones": ""}
    spec = spec_of(**over)
    a = rewind.train(spec, replicates=2, root=tmp_path / "a", options=TrainOptions(quiet=True, engine="sequential"))
    b = rewind.train(spec, replicates=2, root=tmp_path / "b", options=TrainOptions(quiet=True, engine="vectorised"))
    for ra, rb in zip(a, b):
        wa, wb = ra.weights(60), rb.weights(60)
        assert max((wa[n] - wb[n]).abs().max().item() for n in wa) < 1e-10
    assert a[0].weights(40)["out.weight"].ne(a[1].weights(40)["out.weight"]).any()  # replicates differ


class Interrupt(Exception):
    pass


def test_a_pretrained_run_interrupted_in_pretraining_and_in_training_resumes_to_the_same_bits(tmp_path):
    spec = spec_of(**{"pretrain.kind": "blur", "pretrain.steps": "60it"})
    ref = rewind.train(spec, root=tmp_path / "ref", options=TrainOptions(quiet=True))
    expected = tensor_digest(ref.weights(120)), (ref.path / "metrics.csv").read_bytes()
    for kind, at in (("pretrain", 37), ("train", 97)):
        root = tmp_path / f"{kind}-{at}"

        def stop(run, it):
            if run.meta().get("kind") == kind and it == at:
                raise Interrupt

        with pytest.raises(Interrupt):
            rewind.train(spec, root=root, options=TrainOptions(quiet=True, resume_every=10, on_iteration=stop))
        assert any((r.path / "resume.safetensors").exists() for r in Store(root).runs())
        run = rewind.train(spec, root=root, options=TrainOptions(quiet=True, resume_every=10))
        assert (tensor_digest(run.weights(120)), (run.path / "metrics.csv").read_bytes()) == expected, kind


# ---- studies -------------------------------------------------------------------------------------

def test_every_level_of_a_study_rewinds_to_the_pretrained_weights(tmp_path):
    spec = spec_of(**{"pretrain.kind": "subset", "pretrain.steps": "20it", "pretrain.size": 400})
    study = Study(spec, parse_steps("20it"), "mnist1d_mlp", Store(tmp_path))
    runs = study.run(2, replicates=2)
    pre = {r.meta()["member"]: r for r in Store(tmp_path).runs() if r.meta().get("kind") == "pretrain"}
    assert len(pre) == 2
    for r in range(2):
        w = pre[r].weights(20)
        dense = runs[(r, "20it", 0)]
        assert dense.summary()["start"] == 20
        assert tensor_digest(dense.weights(20)) == tensor_digest(w)  # same head: nothing swapped
        for level in (1, 2):
            start = runs[(r, "20it", level)].load(20)
            mask = {n[5:]: m for n, m in start.items() if n.startswith("mask/")}
            for n, v in w.items():
                assert torch.equal(start[f"model/{n}"], v * mask[n] if n in mask else v), (r, level, n)
    table = study.table()
    assert set(table["pretrain"]) == {"subset"} and set(table["pretrain_steps"]) == {"20it"}
    assert set(table["pretrain_params"]) == {json.dumps({"size": 400})}
    with pytest.raises(SpecError, match="before the end of pretraining"):
        Study(spec, parse_steps("10it"), None, Store(tmp_path))


@pytest.mark.parametrize("which", ["imp", "random"])
def test_sparse_pretraining_trains_the_subnetwork_and_keeps_w0_elsewhere(tmp_path, which):
    store = Store(tmp_path)
    source = Study(spec_of(), parse_steps("0it"), "mnist1d_mlp", store)
    source.run(2, replicates=1)
    imp = source.mask(0, Step(0, 0), 2)
    spec = spec_of(**{"pretrain.kind": "sparse", "pretrain.steps": "30it", "pretrain.study": source.key[:6],
                      "pretrain.level": 2, "pretrain.mask": which})
    run = rewind.train(spec, root=tmp_path)
    pre = [r for r in store.runs() if r.meta().get("kind") == "pretrain"][0]
    saved = pre.load(30)
    mask = {n[5:]: m for n, m in saved.items() if n.startswith("mask/")}
    if which == "imp":
        assert all(torch.equal(mask[n], imp[n]) for n in imp)
    else:  # the same per-layer counts, other positions
        assert all(int(mask[n].sum()) == int(imp[n].sum()) for n in imp)
        assert any(not torch.equal(mask[n], imp[n]) for n in imp)
    w0 = create_model(spec.model, (40,), 10, seed=spec.seeds.init).state_dict()
    start = run.weights(30)
    for n, v in start.items():
        if n in mask:
            assert torch.equal(v[mask[n]], saved[f"model/{n}"][mask[n]]) and torch.equal(v[~mask[n]], w0[n][~mask[n]])
        else:
            assert torch.equal(v, saved[f"model/{n}"])


# ---- command line --------------------------------------------------------------------------------

def test_pretraining_from_the_command_line_and_bad_input(tmp_path, capsys):
    root = tmp_path / "runs"
    base = ["--preset", "mnist1d_mlp", "--set", "train.steps=60it", "--set", "train.milestones=", "--root", str(root),
            "--quiet"]
    bad = [
        (["train", "--pretrain", "rotation", "--pretrain-steps", "10it"], "use transform"),
        (["train", "--pretrain", "blur", "--pretrain-factor", "64", "--pretrain-steps", "10it"], "larger than the input"),
        (["train", "--pretrain", "subset", "--pretrain-size", "5000", "--pretrain-steps", "10it"], "4,000 training"),
        (["lottery", "--levels", "1", "--pretrain", "sparse", "--pretrain-study", "feedbeef", "--pretrain-level", "1",
          "--pretrain-steps", "10it"], "pretrain.study: no study"),
        (["train", "--pretrain-steps", "10it"], "give --pretrain KIND"),
        (["train", "--pretrain", "blur", "--pretrain-steps", "60it"], "not before the end of training"),
    ]
    for args, message in bad:
        assert main(args[:1] + base + args[1:]) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], (args, err)
        assert not root.exists(), args
    assert main(["lottery"] + base + ["--levels", "1", "--pretrain", "blur", "--pretrain-steps", "20it"]) == 0
    out = capsys.readouterr().out
    assert "rewind 20it" in out
    assert main(["results", "--root", str(root)]) == 0
    lines = capsys.readouterr().out.splitlines()
    header = lines[0].split(",")
    assert {"pretrain", "pretrain_steps", "pretrain_params"} <= set(header)
    col = header.index("pretrain")
    assert {line.split(",")[col] for line in lines[1:]} == {"blur"}


def test_the_grid_runs_every_kind_and_length_beside_supervised_rewinding(tmp_path, capsys):
    from rewind.lottery.pretrain_grid import PretrainGrid
    from rewind.report import plot_pretrain, pretrain_summary

    spec = spec_of(**{"train.steps": "80it", "train.milestones": ""})
    grid = PretrainGrid(spec, ("random-labels", "sparse"), parse_steps("0it,20it"), 1, replicates=2,
                        store=Store(tmp_path))
    table = grid.run()
    assert set(table["kind"]) == {"supervised", "random-labels", "sparse-imp", "sparse-random"}
    # 2 replicates x 2 levels (dense, level 1) per (kind, length); supervised at 0it and 20it
    assert table.groupby(["kind", "pretrain_steps"]).size().to_dict() == {
        ("random-labels", "20it"): 4, ("sparse-imp", "20it"): 4, ("sparse-random", "20it"): 4,
        ("supervised", "0it"): 4, ("supervised", "20it"): 4}
    sup = table[(table["kind"] == "supervised") & (table["level"] == 1)]
    ref = grid.reference.table()
    ref = ref[(ref["level"] == 1) & (ref["split"] == "test") & (ref["metric"] == "accuracy")]
    assert sorted(sup["test_accuracy"]) == sorted(ref["value"])
    s = pretrain_summary(table)
    row = s[(s["kind"] == "random-labels") & (s["level"] == 1)].iloc[0]
    mine = table[(table["kind"] == "random-labels") & (table["level"] == 1)].set_index("replicate")["test_accuracy"]
    theirs = sup[sup["pretrain_steps"] == "20it"].set_index("replicate")["test_accuracy"]
    assert abs(row["minus_supervised"] - (mine - theirs).mean()) < 1e-12
    assert all(p.stat().st_size > 0 for p in plot_pretrain(table, tmp_path / "fig"))
    # the sparse studies pretrain the reference study's level-1 mask of its longest chain (20it)
    sparse = grid.studies[("sparse-imp", "20it")]
    assert sparse.spec.pretrain.study == grid.reference.key and sparse.spec.pretrain.level == 1
    again = PretrainGrid(spec, ("random-labels", "sparse"), parse_steps("0it,20it"), 1, replicates=2,
                         store=Store(tmp_path))
    keys, opts = set(), TrainOptions(quiet=True, on_iteration=lambda run, it: keys.add(run.key))
    assert again.run(opts).equals(table) and not keys  # everything found in the store


def test_the_grid_command_refuses_bad_kinds_and_lengths(tmp_path, capsys):
    root = tmp_path / "runs"
    for args, message in ((["--kinds", "colour"], "--kinds: colour"), (["--steps", "0it"], "above 0it"),
                          (["--kinds", "rotation"], "MNIST-1D is 1-D")):
        assert main(["pretrain-study", "--levels", "1", "--root", str(root), *args]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
        assert not root.exists()


@pytest.mark.parametrize("engine", ["sequential", "vectorised"])
def test_a_deficit_that_alters_nothing_is_ordinary_training_bit_for_bit(tmp_path, engine):
    """A 'subset' of every example keeps the data and its order: as a deficit (optimizer state
    carried) the two runs are one ordinary run; as pretraining (fresh optimizer at k) they are not."""
    opts = TrainOptions(quiet=True, engine=engine)
    plain = spec_of(**{"train.milestones": "50it"})
    ref = rewind.train(plain, replicates=2, root=tmp_path / "ref", options=opts)
    over = {"train.milestones": "50it", "pretrain.kind": "subset", "pretrain.size": 4000, "pretrain.steps": "70it"}
    deficit = rewind.train(spec_of(**over, **{"pretrain.deficit": True}), replicates=2, root=tmp_path / "d",
                           options=opts)
    for a, b in zip(ref, deficit):
        assert b.summary()["start"] == 70
        assert tensor_digest(a.weights(120)) == tensor_digest(b.weights(120))
    fresh = rewind.train(spec_of(**over), replicates=2, root=tmp_path / "p", options=opts)
    assert tensor_digest(ref[0].weights(120)) != tensor_digest(fresh[0].weights(120))


def test_critical_periods_from_the_command_line(tmp_path, capsys):
    root = tmp_path / "runs"
    base = ["critical-period", "--preset", "mnist1d_mlp", "--set", "train.steps=80it", "--set", "train.milestones=",
            "--set", "model.widths=24,24", "--root", str(root), "--quiet"]
    for args, message in ((["--until", "0it,80it"], "not before the end of training"),
                          (["--deficit", "transform", "--until", "10it"], "a deficit keeps the task"),
                          (["--deficit", "noise", "--until", "10it"], "pretrain.kind: 'noise' is not allowed")):
        assert main(base + args) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
        assert not root.exists()
    assert main(base + ["--until", "0it,20it", "--replicates", "2", "--csv", str(tmp_path / "t.csv")]) == 0
    import pandas as pd

    t = pd.read_csv(tmp_path / "t.csv")
    assert len(t) == 4 and sorted(t["deficit_iterations"]) == [0, 0, 20, 20]
    # no deficit is the recipe itself: the same run as rewind train
    plain = rewind.train("mnist1d_mlp", {"train.steps": "80it", "train.milestones": "", "model.widths": "24,24"},
                         root=root)
    assert plain.key in set(t[t["deficit_iterations"] == 0]["run"])
    rows = rewind.results(root)
    crit = rows[(rows["kind"] == "critical") & (rows["pretrain"] == "blur")]
    assert set(crit["pretrain_params"]) == {json.dumps({"deficit": True})}


def test_instability_copies_start_from_the_pretrained_weights_and_deficits_from_the_cli(tmp_path, capsys):
    root = tmp_path / "runs"
    base = ["--preset", "mnist1d_mlp", "--set", "train.steps=60it", "--set", "train.milestones=",
            "--set", "model.widths=24,24", "--root", str(root), "--quiet"]
    assert main(["instability", *base, "--pretrain", "transform", "--pretrain-steps", "20it", "--points", "3"]) == 0
    assert " 20it " in capsys.readouterr().out
    store = Store(root)
    dense = [r for r in store.runs() if r.meta().get("kind") == "lottery"]
    copies = [r for r in store.runs() if r.meta().get("kind") == "copy"]
    assert len(dense) == 1 and len(copies) == 2
    for c in copies:
        assert c.summary()["start"] == 20
        assert tensor_digest(c.weights(20)) == tensor_digest(dense[0].weights(20))
    assert main(["train", *base, "--deficit", "blur", "--deficit-until", "30it"]) == 0
    line = capsys.readouterr().out
    run = [r for r in store.runs() if r.meta().get("kind") == "train"][0]
    assert run.key in line and run.summary()["start"] == 30
    assert run.spec_doc()["spec"]["pretrain"]["deficit"] is True
    assert "optim_sha256" in run.spec_doc()["start"]
