"""The papers' models, dataset loaders (on files written in the official formats) and recipes."""
import gzip
import io
import pickle
import struct
import tarfile

import numpy as np
import pandas as pd
import pytest
import torch

import rewind
from rewind.cli import main
from rewind.data import augment, core, load_data
from rewind.data.files import DataError
from rewind.models import create_model
from rewind.spec import DataSpec

PARAMS = {  # pinned: the literature's counts where they exist (ResNet-20 ~0.27M, VGG-16 ~14.7M)
    "lenet_300_100": ((1, 28, 28), 10, 266_610),
    "conv2": ((3, 32, 32), 10, 4_301_642),
    "conv4": ((3, 32, 32), 10, 2_425_930),
    "conv6": ((3, 32, 32), 10, 2_262_602),
    "cifar_resnet_20": ((3, 32, 32), 10, 272_474),
    "cifar_resnet_32": ((3, 32, 32), 10, 466_906),
    "cifar_resnet_56": ((3, 32, 32), 10, 855_770),
    "cifar_resnet_110": ((3, 32, 32), 10, 1_730_714),
    "cifar_vgg_11": ((3, 32, 32), 10, 9_231_114),
    "cifar_vgg_13": ((3, 32, 32), 10, 9_416_010),
    "cifar_vgg_16": ((3, 32, 32), 10, 14_728_266),
    "cifar_vgg_19": ((3, 32, 32), 10, 20_040_522),
    "imagenet_resnet_18": ((3, 224, 224), 1000, 11_689_512),
    "imagenet_resnet_50": ((3, 224, 224), 1000, 25_557_032),
}


@pytest.mark.parametrize("name", sorted(PARAMS))
def test_models_forward_backward_and_parameter_counts(name):
    shape, classes, count = PARAMS[name]
    model = create_model(rewind.ModelSpec(name), shape, classes, seed=0)
    assert sum(p.numel() for p in model.parameters()) == count
    if "imagenet" in name:
        shape = (3, 64, 64)  # the architecture is size-agnostic; keep the test fast
    out = model(torch.randn(2, *shape))
    assert out.shape == (2, classes)
    out.sum().backward()
    assert "out.weight" in model.prunable() and all(n.endswith("weight") for n in model.prunable())


def test_width_multiplier_and_unknown_names():
    wide = create_model(rewind.ModelSpec("cifar_resnet_20", width=2.0), (3, 32, 32), 10)
    assert 4 * 272_474 * 0.9 < sum(p.numel() for p in wide.parameters()) < 4 * 272_474 * 1.1
    assert create_model(rewind.ModelSpec("lenet_50_20_10"), (1, 28, 28), 10).out.in_features == 10
    for bad in ("cifar_resnet_21", "resnet_20", "cifar_vgg_12"):
        with pytest.raises(rewind.SpecError, match="model.name"):
            rewind.Spec().replace(**{"model.name": bad})


# ---- files in the official formats --------------------------------------------------------------
def write_idx(folder, n_train=12, n_test=6, seed=0):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, n, dtype=np.uint8)
        with gzip.open(folder / f"{prefix}-images-idx3-ubyte.gz", "wb") as fh:
            fh.write(struct.pack(">IIII", 2051, n, 28, 28) + images.tobytes())
        with gzip.open(folder / f"{prefix}-labels-idx1-ubyte.gz", "wb") as fh:
            fh.write(struct.pack(">II", 2049, n) + labels.tobytes())
    return images, labels


def cifar_batch(n, rng, key=b"labels", classes=10):
    # what the official python-2 pickles hold: a dict with bytes keys, uint8 rows of 3072 values
    return {b"batch_label": b"batch", b"labels" if key == b"labels" else key: [int(v) for v in rng.integers(0, classes, n)],
            b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8), b"filenames": [b"x.png"] * n}


