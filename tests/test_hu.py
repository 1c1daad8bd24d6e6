"""Hu et al.'s linear model: the NTK, its affine fit, the closed form and the side-by-side run."""
import math

import pandas as pd
import pytest
import torch

import rewind
from rewind.analysis.linear_model import ntk
from rewind.analysis.linear_model.hu import Antisymmetric, HuOptions, binary_task, compare_hu, departure, sphere
from rewind.cli import main
from rewind.data import load_data
from rewind.models import create_model


def _sphered(n, d, seed=0):
    x = torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    return sphere(x, x[:1])[0]


@pytest.mark.parametrize("name,shape", [("mlp", (12,)), ("conv1d", (16,)), ("two_layer", (12,))])
def test_empirical_ntk_equals_per_example_jacobian_products(name, shape):
    widths = (8,) if name == "two_layer" else (6, 5)
    model = create_model(rewind.ModelSpec(name, widths), shape, 3, seed=1).double()
    x = torch.randn(7, *shape, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    for train in ("first", "second", "both"):
        names = ntk.layer_parameters(model, train)
        fast, slow = ntk.empirical_ntk(model, x, names), ntk.direct_ntk(model, x, names)
        assert fast.shape == (7, 7)
        assert torch.allclose(fast, slow, atol=1e-6, rtol=0), (train, (fast - slow).abs().max())
    assert ntk.layer_parameters(model, "first") != ntk.layer_parameters(model, "second")


def test_affine_fit_recovers_the_constants_of_a_constructed_kernel():
    x = _sphered(60, 9)
    g = ntk.data_kernel(x)
    theta = 0.37 * g + 0.052 + 0.81 * torch.eye(60, dtype=torch.float64)
    fit = ntk.fit_affine(theta, x)
    assert fit.alpha == pytest.approx(0.37, abs=1e-10) and fit.b == pytest.approx(0.052, abs=1e-10)
    assert fit.c == pytest.approx(0.81, abs=1e-10) and fit.error_with_c < 1e-10
    assert fit.error == pytest.approx(0.81 / float(torch.linalg.matrix_norm(theta, ord=2)), rel=1e-6)


@pytest.mark.parametrize("name", ["relu", "tanh", "softplus"])
def test_closed_form_constants_match_monte_carlo(name):
    # Stein's lemma, E[g f(g)] = E[f'(g)], turns zeta and E[phi''] into expectations of phi and phi'
    # alone, so the check does not reuse the closed form's derivatives.
    g = torch.randn(16_000_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    phi = {"relu": torch.relu, "tanh": torch.tanh, "softplus": torch.nn.functional.softplus}[name]
    z = g.clone().requires_grad_(True)
    dphi = torch.autograd.grad(phi(z).sum(), z)[0].detach()
    a = ntk.activation_constants(name)
    assert a.gamma == pytest.approx(float(phi(g).mean()), abs=1e-3)
    assert a.zeta == pytest.approx(float((g * phi(g)).mean()), abs=1e-3)
    assert a.zeta == pytest.approx(float(dphi.mean()), abs=1e-3)
    assert a.curvature == pytest.approx(float((g * dphi).mean()), abs=1e-3)


def test_two_layer_ntk_is_close_to_the_closed_form_affine_kernel():
    x = _sphered(1000, 25).float()
    model = create_model(rewind.ModelSpec("two_layer", (4096,)), (25,), 1, seed=0)
    for train in ("first", "second", "both"):
        theta = ntk.empirical_ntk(model, x, ntk.layer_parameters(model, train))
        fit = ntk.fit_affine(theta, x)
        alpha, b = ntk.closed_form("relu", train, x)
        assert fit.alpha == pytest.approx(alpha, rel=0.05) and fit.b == pytest.approx(b, rel=0.05), train
        if train != "first":   # first layer alone: 0.105 here (docs/linear.md), the identity and width terms
            assert ntk.affine_error(theta, x, alpha, b) < 0.1 and fit.error < 0.1, train


def test_a_linear_network_tracks_its_linear_model_for_the_whole_run():
    spec = rewind.get_preset("gaussian_two_layer").spec.replace(
        **{"data.train_size": 400, "data.test_size": 100, "data.dim": 20, "model.widths": "256",
           "model.activation": "linear", "train.precision": "float64"})
    rows, info = compare_hu(spec, HuOptions(train="first", steps=150, full_batch=True, ntk_samples=200, points=10))
    disc = rows[rows.metric == "discrepancy"]
    assert disc.value.max() < 1e-3 and info["fit"]["error"] < 1e-6
    loss = rows[(rows.metric == "loss") & (rows.split == "train") & (rows.model == "network")].set_index("step").value
    assert loss[150] < loss[0] - 0.05   # it did learn
    # a ReLU network does not: its discrepancy is far above float error
    relu, _ = compare_hu(spec.replace(**{"model.activation": "relu"}),
                         HuOptions(train="first", steps=30, full_batch=True, ntk_samples=200, points=5))
    assert relu[relu.metric == "discrepancy"].value.max() > 1e-2


def test_comparison_outputs_start_at_zero_and_both_options_agree_on_the_linear_side():
    spec = rewind.get_preset("digits_binary_mlp").spec.replace(**{"model.widths": "32,32,32"})
    opts = dict(steps=20, full_batch=True, ntk_samples=100, drift_samples=20, points=6)
    sub, info = compare_hu(spec, HuOptions(output="subtract", **opts))
    sym, info_sym = compare_hu(spec, HuOptions(output="symmetric", **opts))
    for rows in (sub, sym):
        at0 = rows[rows.step == 0]
        assert (at0[at0.metric == "discrepancy"].value == 0).all()
        assert (at0[at0.metric == "output_norm"].value == 0).all()
        assert (at0[at0.metric == "error"].value == 0.5).all()   # a zero output is half wrong
        assert rows[rows.metric == "ntk_distance"].step.min() == 0
    # the antisymmetric pair has the base network's NTK, so the fitted linear model is the same
    assert info["fit"] == pytest.approx(info_sym["fit"], rel=1e-5)
    lin = lambda r: r[(r.model == "linear")].sort_values(["step", "split", "metric"]).value.to_numpy()
    assert lin(sub) == pytest.approx(lin(sym), rel=1e-5, abs=1e-7)
    base = create_model(spec.model, (1, 8, 8), 1, seed=0)
    assert torch.equal(Antisymmetric(base)(torch.randn(4, 1, 8, 8)), torch.zeros(4, 1))


def test_binary_task_data():
    spec = rewind.get_preset("gaussian_two_layer").spec.replace(**{"data.train_size": 300, "data.test_size": 50})
    xt, yt, xs, ys = binary_task(spec)
    assert set(yt.tolist()) == {-1.0, 1.0} and yt.sum() == 0   # balanced at the training median
    assert torch.allclose(xt.norm(dim=1), torch.full((300,), 10.0), rtol=1e-5)
    again = load_data(spec.data.__class__(**{**spec.data.__dict__}))
    assert torch.equal(load_data(spec.data).x_train, again.x_train)
    d = load_data(rewind.DataSpec("digits", classes=(7, 3)))
    full = load_data(rewind.DataSpec("digits"))
    assert d.num_classes == 2 and len(d.y_train) == int(((full.y_train == 3) | (full.y_train == 7)).sum())
    assert torch.equal(d.x_train[d.y_train == 0], full.x_train[full.y_train == 7])


def test_departure_definition():
    def rows(values):
        return pd.DataFrame([{"step": s, "model": "both", "split": sp, "metric": "discrepancy", "value": v}
                             for s, v in zip([0, 1, 10, 100, 1000], values) for sp in ("train", "test")])

    assert departure(rows([0, 0.01, 0.05, 0.2, 0.3]))["train"] == 100
    assert departure(rows([0, 0.2, 0.05, 0.2, 0.3]))["train"] == 100   # above early, below, then for good
    assert departure(rows([0, 0.01, 0.05, 0.08, 0.09]))["train"] is None   # still agreeing at the end
    assert departure(rows([0, 0.2, 0.3, 0.4, 0.5]))["train"] == 0   # never agreed
    # interpolated in log step between the last step at or below the threshold and the next
    assert departure(rows([0, 0.01, 0.05, 0.15, 0.3]), interpolate=True)["train"] == pytest.approx(10 ** 1.5)
    assert departure(rows([0, 0.01, 0.1, 0.2, 0.3]), interpolate=True)["train"] == pytest.approx(10.0)
    assert departure(rows([0, 0.01, 0.05, 0.2, 0.3]), interpolate=True)["train"] == pytest.approx(10 ** (1 + 1 / 3))
    assert departure(rows([0, 0.2, 0.3, 0.4, 0.5]), interpolate=True)["train"] == 0
    assert departure(rows([0, 0.01, 0.05, 0.08, 0.09]), interpolate=True)["train"] is None


def test_cli_linear_and_sweep(tmp_path, capsys):
    base = ["--preset", "digits_binary_mlp", "--set", "model.widths=16,16,16", "--steps", "12it", "--points", "4",
            "--ntk-samples", "50", "--root", str(tmp_path), "--quiet"]
    assert main(["linear", *base, "--full-batch", "--plot", str(tmp_path / "hu")]) == 0
    out = capsys.readouterr().out
    assert "affine fit alpha=" in out and "discrepancy above 0.1" in out and (tmp_path / "hu.png").exists()
    assert main(["linear-sweep", *base, "--widths", "8,16", "--lrs", "0.1,0.2", "--csv", str(tmp_path / "t.csv"),
                 "--plot", str(tmp_path / "sweep")]) == 0
    # the preset's own rate, asked for by value, is the first run's record (not a second one)
    own = rewind.get_preset("digits_binary_mlp").spec.train.lr
    assert main(["linear-sweep", *base, "--full-batch", "--lrs", f"{own!r}"]) == 0
    table = pd.read_csv(tmp_path / "t.csv")
    assert len(table) == 4 and set(table.width) == {8, 16} and set(table.lr) == {0.1, 0.2}
    assert (tmp_path / "sweep.png").exists()
    df = rewind.results(tmp_path)
    lin = df[df.kind == "linear"]
    assert set(lin.linear_model) == {"fitted"} and lin.run.nunique() == 5   # the sweep's own 4 and the first
    assert {"discrepancy", "ntk_distance", "loss", "error"} <= set(lin.metric)


@pytest.mark.parametrize("args,needle", [
    (["--preset", "mnist1d_mlp"], "--classes"),
    (["--train", "middle"], "--train"),
    (["--preset", "digits_binary_mlp", "--model-of", "closed-form"], "--model-of"),
    (["--loss", "hinge"], "--loss"),
    (["--steps", "x"], "--steps"),
])
def test_cli_linear_bad_input(tmp_path, capsys, args, needle):
    assert main(["linear", *args, "--root", str(tmp_path), "--set", "data.train_size=200"
                 if "--preset" not in args else "train.lr=0.1"]) == 2
    err = capsys.readouterr().err
    assert needle in err and err.count("\n") == 1
    assert not (tmp_path / "linear").exists()


def test_ntk_memory_is_refused_with_the_size_it_would_need(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(ntk, "MAX_JACOBIAN_BYTES", 2 ** 20)
    monkeypatch.setattr(ntk.empirical_ntk, "__defaults__", (None, 2 ** 20))
    assert main(["linear", "--set", "data.train_size=600", "--ntk-samples", "500", "--root", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "--ntk-samples" in err and "GiB" in err and "examples fit" in err
    assert not (tmp_path / "linear").exists()
    assert math.isfinite(ntk.jacobian_bytes(create_model(rewind.ModelSpec("two_layer", (8,)), (4,), 1), ["hidden.weight"],
                                            10, 1))


def test_the_papers_cifar_task_runs_on_files_in_the_official_format(tmp_path, capsys):
    from test_paper import write_cifar

    from rewind.data import core

    write_cifar(tmp_path / "data", n=40)
    core._DATA_CACHE.clear()
    args = ["linear", "--preset", "cifar10_cats_horses_mlp", "--set", "model.widths=16,16,16", "--set",
            "data.batch_size=16", "--steps", "3it",
            "--points", "3", "--ntk-samples", "20", "--full-batch", "--data-root", str(tmp_path / "data"),
            "--root", str(tmp_path / "runs"), "--quiet"]
    assert main(args) == 0, capsys.readouterr().err
    data = load_data(rewind.get_preset("cifar10_cats_horses_mlp").spec.data, tmp_path / "data")
    full = load_data(rewind.DataSpec("cifar10"), tmp_path / "data")
    assert data.num_classes == 2 and len(data.y_train) == int(((full.y_train == 3) | (full.y_train == 7)).sum())
    core._DATA_CACHE.clear()
