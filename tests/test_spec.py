import dataclasses

import pytest

import rewind
from rewind.spec import Spec, SpecError, TrainSpec, added, apply_overrides, field_help, parse_assignments
from rewind.step import Step

# Pinned: a change here renames every stored run. Only change on purpose.
PINNED = {
    "bare": "cb3ba9f8ee9cd0b8",
    "mnist1d_mlp": "ed3ad8899c96de9b",
    "mnist1d_conv": "dbed5dede6d6e977",
    "digits_cnn": "95c3e67ed3755b1f",
    "mnist1d_resnet": "ad1a0b804e416c2d",          # the testbed (docs/testbed.md): its numbers are these runs'
    "mnist1d_resnet_warmup": "4639f2ae5c1fe95c",
    "digits_resnet": "8f9733dffcfb8c45",
    "digits_resnet_warmup": "bf1bb212fba6b941",
}


def test_hashes_are_pinned():
    assert Spec().hash == PINNED["bare"]
    for name in PINNED.keys() - {"bare"}:
        assert rewind.get_preset(name).spec.hash == PINNED[name], name


def test_a_field_added_with_a_noop_default_keeps_old_hashes():
    @dataclasses.dataclass(frozen=True)
    class TrainWithSmoothing(TrainSpec):
        label_smoothing: float = added(0.0, "label smoothing")

    spec = rewind.get_preset("mnist1d_mlp").spec
    extended = dataclasses.replace(spec, train=TrainWithSmoothing(**{
        f.name: getattr(spec.train, f.name) for f in dataclasses.fields(TrainSpec)}))
    assert extended.hash == spec.hash
    changed = dataclasses.replace(extended, train=dataclasses.replace(extended.train, label_smoothing=0.1))
    assert changed.hash != spec.hash
    assert '"label_smoothing":0.1' in changed.canonical_json()


def test_every_field_is_in_the_hash():
    base = Spec()
    seen = set()
    for sec, value in [("train.lr", 0.3), ("seeds.data_order", 3), ("seeds.init", 2), ("model.widths", (7,)),
                       ("data.batch_size", 7), ("train.milestones", "1it"), ("prune.fraction", 0.5)]:
        h = base.replace(**{sec: value}).hash
        assert h != base.hash and h not in seen
        seen.add(h)


def test_canonical_json_is_order_free_and_roundtrips():
    spec = rewind.get_preset("mnist1d_conv").spec.replace(**{"train.lr": 1, "train.steps": "1ep5it"})
    assert spec.train.lr == 1.0 and isinstance(spec.train.lr, float)
    assert spec.hash == spec.replace(**{"train.lr": 1.0}).hash
    assert Spec.from_dict(spec.to_dict()) == spec


def test_overrides_coerce_strings():
    spec = apply_overrides(Spec(), parse_assignments([
        "train.steps=2000it", "train.lr=0.05", "seeds.data_order=3", "model.widths=50,20",
        "train.nesterov=true", "train.milestones=1ep,2ep", "prune.exclude=out.weight"]))
    assert spec.train.steps == Step(0, 2000) and spec.train.lr == 0.05 and spec.seeds.data_order == 3
    assert spec.model.widths == (50, 20) and spec.train.nesterov is True
    assert spec.train.milestones == (Step(1, 0), Step(2, 0)) and spec.prune.exclude == ("out.weight",)


@pytest.mark.parametrize("path,value,needle", [
    ("train.lr", "-1", "train.lr"),
    ("train.lr", "fast", "train.lr"),
    ("train.optimizer", "rmsprop", "sgd, adam"),
    ("train.nope", "1", "unknown field train.nope"),
    ("nope.lr", "1", "unknown spec section 'nope'"),
    ("lr", "1", "section.field"),
    ("prune.fraction", "1.5", "prune.fraction"),
    ("seeds.init", "1.5", "seeds.init"),
    ("train.betas", "0.9", "train.betas"),
    ("data.batch_size", "0", "data.batch_size"),
])
def test_bad_values_name_the_field(path, value, needle):
    with pytest.raises(SpecError, match=needle.replace(".", r"\.").replace("(", r"\(")):
        apply_overrides(Spec(), {path: value})


def test_assignments_need_an_equals_sign():
    with pytest.raises(SpecError, match="FIELD=VALUE"):
        parse_assignments(["train.lr"])


def test_help_lists_every_field():
    paths = {row[0] for row in field_help()}
    for sec in dataclasses.fields(Spec):
        for fl in dataclasses.fields(getattr(Spec(), sec.name)):
            assert f"{sec.name}.{fl.name}" in paths


def test_toml_config(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('preset = "x"\n[train]\nlr = 0.02\nsteps = "3ep"\n[seeds]\ninit = 4\n')
    spec, name = rewind.make_spec("mnist1d_mlp", {"train.lr": 0.03}, cfg)
    assert name == "mnist1d_mlp"
    assert spec.train.lr == 0.03 and spec.train.steps == Step(3, 0) and spec.seeds.init == 4
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\n")
    with pytest.raises(SpecError, match="not valid TOML"):
        rewind.make_spec("mnist1d_mlp", None, bad)
    with pytest.raises(SpecError, match="no such file"):
        rewind.make_spec("mnist1d_mlp", None, tmp_path / "missing.toml")


def test_unknown_preset():
    with pytest.raises(SpecError, match="mnist1d_mlp"):
        rewind.make_spec("nope")
