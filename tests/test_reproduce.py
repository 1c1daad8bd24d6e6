"""rewind reproduce (claims, verdicts, the HTML report) and rewind report --study."""
import io
import math
import re
import shutil
from contextlib import redirect_stdout
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import rewind
from rewind.cli import main
from rewind.reproduce import CLAIMS, HELD, INCONCLUSIVE, NOT_HELD, Context, Measurement, Test, combine, judge
from rewind.reproduce.lottery_claims import Testbed as _Testbed, c1, c2, matching_is_stable
from rewind.reproduce.verdict import alpha_for, bounds, error_rates, looks_for
from rewind.step import Step
from rewind.store import Store

QUICK = ["--quick", "--replicates", "2", "--set", "train.steps=60it", "--quiet"]


def run_cli(*argv):
    buf = io.StringIO()
    with redirect_stdout(buf):
        code = main(list(argv))
    return code, buf.getvalue()


# ---- the verdict rule ---------------------------------------------------------------------------

@pytest.mark.parametrize("values, direction, threshold, expected", [
    ([1.0, 1.2, 0.9], ">", 0.0, HELD),               # every replicate clearly above
    ([-1.0, -1.2, -0.9], ">", 0.0, NOT_HELD),        # clearly below
    ([1.0, -1.0, 0.5], ">", 0.0, INCONCLUSIVE),      # within noise: the interval contains 0
    ([-0.9, -1.1, -0.8], "<", 0.0, HELD),
    ([0.9, 1.1, 0.8], "<", 0.0, NOT_HELD),
    ([-0.1, -0.15, -0.05], ">", -0.2, HELD),         # matching: within 0.2 points of dense
    ([-0.9, -0.8, -1.0], "<", -0.2, HELD),           # not matching
    ([-0.3, -0.1, -0.25], ">", -0.2, INCONCLUSIVE),  # the tolerance inside the interval
    ([1.0], ">", 0.0, INCONCLUSIVE),                 # one replicate is never a verdict
])
def test_judge(values, direction, threshold, expected):
    r = judge(values, direction, threshold)
    assert r["verdict"] == expected
    assert r["mean"] == pytest.approx(np.mean(values))


def test_bounds_are_the_student_t_bounds_of_the_mean():
    # mean 2, sd 1, n 3: half-width t(0.95; 2) / sqrt(3) = 2.919986 / 1.732051 (the textbook quantile)
    mean, lo, hi, n = bounds([1.0, 2.0, 3.0], 0.05)
    assert (mean, n) == (2.0, 3) and lo == pytest.approx(2 - 1.685854, abs=1e-6) and hi == pytest.approx(3.685854 - 0)
    _, lo10, hi10, _ = bounds([1.0, 2.0, 3.0], 0.05 / 3)   # a look of three: wider
    assert lo10 < lo and hi10 > hi
    assert all(math.isnan(x) for x in bounds([1.0])[1:3])


@pytest.mark.parametrize("first, cap, looks", [(3, 10, (3, 5, 10)), (5, 10, (5, 10)), (3, 3, (3,)), (3, 5, (3, 5)),
                                               (2, 20, (2, 3, 5, 10, 20)), (4, 8, (4, 5, 8))])
def test_looks(first, cap, looks):
    assert looks_for(first, cap) == looks
    assert alpha_for(looks) == pytest.approx(0.05 / len(looks))


@pytest.mark.parametrize("looks", [(3,), (5,), (10,), (3, 5, 10)])
@pytest.mark.parametrize("noise", ["normal", "t3"])
def test_the_rule_says_held_of_a_null_effect_at_most_5_percent_of_the_time(looks, noise, capsys):
    """Simulated paired differences with their true mean on the threshold (no effect beyond it): the
    rate of "held" is at most 5% (20,000 simulated claims: Monte Carlo error about 0.15 points) and
    not far below it (the rule is not trivially conservative); the power at a paper-sized effect of
    two standard deviations is stated, and for the adaptive procedure at least 80%."""
    null = error_rates(">", -0.2, 1.0, effect=1.8, looks=looks, noise=noise, seed=1)
    assert 0.02 < null["false_held"] <= 0.05 + 0.004, null
    assert null["false_not_held"] <= 0.05 + 0.004
    one_sd = error_rates(">", -0.2, 1.0, effect=0.8, looks=looks, noise=noise, seed=2)["power"]
    with capsys.disabled():
        print(f"\nrule at looks {looks}, {noise} noise: false held {null['false_held']:.2%}, power {null['power']:.1%} "
              f"at 2 SD ({null['replicates']:.1f} replicates used on average), {one_sd:.1%} at 1 SD")
    if len(looks) > 1:
        assert null["power"] >= 0.8 and null["replicates"] < 10
    eq = error_rates("~", 0.5, 0.25, effect=0.0, looks=looks, noise=noise, seed=3)
    assert eq["false_held"] <= 0.05 + 0.004 and eq["power"] > 0.5


