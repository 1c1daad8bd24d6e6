import pandas as pd
import pytest
import torch
from torch.nn import functional as F

import rewind
from rewind.analysis.probes import probe_steps, read_probes
from rewind.data import batch_indices, load_data
from rewind.models import create_model
from rewind.spec import SpecError
from rewind.store import Store
from rewind.train import Member, TrainOptions
from rewind.exec import train_population

BASE = {"train.steps": "30it", "train.eval_every": "0it", "model.widths": "16,16", "train.milestones": "",
        "train.weight_decay": 1e-3, "train.checkpoints": "0it,1it,2it,3it,5it,8it,10it"}
PROBES = {"probe.schedule": "1it:3it,5it", "probe.until": "10it", "probe.rewind_point": "3it"}


def test_schedule():
    assert probe_steps("1it:5it,2it:9it,5it", 10, 0, 20) == [0, 1, 2, 3, 4, 5, 7, 9, 14, 19, 20]
    assert probe_steps("1ep", 10, 0, 35) == [0, 10, 20, 30, 35]
    assert probe_steps("1it:3it,5it", 10, 4, 10) == [4, 8, 10]   # segments count from their own start
    for bad in ("x", "0it", "5it,1it:3it", ""):
        with pytest.raises(SpecError, match="probe.schedule"):
            rewind.Spec().replace(**{"probe.schedule": bad or ","})


def test_probes_do_not_change_training(tmp_path):
    spec = rewind.get_preset("mnist1d_mlp").spec.replace(**BASE)
    # probes are callbacks of the sequential loop: compared with the same engine
    [plain] = train_population([Member(spec)], Store(tmp_path / "a"), TrainOptions(quiet=True, engine="sequential"))
    [probed] = train_population([Member(spec.replace(**PROBES))], Store(tmp_path / "b"), TrainOptions(quiet=True))
    assert plain.key != probed.key
    for step in plain.checkpoint_steps():
        a, b = plain.load(step), probed.load(step)
        assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("masked", [False, True])
def test_probes_match_direct_computation(tmp_path, masked):
    spec = rewind.get_preset("mnist1d_mlp").spec.replace(**{**BASE, **PROBES})
    model = create_model(spec.model, (40,), 10, seed=0)
    mask = None
    if masked:
        g = torch.Generator().manual_seed(0)
        params = dict(model.named_parameters())
        mask = {n: torch.rand(params[n].shape, generator=g) < 0.5 for n in model.prunable()}
    [run] = train_population([Member(spec, mask=mask)], Store(tmp_path), TrainOptions(quiet=True))
    probes = read_probes(run)
    assert sorted(probes.step.unique()) == [0, 1, 2, 3, 8, 10, 30]
    names = model.prunable()

    def flat(step, layer):
        w = run.weights(step)
        vs = [w[n][mask[n]] if masked else w[n].flatten() for n in names]
        return (torch.cat(vs) if layer == "all" else vs[names.index(layer)]).double()

    def probe(step, layer, metric):
        row = probes[(probes.step == step) & (probes.layer == layer) & (probes.metric == metric)]
        assert len(row) == 1, (step, layer, metric)
        return row.value.iloc[0]

    for step in (0, 2, 8, 10):
        for layer in ("all", "hidden.1.weight"):
            w, w0, wk, wt = flat(step, layer), flat(0, layer), flat(3, layer), flat(30, layer)
            assert probe(step, layer, "weight_norm") == pytest.approx(w.norm().item(), rel=1e-12)
            assert probe(step, layer, "dist_init") == pytest.approx((w - w0).norm().item(), rel=1e-12, abs=1e-12)
            assert probe(step, layer, "dist_rewind") == pytest.approx((w - wk).norm().item(), rel=1e-12, abs=1e-12)
            assert probe(step, layer, "cos_final") == pytest.approx(((w @ wt) / (w.norm() * wt.norm())).item())
            assert probe(step, layer, "sign_diff_init") == pytest.approx(
                (torch.sign(w) != torch.sign(w0)).double().mean().item())
            assert probe(step, layer, "sign_diff_final") == pytest.approx(
                (torch.sign(w) != torch.sign(wt)).double().mean().item())
            assert probe(step, layer, "magnitude_q50") == pytest.approx(torch.quantile(w.abs(), 0.5).item())
    # the batch gradient at W_t, recomputed by hand (masked like the trainer masks it)
    data = load_data(spec.data)
    for step in (0, 3, 8):
        m = create_model(spec.model, (40,), 10, seed=0)
        m.load_state_dict(run.weights(step))
        idx = batch_indices(step, 4000, 100, spec.seeds.data_order)
        F.cross_entropy(m(data.x_train[idx]), data.y_train[idx]).backward()
        params = dict(m.named_parameters())
        gs = [(params[n].grad * mask[n] if masked else params[n].grad).flatten() for n in names]
        assert probe(step, "all", "grad_norm") == pytest.approx(torch.cat(gs).norm().item(), rel=1e-5)
    # evaluations at probe steps land in the ordinary metrics
    assert {0, 1, 2, 3, 8, 10, 30} <= set(run.metrics().step)
    df = rewind.results(tmp_path)
    assert "grad_norm" in set(df.metric) and "all" in set(df.layer)


class Crash(Exception):
    pass


def test_probed_run_resumes_to_the_same_probes(tmp_path):
    spec = rewind.get_preset("mnist1d_mlp").spec.replace(**{**BASE, **PROBES, "train.steps": "60it"})
    [ref] = train_population([Member(spec)], Store(tmp_path / "ref"), TrainOptions(quiet=True))

    def crash(run, it):
        if it == 47:
            raise Crash

    store = Store(tmp_path / "crash")
    with pytest.raises(Crash):
        train_population([Member(spec)], store, TrainOptions(quiet=True, resume_every=15, on_iteration=crash))
    assert store.run(spec.hash).status == "partial"
    [run] = train_population([Member(spec)], store, TrainOptions(quiet=True, resume_every=15))
    pd.testing.assert_frame_equal(read_probes(run), read_probes(ref))
    assert run.metrics().equals(ref.metrics())


def test_cli_early(tmp_path, capsys):
    from rewind.cli import main

    assert main(["early", "--until", "20it", "--schedule", "1it:5it,5it", "--set", "train.steps=40it",
                 "--set", "model.widths=16,16", "--root", str(tmp_path), "--quiet", "--replicates", "2",
                 "--plot", str(tmp_path / "tl")]) == 0
    out = capsys.readouterr().out
    assert "gradient norm: max" in out and (tmp_path / "tl.png").exists()
