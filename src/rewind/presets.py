"""Named recipes. A preset is a Spec; ``--set`` and ``--config`` change its fields."""
from __future__ import annotations

from dataclasses import dataclass

from .spec import DataSpec, ModelSpec, PruneSpec, Spec, SpecError, TrainSpec
from .step import Step, parse_steps


@dataclass(frozen=True)
class Preset:
    name: str
    spec: Spec
    doc: str


PRESETS: dict[str, Preset] = {}


def register_preset(name: str, spec: Spec, doc: str) -> None:
    PRESETS[name] = Preset(name, spec, doc)


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise SpecError(f"--preset: unknown preset {name!r}; known presets: {', '.join(sorted(PRESETS))}")
    return PRESETS[name]


_MNIST1D_TRAIN = TrainSpec(
    optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=5e-4,
    steps=Step.parse("4000it"), milestones=parse_steps("2000it,3000it"), gamma=0.1,
    eval_every=Step.parse("200it"),
)

register_preset(
    "mnist1d_mlp",
    Spec(data=DataSpec("mnist1d", batch_size=100), model=ModelSpec("mlp", widths=(100, 100)),
         train=_MNIST1D_TRAIN, prune=PruneSpec("global", 0.2)),
    "MLP 40-100-100-10 on MNIST-1D (4,000 train / 1,000 test), SGD 0.1 momentum 0.9, wd 5e-4, "
    "batch 100, 4,000 it (100 epochs), x0.1 at 2,000 and 3,000 it. Reaches about 69% test accuracy "
    "(Greydanus 2020 reports 68% for an MLP).",
)
register_preset(
    "mnist1d_conv",
    Spec(data=DataSpec("mnist1d", batch_size=100), model=ModelSpec("conv1d", widths=(32, 32, 32)),
         train=TrainSpec(**{**_MNIST1D_TRAIN.__dict__, "lr": 0.05}), prune=PruneSpec("global", 0.2)),
    "1-D CNN (3 conv layers of 32 channels, linear classifier) on MNIST-1D, SGD 0.05 momentum 0.9, "
    "wd 5e-4, batch 100, 4,000 it, x0.1 at 2,000 and 3,000 it. Reaches about 94% test accuracy "
    "(Greydanus 2020 reports 94% for a CNN).",
)
register_preset(
    "digits_cnn",
    Spec(data=DataSpec("digits", batch_size=64), model=ModelSpec("digits_cnn", widths=(16, 32)),
         train=TrainSpec(optimizer="sgd", lr=0.05, momentum=0.9, weight_decay=5e-4, steps=Step.parse("30ep"),
                         milestones=parse_steps("15ep,22ep"), eval_every=Step.parse("2ep")),
         prune=PruneSpec("global", 0.2)),
    "Small CNN (3x3 convs of 16 and 32 channels, 2x2 max-pool, linear) on scikit-learn's 8x8 digits "
    "(1,438 train / 359 test), SGD 0.05 momentum 0.9, wd 5e-4, batch 64, 30 epochs, x0.1 at 15 and 22. "
    "Reaches about 98-99% test accuracy.",
)


# ---- the testbed (docs/testbed.md): residual networks where the rewinding phenomenon is looked for
_TESTBED_TRAIN = TrainSpec(optimizer="sgd", lr=0.8, momentum=0.9, weight_decay=5e-4, steps=Step.parse("2000it"),
                           milestones=parse_steps("1000it,1500it"), gamma=0.1, eval_every=Step.parse("0it"))
_TESTBED = Spec(data=DataSpec("mnist1d", batch_size=128, train_size=4000, test_size=4000),
                model=ModelSpec("resnet", widths=(8,), depth=8), train=_TESTBED_TRAIN,
                prune=PruneSpec("global", 0.36))
register_preset(
    "mnist1d_resnet", _TESTBED,
    "ResNet-8 (1-D, widths 8/16/32, BatchNorm, 7.1K prunable weights) on MNIST-1D (4,000 train / 4,000 test), SGD 0.8 "
    "momentum 0.9, wd 5e-4, batch 128, no warmup, 2,000 it (64 epochs), x0.1 at 1,000 and 1,500 it; global "
    "pruning 36% per level (two of the papers' 20% levels). The testbed search's choice (docs/testbed.md): dense "
    "instability is ~30 points at k = 0 and below 0.5 by k = 200 it (10%). Dense test accuracy about 98.4%.",
)
register_preset(
    "mnist1d_resnet_warmup",
    _TESTBED.replace(**{"train.warmup": "200it"}),
    "mnist1d_resnet with a 200-iteration linear learning-rate warmup, the 'stabilizing' paper's remedy: with "
    "warmup, rewinding to k = 0 should work again (docs/testbed.md for what we measured).",
)
_DIGITS_RESNET = Spec(data=DataSpec("digits", batch_size=64), model=ModelSpec("resnet", widths=(8,), depth=8),
                      train=TrainSpec(**{**_TESTBED_TRAIN.__dict__, "lr": 0.4}), prune=PruneSpec("global", 0.36))