def test_non_finite_values_are_left_out_and_counted():
    r = judge([1.0, float("nan"), 1.3], ">", 0.0)
    assert r["verdict"] == HELD and r["n"] == 2 and r["dropped"] == 1
    assert judge([float("nan")] * 3, ">", 0.0)["verdict"] == INCONCLUSIVE
    with pytest.raises(ValueError, match="direction"):
        judge([1, 2], ">=", 0)


@pytest.mark.parametrize("values, direction, threshold, expected, words", [
    ([1.0, 1.2, 0.9], ">", 0.0, HELD, "above 0"),
    ([-1.0, -1.2, -0.9], ">", 0.0, NOT_HELD, "every replicate does"),
    ([1.0, -1.0, 0.5], ">", 0.0, INCONCLUSIVE, "an effect above"),
    ([0.3, -0.3, 0.4], "~", 0.5, INCONCLUSIVE, "larger than"),
    ([0.1, -0.1, 0.05, 0.0, 0.02], "~", 0.5, HELD, "within the margin"),
    ([2.0, 2.2, 1.9], "~", 0.5, NOT_HELD, "outside the margin"),
])
def test_every_verdict_has_a_sentence_with_its_bound(values, direction, threshold, expected, words):
    t = Test("gap", values, direction, threshold)
    assert t.verdict == expected and words in t.sentence()
    if expected == INCONCLUSIVE and direction == ">":
        # the bound excludes what the data exclude: the upper bound of the mean
        assert f"{t.result['high']:+.2f}" in t.sentence()


def test_combine_and_the_matching_stable_rule():
    assert combine([HELD, HELD]) == HELD
    assert combine([HELD, NOT_HELD, INCONCLUSIVE]) == NOT_HELD
    assert combine([HELD, INCONCLUSIVE]) == INCONCLUSIVE
    assert combine([]) == INCONCLUSIVE
    assert matching_is_stable([(NOT_HELD, NOT_HELD), (HELD, HELD)]) == HELD
    assert matching_is_stable([(NOT_HELD, NOT_HELD), (HELD, NOT_HELD)]) == NOT_HELD   # matching but unstable
    assert matching_is_stable([(HELD, HELD), (HELD, HELD)]) == INCONCLUSIVE          # nothing to contrast
    assert matching_is_stable([(INCONCLUSIVE, HELD), (HELD, HELD)]) == INCONCLUSIVE


# ---- adaptive replicates and seed sets -----------------------------------------------------------

DECIDED_AT_5 = [1.0, 0.2, 1.6, 0.9, 1.2, 1.1, 0.8, 1.0, 1.3, 0.7]   # inconclusive at 3, held at 5
NO_EFFECT = [0.3, -0.4, 0.1, -0.2, 0.5, -0.6, 0.2, 0.0, -0.1, 0.25]   # inconclusive at every look


@pytest.fixture
def fake_claims():
    """Two claims whose per-replicate values are fixed sequences; ``calls`` records each look's
    replicates and the seeds of the spec each look was given."""
    from rewind.reproduce.registry import register_claim

    calls = []

    def measure(seq, cid):
        def fn(ctx):
            spec = ctx.spec(rewind.get_preset("mnist1d_mlp").spec)
            calls.append((cid, ctx.replicates, spec.seeds.init))
            return Measurement([Test("gap", seq[:ctx.replicates], ">", 0.0)], f"{cid} measured", "constructed")
        return fn

    for cid, seq in (("C900", DECIDED_AT_5), ("C901", NO_EFFECT)):
        register_claim(cid, f"fake {cid}", "Nobody 2026, Fig. 1", "it holds", "gap > 0", "-")(measure(seq, cid))
    yield calls
    for cid in ("C900", "C901"):
        CLAIMS.pop(cid)


