"""Records read defensively, nothing outside the store touched, outputs and flags checked before
any work (issue: one key, one result). Each test is one of the cases found failing on main
0ae0d01, stated as it failed."""
import json
import os
from pathlib import Path

import pytest

import rewind
from rewind.cli import main
from rewind.lottery import Study
from rewind.step import parse_steps
from rewind.store import Store

TINY = {"train.steps": "20it", "train.eval_every": "10it", "train.milestones": "", "model.widths": "16,16"}


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def one_line_error(err: str, *words) -> str:
    lines = [ln for ln in err.splitlines() if ln.strip() and not ln.startswith("rewind: warning:")]
    assert len(lines) == 1 and "error:" in lines[0] and "Traceback" not in err, err
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def trained(tmp_path):
    root = tmp_path / "runs"
    run = rewind.train("mnist1d_mlp", TINY, root=root)
    return root, run


@pytest.fixture
def study(tmp_path):
    root = tmp_path / "runs"
    spec = rewind.get_preset("mnist1d_mlp").spec.replace(**TINY)
    s = Study(spec, parse_steps("0it,5it"), "mnist1d_mlp", Store(root))
    s.run(1, options=rewind.TrainOptions(quiet=True))
    return root, s


def test_a_record_nested_200000_deep_is_damage_not_a_recursion_error(trained, capsys):
    """DONE made of 200,000 nested arrays: train, ls, results and verify all ended in a
    RecursionError traceback; the store could be neither listed nor repaired."""
    root, run = trained
    (run.path / "DONE").write_text("[" * 200_000 + "]" * 200_000)
    code, out, err = run_cli(capsys, "ls", "--root", root)
    assert code == 1 and "damaged" in out and "nested too deeply" in out and "Traceback" not in err
    code, out, err = run_cli(capsys, "results", "--root", root)
    assert code == 1 and "Traceback" not in err and "nested too deeply" in err
    code, out, err = run_cli(capsys, "verify", "--root", root)
    assert code == 1 and "nested too deeply" in out
    code, out, err = run_cli(capsys, "verify", "--repair", "--root", root)
    assert code == 0 and "moved to" in out
    code, out, err = run_cli(capsys, "train", "--preset", "mnist1d_mlp", *sum((["--set", f"{k}={v}"]
                                                                             for k, v in TINY.items()), []),
                             "--root", root, "--quiet")
    assert code == 0 and "Traceback" not in err


@pytest.mark.parametrize("damage, words", [
    (lambda rec: {k: v for k, v in rec.items() if k != "spec"}, "no 'spec'"),         # KeyError in report
    (lambda rec: [rec], "must be an object, not a list"),                               # TypeError in report
    (lambda rec: "{not json", "not JSON"),                                              # named neither file nor study
    (lambda rec: {**rec, "rewind_steps": ["0it", "5 iterations"]}, "rewind_steps[1]"),  # likewise
    (lambda rec: {**rec, "runs": {"abc": 3}}, "runs.abc must be an object"),
])
def test_a_damaged_study_record_is_named_by_report_verify_and_results(study, capsys, damage, words):
    root, s = study
    rec = json.loads(s.record_path.read_text())
    bad = damage(rec)
    s.record_path.write_text(bad if isinstance(bad, str) else json.dumps(bad))
    code, out, err = run_cli(capsys, "report", "--root", root)
    assert code == 1
    line = one_line_error(err, f"study {s.key}", str(s.record_path))
    assert words in line
    code, out, err = run_cli(capsys, "verify", "--root", root)
    assert code == 1 and f"studies       {s.key}" in out and "damaged" in out and words in out
    code, out, err = run_cli(capsys, "results", "--root", root)
    assert code == 1 and str(s.record_path) in err
    code, out, err = run_cli(capsys, "branch", "reinit", "--study", s.key[:6], "--levels", "1", "--root", root)
    assert code == 1
    one_line_error(err, str(s.record_path))


def test_verify_repair_does_not_follow_a_symlinked_run_directory_out_of_the_store(trained, tmp_path, capsys):
    """verify --repair followed a run directory that was a symlink and moved every file of the
    folder it led to (somebody else's) into .damaged/."""
    root, run = trained
    elsewhere = tmp_path / "somebody_else"
    elsewhere.mkdir()
    (elsewhere / "thesis.tex").write_text("keep me\n")
    (elsewhere / "DONE").write_text("{}")
    link = root / ("f" * 16)
    link.symlink_to(elsewhere, target_is_directory=True)
    for argv in (["verify"], ["verify", "--repair"]):
        code, out, err = run_cli(capsys, *argv, "--root", root)
        assert code == 1 and "symbolic link" in out
    assert sorted(p.name for p in elsewhere.iterdir()) == ["DONE", "thesis.tex"]
    assert (elsewhere / "thesis.tex").read_text() == "keep me\n" and link.is_symlink()
    # a file of a run that is a link out of the store: reported, left alone, not written through
    target = tmp_path / "weights.bin"
    target.write_bytes(b"not ours")
    ckpt = run.checkpoint_path(20)
    ckpt.unlink()
    ckpt.symlink_to(target)
    code, out, err = run_cli(capsys, "verify", "--repair", "--root", root)
    assert code == 1 and "step_20.safetensors is a symbolic link" in out
    assert ckpt.is_symlink() and target.read_bytes() == b"not ours"
    code, out, err = run_cli(capsys, "train", "--preset", "mnist1d_mlp",
                             *sum((["--set", f"{k}={v}"] for k, v in TINY.items()), []), "--root", root, "--quiet")
    assert code == 1 and target.read_bytes() == b"not ours"
    one_line_error(err, "symbolic link", "rm ")


