import random

import numpy as np
import torch

from rewind.data import batch_indices, iterations_per_epoch, load_data
from rewind.data import core
from rewind.spec import DataSpec


def test_mnist1d_is_generated_cached_and_leaves_global_rngs_alone(tmp_path):
    random.seed(123)
    np.random.seed(123)
    expect_py, expect_np = random.random(), np.random.rand()
    random.seed(123)
    np.random.seed(123)
    data = core._DATA_CACHE.clear() or load_data(DataSpec("mnist1d"), tmp_path)
    assert (random.random(), np.random.rand()) == (expect_py, expect_np)
    assert data.x_train.shape == (4000, 40) and data.x_test.shape == (1000, 40)
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    assert set(data.y_train.tolist()) == set(range(10))
    assert list(tmp_path.glob("*.npz"))
    core._DATA_CACHE.clear()
    again = load_data(DataSpec("mnist1d"), tmp_path)  # from the cache file
    assert torch.equal(again.x_train, data.x_train) and torch.equal(again.y_test, data.y_test)


def test_a_damaged_mnist1d_cache_is_rebuilt(tmp_path):
    core._DATA_CACHE.clear()
    good = load_data(DataSpec("mnist1d"), tmp_path)
    [cache] = tmp_path.glob("*.npz")
    cache.write_bytes(b"garbage")
    core._DATA_CACHE.clear()
    rebuilt = load_data(DataSpec("mnist1d"), tmp_path)
    assert torch.equal(rebuilt.x_train, good.x_train)


def test_an_overwritten_mnist1d_cache_is_generated_again_not_trained_on(tmp_path, monkeypatch):
    """Someone's arrays of the right shapes written over the cache file would otherwise be trained
    on under MNIST-1D's name and run keys: the SHA-256 kept beside the cache catches it."""
    import pytest

    from rewind.data import embedded
    from rewind.errors import RewindWarning

    core._DATA_CACHE.clear()
    good = load_data(DataSpec("mnist1d"), tmp_path)
    [cache] = tmp_path.glob("*.npz")
    assert (tmp_path / (cache.name + ".sha256")).exists()

    def never(arguments):
        raise AssertionError("generated again although the cache is intact")

    monkeypatch.setattr(embedded, "_generate_mnist1d", never)   # an intact cache is read, not regenerated
    core._DATA_CACHE.clear()
    assert torch.equal(load_data(DataSpec("mnist1d"), tmp_path).x_train, good.x_train)
    monkeypatch.undo()
    with np.load(cache) as z:
        other = {k: np.zeros_like(z[k]) for k in z.files}
    with open(cache, "wb") as fh:
        np.savez(fh, **other)
    core._DATA_CACHE.clear()
    with pytest.warns(RewindWarning, match="not the file rewind generated"):
        again = load_data(DataSpec("mnist1d"), tmp_path)
    assert torch.equal(again.x_train, good.x_train) and torch.equal(again.y_train, good.y_train)


def test_digits_split_is_fixed_by_its_seed():
    a = load_data(DataSpec("digits", split_seed=0))
    b = load_data(DataSpec("digits", split_seed=1))
    assert a.x_train.shape[1:] == (1, 8, 8)
    assert len(a.y_train) + len(a.y_test) == 1797 and len(a.y_test) == 359
    core._DATA_CACHE.clear()
    a2 = load_data(DataSpec("digits", split_seed=0))
    assert torch.equal(a.x_test, a2.x_test)
    assert not torch.equal(a.x_test, b.x_test)


def test_batches_visit_every_example_once_per_epoch():
    n, bs = 103, 10
    ipe = iterations_per_epoch(n, bs)
    assert ipe == 11
    for epoch in range(2):
        seen = torch.cat([batch_indices(epoch * ipe + i, n, bs, seed=5) for i in range(ipe)])
        assert sorted(seen.tolist()) == list(range(n))
    e0 = torch.cat([batch_indices(i, n, bs, 5) for i in range(ipe)])
    e1 = torch.cat([batch_indices(ipe + i, n, bs, 5) for i in range(ipe)])
    assert not torch.equal(e0, e1)  # reshuffled every epoch
    assert torch.equal(batch_indices(3, n, bs, 5), batch_indices(3, n, bs, 5))
    assert not torch.equal(batch_indices(3, n, bs, 5), batch_indices(3, n, bs, 6))


