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
