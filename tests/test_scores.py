"""Per-example data scores: EL2N, GraNd (torch.func), forgetting events; store, sharing, resume."""
import pandas as pd
import pytest
import torch
from torch.nn import functional as F

import rewind
from rewind.analysis.scores import ScoreSet, _layer_norms_apply, el2n, forgetting_events, grand
from rewind.cli import main
from rewind.data import load_data
from rewind.models import create_model
from rewind.spec import ModelSpec, SpecError
from rewind.step import Step
from rewind.store import Store
from rewind.train import TrainOptions

SHORT = {"train.steps": "120it", "train.eval_every": "0it", "train.milestones": "", "model.widths": "24,24"}


def small(name, **kw):
    shape = (1, 8, 8) if name == "digits_cnn" else (40,)
    model = create_model(ModelSpec(name, **kw), shape, 10, seed=3).double()
    model.train()  # a few steps in training mode, so BatchNorm's running statistics are not trivial
    x = torch.randn(64, *shape, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        model(x)
    return model


@pytest.mark.parametrize("name,kw", [("mlp", {"widths": (16, 16), "batchnorm": True}), ("conv1d", {"widths": (4, 4)}),
                                     ("mlp", {"widths": (16, 16)}), ("digits_cnn", {"widths": (4, 8)})])
def test_el2n_and_grand_equal_per_example_loops(name, kw):
    model = small(name, **kw)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(37, *((1, 8, 8) if name == "digits_cnn" else (40,)), dtype=torch.float64, generator=g)
    y = torch.randint(10, (37,), generator=g)
    e = el2n(model, x, y, 10, batch=8)
    gn = grand(model, x, y, 10, batch=8)
    assert _layer_norms_apply(model) == (not kw.get("batchnorm"))  # both ways of computing GraNd are checked
    model.eval()
    for i in range(37):
        out = model(x[i:i + 1])
        p = F.softmax(out, 1)[0]
        ref = (p - F.one_hot(y[i], 10).double()).norm().item()
        assert abs(e[i].item() - ref) < 1e-6
        model.zero_grad()
        F.cross_entropy(out, y[i:i + 1]).backward()  # the example's own backward pass
        ref = sum(p.grad.pow(2).sum() for p in model.parameters()).sqrt().item()
        assert abs(gn[i].item() - ref) < 1e-6 * max(1.0, ref), i


def test_forgetting_events_count_correct_to_wrong_transitions():
    correct = torch.tensor([[0, 1, 1, 0, 1],
                            [1, 0, 1, 0, 1],
                            [0, 1, 1, 0, 0],
                            [1, 0, 1, 0, 1]], dtype=torch.bool)
    # example 0: 0->1->0->1: one forgetting event; 1: 1->0->1->0: two; 2: never forgotten;
    # 3: never correct: evaluations + 1 = 5; 4: 1,1,0,1: one
    assert forgetting_events(correct).tolist() == [1, 2, 0, 5, 1]


def spec_of(**over):
    return rewind.make_spec("mnist1d_mlp", {**SHORT, **over})[0]


def test_scores_are_stored_reproducible_and_reuse_the_full_runs_checkpoints(tmp_path):
    spec = spec_of(**{"train.checkpoints": "40it"})
    keys, opts = set(), TrainOptions(quiet=True)
    full = rewind.train(spec, replicates=3, root=tmp_path / "a")
    spy = TrainOptions(quiet=True, on_iteration=lambda run, it: keys.add(run.key))
    a = ScoreSet(spec, "el2n", Step(0, 40), 3, store=Store(tmp_path / "a")).compute(spy)
    assert not keys  # the full runs have a checkpoint at 40it: nothing trained
    b = ScoreSet(spec, "el2n", Step(0, 40), 3, store=Store(tmp_path / "b")).compute(opts)
    pd.testing.assert_frame_equal(a, b, check_exact=False, atol=1e-6)  # stopped runs: the same weights (engines)
    assert list(a.columns) == ["example", "label", "method", "at", "replicate", "score"]
    assert len(a) == 3 * 4000 and set(a["replicate"]) == {0, 1, 2}
    run = full[1]
    data = load_data(spec.data)
    model = create_model(spec.model, (40,), 10)
    model.load_state_dict(run.weights(40))
    direct = el2n(model, data.x_train, data.y_train, 10)
    assert torch.allclose(torch.tensor(a[a["replicate"] == 1]["score"].to_numpy()), direct, atol=1e-12)
    again = ScoreSet(spec, "el2n", Step(0, 40), 3, store=Store(tmp_path / "b")).compute(spy)
    assert again.equals(b) and not keys  # read back from the store
    rows = rewind.results(tmp_path / "b")
    s = rows[rows["kind"] == "scores"]
    assert len(s) == 12000 and set(s["metric"]) == {"el2n"} and s["example"].max() == 3999


class Interrupt(Exception):
    pass


def test_a_score_run_interrupted_and_resumed_ends_identical(tmp_path):
    spec = spec_of()
    ref = ScoreSet(spec, "forgetting", Step(0, 120), 2, store=Store(tmp_path / "ref")).compute()

    def stop(run, it):
        if it == 77:
            raise Interrupt

    store = Store(tmp_path / "cut")
    with pytest.raises(Interrupt):
        ScoreSet(spec, "forgetting", Step(0, 120), 2, store=store).compute(
            TrainOptions(quiet=True, resume_every=10, on_iteration=stop))
    assert not (ScoreSet(spec, "forgetting", Step(0, 120), 2, store=store).path / "scores.csv").exists()
    out = ScoreSet(spec, "forgetting", Step(0, 120), 2, store=store).compute(TrainOptions(quiet=True, resume_every=10))
    assert out.equals(ref)


def test_grand_at_initialisation_trains_nothing_and_bad_input_is_refused(tmp_path, capsys):
    root = tmp_path / "runs"
    base = ["scores", "--set", "train.steps=120it", "--set", "train.milestones=", "--root", str(root), "--quiet"]
    for args, message in ((["--method", "el3n", "--at", "10it"], "--method: 'el3n' is not allowed"),
                          (["--method", "el2n", "--at", "500it"], "after the end of training"),
                          (["--method", "forgetting", "--at", "10it"], "less than one epoch"),
                          (["--method", "el2n", "--at", "10it", "--replicates", "0"], "--replicates")):
        assert main(base + args) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
        assert not root.exists()
    assert main(base + ["--method", "grand", "--at", "0it", "--replicates", "2", "--plot", str(tmp_path / "h")]) == 0
    out = capsys.readouterr().out
    assert "grand at 0it" in out and "split-half reliability" in out
    assert not list(Store(root).runs())  # W_0 comes from the seed
    assert (tmp_path / "h.png").stat().st_size > 0
    with pytest.raises(SpecError, match="pretraining"):
        ScoreSet(spec_of(**{"pretrain.kind": "blur", "pretrain.steps": "10it"}), "el2n", Step(0, 10), 2)


# ---- subsets chosen by scores ---------------------------------------------------------------------

from rewind.data.subsets import choose  # noqa: E402
from rewind.spec import DataSpec  # noqa: E402


def subset_spec(**kw):
    return DataSpec(**{"subset_score": "k" if kw.get("subset") != "random" else "", **kw})


def test_subsets_are_exactly_the_lowest_or_highest_scores_with_ties_by_index():
    scores = torch.tensor([0.5, 0.1, 0.9, 0.1, 0.7, 0.3, 0.9, 0.2], dtype=torch.float64)
    labels = torch.tensor([0, 1, 0, 1, 0, 1, 0, 1])
    easiest = choose(scores, labels, subset_spec(subset="easiest", subset_size=3), 2)
    assert easiest.tolist() == [1, 3, 7]                     # 0.1 (1), 0.1 (3), 0.2 (7)
    hardest = choose(scores, labels, subset_spec(subset="hardest", subset_size=3), 2)
    assert hardest.tolist() == [2, 4, 6]                     # 0.9 (2), 0.9 (6), 0.7 (4)
    tie = choose(scores, labels, subset_spec(subset="hardest", subset_size=1), 2)
    assert tie.tolist() == [2]                               # the tie at 0.9 goes to the lower index
    band = choose(scores, labels, subset_spec(subset="band", subset_size=2, subset_offset=2), 2)
    assert band.tolist() == [0, 4]                           # skip 2 and 6, keep 0.7 (4) and 0.5 (0)
    frac = choose(scores, labels, subset_spec(subset="easiest", subset_fraction=0.5), 2)
    assert len(frac) == 4
    balanced = choose(scores, labels, subset_spec(subset="hardest", subset_size=3, subset_balance=True), 2)
    assert balanced.tolist() == [2, 5, 6]                    # class 0 keeps 2 (0.9, 0.9), class 1 keeps 1 (0.3)
    a = choose(None, labels, subset_spec(subset="random", subset_size=5, subset_seed=1), 2)
    b = choose(None, labels, subset_spec(subset="random", subset_size=5, subset_seed=1), 2)
    c = choose(None, labels, subset_spec(subset="random", subset_size=5, subset_seed=2), 2)
    assert a.tolist() == b.tolist() and a.tolist() != c.tolist() and len(set(a.tolist())) == 5
    with pytest.raises(SpecError, match="do not fit"):
        choose(scores, labels, subset_spec(subset="easiest", subset_size=9), 2)


def test_training_on_a_scored_subset_and_refusals(tmp_path):
    spec = spec_of()
    scores = ScoreSet(spec, "el2n", Step(0, 40), 2, store=Store(tmp_path))
    table = scores.compute()
    sub = spec.replace(**{"data.subset": "easiest", "data.subset_size": 500, "data.subset_score": scores.key})
    data = load_data(sub.data)
    mean = table.groupby("example")["score"].mean()
    expected = sorted(mean.sort_values(kind="stable").index[:500])
    assert data.indices.tolist() == expected and len(data.y_train) == 500
    assert torch.equal(data.x_train, load_data(spec.data).x_train[data.indices])
    run = rewind.train(sub, root=tmp_path)
    assert run.summary()["final"]["test_accuracy"] > 0
    assert sub.hash != spec.hash and "subset" not in spec.canonical_json()
    for over, message in (({"data.subset": "hardest", "data.subset_size": 10, "data.subset_score": "feedbeef"},
                           "no score set 'feedbeef'"),
                          ({"data.subset": "random", "data.subset_size": 5000}, "do not fit"),
                          ({"data.subset": "random", "data.subset_fraction": 1.5}, "(0, 1]"),
                          ({"data.subset_size": 10}, "set data.subset too"),
                          ({"data.subset": "easiest", "data.subset_size": 10}, "give its key")):
        with pytest.raises(SpecError, match=message.replace("(", r"\(").replace(")", r"\)").replace("[", r"\[")):
            load_data(spec_of(**over).data)


def test_data_diet_from_the_command_line(tmp_path, capsys):
    root = tmp_path / "runs"
    base = ["data-diet", "--set", "train.steps=80it", "--set", "train.milestones=", "--set", "model.widths=24,24",
            "--root", str(root), "--quiet"]
    for args, message in ((["--keep", "0,0.5"], "--keep: fractions must lie in (0, 1]"),
                          (["--keep", "1.5"], "--keep"), (["--methods", "el3n"], "--methods: el3n"),
                          (["--el2n-at", "900it"], "after the end of training")):
        assert main(base + args) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and message in err[0], err
        assert not root.exists()
    assert main(base + ["--keep", "0.5", "--methods", "random,el2n", "--replicates", "2", "--score-replicates", "2",
                        "--csv", str(tmp_path / "d.csv")]) == 0
    t = pd.read_csv(tmp_path / "d.csv")
    assert sorted(zip(t["method"], t["keep"])) == sorted([("full", 1.0)] * 2 + [("random", 0.5)] * 2
                                                         + [("el2n", 0.5)] * 2)
    el = t[t["method"] == "el2n"]["score"].iloc[0]
    assert isinstance(el, str) and len(el) == 16


def test_pretraining_on_the_easiest_examples_of_a_score_set(tmp_path):
    from rewind import rng
    from rewind.data.alter import alter
    from rewind.data.core import data_root

    spec = spec_of()
    scores = ScoreSet(spec, "el2n", Step(0, 40), 2, store=Store(tmp_path))
    mean = scores.compute().groupby("example")["score"].mean()
    pre = spec_of(**{"pretrain.kind": "subset", "pretrain.steps": "20it", "pretrain.size": 300,
                     "pretrain.order": "easiest", "pretrain.score": scores.key, "pretrain.balance": True})
    data = load_data(pre.data)
    x, y, _ = alter("subset", data.x_train, data.y_train, 10, pre.pretrain, rng.generator(rng.PRETRAIN, 0, 0),
                    "train", data_root())
    assert len(y) == 300 and torch.bincount(y, minlength=10).tolist() == [30] * 10
    for c in range(10):  # within each class, the 30 lowest mean scores (ties by index)
        members = (data.y_train == c).nonzero().flatten().tolist()
        expected = sorted(sorted(members, key=lambda i: (mean[i], i))[:30])
        chosen = [i for i in range(4000) if data.y_train[i] == c
                  and any(torch.equal(data.x_train[i], row) for row in x[y == c])]
        assert chosen == expected
    run = rewind.train(pre, root=tmp_path)
    assert run.summary()["start"] == 20
    with pytest.raises(SpecError, match="no score set"):
        rewind.train(pre.replace(**{"pretrain.score": "0123456789abcdef"}), root=tmp_path)
    with pytest.raises(SpecError, match="pretrain.score"):
        spec_of(**{"pretrain.kind": "subset", "pretrain.steps": "20it", "pretrain.size": 300,
                   "pretrain.order": "hardest"})


def test_example_lmc_reads_the_stored_barriers_and_correlates_with_imp(tmp_path, capsys):
    from scipy.stats import spearmanr

    from rewind.analysis import instability
    from rewind.analysis.example_lmc import example_lmc, lmc_against_imp
    from rewind.analysis.instability import load_per_example
    from rewind.lottery import Study
    from rewind.step import parse_steps

    study = Study(spec_of(), parse_steps("0it,10it,40it"), "mnist1d_mlp", Store(tmp_path))
    study.run(1, replicates=2)
    with pytest.raises(SpecError, match="no instability analysis"):
        example_lmc(study)
    instability(study, [0], points=3)
    lmc = example_lmc(study, (0.05,))
    assert len(lmc) == 6 and set(lmc["rewind_iteration"]) == {0, 10, 40}
    for key, labels in study.record()["instability"].items():
        ex = load_per_example(study.store.root, key)
        row = lmc[(lmc["replicate"] == labels["replicate"]) & (lmc["rewind_iteration"] == labels["rewind_iteration"])]
        assert row["fraction"].iloc[0] == (ex["barrier"] < 0.05).mean()
    per_k, corr = lmc_against_imp(study, 1, (0.05,))
    acc = study.table()
    acc = acc[(acc["level"] == 1) & (acc["split"] == "test") & (acc["metric"] == "accuracy")]
    pairs = lmc.merge(acc, on=["replicate", "rewind_iteration"])
    assert abs(corr["spearman"].iloc[0] - spearmanr(pairs["fraction"], pairs["value"])[0]) < 1e-12
    assert corr["n"].iloc[0] == 6
    assert main(["example-lmc", "--study", study.key, "--imp-level", "1", "--root", str(tmp_path)]) == 0
    assert "Spearman" in capsys.readouterr().out
    assert main(["example-lmc", "--study", "feedbeef", "--imp-level", "1", "--root", str(tmp_path)]) == 2
