"""The vectorised engine against the sequential one.

In float64 the two agree to ~1e-15 relative after 200 steps; tests assert 1e-10.
(In float32 they agree to ~1e-7 until a ReLU or argmax sits on a knife edge and a
rounding difference tips it; from then on they drift apart like any two runs
with 1e-7 perturbations, so float32 equality is not a useful test.)
"""
import dataclasses

import pytest
import torch

import rewind
from rewind.models import create_model
from rewind.store import Store
from rewind.train import Member, TrainOptions
from rewind.exec import choose_engine, train_population

TOL = 1e-10
BASE = {"train.steps": "200it", "train.eval_every": "100it", "train.precision": "float64",
        "train.checkpoints": "50it"}
MODELS = {
    "mlp": {},
    "cnn": {"model.name": "conv1d", "model.widths": "8,8,8"},
    "batchnorm": {"model.widths": "32,32", "model.batchnorm": True},
    "lenet": {"model.name": "lenet_32_16"},
    "resnet": {"model.name": "resnet", "model.depth": 8, "model.widths": "4"},
    "adam": {"train.optimizer": "adam", "train.lr": 0.002, "train.weight_decay": 1e-3},
    "nesterov": {"train.nesterov": True, "train.milestones": "120it", "train.warmup": "20it"},
    "digits_cnn": {"preset": "digits_cnn", "model.widths": "4,8", "train.milestones": "150it"},  # max-pool, 2-D
}


def spec_for(preset="mnist1d_mlp", **over):
    return rewind.get_preset(preset).spec.replace(**{**BASE, **over})


def masks_for(spec, seed):
    model = create_model(spec.model, (1, 8, 8) if spec.data.name == "digits" else (40,), 10, seed=0)
    g = torch.Generator().manual_seed(seed)
    params = dict(model.named_parameters())
    return {n: torch.rand(params[n].shape, generator=g) < 0.5 for n in model.prunable()}


def population(spec):
    return [
        Member(spec),
        Member(spec.replace(**{"seeds.init": 1, "seeds.data_order": 1}), mask=masks_for(spec, 1)),
        Member(spec.replace(**{"seeds.data_order": 2}), mask=masks_for(spec, 2)),
    ]


def rel_err(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    scale = max(v.abs().max().item() for v in a.values() if v.is_floating_point())
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a if a[k].is_floating_point()) / scale


def engines(members, tmp_path, name):
    seq = train_population(members, Store(tmp_path / f"{name}-seq"), TrainOptions(quiet=True, engine="sequential"))
    vec = train_population(members, Store(tmp_path / f"{name}-vec"), TrainOptions(quiet=True, engine="vectorised"))
    return seq, vec


@pytest.mark.parametrize("name", sorted(MODELS))
def test_vectorised_matches_sequential(tmp_path, name):
    seq, vec = engines(population(spec_for(**MODELS[name])), tmp_path, name)
    for a, b in zip(seq, vec):
        assert b.summary()["engine"] == "vectorised(K=3)" and a.summary()["engine"] == "sequential"
        for step in (50, 200):
            assert rel_err(a.load(step), b.load(step)) < TOL      # weights, masks, optimizer state
        ma, mb = a.metrics(), b.metrics()
        assert (ma[["step", "split", "metric"]].values == mb[["step", "split", "metric"]].values).all()
        assert abs(ma.value - mb.value).max() < 1e-9
    for member, run in zip(population(spec_for(**MODELS[name])), vec):
        if member.mask is not None:
            w = run.weights(200)
            assert all(torch.count_nonzero(w[n][~m]) == 0 for n, m in member.mask.items())


HAND = {  # models with a hand-written stacked backward pass: (model overrides, input shape)
    "mlp": ({}, (40,)),
    "lenet_24_12": ({"model.name": "lenet_24_12"}, (40,)),
    "conv1d": ({"model.name": "conv1d", "model.widths": "6,5,4"}, (40,)),
    "digits_cnn": ({"model.name": "digits_cnn", "model.widths": "4,6"}, (1, 8, 8)),
}


