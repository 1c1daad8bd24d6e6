"""Property-based fuzzing of the spec parser and the command line (Hypothesis).

Every generated input is either accepted or refused with exit status 2 and one line that
names what was wrong, and a refusal writes nothing. Training is replaced by a stub that runs
every check the real trainer runs before its first write, then stops: what is fuzzed is the
path from argv to the first write."""
from __future__ import annotations

import collections
import io
import os
import sys
import warnings
from contextlib import redirect_stdout

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

import rewind
from rewind.cli import main
from rewind.spec import SpecError, Spec, apply_overrides, field_help

FIELDS = [row[0] for row in field_help()]
SPECIAL = ["inf", "-inf", "nan", "1e400", "-1e400", "0", "-1", "1", "2", "0.5", "1e-300", "", " ", ",", "1,,2", "1,",
           "0it", "10ep", "1ep5it", "5it", "99999999999999999999999it", "9999999999it", "true", "false", "()",
           "mlp", "conv1d", "lenet_300_100", "cifar_resnet_20", "digits", "mnist1d", "sgd", "adam", "global",
           "crop_flip", "float64", "bf16", "hidden.0.weight", "out.weight", "nope", "100,100", "8,8,8", "0.9,0.999",
           "1it:10it,5it", "x:y", "\x00", "é", "٣it", "²"]
values = st.one_of(
    st.sampled_from(SPECIAL),
    st.integers(-10**25, 10**25).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
    st.text(max_size=12),
    st.lists(st.sampled_from(["1", "10it", "2ep", "-3", "x", "", "0.5"]), max_size=4).map(",".join),
)
def _good(path: str, default: str) -> list[str]:
    """Values a user would plausibly give a field: its default, its choices, or a few typical ones."""
    import dataclasses

    from rewind.spec import _section_types

    sec, name = path.split(".")
    fl = {f.name: f for f in dataclasses.fields(_section_types()[sec])}[name]
    if fl.metadata.get("choices"):
        return list(fl.metadata["choices"])
    typical = {"data.batch_size": ["32", "100", "128"], "model.widths": ["50", "64,64", "100,100"],
               "model.name": ["mlp", "conv1d", "lenet_30_20"], "train.lr": ["0.01", "0.1", "1e-3"],
               "train.momentum": ["0", "0.5", "0.9"], "train.steps": ["20it", "50it", "1ep"],
               "train.milestones": ["10it", "10it,20it", ""], "train.warmup": ["0it", "10it"],
               "train.eval_every": ["0it", "10it"], "train.eval_at": ["", "5it"], "train.checkpoints": ["", "5it"],
               "prune.fraction": ["0.2", "0.5"], "prune.exclude": ["", "out.weight"],
               "probe.schedule": ["", "1it:10it,5it"], "probe.until": ["0it", "20it"]}
    return typical.get(path, [default])


GOOD = {path: _good(path, default) for path, default, _ in field_help()}
assignments = st.one_of(
    st.sampled_from(sorted(GOOD)).flatmap(lambda f: st.sampled_from(GOOD[f]).map(lambda v: f"{f}={v}")),
    st.sampled_from(sorted(GOOD)).flatmap(lambda f: st.sampled_from(GOOD[f]).map(lambda v: f"{f}={v}")),
    st.tuples(st.one_of(st.sampled_from(FIELDS), st.sampled_from(["train", ".lr", "a.b.c", "train.nope", ""])),
              values).map(lambda t: f"{t[0]}={t[1]}"),
)
field_names = st.one_of(st.sampled_from(FIELDS), st.sampled_from(["train", "train.", ".lr", "a.b.c", "nope.lr",
                                                                    "train.nope", "=", ""]))
FUZZ = settings(max_examples=700, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])


@FUZZ
@given(st.dictionaries(field_names, values, max_size=4) | st.lists(assignments, max_size=4).map(
    lambda items: dict(x.split("=", 1) for x in items)))
def test_spec_overrides_are_accepted_or_refused_with_a_spec_error(overrides):
    base = rewind.get_preset("mnist1d_mlp").spec
    try:
        spec = apply_overrides(base, overrides)
    except SpecError as e:
        assert str(e) and "\n" not in str(e)
        event("refused")
        return
    event("accepted")
    # an accepted spec is a value: it round-trips through its canonical form to the same hash
    again = Spec.from_dict(spec.to_dict())
    assert again == spec and again.hash == spec.hash


class Accepted(BaseException):
    """Raised by the training stub: the input passed every check before the first write."""


