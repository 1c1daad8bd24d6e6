import io
import json
from contextlib import redirect_stdout

import pandas as pd
import pytest

import rewind
from rewind.cli import main

STEPS = ["--set", "train.steps=60it", "--set", "train.eval_every=30it"]


def run_cli(*argv):
    buf = io.StringIO()
    with redirect_stdout(buf):
        code = main(list(argv))
    return code, buf.getvalue()


def test_train_ls_results(tmp_path):
    root = str(tmp_path / "runs")
    code, out = run_cli("train", "--preset", "mnist1d_mlp", *STEPS, "--root", root, "--quiet", "--replicates", "2")
    assert code == 0 and out.count("test accuracy") == 2
    code, out2 = run_cli("train", "--preset", "digits_cnn", "--set", "train.steps=10it", "--root", root, "--quiet")
    assert code == 0
    code, listing = run_cli("ls", "--root", root)
    assert code == 0 and listing.count("done") == 3 and "digits_cnn" in listing
    code, csv_text = run_cli("results", "--root", root)
    df = pd.read_csv(io.StringIO(csv_text))
    assert list(df.columns[:9]) == ["run", "kind", "preset", "member", "seed", "step", "split", "metric", "value"]
    assert set(df.metric) == {"loss", "accuracy"} and set(df.split) == {"train", "test"}
    mlp = df[df.preset == "mnist1d_mlp"]
    assert sorted(mlp.member.unique()) == [0, 1] and sorted(mlp.seed.unique()) == [0, 1]
    assert sorted(mlp.step.unique()) == [0, 30, 60]
    code, json_text = run_cli("results", "--root", root, "--format", "json")
    assert len(json.loads(json_text)) == len(df)
    # the Python API sees the same table
    api = rewind.results(root)
    assert len(api) == len(df) and set(api.run) == set(df.run)


def test_python_api_matches_the_cli(tmp_path):
    root = tmp_path / "runs"
    code, out = run_cli("train", *STEPS, "--set", "seeds.init=5", "--root", str(root), "--quiet")
    run = rewind.train("mnist1d_mlp", {"train.steps": "60it", "train.eval_every": "30it", "seeds.init": 5}, root=root)
    assert out.split()[0] == run.key
    assert len(rewind.Store(root).runs()) == 1


@pytest.mark.parametrize("argv,needle", [
    (["train", "--set", "train.lr=abc"], "train.lr"),
    (["train", "--set", "train.lr"], "FIELD=VALUE"),
    (["train", "--preset", "nope"], "unknown preset"),
    (["train", "--set", "model.name=resnet_18"], "model.name"),
    (["train", "--replicates", "0"], "--replicates"),
])
def test_bad_input_is_a_clear_error(argv, needle, tmp_path, capsys):
    code = main(argv + ["--root", str(tmp_path)])
    assert code == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err
    assert not any(tmp_path.iterdir())  # nothing written for a refused spec


def test_help_lists_fields_with_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    for field in ("train.lr", "seeds.data_order", "model.widths", "prune.fraction", "data.batch_size"):
        assert field in out
    assert "kaiming_normal" in out


def test_empty_store(tmp_path):
    code, out = run_cli("ls", "--root", str(tmp_path / "none"))
    assert code == 0 and "no runs" in out
    code, out = run_cli("results", "--root", str(tmp_path / "none"))
    assert out.startswith("run,kind,preset,member,seed,step,split,metric,value")


def test_presets_command():
    code, out = run_cli("presets")
    assert code == 0 and "mnist1d_mlp" in out and "digits_cnn" in out


def test_every_commands_help_ends_with_an_example_that_names_the_command():
    """`rewind NAME --help` shows an example command line for every built-in command."""
    from rewind.cli import build_parser
    from rewind.cli.registry import COMMANDS

    build_parser()   # registers every built-in command
    builtin = [c for c in COMMANDS.values() if not c.run.__module__.startswith(("rewind_plugin", "__main__"))]
    assert len(builtin) >= 20
    for cmd in builtin:
        assert cmd.example.startswith(f"rewind {cmd.name}") or f" {cmd.name} " in f" {cmd.example} ", cmd.name
        buf = io.StringIO()
        with redirect_stdout(buf), pytest.raises(SystemExit):
            main([cmd.name, "--help"])
        assert "example:" in buf.getvalue() and cmd.example in buf.getvalue(), cmd.name