def test_outputs_are_checked_before_any_training(tmp_path, capsys):
    """reproduce --out on a read-only place or onto an existing file, and scores --csv into a
    folder that cannot be made, failed only after all the training."""
    root = tmp_path / "runs"
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    cases = [
        (["reproduce", "--claims", "C1", "--out", a_file], "--out", "a file stands there"),
        (["scores", "--method", "el2n", "--at", "10it", "--csv", a_file / "x.csv"], "--csv", "is a file"),
        (["scores", "--method", "el2n", "--at", "10it", "--plot", tmp_path / "fig"], "--plot", "is a directory"),
        (["lottery", "--levels", "1", "--plot", a_file / "fig"], "--plot", "is a file"),
        (["report", "--out", a_file], "--out", "a file stands there"),
    ]
    if not os.access("/sys", os.W_OK) or _cannot_write("/sys"):
        cases.append((["reproduce", "--claims", "C1", "--out", "/sys/rewind-out"], "--out", "cannot write in /sys"))
    (tmp_path / "fig.png").mkdir()   # a directory stands where the figure goes
    for argv, flag, words in cases:
        code, out, err = run_cli(capsys, *argv, "--set", "train.steps=20it", "--root", root) if argv[0] != "report" \
            else run_cli(capsys, *argv, "--root", root)
        assert code == 2, (argv, err)
        one_line_error(err, flag, *([words] if words else []))
        assert not root.exists(), argv
    # a folder that does not exist yet is fine: made when the table is written
    code, out, err = run_cli(capsys, "scores", "--method", "el2n", "--at", "0it", "--replicates", "1",
                             "--csv", tmp_path / "new" / "deep" / "s.csv", "--set", "train.steps=20it", "--root", root)
    assert code == 0 and (tmp_path / "new" / "deep" / "s.csv").exists()


def _cannot_write(folder: str) -> bool:
    try:
        Path(folder, ".rewind-test").write_text("x")
    except OSError:
        return True
    Path(folder, ".rewind-test").unlink()
    return False


@pytest.mark.parametrize("argv, words", [
    (["reproduce", "--claims", ""], "--claims"),                        # started the whole reproduction
    (["reproduce", "--claims", ","], "--claims"),
    (["linear-sweep", "--widths", "0"], "--widths"),                    # ran the preset's widths silently
    (["linear-sweep", "--lrs", "0"], "--lrs"),
    (["linear-sweep", "--widths", ""], "--widths"),
    (["critical-period", "--deficit", "bogus", "--until", "0it"], "pretrain.kind: 'bogus'"),  # a table "deficit bogus"
    (["train", "--ddp", "2", "--engine", "vectorised"], "--engine vectorised"),  # refused in the ranks, 40 lines
    (["train", "--ddp", "2", "--set", "probe.schedule=1it:5it,5it"], "probe.schedule"),
    (["data-diet", "--keep", "0.5", "--methods", "el2n", "--el2n-at", "10it", "--score-replicates", "1",
      "--replicates", "1", "--set", "data.subset=random"], "data.subset"),
])
def test_flags_are_refused_in_the_launching_process_in_one_line(tmp_path, capsys, argv, words):
    root = tmp_path / "runs"
    code, out, err = run_cli(capsys, *argv, "--set", "train.steps=20it", "--root", root)
    assert code == 2, err
    one_line_error(err, words)
    assert not root.exists()


def test_verify_applies_the_readers_schemas_to_every_record(study, capsys):
    """Anything report or results cannot read, verify reports: instability settings of the wrong
    type, a score set's metadata without its method."""
    root, s = study
    folder = root / "instability" / "0123456789abcdef"
    folder.mkdir(parents=True)
    (folder / "settings.json").write_text(json.dumps({"a": "x", "b": "y", "points": "30", "bn_reset": False,
                                                      "bn_batches": 0}))
    (folder / "rows.csv").write_text("alpha,split,metric,value\n0.0,test,error,0.1\n")
    scores = root / "scores" / "fedcba9876543210"
    scores.mkdir(parents=True)
    (scores / "meta.json").write_text(json.dumps({"key": "k", "spec": {"seeds": {"init": 0}}, "at": "0it",
                                                  "at_iterations": 0, "replicates": 1}))
    (scores / "scores.csv").write_text("example,label,method,at,replicate,score\n0,1,el2n,0,0,0.5\n")
    code, out, err = run_cli(capsys, "verify", "--root", root)
    assert code == 1
    assert "points must be an integer, not a string" in out and "no 'method'" in out
