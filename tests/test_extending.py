"""rewind as a platform: every registered model and criterion exercised, plugins loaded from a
file, the environment, a config or an installed package's entry point, a plugin's code and a data
file part of what names a run, npz data, pruning at initialisation, mask overlaps, notebooks."""
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import rewind
from rewind.cli import main
from rewind.exec import train_population
from rewind.models import MODELS, create_model
from rewind.prune import CRITERIA, ScoreInput, get_criterion, magnitude_prune, prune
from rewind.spec import ModelSpec, PruneSpec
from rewind.store import Store
from rewind.train import Member, TrainOptions

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "rewind-plugin-example"
EXAMPLE_FILE = EXAMPLE / "rewind_plugin_example" / "__init__.py"

# every registered model (the patterns by their examples): input shape and spec fields
MODEL_CASES = {
    "mlp": ((40,), {"model.widths": "16,16"}), "conv1d": ((40,), {"model.widths": "4,4"}),
    "digits_cnn": ((1, 8, 8), {"model.widths": "4,8"}), "resnet": ((40,), {"model.widths": "4", "model.depth": 8}),
    "two_layer": ((40,), {"model.widths": "32"}), "lenet_300_100": ((40,), {}),
    "conv2": ((3, 16, 16), {"model.width": 0.125}), "conv4": ((3, 16, 16), {"model.width": 0.125}),
    "conv6": ((3, 16, 16), {"model.width": 0.125}),
    **{f"cifar_resnet_{d}": ((3, 16, 16), {"model.width": 0.125}) for d in (20, 32, 56, 110)},
    **{f"cifar_vgg_{d}": ((3, 32, 32), {"model.width": 0.125}) for d in (11, 13, 16, 19)},
    **{f"imagenet_resnet_{d}": ((3, 32, 32), {"model.width": 0.125}) for d in (18, 34, 50)},
}