def write_cifar(root, n=8, name="cifar10"):
    rng = np.random.default_rng(0)
    root.mkdir(parents=True, exist_ok=True)
    if name == "cifar10":
        folder, files, key, classes = "cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"], b"labels", 10
        archive = root / "cifar-10-python.tar.gz"
    else:
        folder, files, key, classes = "cifar-100-python", ["train", "test"], b"fine_labels", 100
        archive = root / "cifar-100-python.tar.gz"
    batches = {}
    with tarfile.open(archive, "w:gz") as tar:
        for f in files:
            batches[f] = cifar_batch(n, rng, key, classes)
            data = pickle.dumps(batches[f], protocol=2)
            info = tarfile.TarInfo(f"{folder}/{f}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return archive, batches


@pytest.fixture(autouse=True)
def _fresh_cache():
    core._DATA_CACHE.clear()
    yield
    core._DATA_CACHE.clear()


@pytest.mark.parametrize("name,folder", [("mnist", "mnist"), ("fashion_mnist", "fashion_mnist")])
def test_idx_loader(tmp_path, name, folder):
    images, labels = write_idx(tmp_path / folder)
    data = load_data(DataSpec(name), tmp_path)
    assert data.x_train.shape == (12, 1, 28, 28) and data.x_test.shape == (6, 1, 28, 28)
    assert data.x_test.dtype == torch.uint8 and torch.equal(data.x_test[:, 0], torch.from_numpy(images))  # as stored
    assert torch.equal(data.y_test, torch.from_numpy(labels.astype(np.int64)))
    raw = data.inputs("test")[:, 0] * {"mnist": 0.3081, "fashion_mnist": 0.3530}[name] + {"mnist": 0.1307, "fashion_mnist": 0.2860}[name]
    assert torch.allclose(raw * 255, torch.from_numpy(images).float(), atol=1e-3)


def test_idx_errors(tmp_path):
    with pytest.raises(DataError, match=r"no directory .*mnist.*rewind data download mnist"):
        load_data(DataSpec("mnist"), tmp_path)
    write_idx(tmp_path / "mnist")
    path = tmp_path / "mnist" / "t10k-images-idx3-ubyte.gz"
    raw = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(raw[:-100]))          # truncated body
    with pytest.raises(DataError, match="truncated"):
        load_data(DataSpec("mnist"), tmp_path)
    path.write_bytes(b"not gzip")
    with pytest.raises(DataError, match="gzip"):
        load_data(DataSpec("mnist"), tmp_path)
    path.unlink()
    with pytest.raises(DataError, match="missing .*t10k-images"):
        load_data(DataSpec("mnist"), tmp_path)


def test_idx_labels_out_of_range_are_refused_naming_the_file(tmp_path, capsys):
    write_idx(tmp_path / "mnist")
    path = tmp_path / "mnist" / "train-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(path.read_bytes()))
    raw[8 + 3] = 200  # the fourth label
    path.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz: label 200 is out of range"):
        load_data(DataSpec("mnist"), tmp_path)
    code = main(["train", "--preset", "mnist_lenet_300_100", "--set", "data.batch_size=4", "--set", "train.steps=2it",
                 "--data-root", str(tmp_path), "--root", str(tmp_path / "runs"), "--quiet"])
    err = capsys.readouterr().err
    assert code == 1 and "label 200" in err and "Traceback" not in err and not (tmp_path / "runs").exists()


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_cifar_loader(tmp_path, name):
    _, batches = write_cifar(tmp_path, name=name)
    data = load_data(DataSpec(name), tmp_path)
    n_train = 40 if name == "cifar10" else 8
    assert data.x_train.shape == (n_train, 3, 32, 32) and data.x_test.shape == (8, 3, 32, 32)
    key = b"labels" if name == "cifar10" else b"fine_labels"
    test = batches["test_batch" if name == "cifar10" else "test"]
    assert data.y_test.tolist() == test[key]
    assert data.num_classes == (10 if name == "cifar10" else 100)
    first = torch.from_numpy(test[b"data"][0].reshape(3, 32, 32)).float() / 255
    from rewind.data.files import STATS
    mean, std = (torch.tensor(v).view(3, 1, 1) for v in STATS[name])
    assert data.x_test.dtype == torch.uint8 and data.x_test.element_size() == 1
    assert torch.allclose(data.inputs("test")[0], (first - mean) / std, atol=1e-6)