register_preset(
    "digits_resnet", _DIGITS_RESNET,
    "ResNet-8 (2-D, widths 8/16/32, BatchNorm) on scikit-learn's 8x8 digits (1,438 / 359), SGD 0.4 momentum 0.9, "
    "wd 5e-4, batch 64, 2,000 it (89 epochs), x0.1 at 1,000 and 1,500 it; global pruning 36% per level. The "
    "search's most accurate digits setting (about 99.7%); digits is stable from k = 0 at every learning rate "
    "searched (docs/testbed.md), so it is not a setting where rewinding matters.",
)
register_preset(
    "digits_resnet_warmup", _DIGITS_RESNET.replace(**{"train.warmup": "200it"}),
    "digits_resnet with a 200-iteration linear learning-rate warmup.",
)

# ---- the papers' recipes (see PAPERS.md); accuracies are the papers' reports ------------------
_CIFAR_SGD = TrainSpec(optimizer="sgd", lr=0.1, momentum=0.9, weight_decay=1e-4, steps=Step.parse("160ep"),
                       milestones=parse_steps("80ep,120ep"), gamma=0.1, eval_every=Step.parse("4ep"))

register_preset(
    "mnist_lenet_300_100",
    Spec(data=DataSpec("mnist", batch_size=60), model=ModelSpec("lenet_300_100"),
         train=TrainSpec(optimizer="adam", lr=1.2e-3, steps=Step.parse("50000it"), eval_every=Step.parse("1000it")),
         prune=PruneSpec("layerwise", 0.2, output_fraction=0.1)),
    "LeNet-300-100 on MNIST (Frankle & Carbin 2019): Adam 1.2e-3, batch 60, 50K iterations; layerwise "
    "pruning, hidden layers 20% and the output layer 10% per level. Dense test accuracy about 98%; "
    "winning tickets match down to about 3.5% of the weights (unverified).",
)
for _name, _lr, _its, _conv in (("conv2", 2e-4, 20000, 0.1), ("conv4", 3e-4, 25000, 0.1), ("conv6", 3e-4, 30000, 0.15)):
    register_preset(
        f"cifar_{_name}",
        Spec(data=DataSpec("cifar10", batch_size=60), model=ModelSpec(_name),
             train=TrainSpec(optimizer="adam", lr=_lr, steps=Step(0, _its), eval_every=Step.parse("1000it")),
             prune=PruneSpec("layerwise", 0.2, conv_fraction=_conv, fc_fraction=0.2, output_fraction=0.1)),
        f"{_name.capitalize()} on CIFAR-10 (Frankle & Carbin 2019): Adam {_lr:g}, batch 60, {_its // 1000}K "
        f"iterations; layerwise pruning: conv {int(_conv * 100)}%, fc 20%, output 10% per level "
        "(accuracies unverified).",
    )
