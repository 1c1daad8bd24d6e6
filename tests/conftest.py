import os

os.environ.setdefault("MKL_CBWR", "AUTO,STRICT")  # as rewind sets it, before any test module imports torch

import pytest  # noqa: E402


@pytest.fixture(scope="session", autouse=True)
def _data_cache(tmp_path_factory):
    """One MNIST-1D cache for the whole session, never the user's."""
    root = tmp_path_factory.mktemp("data")
    old = os.environ.get("REWIND_DATA")
    os.environ["REWIND_DATA"] = str(root)
    os.environ.pop("REWIND_ROOT", None)
    yield root
    if old is None:
        os.environ.pop("REWIND_DATA", None)
    else:
        os.environ["REWIND_DATA"] = old


@pytest.fixture
def store(tmp_path):
    from rewind.store import Store

    return Store(tmp_path / "runs")


@pytest.fixture
def quiet():
    from rewind.train import TrainOptions

    return TrainOptions(quiet=True)
