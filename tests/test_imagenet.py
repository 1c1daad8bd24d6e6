"""ImageNet: the folder-of-JPEGs loader, batched random-resized-crop, streaming training."""
import math
import random

import numpy as np
import pytest
import torch
from PIL import Image

import rewind
from rewind.cli import main
from rewind.data import imagenet, load_data
from rewind.data.files import DataError
from rewind.spec import DataSpec
from rewind.store import Store
from rewind.train import Member, TrainOptions
from rewind.exec import train_population

CLASSES = ["n01440764", "n01443537", "n01484850"]


def write_imagenet(root, per_class=4, val_per_class=2):
    """A train/val tree of JPEGs (and one PNG) of assorted sizes and aspect ratios."""
    rng = np.random.default_rng(0)
    sizes = [(40, 30), (24, 48), (64, 20), (33, 33), (50, 41)]
    for split, n in (("train", per_class), ("val", val_per_class)):
        for c, cls in enumerate(CLASSES):
            folder = root / "imagenet" / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                w, h = sizes[(i + c) % len(sizes)]
                img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
                ext = "png" if (split, c, i) == ("train", 0, 0) else "JPEG"
                img.save(folder / f"{cls}_{i}.{ext}")
            (folder / "notes.txt").write_text("not an image")
    return root


def spec_for(**over):
    return rewind.get_preset("imagenet_resnet_50").spec.replace(**{
        "model.name": "imagenet_resnet_18", "model.width": 0.125, "data.image_size": 32, "data.batch_size": 4,
        "train.steps": "6it", "train.warmup": "2it", "train.milestones": "4it", "train.eval_every": "3it",
        "train.lr": 0.05, **over})


def test_folder_tree_is_read_with_sorted_classes(tmp_path):
    write_imagenet(tmp_path)
    data = load_data(DataSpec("imagenet", image_size=32), tmp_path)
    assert data.classes == CLASSES and data.num_classes == 3 and data.input_shape == (3, 32, 32)
    assert len(data.train_files) == 12 and len(data.test_files) == 6
    assert data.y_train.tolist() == [0] * 4 + [1] * 4 + [2] * 4
    assert all(not f.endswith(".txt") for f in data.train_files)
    x, y = imagenet.load_train_batch(data, 0, 5, 0, "random_resized_crop", 0)
    assert x.shape == (5, 3, 32, 32) and x.dtype == torch.uint8 and len(y) == 5
    z = imagenet.normalise(x, torch.float32)
    assert z.dtype == torch.float32 and -3 < z.min() and z.max() < 3


def test_missing_damaged_and_mismatched_trees_give_clear_errors(tmp_path, capsys):
    with pytest.raises(DataError, match=r"no directory .*imagenet.*image-net\.org"):
        load_data(DataSpec("imagenet"), tmp_path / "nowhere")
    write_imagenet(tmp_path / "a")
    (tmp_path / "a" / "imagenet" / "val" / "n99999999").mkdir()
    with pytest.raises(DataError, match="only in val: \\['n99999999'\\]"):
        load_data(DataSpec("imagenet"), tmp_path / "a")
    # a truncated JPEG: an error naming the file when its batch is made, and no traceback from the CLI
    root = write_imagenet(tmp_path / "b")
    victim = root / "imagenet" / "train" / CLASSES[1] / f"{CLASSES[1]}_2.JPEG"
    victim.write_bytes(victim.read_bytes()[:40])
    data = load_data(DataSpec("imagenet", image_size=32), root)
    with pytest.raises(DataError, match=f"cannot read .*{victim.name}"):
        imagenet.load_train_batch(data, 0, 12, 0, "none", 0)
    args = ["train", "--preset", "imagenet_resnet_50", "--set", "model.name=imagenet_resnet_18",
            "--set", "data.image_size=32", "--set", "data.batch_size=12", "--set", "train.steps=2it",
            "--data-workers", "0", "--data-root", str(root), "--root", str(tmp_path / "runs"), "--quiet"]
    assert main(args) == 1  # a damaged dataset file: the environment, exit 1
    err = capsys.readouterr().err
    assert victim.name in err and "Traceback" not in err
    assert main(args[:-5] + ["--data-root", str(tmp_path / "nowhere"), "--root", str(tmp_path / "runs")]) == 1
    assert "image-net.org" in capsys.readouterr().err
    assert main(["data", "download", "imagenet", "--data-root", str(tmp_path / "nowhere")]) == 1
    assert "cannot be downloaded automatically" in capsys.readouterr().err


