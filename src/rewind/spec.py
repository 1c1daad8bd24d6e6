"""Specs: every hyperparameter of a run as frozen, validated, hashable values.

A :class:`Spec` has a canonical JSON form and a content hash that names its run
directory. Fields added after runs already exist are declared with
:func:`added`: while they hold their no-op default they are left out of the
canonical form, so old runs keep their names.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import typing
from dataclasses import dataclass, field
from typing import Any

from .step import Step, parse_steps


class SpecError(ValueError):
    """Bad input for a spec field; the message names the field and what is allowed."""


def _field(default: Any, doc: str, *, choices: tuple | None = None, check: str | None = None,
           omit_if_default: bool = False):
    meta = {"doc": doc, "choices": choices, "check": check, "omit_if_default": omit_if_default}
    if isinstance(default, (list, dict, set)):
        raise TypeError("spec defaults must be immutable")
    return field(default=default, metadata=meta)


def added(default: Any, doc: str, **kw):
    """A field introduced after runs were stored: at its default it is left out of the hash."""
    return _field(default, doc, omit_if_default=True, **kw)


f = _field


@dataclass(frozen=True)
class DataSpec:
    name: str = f("mnist1d", "dataset: mnist1d, digits (embedded), gaussian (generated: Gaussian inputs, labels of "
                             "a fixed teacher), mnist, fashion_mnist, cifar10, cifar100, imagenet (read from "
                             "--data-root), npz (arrays in the file data.path), or a plugin's (rewind datasets)",
                  check="dataset")
    batch_size: int = f(100, "examples per iteration", check="positive")
    augment: str = f("none", "batch augmentation of training data (crop_flip: 4-pixel random crop and flip; "
                             "random_resized_crop: ImageNet's crop of 8-100% of the area, resized, and flip)",
                     choices=("none", "crop_flip", "random_resized_crop"))
    split_seed: int = f(0, "seed of the train/test split (datasets without an official split)", check="nonneg")
    image_size: int = added(224, "side of the square images ImageNet is cropped to", check="positive")
    train_size: int = added(0, "MNIST-1D, gaussian: training examples generated (0: MNIST-1D's published 4,000, "
                               "gaussian 20,000; MNIST-1D a multiple of 10; at most 1,000,000 with the test set)",
                            check="nonneg")
    test_size: int = added(0, "MNIST-1D, gaussian: test examples generated (0: MNIST-1D's published 1,000, "
                              "gaussian 2,000; MNIST-1D a multiple of 10)", check="nonneg")
    corr_noise: float = added(0.25, "MNIST-1D: scale of the correlated (smoothed) noise (mnist1d's corr_noise_scale)",
                              check="nonneg")
    iid_noise: float = added(0.02, "MNIST-1D: scale of the independent per-point noise (mnist1d's iid_noise_scale)",
                             check="nonneg")
    max_shift: int = added(48, "MNIST-1D: largest translation of a pattern, in points (mnist1d's max_translation)",
                           check="nonneg")
    generator_seed: int = added(42, "MNIST-1D, gaussian: seed of the generator (42 is MNIST-1D's published dataset)",
                                check="nonneg")
    dim: int = added(100, "gaussian: input dimension d (inputs N(0, I_d))", check="positive")
    classes: tuple[int, ...] = added((), "keep only these classes, relabelled 0, 1, ... in the order given "
                                         "(e.g. 3,7: CIFAR-10 cats vs horses); () = all", check="nonneg")
    subset: str = added("", "train on a subset of the training set: random, easiest or hardest (lowest or highest "
                            "mean score of data.subset_score), band (the hardest after skipping data.subset_offset) "
                            "('' = all)", choices=("", "random", "easiest", "hardest", "band"))
    subset_size: int = added(0, "examples kept (or give data.subset_fraction)", check="nonneg")
    subset_fraction: float = added(0.0, "fraction of the training set kept, in (0, 1] (or give data.subset_size)",
                                   check="nonneg")
    subset_offset: int = added(0, "band: the hardest examples skipped before the kept ones", check="nonneg")
    subset_score: str = added("", "key of the score set (rewind scores) that ranks the examples")
    subset_balance: bool = added(False, "keep equally many examples of each class, ranked within each class "
                                        "(the first size % classes classes keep one more)")
    subset_seed: int = added(0, "random: seed of the draw", check="nonneg")
    path: str = added("", "npz (or a plugin's dataset): the file the data are read from; its SHA-256 is part of "
                          "the run's key")


@dataclass(frozen=True)
class ModelSpec:
    name: str = f("mlp", "architecture (rewind models lists them, with examples of the name patterns): mlp, "
                         "conv1d, digits_cnn, resnet, two_layer, lenet_N_M..., conv2/4/6, cifar_resnet_<6n+2>, "
                         "cifar_vgg_11/13/16/19, imagenet_resnet_18/34/50, or a plugin's", check="model")
    widths: tuple[int, ...] = f((100, 100), "hidden widths (MLP) or channels (CNN), one per layer", check="positive")
    init: str = f("kaiming_normal", "initialisation of conv and linear weights",
                  choices=("kaiming_normal", "kaiming_uniform", "xavier_normal"))
    batchnorm: bool = added(False, "BatchNorm after each hidden layer (mlp, conv1d)")
    width: float = added(1.0, "channel multiplier (conv2/4/6, CIFAR ResNets and VGGs, ImageNet ResNets)",
                         check="positive")
    depth: int = added(0, "depth of the embedded data's ResNet (model resnet): 6n+2 layers, e.g. 8, 14, 20",
                       check="nonneg")
    activation: str = added("relu", "two_layer: the activation phi of f(x) = v.phi(Wx/sqrt(d))/sqrt(m)",
                            choices=("relu", "tanh", "softplus", "linear"))


@dataclass(frozen=True)
class TrainSpec:
    optimizer: str = f("sgd", "optimizer", choices=("sgd", "adam"))
    lr: float = f(0.1, "base learning rate", check="positive")
    momentum: float = f(0.9, "SGD momentum, in [0, 1)", check="unit")
    nesterov: bool = f(False, "Nesterov momentum (SGD)")
    weight_decay: float = f(0.0, "L2 weight decay", check="nonneg")
    betas: tuple[float, ...] = f((0.9, 0.999), "Adam betas (two numbers)")
    steps: Step = f(Step(0, 4000), "length of training")
    milestones: tuple[Step, ...] = f((), "steps at which the learning rate is multiplied by gamma")
    gamma: float = f(0.1, "learning-rate decay factor at each milestone", check="positive")
    warmup: Step = f(Step(0, 0), "linear learning-rate warmup length")
    eval_every: Step = f(Step(0, 0), "evaluate every this many steps (0it: only at start, end and eval_at)")
    eval_at: tuple[Step, ...] = f((), "further steps at which to evaluate")
    eval_splits: tuple[str, ...] = added(("train", "test"), "splits evaluated at each evaluation step (train, test, "
                                         "or both; open_lth evaluates the test set only)", check="splits")
    checkpoints: tuple[Step, ...] = f((), "steps at which to save weights (start and end are always saved)")
    precision: str = added("float32", "arithmetic: float32, float64, or bf16 (autocast of forward and loss; "
                           "weights and optimizer state stay float32)", choices=("float32", "float64", "bf16"))


@dataclass(frozen=True)
class PruneSpec:
    strategy: str = f("global", "magnitude pruning strategy", choices=("global", "layerwise"))
    fraction: float = f(0.2, "fraction of the remaining prunable weights removed per level", check="fraction")
    exclude: tuple[str, ...] = f((), "prunable tensors never pruned (names as the model declares them)")
    conv_fraction: float = added(0.0, "per-type rate for conv layers, pruned layerwise (0: use fraction)", check="rate")
    fc_fraction: float = added(0.0, "per-type rate for hidden linear layers, pruned layerwise (0: use fraction)",
                               check="rate")
    output_fraction: float = added(0.0, "per-type rate for the output layer, pruned layerwise (0: use fraction)",
                                   check="rate")
    criterion: str = added("magnitude", "what ranks the weights (rewind criteria lists them): magnitude (IMP), "
                                        "magnitude_init, random, snip, grasp, synflow, or a plugin's",
                           check="criterion")
    score_at: str = added("end", "which weights are scored: end (the previous level's final weights: IMP) or "
                                 "rewind (the weights the level starts from: pruning at initialisation with k = 0)",
                          choices=("end", "rewind"))
    rounds: int = added(100, "iterative criteria (synflow): pruning rounds per level, the density falling "
                             "exponentially", check="positive")
    batches: int = added(1, "criteria with gradients (snip, grasp): training batches scored", check="positive")


@dataclass(frozen=True)
class SeedSpec:
    init: int = f(0, "seed of the weight initialisation", check="nonneg")
    data_order: int = f(0, "seed of the order in which examples are visited", check="nonneg")
    augment: int = f(0, "seed of the data augmentation", check="nonneg")
    prune: int = f(0, "seed of random pruning and perturbations", check="nonneg")


@dataclass(frozen=True)
class ProbeSpec:
    schedule: str = added("", "probe steps: 'EVERY:UNTIL,...,EVERY', e.g. 1it:100it,10it:1000it,100it ('' = off)")
    until: Step = added(Step(0, 0), "last step probed (0it: the end of training)")
    rewind_point: Step = added(Step(0, 0), "W_k that distances and cosines are also measured to")


PRETRAIN_KINDS = ("", "random-labels", "rotation", "transform", "blur", "subset", "sparse")
# the fields each kind reads (besides kind, steps, seed and lr); any other field must keep its default
PRETRAIN_PARAMS = {"random-labels": (), "rotation": (), "transform": (), "blur": ("factor", "upsample"),
                   "subset": ("size", "order", "score", "balance"), "sparse": ("mask", "study", "level")}


@dataclass(frozen=True)
class PretrainSpec:
    """Pretraining on altered data: replaces the first ``steps`` iterations of training (the
    early-phase paper, section 5). Absent (kind '') it leaves every hash alone."""

    kind: str = added("", "pretraining on altered data for the first pretrain.steps iterations ('' = none): "
                          "random-labels, rotation (images: 4-way 0/90/180/270 degrees), transform (1-D: 4-way "
                          "identity/reverse/negate/both), blur, subset, sparse, or a plugin's", check="alteration")
    steps: Step = added(Step(0, 0), "length of pretraining; it replaces the first iterations of training "
                                    "(epochs are the real training set's)")
    seed: int = added(0, "seed of the alteration (random labels, transforms, subset, random mask, the new head)",
                      check="nonneg")
    lr: float = added(0.0, "base learning rate while pretraining (0: the training schedule's)", check="nonneg")
    factor: int = added(4, "blur: downsampling factor (average pooling, then upsampling back)", check="positive")
    upsample: str = added("nearest", "blur: how the pooled input is brought back to size",
                          choices=("nearest", "linear"))
    size: int = added(0, "subset: number of training examples pretrained on", check="nonneg")
    order: str = added("random", "subset: which examples: random, or the easiest or hardest by the score set "
                                 "pretrain.score (lowest or highest mean score)", choices=("random", "easiest", "hardest"))
    score: str = added("", "subset: key of the score set (rewind scores) that ranks the examples")
    balance: bool = added(False, "subset: equally many examples of each class")
    mask: str = added("imp", "sparse: the pretrained subnetwork: a study's IMP mask, or a random mask with its "
                             "per-layer densities", choices=("imp", "random"))
    study: str = added("", "sparse: key (or unique prefix) of the lottery study whose mask is used")
    level: int = added(0, "sparse: the level of that study's mask (its last rewind step's chain)", check="nonneg")
    deficit: bool = added(False, "a deficit, not pretraining (critical periods): the alteration is removed at "
                                 "pretrain.steps and training goes on with the same optimizer state, as one run")


@dataclass(frozen=True)
class Spec:
    data: DataSpec = field(default_factory=DataSpec)
    model: ModelSpec = field(default_factory=ModelSpec)
    train: TrainSpec = field(default_factory=TrainSpec)
    prune: PruneSpec = field(default_factory=PruneSpec)
    seeds: SeedSpec = field(default_factory=SeedSpec)
    probe: ProbeSpec = field(default_factory=ProbeSpec)
    pretrain: PretrainSpec = field(default_factory=PretrainSpec)

    # ---- canonical form -------------------------------------------------
    def to_dict(self, *, canonical: bool = False) -> dict:
        out: dict[str, dict] = {}
        for sec in dataclasses.fields(self):
            value = getattr(self, sec.name)
            sec_dict = {}
            for fl in dataclasses.fields(value):
                v = getattr(value, fl.name)
                if canonical and fl.metadata.get("omit_if_default") and v == fl.default:
                    continue
                sec_dict[fl.name] = _to_json(v)
            if canonical and not sec_dict:
                continue  # a section added later, all at its defaults, leaves old hashes alone
            out[sec.name] = sec_dict
        return out

    def canonical_json(self) -> str:
        doc = self.to_dict(canonical=True)
        code = identity(self)
        if code:   # a plugin's code or a data file: part of what the spec names (rewind's own: nothing)
            doc["identity"] = code
        return json.dumps(doc, sort_keys=True, separators=(",", ":"))

    @property
    def hash(self) -> str:
        return hashlib.sha256(self.canonical_json().encode()).hexdigest()[:16]

    @classmethod
    def from_dict(cls, d: dict) -> "Spec":
        if not isinstance(d, dict):
            raise SpecError(f"a spec must be a table of sections, got {type(d).__name__}")
        sections = {s.name: s for s in dataclasses.fields(cls)}
        kwargs = {}
        for name, values in d.items():
            if name not in sections:
                raise SpecError(f"unknown spec section {name!r}; sections are: {', '.join(sections)}")
            sec_type = _section_types()[name]
            if not isinstance(values, dict):
                raise SpecError(f"spec section {name!r} must be a table of fields")
            kwargs[name] = _build_section(name, sec_type, sec_type(), values)
        return cls(**kwargs)

    def replace(self, **dotted: Any) -> "Spec":
        """A copy with fields changed by dotted path: ``spec.replace(**{"train.lr": 0.05})``."""
        return apply_overrides(self, dotted)

    def __post_init__(self) -> None:
        for sec in dataclasses.fields(self):
            value = getattr(self, sec.name)
            expected = _section_types()[sec.name]
            if not isinstance(value, expected):
                raise SpecError(f"spec section {sec.name!r} must be a {expected.__name__}")
            for fl in dataclasses.fields(value):
                _validate(f"{sec.name}.{fl.name}", fl, getattr(value, fl.name))
        _check_generated_size(self.data)
        _check_subset(self.data)
        _check_classes(self.data)
        _check_pretrain(self)
        if self.probe.schedule:
            parse_schedule(self.probe.schedule)  # raises SpecError naming probe.schedule
        if len(self.train.betas) != 2:
            raise SpecError(f"train.betas must be two numbers, got {self.train.betas!r}")
        for b in self.train.betas:
            if not 0.0 <= b < 1.0:
                raise SpecError(f"train.betas must lie in [0, 1), got {self.train.betas!r}")


def replicate_spec(spec: Spec, replicate: int) -> Spec:
    """Replicate r shifts every seed by r: replicates differ in init, data order, augmentation and
    pruning. The altered data of pretraining (pretrain.seed) is shared, like the dataset's split: a
    population trains on one altered set."""
    s = spec.seeds
    seeds = dataclasses.replace(s, init=s.init + replicate, data_order=s.data_order + replicate,
                                augment=s.augment + replicate, prune=s.prune + replicate)
    return dataclasses.replace(spec, seeds=seeds)


# MNIST-1D's generator makes every example in memory (about 3 minutes and 160 MB per million).
MAX_GENERATED = 1_000_000
MNIST1D_GENERATOR_FIELDS = ("train_size", "test_size", "corr_noise", "iid_noise", "max_shift", "generator_seed",
                            "dim")
GAUSSIAN_FIELDS = ("train_size", "test_size", "generator_seed", "dim")


def _check_generated_size(data: DataSpec) -> None:
    if data.name != "mnist1d":
        allowed = GAUSSIAN_FIELDS if data.name == "gaussian" else ()
        changed = [n for n in MNIST1D_GENERATOR_FIELDS
                   if n not in allowed and getattr(data, n) != DataSpec.__dataclass_fields__[n].default]
        if changed:
            what = "the gaussian data read only train_size, test_size, generator_seed and dim" \
                if data.name == "gaussian" else f"only MNIST-1D and gaussian are generated; {data.name} is read as it is"
            raise SpecError(f"data.{changed[0]}: {what}")
        if data.name == "gaussian" and (data.train_size or 20000) + (data.test_size or 2000) > MAX_GENERATED:
            raise SpecError(f"data.train_size: train and test together may have at most {MAX_GENERATED:,} examples")
        return
    if data.dim != DataSpec.__dataclass_fields__["dim"].default:
        raise SpecError("data.dim: only the gaussian data has a chosen input dimension")
    for name in ("train_size", "test_size"):
        v = getattr(data, name)
        if v % 10:
            raise SpecError(f"data.{name}: must be a multiple of 10 (MNIST-1D makes equally many examples of "
                            f"each of its 10 classes), got {v}")
    train, test = data.train_size or 4000, data.test_size or 1000
    if train + test > MAX_GENERATED:
        raise SpecError(f"data.train_size: MNIST-1D is generated in memory; train and test together may have at "
                        f"most {MAX_GENERATED:,} examples, got {train:,} + {test:,}")


def _check_classes(data: DataSpec) -> None:
    c = data.classes
    if c and (len(c) < 2 or len(set(c)) != len(c)):
        raise SpecError(f"data.classes: give at least two distinct class labels (e.g. 3,7), got {','.join(map(str, c))}")


SUBSET_FIELDS = ("subset_size", "subset_fraction", "subset_offset", "subset_score", "subset_balance", "subset_seed")


def _check_subset(data: DataSpec) -> None:
    defaults = DataSpec()
    changed = [n for n in SUBSET_FIELDS if getattr(data, n) != getattr(defaults, n)]
    if not data.subset:
        if changed:
            raise SpecError(f"data.{changed[0]}: set data.subset too (random, easiest, hardest or band)")
        return
    if bool(data.subset_size) == bool(data.subset_fraction):
        raise SpecError("data.subset_size: give the subset's size or its fraction (data.subset_fraction), one of them")
    if data.subset_fraction > 1:
        raise SpecError(f"data.subset_fraction: must lie in (0, 1], got {data.subset_fraction}")
    if data.subset == "random" and data.subset_score:
        raise SpecError("data.subset_score: a random subset uses no score")
    if data.subset != "random" and not data.subset_score:
        raise SpecError(f"data.subset_score: a {data.subset} subset ranks examples by a score set; give its key "
                        "(rewind scores prints it)")
    if data.subset != "band" and data.subset_offset:
        raise SpecError("data.subset_offset: only a band subset skips examples")
    if data.subset != "random" and data.subset_seed:
        raise SpecError("data.subset_seed: only a random subset is drawn")


def _check_pretrain(spec: "Spec") -> None:
    p = spec.pretrain
    defaults = PretrainSpec()
    if not p.kind:
        changed = [fl.name for fl in dataclasses.fields(p) if getattr(p, fl.name) != getattr(defaults, fl.name)]
        if changed:
            raise SpecError(f"pretrain.{changed[0]}: set pretrain.kind too (one of: {', '.join(PRETRAIN_KINDS[1:])})")
        return
    if not (p.steps.ep or p.steps.it):
        raise SpecError(f"pretrain.steps: pretraining of kind {p.kind} needs a length, e.g. 200it or 1ep")
    used = PRETRAIN_PARAMS.get(p.kind, ())   # a plugin's alteration reads none of them
    for name in ("factor", "upsample", "size", "order", "score", "balance", "mask", "study", "level"):
        if name not in used and getattr(p, name) != getattr(defaults, name):
            raise SpecError(f"pretrain.{name}: not used by pretraining of kind {p.kind} "
                            f"({'it reads ' + ', '.join(used) if used else 'it has no parameters'})")
    if p.kind == "rotation" and spec.data.name == "mnist1d":
        raise SpecError("pretrain.kind: rotation needs 2-D images; MNIST-1D is 1-D: use transform (the 4-way "
                        "group identity, reverse, negate, reverse+negate)")
    if p.deficit and p.kind in ("rotation", "transform"):
        raise SpecError(f"pretrain.deficit: a deficit keeps the task; {p.kind} replaces it (use pretraining)")
    if p.deficit and p.lr:
        raise SpecError("pretrain.lr: a deficit follows the training schedule; leave pretrain.lr at 0")
    if p.kind == "subset" and not p.size:
        raise SpecError("pretrain.size: subset pretraining needs the number of examples, e.g. 400")
    if p.kind == "subset" and (p.order == "random") == bool(p.score):
        raise SpecError("pretrain.score: easiest and hardest subsets rank examples by a score set (give its key); "
                        "a random subset uses none")
    if p.kind == "sparse":
        if not p.study:
            raise SpecError("pretrain.study: sparse pretraining takes its mask (or, for a random mask, the "
                            "per-layer densities) from a lottery study: give its key")
        if p.level < 1:
            raise SpecError(f"pretrain.level: sparse pretraining needs a pruned level (1 or more), got {p.level}")


def _section_types() -> dict[str, type]:
    return {"data": DataSpec, "model": ModelSpec, "train": TrainSpec, "prune": PruneSpec, "seeds": SeedSpec,
            "probe": ProbeSpec, "pretrain": PretrainSpec}


def _to_json(v: Any) -> Any:
    if isinstance(v, Step):
        return str(v)
    if isinstance(v, tuple):
        return [_to_json(x) for x in v]
    return v


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def coerce(path: str, tp: Any, value: Any) -> Any:
    """Convert ``value`` (from TOML, JSON, Python or a command-line string) to the field type."""
    origin = typing.get_origin(tp)
    try:
        if tp is Step:
            return Step.parse(value)
        if origin is tuple:
            (item_tp, *_rest) = typing.get_args(tp)
            if item_tp is Step:
                return parse_steps(value)
            if isinstance(value, str):
                value = split_list(value)
            if not isinstance(value, (list, tuple)):
                value = [value]
            return tuple(coerce(path, item_tp, v) for v in value)
        if tp is bool:
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.lower() in ("true", "1", "yes", "on"):
                return True
            if isinstance(value, str) and value.lower() in ("false", "0", "no", "off"):
                return False
            raise ValueError("expected true or false")
        if tp is int:
            if isinstance(value, bool):
                raise ValueError("expected an integer")
            if isinstance(value, float):
                if not value.is_integer():
                    raise ValueError("expected an integer")
                return int(value)
            return int(value)
        if tp is float:
            if isinstance(value, bool):
                raise ValueError("expected a number")
            return float(value)
        if tp is str:
            if not isinstance(value, str):
                raise ValueError("expected a string")
            return value
    except SpecError:
        raise  # an item of a list, already named
    except (TypeError, ValueError) as e:
        raise SpecError(f"{path}: cannot use {value!r}: {e}") from None
    raise TypeError(f"unsupported field type {tp!r}")


def _validate(path: str, fl: dataclasses.Field, v: Any) -> None:
    choices = fl.metadata.get("choices")
    check = fl.metadata.get("check")
    if choices is not None and v not in choices:
        raise SpecError(f"{path}: {v!r} is not allowed; choose one of: {', '.join(map(str, choices))}")
    values = v if isinstance(v, tuple) else (v,)
    if check == "splits":
        unknown = [x for x in values if x not in ("train", "test")]
        if unknown:
            raise SpecError(f"{path}: unknown split {unknown[0]!r}; choose train, test or train,test")
        if not values or len(set(values)) != len(values):
            raise SpecError(f"{path}: name each split once, at least one of train and test; got {v!r}")
    for x in values:
        if isinstance(x, float) and not math.isfinite(x):
            raise SpecError(f"{path}: must be a finite number, got {v!r}")
        if check == "unit" and not 0.0 <= x < 1.0:
            raise SpecError(f"{path}: must lie in [0, 1), got {v!r}")
        if check == "positive" and not x > 0:
            raise SpecError(f"{path}: must be positive, got {v!r}")
        if check == "nonneg" and not x >= 0:
            raise SpecError(f"{path}: must be zero or positive, got {v!r}")
        if check == "fraction" and not 0.0 < x < 1.0:
            raise SpecError(f"{path}: must lie strictly between 0 and 1, got {v!r}")
        if check in _CATALOGUES and _CATALOGUES[check] and not _CATALOGUES[check][0](x):
            known = _CATALOGUES[check][1]()
            if check == "alteration":
                raise SpecError(f"{path}: {x!r} is not allowed; choose one of: {', '.join(known)}")
            listed = {"model": " (rewind models lists them, plugins included)", "dataset": " (rewind datasets)",
                      "criterion": " (rewind criteria)"}[check]
            raise SpecError(f"{path}: unknown {check} {x!r}; known: {', '.join(known)}{listed}")
        if check == "rate" and not 0.0 <= x < 1.0:
            raise SpecError(f"{path}: must lie in [0, 1) (0 means: use prune.fraction), got {v!r}")


# The layers above register what model.name, data.name and prune.criterion may be (models/registry.py,
# data/registry.py, prune/criteria.py) when they are imported: the spec, a value layer, does not import
# them. Until they are, those names are checked when the run is built.
_CATALOGUES: dict[str, list] = {"model": [], "dataset": [], "criterion": [], "alteration": []}


def register_model_catalogue(known, names) -> None:
    """``known(name) -> bool`` and ``names() -> list[str]``: the models that model.name may name."""
    _CATALOGUES["model"][:] = [known, names]


def register_dataset_catalogue(known, names) -> None:
    _CATALOGUES["dataset"][:] = [known, names]


def register_criterion_catalogue(known, names) -> None:
    _CATALOGUES["criterion"][:] = [known, names]


def register_alteration_catalogue(known, names) -> None:
    _CATALOGUES["alteration"][:] = [known, names]


# What a spec's components depend on beyond their names: the code of a plugin's model, dataset or
# criterion, the contents of a data.path file. The registries register a function
# ``identity(spec) -> {"model.name": digest, ...}``; it joins the canonical form (so every key made
# from it: runs, studies, score sets) and is empty for rewind's own components (old keys unchanged).
_IDENTITIES: list = []


def register_identity(fn) -> None:
    _IDENTITIES.append(fn)


def identity(spec: "Spec") -> dict[str, str]:
    out: dict[str, str] = {}
    for fn in _IDENTITIES:
        out.update(fn(spec))
    return dict(sorted(out.items()))


# Upper bounds on counts given on the command line or to the API: far above any real study, low
# enough that a typo cannot ask for 10^25 members.
MAX_REPLICATES, MAX_LEVELS, MAX_COPIES, MAX_POINTS = 10_000, 500, 1_000, 100_000


def check_range(name: str, value: int, low: int, high: int) -> int:
    """``value`` if low <= value <= high, else a SpecError naming ``name`` and the range."""
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SpecError(f"{name} must be an integer from {low:,} to {high:,}, got {value!r}")
    return value


def split_list(text: str) -> list[str]:
    """'a,b,c' -> ['a', 'b', 'c']; '' or '()' -> []; an empty element ('a,,b', 'a,') is refused."""
    if text.strip() in ("", "()"):
        return []
    items = [v.strip() for v in text.split(",")]
    if any(not v for v in items):
        raise ValueError(f"empty element in the list {text!r}; write items separated by single commas")
    return items


def _build_section(name: str, sec_type: type, base: Any, values: dict) -> Any:
    hints = _hints(sec_type)
    known = {fl.name: fl for fl in dataclasses.fields(sec_type)}
    changes = {}
    for key, raw in values.items():
        if key not in known:
            raise SpecError(f"unknown field {name}.{key}; fields of {name!r} are: {', '.join(known)}")
        changes[key] = coerce(f"{name}.{key}", hints[key], raw)
    try:
        return dataclasses.replace(base, **changes)
    except ValueError as e:
        raise SpecError(str(e)) from None


def apply_overrides(spec: Spec, overrides: dict[str, Any]) -> Spec:
    """Apply ``{"section.field": value}`` overrides, validating every one."""
    grouped: dict[str, dict[str, Any]] = {}
    for path, value in overrides.items():
        parts = path.split(".")
        if len(parts) != 2:
            raise SpecError(f"{path!r}: fields are addressed as section.field, e.g. train.lr; see --help")
        grouped.setdefault(parts[0], {})[parts[1]] = value
    kwargs = {}
    types = _section_types()
    for sec, values in grouped.items():
        if sec not in types:
            raise SpecError(f"unknown spec section {sec!r} in {sec}.{next(iter(values))}; sections are: {', '.join(types)}")
        kwargs[sec] = _build_section(sec, types[sec], getattr(spec, sec), values)
    return dataclasses.replace(spec, **kwargs)


def parse_assignments(items: list[str]) -> dict[str, str]:
    """``["train.lr=0.05", ...]`` -> ``{"train.lr": "0.05"}`` with clear errors."""
    out = {}
    for item in items:
        if "=" not in item:
            raise SpecError(f"--set {item!r}: write FIELD=VALUE, e.g. --set train.lr=0.05")
        k, v = item.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def field_help() -> list[tuple[str, str, str]]:
    """(dotted path, default, description) for every field, for --help."""
    rows = []
    for sec, tp in _section_types().items():
        for fl in dataclasses.fields(tp):
            default = _to_json(fl.default)
            if isinstance(default, list):
                default = ",".join(map(str, default)) or "(empty)"
            doc = fl.metadata.get("doc", "")
            if fl.metadata.get("choices"):
                doc += f" [{'|'.join(fl.metadata['choices'])}]"
            rows.append((f"{sec}.{fl.name}", str(default), doc))
    return rows


def load_toml(path: str) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef]
    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise SpecError(f"--config: no such file {path!r}") from None
    except IsADirectoryError:
        raise SpecError(f"--config: {path!r} is a directory; give a TOML file") from None
    except PermissionError:
        raise SpecError(f"--config: {path!r} cannot be read (permission denied)") from None
    except OSError as e:   # a file where a folder should be, a name too long, ...
        raise SpecError(f"--config: {path!r} cannot be read ({e.strerror or e})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as e:
        raise SpecError(f"--config {path}: not valid TOML: {e}") from None


def flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    """Nested TOML tables -> dotted overrides."""
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = v
    return out


# ---- probe schedules (probe.schedule): parsed here, with the spec, so that the value layer needs
# nothing from the analysis layer; analysis/probes.py fires the probes at these steps.
_SEGMENT = re.compile(r"^\s*([^:]+?)\s*(?::\s*(.+?)\s*)?$")


def parse_schedule(text: str) -> list[tuple[Step, Step | None]]:
    """'1it:100it,10it:1000it,100it' -> [(every 1 until 100), (every 10 until 1000), (every 100)]."""
    segments = []
    for part in [p for p in text.split(",") if p.strip()]:
        m = _SEGMENT.match(part)
        try:
            every = Step.parse(m.group(1))
            until = Step.parse(m.group(2)) if m.group(2) else None
        except (ValueError, AttributeError):
            raise SpecError(f"probe.schedule: cannot read {part!r}; write EVERY:UNTIL segments and a last EVERY, "
                            f"e.g. 1it:100it,10it:1000it,100it") from None
        if every == Step(0, 0):
            raise SpecError(f"probe.schedule: {part!r} probes every 0 steps")
        if segments and segments[-1][1] is None:
            raise SpecError("probe.schedule: only the last segment may leave out its end (EVERY:UNTIL)")
        segments.append((every, until))
    if not segments:
        raise SpecError("probe.schedule: empty")
    return segments


def probe_steps(text: str, ipe: int, start: int, end: int) -> list[int]:
    """The iterations in [start, end] at which probes fire (start and end included)."""
    out = {start, end}
    lo = 0
    for every, until in parse_schedule(text):
        hi = end if until is None else min(end, until.iterations(ipe))
        out.update(range(lo, hi + 1, every.iterations(ipe)))
        lo = hi
    return sorted(t for t in out if start <= t <= end)
