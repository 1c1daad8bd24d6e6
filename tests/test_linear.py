import torch

import rewind
from rewind.analysis.linear_model.offset import OffsetLinear, compare, parting
from rewind.cli import main
from rewind.models import create_model

SPEC = {"train.steps": "60it", "train.eval_every": "20it", "train.milestones": "30it", "model.widths": "16,16"}


def test_network_side_is_the_ordinary_training_run(tmp_path):
    spec = rewind.get_preset("mnist1d_mlp").spec.replace(**SPEC)
    rows = compare(spec, schedule="20it")
    run = rewind.train(spec, root=tmp_path, options=rewind.TrainOptions(quiet=True, engine="sequential"))
    m = run.metrics()
    for step in (0, 20, 40, 60):
        for split in ("train", "test"):
            ref = m[(m.step == step) & (m.split == split)].set_index("metric").value
            net = rows[(rows.step == step) & (rows.split == split) & (rows.model == "network")].set_index("metric").value
            assert net["loss"] == ref["loss"] and net["error"] == 1.0 - ref["accuracy"]
    d0 = rows[(rows.step == 0) & (rows.metric == "output_distance")].value
    assert (d0 == 0.0).all()   # the linear model starts at the network's outputs
    assert (rows[(rows.step == 60) & (rows.metric == "output_distance")].value > 0).all()
    assert set(parting(rows, tolerance=2.0).values()) == {None}


def test_offset_linear_is_affine_in_the_inputs():
    net = create_model(rewind.ModelSpec("mlp", (16,)), (40,), 10, seed=0)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(50, 40, generator=g)
    lin = OffsetLinear(create_model(rewind.ModelSpec("mlp", (16,)), (40,), 10, seed=0), x.mean(0), x.std(0), 10)
    assert torch.equal(lin(x), net(x))
    with torch.no_grad():
        lin.linear.weight.normal_(generator=g)
        lin.scale.fill_(0.0)
    a, b = x[:10], x[10:20]
    assert torch.allclose(lin(0.3 * a + 0.7 * b), 0.3 * lin(a) + 0.7 * lin(b), atol=1e-5)


def test_cli_linear(tmp_path, capsys):
    args = ["linear", "--model-of", "offset", "--until", "20it", "--schedule", "5it", "--set", "model.widths=16,16", "--root", str(tmp_path),
            "--quiet", "--plot", str(tmp_path / "lin")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "replicate 0" in out and (tmp_path / "lin.png").exists()
    df = rewind.results(tmp_path)
    lin = df[df.kind == "linear"]
    assert set(lin.model) == {"network", "linear", "both"} and sorted(lin.step.unique()) == [0, 5, 10, 15, 20]
    assert set(lin.linear_model) == {"offset"}
    assert main(args[:-2]) == 0   # cached
    assert main(["linear", "--model-of", "offset", "--schedule", "x", "--root", str(tmp_path)]) == 2
    assert "--schedule" in capsys.readouterr().err
