import math

import pytest
import torch

from rewind.models import create_model, registered_models
from rewind.spec import ModelSpec

SHAPES = {"mlp": (40,), "conv1d": (40,), "digits_cnn": (1, 8, 8), "resnet": (40,), "two_layer": (40,)}
WIDTHS = {"mlp": (100, 100), "conv1d": (32, 32, 32), "digits_cnn": (16, 32), "resnet": (8,), "two_layer": (64,)}
DEPTHS = {"resnet": 8}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_forward_backward_and_prunable(name):
    model = create_model(ModelSpec(name, WIDTHS[name], depth=DEPTHS.get(name, 0)), SHAPES[name], 10, seed=0)
    x = torch.randn(5, *SHAPES[name])
    out = model(x)
    assert out.shape == (5, 10)
    out.sum().backward()
    prunable = model.prunable()
    params = dict(model.named_parameters())
    assert prunable and all(n.endswith(".weight") and params[n].dim() >= 2 for n in prunable)
    assert "out.weight" in prunable and model.layer_kind("out.weight") == "output"
    assert not any(n.endswith("bias") for n in prunable)


def test_all_registered_models_are_covered():
    # the small models here; every registered model (the papers' too, by their name patterns) is
    # built, pruned and trained a step in test_extending.py
    from rewind.models import MODELS

    assert {name for name, entry in MODELS.items() if entry.pattern is None and entry.group == "rewind"
            and not name.startswith("conv") or name == "conv1d"} >= set(SHAPES)
    assert set(SHAPES) <= set(registered_models())


def test_two_layer_is_the_ntk_parametrised_network_with_standard_gaussian_weights():
    a = create_model(ModelSpec("two_layer", (2048,), activation="tanh"), (50,), 1, seed=3)
    b = create_model(ModelSpec("two_layer", (2048,), activation="tanh"), (50,), 1, seed=3)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    w, v = a.hidden.weight, a.out.weight
    assert a.hidden.bias is None and abs(w.std().item() - 1) < 0.01 and abs(w.mean().item()) < 0.01
    x = torch.randn(3, 50)
    expected = torch.tanh(x @ w.T / math.sqrt(50)) @ v.T / math.sqrt(2048)
    assert torch.allclose(a(x), expected, atol=1e-6)


def test_init_is_seeded_and_kaiming():
    a = create_model(ModelSpec("mlp", (400, 400)), (40,), 10, seed=3)
    b = create_model(ModelSpec("mlp", (400, 400)), (40,), 10, seed=3)
    c = create_model(ModelSpec("mlp", (400, 400)), (40,), 10, seed=4)
    for (n, pa), pb, pc in zip(a.named_parameters(), b.parameters(), c.parameters()):
        assert torch.equal(pa, pb)
        if n.endswith("weight"):
            assert not torch.equal(pa, pc)
    w = dict(a.named_parameters())["hidden.1.weight"]
    assert abs(w.std().item() - math.sqrt(2 / 400)) < 0.005
    assert torch.count_nonzero(dict(a.named_parameters())["hidden.1.bias"]) == 0


def _resnet_count(depth: int, w: int, c_in: int, k: int, classes: int = 10) -> int:
    """Parameters of a CIFAR-shaped ResNet-(6n+2), counted from its description: a k-tap stem
    conv, n basic blocks per stage (two k-tap convs, BatchNorm after each, weight and bias), 1-tap
    shortcut convs with BatchNorm into stages 2 and 3, and a linear head."""
    n = (depth - 2) // 6
    total, c = c_in * w * k + 2 * w, w
    for stage, width in enumerate((w, 2 * w, 4 * w)):
        for i in range(n):
            total += c * width * k + width * width * k + 4 * width
            if stage > 0 and i == 0:
                total += c * width + 2 * width
            c = width
    return total + c * classes + classes


@pytest.mark.parametrize("shape,depth,w,taps", [((40,), 8, 8, 3), ((40,), 20, 16, 3), ((1, 8, 8), 8, 4, 9),
                                                ((1, 8, 8), 14, 8, 9)])