@pytest.mark.parametrize("name", sorted(HAND))
def test_hand_written_gradient_equals_autograd(name):
    """The vectorised engine's backward passes (models/stacked.py for ReLU MLPs, models/stacked_conv.py
    for the ReLU conv nets), against autograd through each member's own module."""
    over, shape = HAND[name]
    spec = rewind.get_preset("mnist1d_mlp").spec.replace(**over)
    model = create_model(spec.model, shape, 10, seed=0).double()
    assert model.hand_differentiated
    g = torch.Generator().manual_seed(0)
    k, b = 3, 7
    params = {n: torch.randn(k, *p.shape, generator=g, dtype=torch.float64) / 2 for n, p in model.named_parameters()}
    x = torch.randn(k, b, *shape, generator=g, dtype=torch.float64)
    x.view(k, b, -1)[..., :x[0, 0].numel() // 2] = 0   # blank rows, as in the digits images (ties below)
    y = torch.randint(0, 10, (k, b), generator=g)
    if name == "digits_cnn":   # equal values meet in a max-pool window: the tie-break (the first maximum
        h = x[0]               # takes the gradient) is exercised
        for i in range(2):
            h = torch.nn.functional.conv2d(h, params[f"convs.{i}.weight"][0], params[f"convs.{i}.bias"][0], padding=1)
            h = h.relu() if i == 0 else h
        windows = h.unfold(2, 2, 2).unfold(3, 2, 2).reshape(*h.shape[:2], -1, 4)
        assert ((windows == windows.amax(-1, keepdim=True)).sum(-1) > 1).any()
    grads = {n: torch.full_like(p, float("nan")) for n, p in params.items()}
    losses = model.stacked_grad(params, x, y, grads)
    leaves = {n: p.clone().requires_grad_(True) for n, p in params.items()}
    each = [torch.nn.functional.cross_entropy(torch.func.functional_call(model, {n: v[j] for n, v in leaves.items()},
                                                                         (x[j],)), y[j]) for j in range(k)]
    torch.testing.assert_close(losses, torch.stack(each).detach(), rtol=1e-12, atol=1e-14)
    loss = sum(each)
    expected = dict(zip(leaves, torch.autograd.grad(loss, list(leaves.values()))))
    for n in params:
        torch.testing.assert_close(grads[n], expected[n], rtol=1e-12, atol=1e-14)
    # the stacked forward, on each member's batch and on one batch shared by all (evaluation)
    outputs = torch.stack([torch.func.functional_call(model, {n: v[j] for n, v in params.items()}, (x[j],))
                           for j in range(k)])
    torch.testing.assert_close(model.stacked_forward(params, x), outputs, rtol=1e-12, atol=1e-13)
    shared = torch.stack([torch.func.functional_call(model, {n: v[j] for n, v in params.items()}, (x[1],))
                          for j in range(k)])
    torch.testing.assert_close(model.stacked_forward(params, x[1], shared=True), shared, rtol=1e-12, atol=1e-13)


def test_conv_nets_with_batchnorm_go_through_autograd():
    spec = rewind.get_preset("mnist1d_conv").spec.replace(**{"model.batchnorm": True})
    model = create_model(spec.model, (40,), 10, seed=0)
    assert not model.hand_differentiated and not model.stack_invariant
    assert model.stacked_forward({}, torch.zeros(1, 2, 40)) is None


def test_a_members_result_does_not_depend_on_its_population(tmp_path):
    spec = spec_for(**MODELS["batchnorm"])
    members = population(spec)
    opts = TrainOptions(quiet=True, engine="vectorised")
    together = train_population(members, Store(tmp_path / "all"), opts)
    alone = train_population([members[1]], Store(tmp_path / "one"), opts)
    pair = train_population([members[2], members[1]], Store(tmp_path / "two"), opts)
    assert rel_err(together[1].load(200), alone[0].load(200)) < TOL
    assert rel_err(together[1].load(200), pair[1].load(200)) < TOL


def test_members_starting_at_different_steps(tmp_path):
    spec = spec_for()
    w = create_model(spec.model, (40,), 10, seed=5).state_dict()
    members = [Member(spec, init=w, start=0), Member(spec, init=w, start=30, mask=masks_for(spec, 3)),
               Member(spec, init=w, start=130)]
    seq, vec = engines(members, tmp_path, "starts")
    for a, b, m in zip(seq, vec, members):
        assert a.checkpoint_steps()[0] == m.start
        assert rel_err(a.load(200), b.load(200)) < TOL
        assert a.metrics().step.min() == m.start


class Crash(Exception):
    pass


def test_a_crashed_vectorised_population_resumes_to_identical_bits(tmp_path):
    spec = spec_for(**{"train.precision": "float32"})
    w = create_model(spec.model, (40,), 10, seed=5).state_dict()
    members = population(spec) + [Member(spec, init=w, start=70)]
    ref = train_population(members, Store(tmp_path / "ref"), TrainOptions(quiet=True, engine="vectorised"))

    def crash(run, it):
        if it == 123:
            raise Crash

    store = Store(tmp_path / "crash")
    with pytest.raises(Crash):
        train_population(members, store, TrainOptions(quiet=True, engine="vectorised", resume_every=40,
                                                      on_iteration=crash))
    assert all(store.run(dataclasses.replace(m, engine="vectorised").key).status == "partial" for m in members)
    runs = train_population(members, store, TrainOptions(quiet=True, engine="vectorised", resume_every=40))
    for a, b in zip(ref, runs):
        for step in a.checkpoint_steps():
            ta, tb = a.load(step), b.load(step)
            assert ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)
        assert a.metrics().equals(b.metrics())