@pytest.fixture
def stubbed(monkeypatch):
    import importlib

    from rewind.analysis.linear_model import offset as linear
    from rewind.lottery import study
    from rewind.train import check_spec

    train_pkg = importlib.import_module("rewind.train")  # the package, not rewind.train() the function

    def stub(members, store=None, options=None):
        if members:
            check_spec(members[0].spec, options or train_pkg.TrainOptions(), tuple(m.start for m in members))
        raise Accepted

    def linear_stub(*a, **k):
        raise Accepted

    monkeypatch.setattr(importlib.import_module("rewind.exec"), "train_population", stub)
    monkeypatch.setattr(importlib.import_module("rewind.api"), "train_population", stub)
    monkeypatch.setattr(study, "train_population", stub)
    monkeypatch.setattr(importlib.import_module("rewind.analysis.instability"), "train_population", stub)
    monkeypatch.setattr(linear, "linear_comparison", linear_stub)
    monkeypatch.setattr(importlib.import_module("rewind.analysis.linear_model.hu"), "hu_comparison", linear_stub)


COMMANDS = {
    "train": ["--replicates", "--resume-every", "--device", "--workers", "--engine", "--preset"],
    "lottery": ["--levels", "--rewind", "--replicates", "--prune-fraction", "--strategy", "--baselines", "--device"],
    "instability": ["--at", "--copies", "--points", "--levels", "--bn-batches", "--replicates", "--baselines"],
    "early": ["--until", "--schedule", "--rewind-point", "--replicates"],
    "linear": ["--until", "--schedule", "--replicates", "--tolerance", "--model-of", "--train", "--steps", "--classes"],
}
FLAG_GOOD = {"--replicates": ["1", "2"], "--resume-every": ["10", "500"], "--device": ["cpu", "auto"],
             "--workers": ["1", "2"], "--engine": ["auto", "sequential", "vectorised"],
             "--preset": ["mnist1d_mlp", "mnist1d_conv", "digits_cnn"], "--levels": ["1", "2", "0-2"],
             "--rewind": ["0it", "0it,10it"], "--prune-fraction": ["0.2", "0.5"], "--strategy": ["global", "layerwise"],
             "--baselines": ["", "reinit"], "--at": ["0it", "0it,10it"], "--copies": ["2", "3"], "--points": ["5", "30"],
             "--bn-batches": ["1", "20"], "--until": ["20it", "50it"], "--schedule": ["1it:10it,5it", "5it"],
             "--rewind-point": ["0it", "10it"], "--tolerance": ["0.02", "0.1"], "--model-of": ["fitted", "offset"],
             "--train": ["first", "both"], "--steps": ["20it", "50it"], "--classes": ["0,1", "3,7"]}
REQUIRED = {"lottery": ["--levels", "1"], "instability": ["--at", "0it"]}


@st.composite
def command_lines(draw):
    cmd = draw(st.sampled_from(sorted(COMMANDS)))
    argv = [cmd] + REQUIRED.get(cmd, [])
    for _ in range(draw(st.integers(0, 2))):
        flag = draw(st.sampled_from(COMMANDS[cmd]))
        argv += [flag, draw(st.sampled_from(FLAG_GOOD[flag]) | st.sampled_from(FLAG_GOOD[flag]) | values)]
    for _ in range(draw(st.integers(0, 3))):
        argv += ["--set", draw(assignments)]
    if cmd != "train":  # keep the fuzzed recipes short; train keeps its preset's length unless fuzzed
        argv += ["--set", "train.steps=50it"]
    return argv


@FUZZ
@given(command_lines())
def test_the_command_line_accepts_or_refuses_in_one_line_and_writes_nothing(stubbed, tmp_path_factory, argv):
    root = tmp_path_factory.mktemp("fuzz") / "runs"
    out, err = io.StringIO(), io.StringIO()
    old = sys.stderr
    sys.stderr = err
    try:
        with redirect_stdout(out), warnings.catch_warnings():
            try:
                code = main(argv + ["--root", str(root), "--quiet"])
            except Accepted:
                event(f"accepted: {argv[0]}")
                return
            except SystemExit as e:  # argparse
                code = e.code
    finally:
        sys.stderr = old
    lines = [x for x in err.getvalue().splitlines() if not x.startswith("rewind: warning:")]
    # exit 1 only for the environment: a dataset whose files are not on this machine
    missing_data = code == 1 and ("data download" in err.getvalue() or "downloaded automatically" in err.getvalue())
    assert code == 2 or missing_data, (argv, code, err.getvalue())
    assert len(lines) == 1 and "error:" in lines[0] and "Traceback" not in err.getvalue(), (argv, err.getvalue())
    assert not root.exists(), argv  # a refusal writes nothing
    event(f"refused: {argv[0]}")