def _npz(path: Path, shape, classes: int = 3, n: int = 24, seed: int = 0) -> Path:
    g = np.random.default_rng(seed)
    np.savez(path, x_train=g.normal(size=(n, *shape)).astype(np.float32), y_train=np.arange(n) % classes,
             x_test=g.normal(size=(n // 2, *shape)).astype(np.float32), y_test=np.arange(n // 2) % classes)
    return path


def test_every_registered_model_is_covered():
    names = {e for entry in MODELS.values() if entry.group == "rewind" for e in entry.examples
             if "<" not in e and "..." not in e}
    assert names == set(MODEL_CASES)


@pytest.mark.parametrize("name", sorted(MODEL_CASES))
def test_every_registered_model_builds_prunes_and_trains_a_step(tmp_path, name):
    shape, fields = MODEL_CASES[name]
    data = _npz(tmp_path / "d.npz", shape)
    spec = rewind.Spec().replace(**{"data.name": "npz", "data.path": str(data), "data.batch_size": 8,
                                    "model.name": name, "train.steps": "1it", "train.milestones": "",
                                    "train.eval_splits": "test", **fields})
    model = create_model(spec.model, shape, 3, seed=0)
    weights = {k: v.clone() for k, v in model.state_dict().items()}
    full = {n: torch.ones_like(weights[n], dtype=torch.bool) for n in model.prunable()}
    mask = magnitude_prune(weights, full, PruneSpec(fraction=0.5), 1, model.layer_kind)
    [run] = train_population([Member(spec, init=weights, mask=mask)], Store(tmp_path / "runs"),
                             TrainOptions(quiet=True, engine="sequential"))
    after = run.weights(1)
    assert all(torch.count_nonzero(after[n][~mask[n]]) == 0 for n in mask)   # the mask held
    assert any(not torch.equal(after[n], weights[n]) for n in mask)          # and it trained


# ---- criteria against a hand computation ----------------------------------------------------------
def _tiny():
    """A 3-4-2 ReLU network with fixed weights, six examples of two classes."""
    model = create_model(ModelSpec("mlp", (4,)), (3,), 2, seed=7).double()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(6, 3, generator=g, dtype=torch.float64)
    y = torch.tensor([0, 1, 1, 0, 1, 0])
    return model, x, y


def _hand_gradients(w1, b1, w2, b2, x, y):
    """Cross-entropy gradients of W1, W2 by the chain rule written out (no autograd)."""
    z = x @ w1.T + b1
    h = z.clamp_min(0)
    logits = h @ w2.T + b2
    p = torch.softmax(logits, 1)
    d = (p - torch.nn.functional.one_hot(y, 2).double()) / len(y)
    g2 = d.T @ h
    dh = (d @ w2) * (z > 0).double()
    g1 = dh.T @ x
    return g1, g2


def _hand(name, model, x, y, mask, init):
    p = dict(model.named_parameters())
    w1, b1, w2, b2 = (p[k].detach() for k in ("hidden.0.weight", "hidden.0.bias", "out.weight", "out.bias"))
    names = ("hidden.0.weight", "out.weight")
    if name == "magnitude":
        return {"hidden.0.weight": w1.abs(), "out.weight": w2.abs()}
    if name == "magnitude_init":
        return {n: init[n].abs() for n in names}
    if name == "random":
        g = torch.Generator().manual_seed(3)
        return {n: torch.rand(mask[n].shape, generator=g, dtype=torch.float64) for n in names}
    g1, g2 = _hand_gradients(w1, b1, w2, b2, x, y)
    if name == "snip":
        return {"hidden.0.weight": (g1 * w1).abs(), "out.weight": (g2 * w2).abs()}
    if name == "grasp":   # H g by a central difference of the hand gradient along g
        eps = 1e-6
        gp = _hand_gradients(w1 + eps * g1, b1, w2 + eps * g2, b2, x, y)
        gm = _hand_gradients(w1 - eps * g1, b1, w2 - eps * g2, b2, x, y)
        return {"hidden.0.weight": w1 * (gp[0] - gm[0]) / (2 * eps), "out.weight": w2 * (gp[1] - gm[1]) / (2 * eps)}
    if name == "synflow":   # all-ones input through |W|, |b|: R = sum(|W2| h + |b2|), h = |W1| 1 + |b1|
        h = w1.abs().sum(1) + b1.abs()
        d_w2 = h.expand(2, -1)                       # dR/d|W2|[i, j] = h_j
        d_w1 = w2.abs().sum(0)[:, None].expand(-1, 3)  # dR/d|W1|[j, k] = sum_i |W2|[i, j]
        return {"hidden.0.weight": (w1.abs() * d_w1), "out.weight": (w2.abs() * d_w2)}
    raise AssertionError(f"no hand computation for criterion {name}")


HAND = ("magnitude", "magnitude_init", "random", "snip", "grasp", "synflow")


def test_every_registered_criterion_has_a_hand_computation():
    assert {n for n, c in CRITERIA.items() if c.group == "rewind"} == set(HAND)


@pytest.mark.parametrize("name", HAND)
def test_criterion_scores_match_a_hand_computation(name):
    model, x, y = _tiny()
    init = {k: v.detach().clone() + 0.01 for k, v in model.state_dict().items()}
    mask = {n: torch.ones_like(dict(model.named_parameters())[n], dtype=torch.bool) for n in model.prunable()}
    weights = {k: v.detach() for k, v in model.state_dict().items()}
    inp = ScoreInput(weights, mask, model, torch.Generator().manual_seed(3), init, lambda: iter([(x, y)]), (3,))
    got = get_criterion(name).score(inp)
    want = _hand(name, model, x, y, mask, init)
    for n in mask:
        tol = 1e-6 if name == "grasp" else 1e-12
        torch.testing.assert_close(got[n].double(), want[n].double(), rtol=tol, atol=tol)


def test_iterative_and_one_shot_pruning_keep_exact_counts():
    model, x, y = _tiny()
    weights = {k: v.detach() for k, v in model.state_dict().items()}
    mask = {n: torch.ones_like(weights[n], dtype=torch.bool) for n in model.prunable()}
    for name, rounds in (("synflow", 10), ("snip", 1)):
        inp = ScoreInput(weights, mask, model, torch.Generator().manual_seed(0), None, lambda: iter([(x, y)]), (3,))
        out = prune(get_criterion(name), inp, PruneSpec(strategy="layerwise", rounds=rounds), model.layer_kind,
                    density=0.25)
        assert {n: int(m.sum()) for n, m in out.items()} == {n: round(m.numel() * 0.25) for n, m in mask.items()}


def test_pruning_at_initialisation_from_the_command_line(tmp_path, capsys):
    root = tmp_path / "runs"
    code = main(["prune-at", "--preset", "mnist1d_mlp", "--criteria", "snip,synflow", "--densities", "0.2",
                 "--replicates", "2", "--set", "train.steps=30it", "--set", "train.milestones=",
                 "--set", "prune.rounds=5", "--root", str(root), "--csv", str(tmp_path / "pai.csv"), "--quiet"])
    out = capsys.readouterr().out
    assert code == 0 and "snip" in out and "shuffled" in out
    table = __import__("pandas").read_csv(tmp_path / "pai.csv")
    assert set(table["variant"]) == {"pruned", "shuffled"} and len(table) == 2 * 2 * 2
    res = rewind.results(root)
    sub = res[(res["kind"] == "lottery") & (res["level"] == 1)]
    assert set(sub["criterion"]) == {"snip", "synflow"} and (sub["density"].round(3) == 0.2).all()


# ---- plugins ----------------------------------------------------------------------------------------
PLUGIN = textwrap.dedent('''
    import math
    import torch
    from torch import nn
    import rewind

    WIDTH = {width}

    class Toy(rewind.RewindModel):
        def __init__(self, inputs, classes):
            super().__init__()
            self.hidden = nn.Linear(inputs, WIDTH)
            self.out = nn.Linear(WIDTH, classes)

        def forward(self, x):
            return self.out(torch.relu(self.hidden(x.flatten(1))))

    @rewind.register_model("toy")
    def toy(spec, input_shape, classes):
        """A one-hidden-layer ReLU net."""
        return Toy(math.prod(input_shape), classes)
''')
SHORT = ["--set", "train.steps=20it", "--set", "train.milestones=", "--quiet"]


def _cli(*args, env=None, cwd=None):
    return subprocess.run([sys.executable, "-m", "rewind", *map(str, args)], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, cwd=cwd, timeout=600)


def test_editing_a_plugins_model_never_returns_the_old_run(tmp_path):
    plugin = tmp_path / "toy.py"
    root = tmp_path / "runs"
    plugin.write_text(PLUGIN.format(width=8))
    first = _cli("train", "--plugin", plugin, "--set", "model.name=toy", *SHORT, "--root", root)
    assert first.returncode == 0, first.stderr
    plugin.write_text(PLUGIN.format(width=12))   # the model changed: its runs are other runs
    second = _cli("train", "--plugin", plugin, "--set", "model.name=toy", *SHORT, "--root", root)
    assert second.returncode == 0, second.stderr
    assert first.stdout.split()[0] != second.stdout.split()[0] and len(Store(root).runs()) == 2
    spec = json.loads((root / second.stdout.split()[0] / "spec.json").read_text())
    assert spec["spec"]["model"]["name"] == "toy"
    plugin.write_text(PLUGIN.format(width=8))    # back: the first run, from the store
    third = _cli("train", "--plugin", plugin, "--set", "model.name=toy", *SHORT, "--root", root)
    assert third.stdout.split()[0] == first.stdout.split()[0] and len(Store(root).runs()) == 2


def test_plugins_from_the_environment_and_a_config(tmp_path):
    plugin = tmp_path / "toy.py"
    plugin.write_text(PLUGIN.format(width=8))
    env = _cli("train", "--set", "model.name=toy", *SHORT, "--root", tmp_path / "a", env={"REWIND_PLUGINS": str(plugin)})
    assert env.returncode == 0, env.stderr
    config = tmp_path / "c.toml"
    config.write_text(f'plugins = ["{plugin}"]\n[model]\nname = "toy"\n')
    conf = _cli("train", "--config", config, *SHORT, "--root", tmp_path / "b")
    assert conf.returncode == 0, conf.stderr
    assert env.stdout.split()[0] == conf.stdout.split()[0]


@pytest.mark.parametrize("body, words", [
    ("raise RuntimeError('no GPU here')", "failed to import (RuntimeError: no GPU here)"),
    ("import rewind\n@rewind.register_model('mlp')\ndef f(s, i, c): pass", "a model named 'mlp' is already registered"),
    ("import rewind\n@rewind.register_criterion('snip')\ndef f(inp): pass", "criterion named 'snip'"),
    ("def broken(:\n  pass", "SyntaxError"),
])
def test_a_bad_plugin_is_refused_in_one_line(tmp_path, body, words):
    plugin = tmp_path / "bad.py"
    plugin.write_text(body + "\n")
    p = _cli("train", "--plugin", plugin, *SHORT, "--root", tmp_path / "runs")
    lines = [ln for ln in p.stderr.splitlines() if ln.strip()]
    assert p.returncode == 2 and len(lines) == 1 and "plugin bad" in lines[0] and words in lines[0], p.stderr
    assert not (tmp_path / "runs").exists()


def test_a_model_registered_in_main_is_refused_by_worker_processes_in_one_line(tmp_path):
    script = textwrap.dedent(f'''
        import rewind
        exec({PLUGIN.format(width=8)!r})
        spec = rewind.Spec().replace(**{{"model.name": "toy", "train.steps": "10it", "train.milestones": ""}})
        try:
            rewind.train(spec, replicates=2, root={str(tmp_path / "runs")!r},
                         options=rewind.TrainOptions(quiet=True, executor="processes", workers=2, chunk=1))
        except rewind.SpecError as e:
            print("REFUSED", e)
    ''')
    for how in (["-c", script], ["-"]):   # python -c and a script on standard input
        p = subprocess.run([sys.executable, *how], input=script if how == ["-"] else None, capture_output=True,
                           text=True, timeout=120)
        assert "REFUSED model.name: 'toy' is registered in __main__" in p.stdout, (how, p.stdout, p.stderr)
    # the same model in a plugin file: worker processes load it and give the local executor's bits
    plugin = tmp_path / "toy.py"
    plugin.write_text(PLUGIN.format(width=8))
    args = ["train", "--plugin", plugin, "--set", "model.name=toy", "--replicates", "2", "--threads", "1", "--chunk",
            "1", *SHORT]
    local = _cli(*args, "--root", tmp_path / "local")
    procs = _cli(*args, "--root", tmp_path / "procs", "--executor", "processes", "--workers", "2")
    assert local.returncode == 0 and procs.returncode == 0, (local.stderr, procs.stderr)
    for line_a, line_b in zip(local.stdout.splitlines(), procs.stdout.splitlines()):
        assert line_a.split()[:9] == line_b.split()[:9]   # keys, accuracy, loss


# ---- data without code -------------------------------------------------------------------------------
def test_npz_data_train_and_their_contents_name_the_run(tmp_path):
    data = _npz(tmp_path / "d.npz", (12,))
    args = ["train", "--set", "data.name=npz", "--set", f"data.path={data}", "--set", "data.batch_size=8", *SHORT]
    a = _cli(*args, "--root", tmp_path / "runs")
    assert a.returncode == 0, a.stderr
    _npz(data, (12,), seed=1)   # other contents, same path: another run
    b = _cli(*args, "--root", tmp_path / "runs")
    assert b.returncode == 0 and a.stdout.split()[0] != b.stdout.split()[0]


@pytest.mark.parametrize("arrays, words", [
    ({"x_train": np.zeros((4, 3)), "y_train": np.zeros(4), "x_test": np.zeros((2, 3))}, "no array 'y_test'"),
    ({"x_train": np.zeros((4, 3)), "y_train": np.array([0, 1, 0, 1]), "x_test": np.zeros((2, 5)),
      "y_test": np.array([0, 1])}, "test examples (5,)"),
    ({"x_train": np.zeros((4, 3)), "y_train": np.array([0, -1, 0, 1]), "x_test": np.zeros((2, 3)),
      "y_test": np.array([0, 1])}, "found -1"),
    ({"x_train": np.zeros((4, 3)), "y_train": np.array([0, 1, 0]), "x_test": np.zeros((2, 3)),
      "y_test": np.array([0, 1])}, "x_train has 4 examples but y_train 3"),
    ({"x_train": np.zeros((4, 3)), "y_train": np.array([0.0, 1, 0, 1]), "x_test": np.zeros((2, 3)),
      "y_test": np.array([0, 1])}, "y_train must hold integer class labels"),
    ({"x_train": np.array([{"a": 1}] * 4, dtype=object), "y_train": np.array([0, 1, 0, 1]), "x_test": np.zeros((2, 3)),
      "y_test": np.array([0, 1])}, "not a plain npz file"),
    ("not a zip file", "not a plain npz file"),
])
def test_a_bad_npz_file_is_refused_in_one_line(tmp_path, capsys, arrays, words):
    path = tmp_path / "bad.npz"
    if isinstance(arrays, str):
        path.write_text(arrays)
    else:
        np.savez(path, **arrays)
    code = main(["train", "--set", "data.name=npz", "--set", f"data.path={path}", "--set", "data.batch_size=2",
                 *SHORT, "--root", str(tmp_path / "runs")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "data.path" in err[0] and words in err[0], err
    assert not (tmp_path / "runs").exists()


def test_data_path_goes_with_a_dataset_that_reads_one(tmp_path, capsys):
    assert main(["train", "--set", f"data.path={tmp_path}", *SHORT, "--root", str(tmp_path / "r")]) == 2
    assert "reads no file" in capsys.readouterr().err
    assert main(["train", "--set", "data.name=npz", *SHORT, "--root", str(tmp_path / "r")]) == 2
    assert "reads a file" in capsys.readouterr().err


# ---- the example plugin, installed ----------------------------------------------------------------
@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    """examples/rewind-plugin-example installed (pip, into a folder put on PYTHONPATH): rewind finds it
    through its rewind.plugins entry point, with no --plugin."""
    target = tmp_path_factory.mktemp("site")
    build = tmp_path_factory.mktemp("build") / "src"
    shutil.copytree(EXAMPLE, build)   # pip builds in the source tree: keep the repository clean
    p = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                        "--target", str(target), str(build)], capture_output=True, text=True, timeout=300)
    if p.returncode != 0:
        pytest.fail(f"pip could not install the example plugin: {p.stderr[-500:]}")
    return {"PYTHONPATH": os.pathsep.join([str(target), os.environ.get("PYTHONPATH", "")])}


def test_the_installed_example_plugin_trains_a_study_from_the_command_line(installed, tmp_path):
    data = EXAMPLE / "rewind_plugin_example" / "blobs.npz"
    args = ["lottery", "--set", "model.name=bottleneck_mlp", "--set", "model.widths=16", "--set", "data.name=npz",
            "--set", f"data.path={data}", "--set", "data.batch_size=50", "--set",
            "prune.criterion=normalised_magnitude", "--levels", "2", "--replicates", "2", "--baselines", "scale",
            "--threads", "1", *SHORT]
    local = _cli(*args, "--root", tmp_path / "local", env=installed)
    assert local.returncode == 0, local.stderr
    assert "scale factor=0.5" in local.stdout
    procs = _cli(*args, "--root", tmp_path / "procs", "--executor", "processes", "--workers", "2", env=installed)
    assert procs.returncode == 0, procs.stderr
    ray_env = {**installed, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    ray = _cli(*args, "--root", tmp_path / "ray", "--executor", "ray", env=ray_env)
    assert ray.returncode == 0, ray.stderr
    assert local.stdout == procs.stdout == ray.stdout   # the study key and every accuracy
    for name in ("local", "procs", "ray"):
        runs = {r.key: r for r in Store(tmp_path / name).runs()}
        if name == "local":
            ref = runs
        assert runs.keys() == ref.keys()
        for k, r in runs.items():
            a, b = r.load(20), ref[k].load(20)
            assert all(torch.equal(a[t], b[t]) for t in a)
    # the plugin's command, model, criterion, dataset and claim are all listed
    for cmd, word in (("blobs-info", "class 3"), ("models", "bottleneck_mlp"), ("criteria", "normalised_magnitude"),
                      ("datasets", "blobs"), ("reproduce", "X1")):
        p = _cli(cmd, *(["--list"] if cmd == "reproduce" else []), env=installed)
        assert p.returncode == 0 and word in p.stdout, (cmd, p.stderr)


def test_the_installed_example_plugin_from_python(installed, tmp_path):
    script = textwrap.dedent(f'''
        import rewind
        rewind.load_plugins()   # installed plugins (entry points), as the command line does
        spec = rewind.Spec().replace(**{{"data.name": "blobs", "data.batch_size": 50, "model.name": "bottleneck_mlp",
                                         "model.widths": "16", "train.steps": "20it", "train.milestones": ""}})
        run = rewind.train(spec, root={str(tmp_path / "runs")!r})
        print(run.key, round(run.summary()["final"]["test_accuracy"], 3))
    ''')
    p = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env={**os.environ, **installed},
                       timeout=300)
    assert p.returncode == 0, p.stderr
    key, acc = p.stdout.split()
    assert float(acc) > 0.25


# ---- mask overlaps, notebooks ---------------------------------------------------------------------
def test_mask_overlaps_are_tidy_rows_with_their_chance_values(tmp_path, capsys):
    from rewind.analysis.masks import compare_masks
    from rewind.lottery import Study
    from rewind.step import parse_steps

    spec = rewind.get_preset("mnist1d_mlp").spec.replace(**{"train.steps": "30it", "train.milestones": "",
                                                            "prune.fraction": 0.5})
    study = Study(spec, parse_steps("0it,10it"), "mnist1d_mlp", Store(tmp_path))
    study.run(2, replicates=2, options=TrainOptions(quiet=True))
    rows = compare_masks([study])
    dens = rows[(rows["metric"] == "density") & (rows["layer"] == "all")]
    assert len(dens) == 2 * 2 * 2 and np.allclose(dens["value"], dens["density"])
    j = rows[(rows["metric"] == "jaccard") & (rows["layer"] == "all")]
    assert set(j["differs"]) >= {"rewind_step", "replicate"} and ((j["value"] > 0) & (j["value"] <= 1)).all()
    assert np.allclose(j[j["level"] == 1]["chance"], 0.5 * 0.5 / (1 - 0.25), atol=0.01)   # p q / (p + q - p q)
    code = main(["masks", "--study", study.key[:6], "--root", str(tmp_path), "--plot", str(tmp_path / "m")])
    assert code == 0 and (tmp_path / "m.svg").exists()
    res = rewind.results(tmp_path)
    assert {"density", "jaccard", "jaccard_chance"} <= set(res[res["kind"] == "mask"]["metric"])


def test_notebook_views(tmp_path):
    from rewind.lottery import Study
    from rewind.report import plot_lottery
    from rewind.step import parse_steps

    spec = rewind.get_preset("mnist1d_mlp").spec.replace(**{"train.steps": "20it", "train.milestones": ""})
    study = Study(spec, parse_steps("0it"), "mnist1d_mlp", Store(tmp_path))
    runs = study.run(1, options=TrainOptions(quiet=True))
    html = study._repr_html_()
    assert study.key in html and "<table" in html and "test acc %" in html
    assert "done" in runs[(0, "0it", 1)]._repr_html_()
    plot = plot_lottery(study.table(), None)   # no file: the figure only
    assert list(plot) == [] and plot.figure is not None and plot._repr_png_()[:4] == b"\x89PNG"
    written = plot_lottery(study.table(), tmp_path / "fig")
    assert [p.suffix for p in written] == [".png", ".svg"] and written.figure is not None
    s = rewind.summary(tmp_path)
    assert {"run", "kind", "level", "test_accuracy"} <= set(s.columns) and len(s) == 2