def test_engine_choice(tmp_path):
    spec = spec_for()
    opts = TrainOptions(quiet=True)
    # the engine is the model's, not the population's: a lone member is the same run as in a population
    assert choose_engine([Member(spec)], opts) == "vectorised"
    assert choose_engine(population(spec), opts) == "vectorised"
    assert choose_engine(population(spec), TrainOptions(engine="sequential")) == "sequential"
    with pytest.raises(ValueError, match="engine"):
        choose_engine(population(spec), TrainOptions(engine="fast"))
    # past 100K parameters only models with a hand-written backward pass are stacked
    big_mlp = spec.replace(**{"model.widths": "400,300"})                       # 139K parameters
    big_cnn = spec.replace(**{"model.name": "conv1d", "model.widths": "64,128,256"})  # 149K
    assert choose_engine(population(big_mlp), opts) == "vectorised"
    assert choose_engine(population(big_mlp.replace(**{"model.batchnorm": True})), opts) == "sequential"
    assert choose_engine(population(big_cnn), opts) == "vectorised"
    assert choose_engine(population(big_cnn.replace(**{"model.batchnorm": True})), opts) == "sequential"
    assert choose_engine(population(spec), TrainOptions(compile=True)) == "sequential"
    with pytest.raises(ValueError, match="compile"):
        choose_engine(population(spec), TrainOptions(compile=True, engine="vectorised"))
    # duplicates in a population are trained once
    runs = train_population([Member(spec), Member(spec)], Store(tmp_path), opts)
    assert runs[0].key == runs[1].key and runs[0].done


def bits(t: torch.Tensor) -> bytes:
    return t.contiguous().view(torch.uint8).numpy().tobytes()   # signs of zero included


@pytest.mark.parametrize("engine", ["sequential", "vectorised"])
def test_the_mask_after_each_step_is_skipped_only_where_it_changes_nothing(tmp_path, monkeypatch, engine):
    from rewind.train import loop, optim, vectorised

    spec = spec_for(**{"train.precision": "float32", "train.weight_decay": 5e-4, "train.steps": "120it"})  # momentum 0.9
    seen = []

    def watched(keep, tensors):
        seen.append(optim.zero_where_pruned(keep, tensors))
        return seen[-1]

    def train(members, name, always_mask=False):
        monkeypatch.setattr(loop, "zero_where_pruned", (lambda *a: False) if always_mask else watched)
        monkeypatch.setattr(vectorised, "zero_where_pruned", (lambda *a: False) if always_mask else watched)
        return train_population(members, Store(tmp_path / name), TrainOptions(quiet=True, engine=engine))

    # a lottery member: weights and optimizer state start at zero where pruned, so the update keeps
    # them there and the mask after each step is skipped, with the bits of applying it
    masked = population(spec)[1:]
    skipped = train(masked, "skipped")
    assert seen and all(seen)
    applied = train(masked, "applied", always_mask=True)
    for a, b in zip(skipped, applied):
        for step in (50, 120):
            ta, tb = a.load(step), b.load(step)
            assert ta.keys() == tb.keys() and all(bits(ta[k]) == bits(tb[k]) for k in ta)

    # a momentum handed on from a dense run (pretraining deficit) moves pruned weights: masked every step
    model = create_model(spec.model, (40,), 10, seed=0)
    g = torch.Generator().manual_seed(7)
    momentum = {f"optim/{i}/momentum_buffer": torch.randn(p.shape, generator=g, dtype=torch.float32)
                for i, p in enumerate(model.parameters())}
    members = [Member(m.spec, mask=m.mask, optim=momentum) for m in masked]
    seen.clear()
    runs = train(members, "momentum")
    assert seen and not any(seen)
    for member, run in zip(members, runs):
        w = run.weights(120)
        assert all(torch.count_nonzero(w[n][~m]) == 0 for n, m in member.mask.items())
