import pytest
import torch

import rewind
from rewind.analysis import instability, interpolate_pair, load_per_example, path_weights, reset_batchnorm
from rewind.cli import main
from rewind.lottery import Study
from rewind.models import create_model
from rewind.step import parse_steps
from rewind.store import Store
from rewind.train import TrainOptions

TINY = {"train.steps": "40it", "train.eval_every": "0it", "train.milestones": "", "model.widths": "24,24"}
SEQ = TrainOptions(quiet=True, engine="sequential")


def tiny_study(root, rewinds="0it,10it", **over):
    spec, name = rewind.make_spec("mnist1d_mlp", {**TINY, **over})
    return Study(spec, parse_steps(rewinds), name, Store(root))


def test_path_endpoints_reproduce_the_copies_metrics_exactly(tmp_path):
    study = tiny_study(tmp_path)
    table = instability(study, [0, 1], copies=3, points=5, options=SEQ)
    path = table[table.alpha.notna()]
    assert sorted(path.alpha.unique()) == [0.0, 0.25, 0.5, 0.75, 1.0]
    assert set(table.pair) == {"0-1", "0-2", "1-2"} and set(table.level) == {0, 1}
    copies = {(r.meta()["replicate"], r.meta()["rewind_step"], r.meta()["level"], r.meta()["copy"]): r
              for r in study.store.runs() if r.meta().get("kind") == "copy"}
    assert len(copies) == 2 * 2 * 3
    for row in path[path.alpha.isin([0.0, 1.0])].itertuples():
        i, j = map(int, row.pair.split("-"))
        run = copies[(row.replicate, row.rewind_step, row.level, i if row.alpha == 0.0 else j)]
        m = run.metrics()
        final = m[(m.step == 40) & (m.split == row.split)].set_index("metric").value
        expect = final["loss"] if row.metric == "loss" else 1.0 - final["accuracy"]
        assert row.value == expect, row
    summary = table[table.metric == "instability"]
    assert len(summary) == 2 * 2 * 3 * 2   # (k, level, pair, split)
    for row in summary.itertuples():
        errs = path[(path.run == row.run) & (path.split == row.split) & (path.metric == "error")].sort_values("alpha")
        assert row.value == pytest.approx(errs.value.max() - 0.5 * (errs.value.iloc[0] + errs.value.iloc[-1]))
    # copies differ only in data order and augmentation seeds
    a, b = copies[(0, "10it", 1, 0)], copies[(0, "10it", 1, 1)]
    sa, sb = a.spec_doc()["spec"], b.spec_doc()["spec"]
    assert sa["seeds"]["init"] == sb["seeds"]["init"] and sa["seeds"]["data_order"] != sb["seeds"]["data_order"]
    assert {k: v for k, v in sa.items() if k != "seeds"} == {k: v for k, v in sb.items() if k != "seeds"}
    assert all(torch.equal(a.load(10)[k], b.load(10)[k]) for k in a.load(10) if k.startswith(("model/", "mask/")))
    # cached: asking again trains and interpolates nothing new
    again = instability(study, [0, 1], copies=3, points=5, options=SEQ)
    assert again.drop(columns=["kind"]).equals(table.drop(columns=["kind"]))
    # the per-example barrier
    ex = load_per_example(study.store.root, summary.run.iloc[0])
    assert len(ex) == 4000
    assert (ex.barrier - (ex.loss_mid - 0.5 * (ex.loss_a + ex.loss_b))).abs().max() < 1e-12


def test_identical_copies_have_zero_instability(tmp_path):
    run = rewind.train("mnist1d_mlp", TINY, root=tmp_path)
    rows, ex, _ = interpolate_pair(run, run, points=7)
    err = rows[rows.metric == "error"]
    for split in ("train", "test"):
        vals = err[err.split == split].value
        assert vals.max() - 0.5 * (vals.iloc[0] + vals.iloc[-1]) == 0.0
    assert (ex.barrier == 0).all()


def test_a_2d_conv_nets_path_endpoints_are_its_metrics_exactly(tmp_path):
    """On the CPU, 2-D conv nets train channels-last (models.place): the path's models are placed
    the same way, or the endpoints' sums run in another order than the run's own evaluation."""
    from rewind.models import place

    spec = rewind.get_preset("digits_cnn").spec
    assert place(create_model(spec.model, (1, 8, 8), 10), "cpu").convs[1].weight.is_contiguous(
        memory_format=torch.channels_last)
    assert place(create_model(spec.model, (1, 8, 8), 10), "cpu").out.weight.is_contiguous()
    run = rewind.train("digits_cnn", {"train.steps": "30it", "train.eval_every": "0it", "train.milestones": ""},
                       root=tmp_path)
    rows, _, _ = interpolate_pair(run, run, points=2)
    m = run.metrics()
    final = m[m.step == 30]
    for split in ("train", "test"):
        got = rows[(rows.split == split) & (rows.alpha == 0.0)].set_index("metric").value
        want = final[final.split == split].set_index("metric").value
        assert got["loss"] == want["loss"] and got["error"] == 1.0 - want["accuracy"]


