import math

import pytest
import torch

from rewind.models import create_model, registered_models
from rewind.spec import ModelSpec

SHAPES = {"mlp": (40,), "conv1d": (40,), "digits_cnn": (1, 8, 8)}
WIDTHS = {"mlp": (100, 100), "conv1d": (32, 32, 32), "digits_cnn": (16, 32)}


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_forward_backward_and_prunable(name):
    model = create_model(ModelSpec(name, WIDTHS[name]), SHAPES[name], 10, seed=0)
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
    assert set(registered_models()) == set(SHAPES)


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