def test_an_inconclusive_claim_takes_more_replicates_and_ends_with_a_bound(fake_claims, tmp_path):
    from rewind.reproduce import reproduce

    r = reproduce("C900,C901", root=tmp_path / "runs", out=tmp_path / "out", seed_offset=1000)
    assert [(c, n) for c, n, _ in fake_claims] == [("C900", 3), ("C900", 5), ("C901", 3), ("C901", 5), ("C901", 10)]
    assert {seed for _, _, seed in fake_claims} == {1000}      # every spec's seeds shifted
    first, second = r.results
    assert (first.verdict, first.replicates, first.trail) == (HELD, 5, ((3, INCONCLUSIVE), (5, HELD)))
    assert (second.verdict, second.replicates) == (INCONCLUSIVE, 10)
    sentence = second.measurement.tests[0].sentence()
    assert "undecided at n = 10" in sentence and "is excluded" in sentence
    assert first.changes == {"seeds.init": ("0", "1000"), "seeds.data_order": ("0", "1000"),
                             "seeds.augment": ("0", "1000"), "seeds.prune": ("0", "1000")}
    html = (tmp_path / "out" / "index.html").read_text()
    assert sentence.split(":")[1].strip()[:20] in html and "seeds.init: 0 -&gt; 1000" in html
    assert "power %" in html and "false held %" in html and str(tmp_path) not in html
    tests = pd.read_csv(tmp_path / "out" / "tests.csv")
    assert (tests["false_held"] <= 0.055).all() and list(tests["n"]) == [5, 10]
    # the store keeps one record per claim and setting, with the seed offset
    assert len(list((tmp_path / "runs" / "claims").glob("C900-*/result.json"))) == 1
    with pytest.raises(rewind.SpecError, match="--max-replicates"):
        reproduce("C900", replicates=5, max_replicates=4, root=tmp_path / "runs", out=tmp_path / "o2")


def test_the_statistics_claims_are_judged_on():
    from rewind.reproduce.early_claims import _departures
    from rewind.reproduce.lottery_claims import spearman, trend

    assert trend([-3.0, -2.0, -1.0]) == pytest.approx(1.0)           # C7: damage shrinking by 1 point per k step
    assert trend([-1.0, -1.0, -1.0]) == pytest.approx(0.0) and math.isnan(trend([1.0, float("nan"), 2.0]))
    assert spearman([0.1, 0.5, 0.9], [90.0, 95.0, 97.0]) == pytest.approx(1.0)     # C22
    assert spearman([0.9, 0.5, 0.1], [90.0, 95.0, 97.0]) == pytest.approx(-1.0)
    assert math.isnan(spearman([0.5, 0.5, 0.5], [1.0, 2.0, 3.0]))                   # no variation: no correlation
    # C16/C17: a departure of 0 (never within) or None (still within at the end) is not a time
    table = pd.DataFrame({"replicate": [0, 0, 0, 1, 1, 1], "lr": [1.0, 2.0, 4.0] * 2,
                          "departure_train_interpolated": [400, 200, 100, 0, 210, None]})
    deps = _departures(table, "lr", [1.0, 2.0, 4.0])
    assert list(deps.loc[0]) == [400.0, 200.0, 100.0] and deps.loc[1].isna().tolist() == [True, False, True]
    slope = np.polyfit(np.log([1.0, 2.0, 4.0]), np.log(deps.loc[0].to_numpy()), 1)[0]
    assert slope == pytest.approx(-1.0)


# ---- claims judged on constructed study tables --------------------------------------------------

class _Prune:
    fraction = 0.36


class _Train:
    checkpoints = (Step(0, 0), Step(0, 20), Step(0, 200))


class _Spec:
    prune = _Prune()
    train = _Train()


class FakeStudy:
    """A study whose table is constructed: dense 98%, IMP at k* and at 0 and the baselines offset by
    the given per-replicate amounts."""

    key = "0000fakestudy000"
    preset = "mnist1d_resnet"
    spec = _Spec()

    def __init__(self, gaps: dict[tuple[str, str], list[float]]):
        rows = []
        dense = [98.0, 98.2, 97.9]
        for r, d in enumerate(dense):
            rows.append(self._row(r, 0, None, "none", d))
            for (branch, k), gap in gaps.items():
                rows.append(self._row(r, 4, k, branch, d + gap[r]))
        self._table = pd.DataFrame(rows)

    @staticmethod
    def _row(r, level, k, branch, acc):
        return {"run": f"{r}{level}{k}{branch}", "replicate": r, "level": level, "rewind_step": k,
                "rewind_iteration": None if k is None else int(k[:-2]), "branch": branch, "branch_params": None,
                "density": 0.64 ** (level / 2) if level else 1.0, "split": "test", "metric": "accuracy",
                "value": acc / 100}

    def table(self):
        return self._table