# ---- every command, every flag ------------------------------------------------------------------
# The flags of each command are read from the parser, so a new command or flag is fuzzed without
# an edit here. Paths are drawn from a few fixed places under the test's own folder (a random path
# could land in the working tree), Ray is stubbed where it would connect, torchrun where it would
# start, and every trainer where it would train. `data download` (network) is left out.
SAFE_VALUES = {
    "--preset": ["mnist1d_mlp", "mnist1d_conv", "digits_cnn", "gaussian_two_layer", "mnist1d_resnet", "nope"],
    "--replicates": ["1", "2", "0", "-1", "10001"], "--levels": ["1", "2", "0-2", "0", "501", "x"],
    "--rewind": ["0it", "0it,10it", "10it", "", "0it,,5it", "999999it"], "--at": ["0it", "0it,10it", "10it", ""],
    "--steps": ["0it,10it", "20it", "", "1ep"], "--until": ["0it,1ep", "20it", "0it", ""],
    "--method": ["el2n", "grand", "forgetting", "nope"], "--methods": ["random", "el2n,grand", "", "nope"],
    "--keep": ["0.5", "0.3,0.9", "0", "1.5", ""], "--kinds": ["blur", "random-labels,transform", "", "bogus"],
    "--deficit": ["blur", "random-labels", "subset", "bogus"], "--claims": ["C1", "C1,C3", "", ",", "C99"],
    "--widths": ["16", "16,32", "0", "", "-3"], "--lrs": ["0.1", "0.1,1", "0", "", "inf"],
    "--study": ["", "0000", "abc"], "--figure": ["lottery", "instability"], "--kind": ["reinit", "noise", "nope"],
    "--engine": ["auto", "sequential", "vectorised"], "--executor": ["local", "processes", "ray"],
    "--ray-address": ["auto", "127.0.0.1:1"], "--ddp": ["2", "1", "0"], "--device": ["cpu", "auto", "cuda", "tpu"],
    "--classes": ["0,1", "3,7", "1", ""], "--thresholds": ["0.01,0.05", "", "x"], "--imp-level": ["1", "-1"],
    "--sizes": ["100,400", "0", ""], "--orders": ["random", "easiest", "bogus"], "--format": ["csv", "json"],
}
PATHS = ("--csv", "--plot", "--out", "--config", "--data-root")
SKIP = {"--root", "--quiet", "--help", "--data-root"}


def _command_flags():
    import argparse

    from rewind.cli import build_parser

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    out = {}
    for name, parser in sub.choices.items():
        if name == "data":
            continue
        flags = {}
        for a in parser._actions:
            if isinstance(a, argparse._HelpAction):
                continue
            key = a.option_strings[0] if a.option_strings else f"--{a.dest}"
            if key not in SKIP:
                flags[key] = a
        out[name] = flags
    return out


FLAGS = _command_flags()


def _flag_values(flag: str, action, where, study: str = "0000") -> st.SearchStrategy:
    if flag == "--study":
        return st.sampled_from([study, study[:6], study[:6], "", "0000", "../x"]) | values
    if flag in PATHS:
        file = str(where / "exists.txt")
        return st.sampled_from([str(where / "out" / "a" / "x"), str(where / "out"), file, f"{file}/x", "",
                                str(where / "cfg.toml")])
    good = SAFE_VALUES.get(flag, [])
    if action.choices:
        good = good + [str(c) for c in action.choices]
    if action.type is int:
        good = good + ["0", "1", "2", "-1", "10**9"]
    if action.type is float:
        good = good + ["0", "0.5", "nan", "-1", "1e400"]
    if action.default is not None and not isinstance(action.default, (bool, list)):
        good = good + [str(action.default)]
    return st.sampled_from(good) | st.sampled_from(good) | values if good else values


# an acceptable start for each command, which the drawn flags then change (argparse: the last wins)
BASE = {"lottery": ["--levels", "1"], "instability": ["--at", "0it"], "early": ["--until", "20it"],
        "branch": ["reinit", "--study", "STUDY", "--levels", "1"], "plot": ["lottery", "--study", "STUDY"],
        "pretrain-study": ["--levels", "1", "--steps", "0it,10it", "--kinds", "blur"],
        "diet-lottery": ["--levels", "1", "--steps", "0it,10it", "--orders", "random"],
        "scores": ["--method", "el2n", "--at", "10it"], "example-lmc": ["--study", "STUDY", "--imp-level", "1"],
        "report": ["--study", "STUDY"],
        "critical-period": ["--until", "0it,10it"], "data-diet": ["--methods", "random", "--keep", "0.5"],
        "reproduce": ["--claims", "C1"], "linear": ["--model-of", "offset", "--until", "20it"]}


# commands that read a lottery study: each input gets a copy of a store that holds one
STUDY_COMMANDS = ("branch", "plot", "report", "example-lmc")