def test_cifar_errors_and_restricted_unpickling(tmp_path):
    with pytest.raises(DataError, match=r"cifar-10-python.tar.gz.*rewind data download cifar10"):
        load_data(DataSpec("cifar10"), tmp_path)
    archive, _ = write_cifar(tmp_path)
    archive.write_bytes(archive.read_bytes()[:200])       # truncated archive
    with pytest.raises(DataError, match="damaged or truncated"):
        load_data(DataSpec("cifar10"), tmp_path)
    # a batch that tries to run code is refused, not executed
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    for f in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        (folder / f).write_bytes(pickle.dumps({b"data": Evil()}, protocol=2))
    with pytest.raises(DataError, match=r"refusing to load (__builtin__|builtins)\.print"):
        load_data(DataSpec("cifar10"), tmp_path)


def test_cli_trains_cifar_resnet_20_on_tiny_files(tmp_path, capsys):
    write_cifar(tmp_path / "data", n=16)
    code = main(["train", "--preset", "cifar_resnet_20", "--set", "train.steps=20it", "--set", "data.batch_size=8",
                 "--data-root", str(tmp_path / "data"), "--root", str(tmp_path / "runs"), "--quiet"])
    assert code == 0, capsys.readouterr().err
    assert "cifar_resnet_20" in capsys.readouterr().out
    assert main(["train", "--preset", "cifar_resnet_20", "--data-root", str(tmp_path / "nothing"),
                 "--root", str(tmp_path / "runs")]) == 1  # missing dataset files: the environment
    err = capsys.readouterr().err
    assert "cifar-10-python.tar.gz" in err and "Traceback" not in err


# ---- augmentation ---------------------------------------------------------------------------------
def reference_crop_flip(x, seed, iteration):
    """One example at a time, from the same random draws."""
    dy, dx, flip = augment.draws(len(x), seed, iteration)
    out = torch.zeros_like(x)
    _, _, h, w = x.shape
    for i in range(len(x)):
        padded = torch.nn.functional.pad(x[i], (4, 4, 4, 4))
        img = padded[:, 4 + dy[i]:4 + dy[i] + h, 4 + dx[i]:4 + dx[i] + w]
        out[i] = img.flip(2) if flip[i] else img
    return out


def test_batched_augmentation_matches_the_per_sample_reference():
    x = torch.randn(64, 3, 32, 32)
    for seed, it in ((0, 0), (3, 17), (5, 1000)):
        assert torch.equal(augment.crop_flip(x, seed, it), reference_crop_flip(x, seed, it))
    assert not torch.equal(augment.crop_flip(x, 0, 1), augment.crop_flip(x, 0, 2))
    dy, dx, flip = augment.draws(10_000, 0, 0)
    assert set(dy.tolist()) == set(range(-4, 5)) and 0.45 < flip.float().mean() < 0.55
    with pytest.raises(ValueError, match="data.augment"):
        augment.apply("crop_flip", torch.randn(4, 40), 0, 0)


def test_paper_presets_exist_with_their_recipes():
    r20 = rewind.get_preset("cifar_resnet_20").spec
    assert (r20.train.lr, r20.train.momentum, r20.train.weight_decay, r20.data.batch_size) == (0.1, 0.9, 1e-4, 128)
    assert str(r20.train.steps) == "160ep" and [str(m) for m in r20.train.milestones] == ["80ep", "120ep"]
    assert rewind.get_preset("cifar_vgg_16").spec.prune.exclude == ("out.weight",)
    lenet = rewind.get_preset("mnist_lenet_300_100").spec
    assert lenet.train.optimizer == "adam" and lenet.prune.output_fraction == 0.1
    for name in ("cifar_conv2", "cifar_conv4", "cifar_conv6"):
        assert rewind.get_preset(name).spec.data.name == "cifar10"


def test_precision_and_device_are_recorded(tmp_path, capsys):
    run = rewind.train("mnist1d_mlp", {"train.steps": "60it", "train.precision": "bf16"}, root=tmp_path)
    m = run.metrics()
    acc = m[(m.metric == "accuracy") & (m.split == "train")].set_index("step").value
    assert acc[60] > acc[0] + 0.1
    assert run.weights(60)["out.weight"].dtype == torch.float32
    df = rewind.results(tmp_path)
    assert set(df.precision) == {"bf16"} and set(df.device) == {"cpu"}
    if not torch.cuda.is_available():
        assert main(["train", "--device", "cuda", "--root", str(tmp_path)]) == 2
        assert "CUDA is not available" in capsys.readouterr().err
    assert main(["train", "--device", "tpu", "--root", str(tmp_path)]) == 2