def _ctx_with(tmp_path, gaps):
    ctx = Context(Store(tmp_path / "runs"), replicates=3, figures=tmp_path / "figures")
    ks = (Step(0, 0), Step(0, 20), Step(0, 200))
    ctx.cache[f"testbed-mnist1d_resnet-{None}"] = _Testbed(FakeStudy(gaps), 4, ks, 2000)
    for kind in ("reinit", "random-prune"):
        ctx.cache[("branch", kind, "200it", "{}")] = True  # constructed: nothing to train
    return ctx


@pytest.mark.parametrize("star, zero, expected", [
    ([-0.05, -0.1, 0.0], [-0.9, -1.1, -0.8], HELD),        # k* matches, k = 0 falls behind
    ([-0.9, -1.1, -0.8], [-1.0, -1.2, -0.9], NOT_HELD),    # k* does not match either
    ([-0.05, -0.4, 0.1], [-0.9, -1.1, -0.8], INCONCLUSIVE),  # k*'s gap straddles the tolerance
])
def test_c1_on_constructed_tables(tmp_path, star, zero, expected):
    ctx = _ctx_with(tmp_path, {("none", "200it"): star, ("none", "0it"): zero})
    m = c1(ctx)
    assert rewind.reproduce.CLAIMS["C1"].verdict_of(m) == expected
    assert [t.values for t in m.tests] == [pytest.approx(star), pytest.approx(zero)]
    path, caption = m.figures[0]
    assert path.suffix == ".svg" and path.exists() and "replicates" in caption


def test_c2_on_constructed_tables(tmp_path):
    imp = [0.0, 0.0, 0.0]
    ctx = _ctx_with(tmp_path, {("none", "200it"): imp, ("reinit", "200it"): [-1.5, -2.0, -1.0],
                               ("random-prune", "200it"): [-3.0, -2.5, -4.0]})
    assert rewind.reproduce.CLAIMS["C2"].verdict_of(c2(ctx)) == HELD
    ctx = _ctx_with(tmp_path, {("none", "200it"): imp, ("reinit", "200it"): [-1.5, -2.0, -1.0],
                               ("random-prune", "200it"): [0.5, -0.5, 0.2]})
    assert rewind.reproduce.CLAIMS["C2"].verdict_of(c2(ctx)) == INCONCLUSIVE
    ctx = _ctx_with(tmp_path, {("none", "200it"): imp, ("reinit", "200it"): [1.5, 2.0, 1.0],
                               ("random-prune", "200it"): [-3.0, -2.5, -4.0]})
    assert rewind.reproduce.CLAIMS["C2"].verdict_of(c2(ctx)) == NOT_HELD


# ---- the command, the store, the page -----------------------------------------------------------

@pytest.fixture(scope="module")
def quick_report(tmp_path_factory):
    """rewind reproduce --quick on 60-iteration runs (every claim, 2 replicates, two claims at a
    time: about a minute), and the same command again."""
    base = tmp_path_factory.mktemp("reproduce")
    root, out = base / "runs", base / "out"
    code, text = run_cli("reproduce", *QUICK, "--workers", "2", "--root", str(root), "--out", str(out))
    assert code == 0, text
    runs_after_first = sorted(p.name for p in root.iterdir())
    first_csv = (out / "claims.csv").read_text()
    code, again = run_cli("reproduce", *QUICK, "--workers", "2", "--root", str(root), "--out", str(out))
    assert code == 0
    return {"root": root, "out": out, "text": text, "again": again, "runs": runs_after_first, "csv": first_csv}