@st.composite
def any_command_line(draw, command, where, study="0000"):
    flags = FLAGS[command]
    argv = [command] + [study if a == "STUDY" else a for a in BASE.get(command, [])]
    for flag, action in flags.items():   # positionals and required flags a base does not give
        if (action.required or not action.option_strings) and command not in BASE:
            value = draw(_flag_values(flag, action, where, study))
            argv += [value] if not action.option_strings else [flag, value]
    optional = [f for f, a in flags.items() if a.option_strings and not a.required]
    for _ in range(draw(st.integers(0, 3)) if optional else 0):
        flag = draw(st.sampled_from(optional))
        if flags[flag].nargs == 0:
            argv.append(flag)
        elif flag == "--set":
            argv += ["--set", draw(assignments)]
        else:
            argv += [flag, draw(_flag_values(flag, flags[flag], where, study))]
    if "--set" in flags and command != "branch":   # (branch --set is the retrain branch's change)
        argv += ["--set", "train.steps=50it"]
    return argv


@pytest.fixture
def stubbed_everywhere(monkeypatch):
    """Every place that would train, connect to Ray or start torchrun raises Accepted instead,
    after the checks the real code runs before its first write."""
    import importlib
    import subprocess

    from rewind.train import check_spec

    plan = importlib.import_module("rewind.exec.plan")

    def train_here(members, store, opts):
        if members:
            check_spec(members[0].spec, opts, tuple(m.start for m in members))
        raise Accepted

    def accept(*a, **k):
        raise Accepted

    monkeypatch.setattr(plan, "train_here", train_here)
    monkeypatch.setattr(importlib.import_module("rewind.exec.raycluster"), "connect", accept)
    monkeypatch.setattr(subprocess, "call", accept)
    monkeypatch.setattr(importlib.import_module("rewind.analysis.linear_model.hu"), "compare_hu", accept)
    monkeypatch.setattr(importlib.import_module("rewind.analysis.linear_model.offset"), "compare", accept)


def _listing(folder):
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*")) if folder.exists() else []


EVERY = settings(max_examples=60, deadline=None, derandomize=True, database=None,
                 suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                        HealthCheck.filter_too_much])


@pytest.fixture(scope="module")
def study_store(tmp_path_factory):
    """A store with one tiny lottery study (2 levels, 2 rewind steps, 20 iterations)."""
    from rewind.lottery import Study
    from rewind.step import parse_steps

    root = tmp_path_factory.mktemp("study") / "runs"
    spec = rewind.get_preset("mnist1d_mlp").spec.replace(**{"train.steps": "20it", "train.milestones": "",
                                                            "model.widths": "16,16"})
    study = Study(spec, parse_steps("0it,5it"), "mnist1d_mlp", rewind.Store(root))
    study.run(2, options=rewind.TrainOptions(quiet=True))
    return root, study.key


@pytest.mark.parametrize("command", sorted(FLAGS))
def test_every_command_accepts_or_refuses_in_one_line_and_writes_nothing(stubbed_everywhere, study_store, tmp_path,
                                                                          command):
    """60 inputs per command (18 commands: 1,080 in all); 0 tracebacks; a refusal leaves the store
    root and the output folders as they were."""
    where = tmp_path / "io"
    where.mkdir()
    (where / "exists.txt").write_text("a file\n")
    (where / "cfg.toml").write_text("[train]\nlr = 0.05\n")
    count, outcomes = [0], collections.Counter()

    import shutil

    @EVERY
    @given(any_command_line(command, where, study_store[1]))
    def check(argv):
        count[0] += 1
        root = tmp_path / f"runs{count[0]}"   # each input its own store
        if command in STUDY_COMMANDS:
            shutil.copytree(study_store[0], root)
        before, stored = _listing(where), _listing(root)
        out, err = io.StringIO(), io.StringIO()
        old = sys.stderr
        sys.stderr = err
        try:
            with redirect_stdout(out), warnings.catch_warnings():
                try:
                    code = main(argv + ["--root", str(root)])
                except Accepted:
                    outcomes["accepted"] += 1
                    return
                except SystemExit as e:  # argparse
                    code = e.code
        finally:
            sys.stderr = old
        text = err.getvalue()
        assert "Traceback" not in text, (argv, text)
        if code == 0:   # done without training: ls, results, presets, reproduce --list, scores at 0it
            outcomes["answered"] += 1
            return
        lines = [x for x in text.splitlines() if not x.startswith("rewind: warning:")]
        missing_data = code == 1 and ("data download" in text or "downloaded automatically" in text)
        assert code == 2 or missing_data, (argv, code, text)
        assert len(lines) == 1 and "error:" in lines[0], (argv, text)
        assert _listing(root) == stored, argv    # a refusal writes nothing: not in the store,
        assert _listing(where) == before, argv   # nor in an output folder
        outcomes["refused"] += 1

    check()
    if os.environ.get("REWIND_FUZZ_STATS"):
        print(f"\nfuzz {command}: {count[0]} inputs, {dict(outcomes)}")