def test_mnist1d_at_a_chosen_size_is_reproducible_from_its_seed_and_cached(tmp_path):
    spec = DataSpec("mnist1d", train_size=1200, test_size=300)
    core._DATA_CACHE.clear()
    a = load_data(spec, tmp_path)
    assert a.x_train.shape == (1200, 40) and a.x_test.shape == (300, 40)
    assert len(list(tmp_path.glob("mnist1d-v1-1200-300-*.npz"))) == 1
    core._DATA_CACHE.clear()
    cached = load_data(spec, tmp_path / "elsewhere")  # generated again from the seed, in another folder
    assert torch.equal(cached.x_train, a.x_train) and torch.equal(cached.y_test, a.y_test)
    core._DATA_CACHE.clear()
    [path] = tmp_path.glob("mnist1d-v1-1200-300-*.npz")
    stamp = path.stat().st_mtime_ns
    again = load_data(spec, tmp_path)  # read from the cache, not generated
    assert path.stat().st_mtime_ns == stamp and torch.equal(again.x_train, a.x_train)
    other_seed = load_data(DataSpec("mnist1d", train_size=1200, test_size=300, generator_seed=7), tmp_path)
    noisier = load_data(DataSpec("mnist1d", train_size=1200, test_size=300, corr_noise=1.0), tmp_path)
    assert not torch.equal(other_seed.x_train, a.x_train) and not torch.equal(noisier.x_train, a.x_train)
    assert len(list(tmp_path.glob("*.npz"))) == 3
    # the published dataset is the default one, under its old cache name
    published = load_data(DataSpec("mnist1d", train_size=4000, test_size=1000), tmp_path)
    assert (tmp_path / "mnist1d-default-v1.npz").exists()
    assert torch.equal(published.x_train, load_data(DataSpec("mnist1d"), tmp_path).x_train)


def test_generated_sizes_are_checked():
    import pytest

    import rewind

    for over, field in (({"data.train_size": 1005}, "data.train_size"), ({"data.test_size": 7}, "data.test_size"),
                        ({"data.train_size": 2_000_000}, "data.train_size"), ({"data.train_size": -10}, "data.train_size"),
                        ({"data.name": "digits", "data.train_size": 100}, "data.train_size"),
                        ({"data.name": "digits", "data.corr_noise": 0.5}, "data.corr_noise")):
        with pytest.raises(rewind.SpecError, match=field):
            rewind.Spec().replace(**over)
    # hash-neutral at the defaults
    assert rewind.Spec().replace(**{"data.train_size": 0}).hash == rewind.Spec().hash


def test_in_place_normalisation_gives_the_bits_of_the_plain_expression():
    from rewind.data.files import STATS, _pixels
    from rewind.data.tensors import to_float

    from rewind.data.tensors import _lookup

    x = torch.randint(0, 256, (200, 3, 32, 32), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    mean = torch.tensor(STATS["cifar10"][0]).view(1, -1, 1, 1)
    std = torch.tensor(STATS["cifar10"][1]).view(1, -1, 1, 1)
    out = to_float(x, _pixels("cifar10"))
    assert out.dtype == torch.float32 and torch.equal(out, (x.float() / 255.0 - mean) / std)
    assert x.dtype == torch.uint8 and int(x.max()) > 1   # the input is not touched
    # the table lookup other devices use (run here on the CPU) gives the same bits: 200 images of
    # 3x32x32 are looked up 85 images at a time (1 MiB of indices), so in 3 pieces; and every value
    assert torch.equal(_lookup(x, _pixels("cifar10")), out)
    for name in STATS:
        every = torch.arange(256, dtype=torch.uint8).view(1, 1, 16, 16).expand(2, len(STATS[name][0]), 16, 16)
        assert torch.equal(_lookup(every, _pixels(name)), to_float(every, _pixels(name))), name


def test_uint8_batches_have_the_bits_of_the_normalised_set():
    """Images are kept as uint8 and normalised per batch: every batch (and every dtype) equals the
    whole set normalised once and indexed, bit for bit."""
    from rewind.data.files import _pixels
    from rewind.data.tensors import to_float

    g = torch.Generator().manual_seed(1)
    for name, shape in (("cifar10", (300, 3, 32, 32)), ("mnist", (300, 1, 28, 28))):
        x = torch.randint(0, 256, shape, dtype=torch.uint8, generator=g)
        whole = to_float(x, _pixels(name))
        for _ in range(5):
            idx = torch.randperm(len(x), generator=g)[:37]
            assert torch.equal(to_float(x[idx], _pixels(name)), whole[idx])
            assert torch.equal(to_float(x[idx], _pixels(name), torch.float64), whole[idx].double())
        chunks = torch.cat([to_float(x[i:i + 64], _pixels(name)) for i in range(0, len(x), 64)])
        assert torch.equal(chunks, whole)
    y = torch.randn(4, 10, generator=g)
    assert to_float(y, None) is y or torch.equal(to_float(y, None), y)  # float inputs are only cast