def test_reproduce_writes_table_page_and_results(quick_report):
    out, root = quick_report["out"], quick_report["root"]
    table = pd.read_csv(out / "claims.csv")
    assert list(table["claim"]) == rewind.reproduce.claim_ids() and len(table) >= 24   # the papers' order
    assert set(table["verdict"]) <= {HELD, NOT_HELD, INCONCLUSIVE}
    # 60 iterations cannot reach the published 68% / 94%: C12 must say not held, with the numbers
    assert table.set_index("claim").loc["C12", "verdict"] == NOT_HELD
    tests = pd.read_csv(out / "tests.csv")
    assert set(tests["claim"]) == set(table["claim"]) and len(tests[tests.claim == "C12"]) == 2
    html = (out / "index.html").read_text()
    assert html.count('class="claim-row"') == len(table) and "<svg" in html and "http://" not in html.replace(
        "http://www.w3.org", "")
    assert "train.steps=60it" in html  # the page says the specs were changed
    assert "wrote" in quick_report["text"] and str(out / "index.html") in quick_report["text"]
    df = rewind.results(root)
    claims = df[df["kind"] == "claim"]
    assert set(claims["claim"]) == set(table["claim"])
    c12 = claims[(claims["claim"] == "C12") & (claims["metric"] == "mean")]
    assert len(c12) == 2 and (c12["value"] < -1).all() and set(c12["claim_verdict"]) == {NOT_HELD}


@pytest.mark.parametrize("claim", sorted(rewind.reproduce.claim_ids()))
def test_every_claim_measures_judges_and_says_how_to_recreate_it(quick_report, claim):
    """Each registered claim, run end to end at 60 iterations: every test has one value per
    replicate, a verdict and a sentence; the studies it names are in the store; its commands
    are rewind commands that name the store relatively (never an absolute path of the machine)."""
    tests = pd.read_csv(quick_report["out"] / "tests.csv")
    mine = tests[tests["claim"] == claim]
    assert len(mine) >= 1 and set(mine["verdict"]) <= {HELD, NOT_HELD, INCONCLUSIVE}
    assert (mine["n"] + mine["dropped"] == 2).all() and mine["sentence"].str.len().gt(20).all()
    assert mine["false_held"].dropna().le(0.055).all()
    row = pd.read_csv(quick_report["out"] / "claims.csv").set_index("claim").loc[claim]
    assert row["replicates"] == 2 and row["seeds"].startswith("replicate r uses")
    html = (quick_report["out"] / "index.html").read_text()
    section = html.split(f'id="{claim}"')[1].split('<section id=')[0]
    commands = re.findall(r"(?:^|<code>)(rewind [^\n<]+)", section, flags=re.M)
    assert commands and all(str(quick_report["root"]) not in c and "/tmp" not in c for c in commands)
    keys = str(row["studies"]).split() if isinstance(row["studies"], str) else []
    root = quick_report["root"]
    for key in keys:
        assert any((root / where / name).exists() for where in ("", "studies", "linear")
                   for name in (key, f"{key}.json")), key


def test_outputs_are_readable_by_the_group_as_ordinary_files(quick_report):
    import os

    umask = os.umask(0)
    os.umask(umask)
    expected = 0o666 & ~umask
    for path in [quick_report["out"] / "claims.csv", quick_report["out"] / "index.html",
                 next(quick_report["root"].glob("*/metrics.csv"))]:
        assert path.stat().st_mode & 0o777 == expected, path


def test_reproduce_again_trains_nothing_and_gives_the_same_table(quick_report):
    root = quick_report["root"]
    assert sorted(p.name for p in root.iterdir()) == quick_report["runs"]
    first = pd.read_csv(io.StringIO(quick_report["csv"])).drop(columns=["seconds"])
    again = pd.read_csv(quick_report["out"] / "claims.csv").drop(columns=["seconds"])
    pd.testing.assert_frame_equal(first, again)