register_preset(
    "cifar_resnet_20",
    Spec(data=DataSpec("cifar10", batch_size=128, augment="crop_flip"), model=ModelSpec("cifar_resnet_20"),
         train=_CIFAR_SGD, prune=PruneSpec("global", 0.2)),
    "ResNet-20 on CIFAR-10 (Frankle et al. 2020): SGD 0.1, momentum 0.9, wd 1e-4, batch 128, 160 epochs "
    "(~62.5K it), x0.1 at 80 and 120 epochs, random crop and flip; global pruning 20% per level, nothing "
    "excluded. Dense test accuracy 91.5-91.7%; rewinding to k >= 500 it matches down to 16.8% weights remaining.",
)
register_preset(
    "cifar_vgg_16",
    Spec(data=DataSpec("cifar10", batch_size=128, augment="crop_flip"), model=ModelSpec("cifar_vgg_16"),
         train=_CIFAR_SGD, prune=PruneSpec("global", 0.2, exclude=("out.weight",))),
    "VGG-16 (BatchNorm) on CIFAR-10 (Frankle et al. 2020): as cifar_resnet_20; global pruning 20% per "
    "level with the output layer excluded. Dense test accuracy about 93.7%.",
)
register_preset(
    "imagenet_resnet_50",
    Spec(data=DataSpec("imagenet", batch_size=1024, augment="random_resized_crop"),
         model=ModelSpec("imagenet_resnet_50"),
         train=TrainSpec(lr=0.4, momentum=0.9, weight_decay=1e-4, steps=Step.parse("90ep"), warmup=Step.parse("5ep"),
                         milestones=parse_steps("30ep,60ep,80ep"), eval_every=Step.parse("1ep")),
         prune=PruneSpec("global", 0.2)),
    "ResNet-50 on ImageNet (Frankle et al. 2020, linear mode connectivity / rewinding): SGD 0.4, momentum 0.9, "
    "wd 1e-4, batch 1024, 5-epoch linear warmup, 90 epochs, x0.1 at 30, 60 and 80 epochs, random-resized-crop "
    "224 and flip; global pruning 20% per level. Dense top-1 about 76.1%; rewinding to epoch 4-6 keeps "
    "73-74% at 10% of weights remaining, where k = 0 gives 69.4%. Streams JPEGs from "
    "<data-root>/imagenet/{train,val}/<wnid>/ (see rewind.data.imagenet); a GPU job.",
)


# ---- Hu et al. (2020): binary tasks for the network against its linear model (rewind linear, docs/linear.md).
# Plain SGD (no momentum, no weight decay); `rewind linear` trains full-batch gradient descent at train.lr
# by default and the preset's batches with --sgd.
def _hu_train(lr: float, steps: str) -> TrainSpec:
    return TrainSpec(optimizer="sgd", lr=lr, momentum=0.0, weight_decay=0.0, steps=Step.parse(steps),
                     eval_every=Step.parse("0it"))


register_preset(
    "gaussian_two_layer",
    Spec(data=DataSpec("gaussian", batch_size=128, dim=100), model=ModelSpec("two_layer", widths=(1024,)),
         train=_hu_train(1.0, "1000it"), prune=PruneSpec("global", 0.2)),
    "Hu et al.'s two-layer network f(x) = v.relu(Wx/sqrt(d))/sqrt(m), m = 1,024, NTK parametrisation, on "
    "Gaussian inputs (d = 100, 20,000 train / 2,000 test) labelled by a fixed two-layer teacher; learning rate "
    "1.0, 1,000 it, no momentum or weight decay.",
)
# Learning rates: about a third of the full-batch stability limit 2 / lambda_max(Theta_0 / n) measured on each
# task's NTK at initialisation (docs/linear.md); larger rates diverge in full-batch gradient descent.
for _data, _dname, _classes, _mlp, _cnn, _lrs in (
        ("mnist1d", "MNIST-1D classes 0 vs 1", (0, 1), (256, 256, 256), ("conv1d", (32, 32, 32)), (0.002, 0.002)),
        ("digits", "digits 0 vs 1", (0, 1), (256, 256, 256), ("digits_cnn", (16, 32)), (0.002, 0.0005)),
        ("cifar10", "CIFAR-10 cats vs horses (10,000 train / 2,000 test; the paper's task)", (3, 7),
         (512, 512, 512), ("conv2", ()), (0.0005, 0.0005))):
    _prefix = "cifar10_cats_horses" if _data == "cifar10" else f"{_data}_binary"
    for _kind, _model, _lr in (("mlp", ModelSpec("mlp", widths=_mlp), _lrs[0]),
                               ("cnn", ModelSpec(_cnn[0], widths=_cnn[1]) if _cnn[1] else ModelSpec(_cnn[0]), _lrs[1])):
        register_preset(
            f"{_prefix}_{_kind}",
            Spec(data=DataSpec(_data, batch_size=128, classes=_classes), model=_model,
                 train=_hu_train(_lr, "2000it"), prune=PruneSpec("global", 0.2)),
            f"{'4-layer MLP (widths ' + ','.join(map(str, _mlp)) + ')' if _kind == 'mlp' else _model.name} on "
            f"{_dname} for the network against its linear model (rewind linear): learning rate {_lr}, 2,000 it, "
            "no momentum or weight decay" + (" (rate not yet measured against this task's NTK)" if _data == "cifar10"
                                              else "") + ".",
        )