def test_pruned_weights_are_zero_along_the_path():
    g = torch.Generator().manual_seed(0)
    wa = {"w": torch.randn(50, 50, generator=g), "b": torch.randn(50, generator=g)}
    wb = {"w": torch.randn(50, 50, generator=g), "b": wa["b"].clone()}
    mask = {"w": torch.rand(50, 50, generator=g) < 0.3}
    wa["w"] *= mask["w"]
    wb["w"] *= mask["w"]
    for a in torch.linspace(0, 1, 11).tolist():
        w = path_weights(wa, wb, mask, a)
        assert torch.count_nonzero(w["w"][~mask["w"]]) == 0
        assert torch.equal(w["b"], wa["b"])
    assert torch.equal(path_weights(wa, wb, mask, 0.0)["w"], wa["w"])
    assert torch.equal(path_weights(wa, wb, mask, 1.0)["w"], wb["w"])
    mid = path_weights(wa, wb, mask, 0.5)["w"]
    assert torch.allclose(mid, 0.5 * (wa["w"] + wb["w"]))


def test_bn_reestimation_changes_bn_statistics_only():
    model = create_model(rewind.ModelSpec("mlp", (32, 32), batchnorm=True), (40,), 10, seed=0)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(500, 40, generator=g) * 3 + 1
    before = {k: v.clone() for k, v in model.state_dict().items()}
    batches = [torch.arange(i * 50, (i + 1) * 50) for i in range(4)]
    reset_batchnorm(model, (x[idx] for idx in batches))
    after = model.state_dict()
    for k in before:
        if "running" in k or "num_batches" in k:
            assert not torch.equal(before[k], after[k]), k
        else:
            assert torch.equal(before[k], after[k]), k
    assert model.norms[0].momentum == 0.1 and int(after["norms.0.num_batches_tracked"]) == 4
    h = model.hidden[0](x)   # the first BN sees the first linear layer's outputs: its mean is the batches' mean
    means = torch.stack([h[b].mean(0) for b in batches]).mean(0)
    assert torch.allclose(after["norms.0.running_mean"], means, atol=1e-5)


def test_bn_reset_in_a_sweep_is_recorded(tmp_path):
    study = tiny_study(tmp_path, rewinds="10it", **{"model.batchnorm": True})
    plain = instability(study, [0], points=3, options=SEQ)
    reset = instability(study, [0], points=3, bn_reset=True, bn_batches=3, options=SEQ)
    assert set(plain.bn_reset) == {False} and set(reset.bn_reset) == {True}
    assert plain.run.iloc[0] != reset.run.iloc[0]
    ends = lambda t: t[t.alpha.isin([0.0, 1.0]) & (t.metric == "loss")].value.values  # noqa: E731
    assert not (ends(plain) == ends(reset)).all()


def test_cli_instability_dense_and_study(tmp_path, capsys):
    root = str(tmp_path / "runs")
    sets = [a for k, v in TINY.items() for a in ("--set", f"{k}={v}")]
    assert main(["instability", "--preset", "mnist1d_mlp", "--at", "0it,10it", "--points", "4", *sets,
                 "--root", root, "--quiet", "--plot", str(tmp_path / "fig")]) == 0
    out = capsys.readouterr().out
    assert "10it" in out and (tmp_path / "fig.png").exists()
    assert main(["lottery", "--levels", "2", "--rewind", "0it,10it", *sets, "--root", root, "--quiet"]) == 0
    key = capsys.readouterr().out.split()[1]
    assert main(["instability", "--study", key, "--levels", "0-2", "--at", "10it", "--points", "3",
                 "--baselines", "random-prune", "--root", root, "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "random-prune" in out and "64." in out
    assert main(["plot", "instability", "--study", key, "--root", root, "--out", str(tmp_path / "f2")]) == 0
    df = rewind.results(root)
    inst = df[df.kind == "instability"]
    assert {"instability", "loss_barrier", "loss", "error"} <= set(inst.metric)
    s = inst[(inst.metric == "instability") & (inst.study == key)]
    assert set(s.level) == {0, 1, 2} and set(s.branch) == {"none", "random-prune"} and set(s.split) == {"train", "test"}
    assert main(["instability", "--study", key, "--at", "5it", "--root", root]) == 2
    assert "not the study's" in capsys.readouterr().err
    assert main(["instability", "--preset", "mnist1d_mlp", "--root", root]) == 2