def test_resnet_shapes_and_parameter_counts(shape, depth, w, taps):
    model = create_model(ModelSpec("resnet", (w,), depth=depth), shape, 10, seed=0)
    assert sum(p.numel() for p in model.parameters()) == _resnet_count(depth, w, shape[0] if len(shape) == 3 else 1, taps)
    convs = [n for n in model.prunable() if n != "out.weight"]
    assert len([n for n in convs if "shortcut" not in n]) == depth - 1  # 6n + 1 convs and the head: 6n+2 layers
    assert model.out.in_features == 4 * w
    x = torch.randn(6, *shape)
    out = model(x)
    assert out.shape == (6, 10)
    # stages run at full, half and quarter resolution
    sizes = []
    hooks = [b.register_forward_hook(lambda m, i, o: sizes.append(o.shape[2:])) for b in model.blocks]
    model(x)
    for h in hooks:
        h.remove()
    n = (depth - 2) // 6
    side = shape[-1]
    assert [s[-1] for s in sizes] == [side] * n + [(side + 1) // 2] * n + [(side + 3) // 4] * n


def test_resnet_takes_three_stage_widths_and_refuses_bad_depths_and_widths():
    model = create_model(ModelSpec("resnet", (4, 6, 10), depth=8), (40,), 10, seed=0)
    assert model.out.in_features == 10
    for depth in (0, 7, 9, 12, 21):
        with pytest.raises(ValueError, match="model.depth"):
            create_model(ModelSpec("resnet", (8,), depth=depth), (40,), 10)
    with pytest.raises(ValueError, match="model.widths"):
        create_model(ModelSpec("resnet", (8, 8), depth=8), (40,), 10)
    import rewind
    with pytest.raises(rewind.SpecError, match="model.widths"):
        ModelSpec("resnet", (0,), depth=8) and rewind.Spec().replace(**{"model.name": "resnet", "model.widths": "0"})


@pytest.mark.parametrize("shape,depth", [((40,), 8), ((1, 8, 8), 14)])
def test_stacked_resnet_equals_separate_models(shape, depth):
    """K members through the grouped-convolution forward: outputs, gradients and each member's
    BatchNorm running statistics equal K separate models (float64, 1e-6), and the statistics of
    one member do not move when another member's inputs change."""
    k, spec = 3, ModelSpec("resnet", (4,), depth=depth)
    models = [create_model(spec, shape, 10, seed=s).double() for s in range(k)]
    names = [n for n, _ in models[0].named_parameters()]
    params = {n: torch.stack([dict(m.named_parameters())[n].detach() for m in models]).requires_grad_(True)
              for n in names}
    buffers = {n: torch.stack([b.clone() for b in (dict(m.named_buffers())[n] for m in models)])
               for n, _ in models[0].named_buffers()}
    g = torch.Generator().manual_seed(0)
    x = torch.randn(k, 16, *shape, generator=g, dtype=torch.float64)
    y = torch.randint(0, 10, (k, 16), generator=g)
    for _ in range(2):  # two steps of statistics
        out = models[0].stacked_forward(params, x, buffers=buffers)
    losses = torch.nn.functional.cross_entropy(out.reshape(-1, 10), y.reshape(-1), reduction="none").view(k, -1).mean(1)
    grads = dict(zip(names, torch.autograd.grad(losses.sum(), list(params.values()))))
    for i, m in enumerate(models):
        m(x[i])
        o = m(x[i])
        torch.nn.functional.cross_entropy(o, y[i]).backward()
        assert torch.allclose(o, out[i], atol=1e-6, rtol=0)
        for n, p in m.named_parameters():
            assert torch.allclose(p.grad, grads[n][i], atol=1e-6, rtol=0), n
        for n, b in m.named_buffers():
            assert torch.allclose(b.double(), buffers[n][i].double(), atol=1e-6, rtol=0), n
    stats = [n for n in buffers if n.endswith("running_mean")]
    assert all(not torch.allclose(buffers[n][0], buffers[n][1]) for n in stats)  # members' statistics apart
    # changing member 1's inputs leaves member 0's statistics and outputs alone
    before = {n: b.clone() for n, b in buffers.items()}
    x2 = x.clone()
    x2[1] += 1.0
    models[0].stacked_forward(params, x2, buffers=buffers)
    after_same = {n: b.clone() for n, b in before.items()}
    models[0].stacked_forward(params, x, buffers=after_same)
    for n in stats:
        assert torch.equal(buffers[n][0], after_same[n][0]) and not torch.equal(buffers[n][1], after_same[n][1])
    # evaluation mode with one input shared by every member uses each member's own statistics
    for m in models:
        m.eval()
    models[0].eval()
    with torch.no_grad():
        shared = models[0].stacked_forward({n: p.detach() for n, p in params.items()}, x[0], shared=True,
                                           buffers=buffers)
        for i, m in enumerate(models):
            for n, b in m.named_buffers():
                b.copy_(buffers[n][i])
            assert torch.allclose(m(x[0]), shared[i], atol=1e-6, rtol=0)


@pytest.mark.parametrize("setting,field", [("model.depth=9", "model.depth"), ("model.depth=21", "model.depth"),
                                           ("model.widths=0", "model.widths"), ("model.widths=8,8", "model.widths"),
                                           ("data.train_size=2000000", "data.train_size"),
                                           ("data.train_size=1005", "data.train_size")])
def test_bad_resnet_and_data_settings_are_one_line_naming_the_field(tmp_path, capsys, setting, field):
    from rewind.cli import main

    code = main(["train", "--preset", "mnist1d_conv", "--set", "model.name=resnet", "--set", "model.depth=8",
                 "--set", setting, "--root", str(tmp_path), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and field in err
    assert not any(tmp_path.iterdir())  # nothing written