def test_compiled_training_matches_eager(tmp_path, capsys):
    """--compile (torch.compile of the training forward) on the CPU: close to the eager sequential
    loop, the engine recorded (and named in the key: compiled kernels round differently)."""
    sets = ["--set", "train.steps=30it", "--set", "train.eval_every=10it"]
    assert main(["train", "--preset", "mnist1d_mlp", *sets, "--compile", "--root", str(tmp_path / "c"), "--quiet"]) == 0
    assert main(["train", "--preset", "mnist1d_mlp", *sets, "--engine", "sequential", "--root", str(tmp_path / "e"),
                 "--quiet"]) == 0
    [compiled], [eager] = rewind.Store(tmp_path / "c").runs(), rewind.Store(tmp_path / "e").runs()
    assert compiled.summary()["engine"] == "sequential+compile" and eager.summary()["engine"] == "sequential"
    a, b = compiled.weights(30), eager.weights(30)
    for name in a:
        torch.testing.assert_close(a[name], b[name], rtol=1e-4, atol=1e-5)
    assert not torch.equal(a["out.weight"], compiled.weights(0)["out.weight"])
    df = rewind.results(tmp_path / "c")
    assert set(df.engine) == {"sequential+compile"}


_CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")


@pytest.mark.parametrize("engine, replicates, augment, device, optimizer", [
    ("sequential", 1, "crop_flip", "cpu", "sgd"), ("vectorised", 2, "crop_flip", "cpu", "sgd"),
    ("sequential", 1, "none", "cpu", "sgd"), ("vectorised", 2, "none", "cpu", "adam"),
    pytest.param("sequential", 1, "crop_flip", "cuda", "sgd", marks=_CUDA),
    pytest.param("vectorised", 2, "crop_flip", "cuda", "sgd", marks=_CUDA),
    pytest.param("vectorised", 2, "none", "cuda", "adam", marks=_CUDA)])
def test_uint8_images_train_as_the_normalised_floats(tmp_path, monkeypatch, engine, replicates, augment, device,
                                                     optimizer):
    """Training on CIFAR-format files kept as uint8 (normalised per batch, before augmentation) gives
    bit-identical weights and metrics to training on the same images normalised once as float32."""
    import dataclasses

    import importlib

    setup = importlib.import_module("rewind.train.setup")   # where check_spec loads the data

    write_cifar(tmp_path / "data", n=16)
    # Conv-2 at an eighth of its width (8 channels): the data path is the subject, 3x faster than at full width
    over = {"data.name": "cifar10", "model.name": "conv2", "model.width": 0.125, "data.batch_size": 8,
            "data.augment": augment, "train.steps": "12it", "train.eval_every": "6it", "train.optimizer": optimizer,
            "train.lr": 0.05 if optimizer == "sgd" else 1e-3}
    opts = rewind.TrainOptions(quiet=True, data_root=str(tmp_path / "data"), engine=engine, device=device)

    def train(root):
        core._DATA_CACHE.clear()
        runs = rewind.train(rewind.Spec().replace(**over), replicates=replicates, root=root, options=opts)
        return [(r.weights(12), r.metrics()) for r in runs]

    kept = train(tmp_path / "uint8")
    assert load_data(DataSpec("cifar10"), tmp_path / "data").x_train.dtype == torch.uint8
    original = setup.load_data

    def as_floats(spec, root=None):
        data = original(spec, root)
        return dataclasses.replace(data, x_train=data.inputs("train"), x_test=data.inputs("test"), pixels=None)

    monkeypatch.setattr(setup, "load_data", as_floats)
    floats = train(tmp_path / "float")
    for (wa, ma), (wb, mb) in zip(kept, floats):
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)
        pd.testing.assert_frame_equal(ma, mb)