def test_claims_measured_two_at_a_time_are_the_claims_measured_one_after_another(quick_report, tmp_path):
    """The fixture measured every claim two at a time, each in a one-thread worker process training its
    populations whole (after the shared testbed study, trained split across both workers). Measured
    again on an empty store one after another in this process at one thread, claims whose runs are
    vectorised give the same rows to the last digit: a member's bits depend neither on its companions
    nor on the process that trains it."""
    code, text = run_cli("reproduce", *QUICK, "--claims", "C5,C12", "--threads", "1", "--root",
                         str(tmp_path / "runs"), "--out", str(tmp_path / "serial"))
    assert code == 0, text
    serial = pd.read_csv(tmp_path / "serial" / "claims.csv").set_index("claim").drop(columns=["seconds"])
    both = pd.read_csv(io.StringIO(quick_report["csv"])).set_index("claim").drop(columns=["seconds"])
    pd.testing.assert_frame_equal(serial, both.loc[serial.index])
    cols = ["claim", "test", "mean", "low", "high", "values"]
    tests = pd.read_csv(quick_report["out"] / "tests.csv")[cols]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "serial" / "tests.csv")[cols],
                                  tests[tests["claim"].isin(["C5", "C12"])].reset_index(drop=True), rtol=0, atol=0)
    assert {p.name for p in (tmp_path / "runs").iterdir()} <= set(quick_report["runs"])   # the same keys


def test_claims_in_parallel_start_costliest_first_after_the_claims_they_read(fake_claims, tmp_path):
    from rewind.reproduce.registry import register_claim
    from rewind.reproduce.run import parallel_slots, reproduce, startable
    from rewind.train import TrainOptions

    c = CLAIMS
    order = startable(sorted([c["C4"], c["C1"], c["C3"], c["C24"]], key=lambda x: -x.cost), set(), {"C1", "C3", "C4", "C24"})
    assert [x.id for x in order] == ["C3", "C1", "C24"]          # C4 reads C3's instability; C23 is not selected
    assert [x.id for x in startable([c["C4"]], {"C3"}, {"C3", "C4"})] == ["C4"]
    two = TrainOptions(workers=2)
    assert parallel_slots([c["C1"], c["C2"]], two) == 2 and parallel_slots([c["C1"]], two) == 1
    assert parallel_slots([c["C1"], c["C2"]], TrainOptions(workers=2, executor="ray")) == 1
    # claims registered at run time (not by rewind or a plugin) are unknown to the workers: measured here
    r = reproduce("C900,C901", root=tmp_path / "runs", out=tmp_path / "out", options=TrainOptions(workers=2, quiet=True))
    assert [(x.claim.id, x.verdict, x.replicates) for x in r.results] == [("C900", HELD, 5), ("C901", INCONCLUSIVE, 10)]
    register_claim("C902", "a", "Nobody 2026", "-", "-", "-", after=("C903",))(lambda ctx: None)
    register_claim("C903", "b", "Nobody 2026", "-", "-", "-", after=("C902",))(lambda ctx: None)
    try:
        with pytest.raises(rewind.SpecError, match="cycle among C902, C903|cycle among C903, C902"):
            reproduce("C902,C903", root=tmp_path / "runs", out=tmp_path / "o2", options=TrainOptions(workers=2))
    finally:
        CLAIMS.pop("C902"), CLAIMS.pop("C903")


@pytest.mark.parametrize("argv, needle", [
    (["reproduce", "--claims", "C1,C99"], "--claims: C99 not known; choose from C1, C2"),
    (["reproduce", "--claims", "C1", "--replicates", "0"], "--replicates"),
    (["reproduce", "--claims", "C12", "--set", "train.nope=1"], "train.nope"),
    (["report", "--study", "ffff"], "--study: no lottery study or early-phase run"),
])
def test_bad_input_is_one_line_and_writes_nothing(argv, needle, tmp_path, capsys):
    root = tmp_path / "runs"
    code = main(argv + ["--root", str(root)])
    err = capsys.readouterr().err
    assert code == 2 and needle in err and len(err.strip().splitlines()) == 1
    assert not root.exists() or not any(root.iterdir())


def test_list_claims():
    code, text = run_cli("reproduce", "--list")
    assert code == 0 and all(f"C{i} " in text for i in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12))


# ---- rewind report --study ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def study_pages(tmp_path_factory):
    base = tmp_path_factory.mktemp("report")
    root = str(base / "runs")
    steps = ["--set", "train.steps=60it", "--quiet", "--root", root]
    code, text = run_cli("lottery", "--preset", "mnist1d_mlp", "--levels", "1", "--rewind", "0it,10it",
                         "--replicates", "2", *steps)
    assert code == 0
    key = Store(root).root.joinpath("studies").glob("*.json").__next__().stem
    assert run_cli("instability", "--study", key, "--levels", "0,1", "--points", "3", "--quiet", "--root", root)[0] == 0
    code, text = run_cli("report", "--study", key[:6], "--root", root)
    assert code == 0
    lottery_page = Path(text.split("wrote ")[-1].strip())
    assert run_cli("early", "--preset", "mnist1d_mlp", "--until", "30it", "--schedule", "1it:10it,5it", *steps)[0] == 0
    early = [r for r in Store(root).runs() if (r.path / "probes.csv").exists()][0]
    code, text = run_cli("report", "--study", early.key, "--root", root, "--out", str(base / "early"))
    assert code == 0
    return {"key": key, "lottery": lottery_page, "early": base / "early" / "index.html"}


