"""Property-based fuzzing of the spec parser and the command line (Hypothesis).

Every generated input is either accepted or refused with exit status 2 and one line that
names what was wrong, and a refusal writes nothing. Training is replaced by a stub that runs
every check the real trainer runs before its first write, then stops: what is fuzzed is the
path from argv to the first write."""
from __future__ import annotations

import io
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

    from rewind.analysis import linear
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
    monkeypatch.setattr(study, "train_population", stub)
    monkeypatch.setattr(importlib.import_module("rewind.analysis.instability"), "train_population", stub)
    monkeypatch.setattr(linear, "linear_comparison", linear_stub)
    monkeypatch.setattr(importlib.import_module("rewind.analysis.hu"), "hu_comparison", linear_stub)


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