def reference_box(width, height, draws, j):
    """One image at a time: the usual random-resized-crop algorithm on the same draws."""
    area = width * height
    for a in range(imagenet.ATTEMPTS):
        target = area * draws["area"][j, a].item()
        ratio = math.exp(draws["log_ratio"][j, a].item())
        w = int(round(math.sqrt(target * ratio)))
        h = int(round(math.sqrt(target / ratio)))
        if 0 < w <= width and 0 < h <= height:
            top = int(draws["top"][j, a].item() * (height - h + 1))
            left = int(draws["left"][j, a].item() * (width - w + 1))
            return [left, top, w, h]
    in_ratio = width / height
    if in_ratio < 3 / 4:
        w, h = width, int(round(width / (3 / 4)))
    elif in_ratio > 4 / 3:
        w, h = int(round(height * 4 / 3)), height
    else:
        w, h = width, height
    return [(width - w) // 2, (height - h) // 2, w, h]


def test_batched_random_resized_crop_matches_the_per_sample_reference():
    rnd = random.Random(0)
    # ordinary photos, and extreme strips where no attempt fits and the centre fallback is used
    sizes = [(rnd.randint(20, 600), rnd.randint(20, 600)) for _ in range(500)] + [(1000, 3), (3, 1000), (2, 2)] * 20
    draws = imagenet.crop_draws(len(sizes), seed=7, iteration=123)
    boxes = imagenet.resized_crop_boxes(torch.tensor(sizes), draws)
    expected = [reference_box(w, h, draws, j) for j, (w, h) in enumerate(sizes)]
    assert boxes.tolist() == expected
    left, top, w, h = boxes.T
    width, height = torch.tensor(sizes).T
    assert bool(((left >= 0) & (top >= 0) & (left + w <= width) & (top + h <= height) & (w > 0) & (h > 0)).all())
    frac = (w * h).double() / (width * height).double()
    big = (width >= 200) & (height >= 200)  # (on small images rounding moves the area a little)
    assert frac[big].min() >= 0.075 and frac.max() <= 1.0 and frac[big].max() > 0.9
    assert not torch.equal(boxes, imagenet.resized_crop_boxes(torch.tensor(sizes), imagenet.crop_draws(len(sizes), 7, 124)))


def test_streamed_batches_do_not_depend_on_workers_or_start(tmp_path):
    data = load_data(DataSpec("imagenet", image_size=16), write_imagenet(tmp_path))
    args = (5, 3, "random_resized_crop", 11)   # batch, order seed, augmentation, augmentation seed
    serial = list(imagenet.loader(imagenet.TrainBatches(data, 0, 6, *args), workers=0, pin=False))
    parallel = list(imagenet.loader(imagenet.TrainBatches(data, 0, 6, *args), workers=2, pin=False))
    later = list(imagenet.loader(imagenet.TrainBatches(data, 4, 6, *args), workers=0, pin=False))
    assert [t for t, _, _ in serial] == list(range(6))
    for (t1, x1, y1), (t2, x2, y2) in zip(serial, parallel):
        assert t1 == t2 and torch.equal(x1, x2) and torch.equal(y1, y2)
    for (t1, x1, y1), (t2, x2, y2) in zip(serial[4:], later):
        assert t1 == t2 and torch.equal(x1, x2) and torch.equal(y1, y2)
    # an epoch (3 batches of 5 from 12 images, the last one short) visits every image once
    assert sorted(torch.cat([y for _, _, y in serial[:3]]).tolist()) == sorted(data.y_train.tolist())
    assert not torch.equal(serial[0][1], serial[3][1][:5])


class Crash(Exception):
    pass


def test_imagenet_training_streams_resumes_to_identical_bits_and_reports(tmp_path):
    root = write_imagenet(tmp_path / "data")
    spec = spec_for()
    opts = dict(quiet=True, data_root=str(root), data_workers=2, resume_every=2)
    [ref] = train_population([Member(spec)], Store(tmp_path / "ref"), TrainOptions(**opts))

    def crash(run, it):
        if it == 5:
            raise Crash

    store = Store(tmp_path / "crash")
    with pytest.raises(Crash):
        train_population([Member(spec)], store, TrainOptions(**opts, on_iteration=crash))
    [run] = train_population([Member(spec)], store, TrainOptions(**opts))
    a, b = run.load(6), ref.load(6)
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert run.metrics().equals(ref.metrics())
    m = ref.metrics()
    assert set(m.step) == {0, 3, 6} and set(m.split) == {"train", "test"}
    acc = m[(m.metric == "accuracy") & (m.split == "test")].value
    assert all(v in {i / 6 for i in range(7)} for v in acc)  # 6 validation images
    with pytest.raises(ValueError, match="vectorised needs a dataset held in memory"):
        train_population([Member(spec.replace(**{"seeds.init": 5}))], store,
                         TrainOptions(**opts, engine="vectorised"))
    with pytest.raises(ValueError, match="data.augment: 'crop_flip' is not available for imagenet"):
        train_population([Member(spec.replace(**{"data.augment": "crop_flip"}))], store, TrainOptions(**opts))


def test_lottery_study_on_streamed_imagenet_from_the_cli(tmp_path, capsys):
    """A study finds its data under --data-root (no $REWIND_DATA) and prunes a streamed ResNet;
    instability streams its copies and path; the linear model refuses a streamed dataset."""
    root = write_imagenet(tmp_path / "data")
    sets = ["--set", "model.name=imagenet_resnet_18", "--set", "model.width=0.125", "--set", "data.image_size=16",
            "--set", "data.batch_size=6", "--set", "train.steps=4it", "--set", "train.warmup=0it",
            "--set", "train.milestones=", "--set", "train.eval_every=0it"]
    common = ["--preset", "imagenet_resnet_50", *sets, "--data-workers", "0", "--data-root", str(root),
              "--root", str(tmp_path / "runs"), "--quiet"]
    assert main(["lottery", *common, "--levels", "1", "--rewind", "0it,2it"]) == 0, capsys.readouterr().err
    df = rewind.results(tmp_path / "runs")
    lot = df[(df.kind == "lottery") & (df.metric == "accuracy")]
    assert sorted(set(lot.level)) == [0, 1] and set(lot.engine) == {"sequential"}
    assert abs(lot[lot.level == 1].density.iloc[0] - 0.8) < 1e-3
    # instability of the dense network from 2it: copies streamed, path evaluated by the training evaluator,
    # so the path's ends are the copies' final metrics exactly
    assert main(["instability", *common, "--at", "2it", "--points", "3"]) == 0, capsys.readouterr().err
    df = rewind.results(tmp_path / "runs")
    path = df[(df.kind == "instability") & df.alpha.notna()]
    assert sorted(set(path.alpha)) == [0.0, 0.5, 1.0]
    copies = df[(df.kind == "copy") & (df.step == 4) & (df.metric == "loss")]
    for split in ("train", "test"):
        ends = path[(path.split == split) & (path.metric == "loss") & path.alpha.isin([0.0, 1.0])]
        assert sorted(ends.value) == sorted(copies[copies.split == split].value)
    assert main(["instability", *common, "--at", "2it", "--points", "3", "--bn-reset", "--bn-batches", "2"]) == 0
    df = rewind.results(tmp_path / "runs")
    summary = df[(df.kind == "instability") & (df.metric == "instability")]
    assert set(summary.bn_reset) == {True, False} and set(summary.split) == {"train", "test"}
    assert main(["linear", *common]) == 2
    assert "linear-model comparison needs a dataset held in memory" in capsys.readouterr().err