def test_study_page(study_pages):
    html = study_pages["lottery"].read_text()
    assert study_pages["lottery"] == Path(study_pages["lottery"]).parent / "index.html"
    assert f"Lottery study {study_pages['key']} (mnist1d_mlp)" in html
    assert html.count("<svg") == 2  # the lottery figure and the instability figure
    assert "rewind lottery --preset mnist1d_mlp --levels 1 --rewind 0it,10it --replicates 2" in html
    assert f"rewind instability --study {study_pages['key']} --levels 0,1 --at 0it,10it" in html
    assert "paired by replicate" in html and "&#34;steps&#34;: &#34;60it&#34;" in html  # escaped spec JSON
    early = study_pages["early"].read_text()
    assert "Early-phase run" in early and early.count("<svg") == 1 and "Landmarks" in early


# ---- the page in a real browser -----------------------------------------------------------------

def _chromium() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    return None


def _browser_check(page_path: Path, shot: Path) -> dict:
    playwright = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install "
                                                                   "playwright; .ci/run installs it)")
    exe = _chromium()
    if exe is None:
        pytest.skip("no Chromium on this machine and none could be installed (apt-get install chromium; .ci/run "
                    "tries)")
    errors = []
    with playwright.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=[
            "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
            "--disable-component-update", "--disable-sync"])
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        requests = []
        page.on("request", lambda r: requests.append(r.url))
        page.goto(page_path.resolve().as_uri(), wait_until="load")
        sizes = [f.bounding_box() for f in page.query_selector_all("figure svg")]
        rows = len(page.query_selector_all("#claims-table tbody tr"))
        page.screenshot(path=str(shot), full_page=True)
        browser.close()
    return {"errors": errors, "sizes": sizes, "rows": rows, "requests": requests}


def _not_blank(png: Path) -> bool:
    from PIL import Image

    img = np.asarray(Image.open(png).convert("L"), dtype=float)
    return img.shape[0] > 500 and img.std() > 5 and (img < 128).mean() > 0.005


def test_report_in_a_browser(quick_report, tmp_path):
    page = quick_report["out"] / "index.html"
    seen = _browser_check(page, tmp_path / "shot.png")
    assert seen["errors"] == []
    assert seen["rows"] == len(rewind.reproduce.claim_ids())  # one row per claim
    assert seen["sizes"] and all(b and b["width"] > 50 and b["height"] > 50 for b in seen["sizes"])
    assert [u for u in seen["requests"] if not u.startswith("file:")] == []  # nothing from the network
    assert _not_blank(tmp_path / "shot.png")


def test_study_page_in_a_browser(study_pages, tmp_path):
    seen = _browser_check(study_pages["lottery"], tmp_path / "shot.png")
    assert seen["errors"] == [] and len(seen["sizes"]) == 2
    assert all(b["width"] > 50 and b["height"] > 50 for b in seen["sizes"])
    assert _not_blank(tmp_path / "shot.png")


def test_the_quick_testbed_is_a_quarter_as_long_but_not_below_its_floor():
    from rewind.reproduce.lottery_claims import shortened

    spec = rewind.get_preset("mnist1d_resnet_warmup").spec          # 2,000 it, x0.1 at 1,000 and 1,500, warmup 200
    t = shortened(spec, 4).train
    assert (str(t.steps), tuple(map(str, t.milestones)), str(t.warmup)) == ("500it", ("250it", "375it"), "50it")
    t = shortened(spec.replace(**{"train.steps": "400it"}), 4).train   # a quarter would be 100: the floor, 200
    assert (str(t.steps), tuple(map(str, t.milestones)), str(t.warmup)) == ("200it", ("500it", "750it"), "100it")
    short = spec.replace(**{"train.steps": "60it"})
    assert shortened(short, 4) is short                                 # already below the floor: unchanged
