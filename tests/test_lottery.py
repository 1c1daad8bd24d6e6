import json

import pytest
import torch

import rewind
from rewind.cli import main
from rewind.lottery import BRANCHES, BranchInput, Study, get_branch
from rewind.lottery.branches import coerce_params
from rewind.models import create_model
from rewind.step import parse_steps
from rewind.store import Store
from rewind.train import TrainOptions

TINY = {"train.steps": "40it", "train.eval_every": "0it", "train.milestones": "", "model.widths": "24,24",
        "train.lr": 0.1}


def tiny_study(root, rewinds="0it,10it", **over):
    spec, name = rewind.make_spec("mnist1d_mlp", {**TINY, **over})
    return Study(spec, parse_steps(rewinds), name, Store(root))


def trained_keys():
    keys = set()
    return keys, TrainOptions(quiet=True, on_iteration=lambda run, it: keys.add(run.key))


def test_levels_rewind_to_wk_under_the_mask_and_extend_without_retraining(tmp_path):
    study = tiny_study(tmp_path)
    keys, opts = trained_keys()
    runs = study.run(3, replicates=2, options=opts)
    assert len(keys) == 2 + 2 * 2 * 3                      # 2 dense + 2 replicates x 2 rewinds x 3 levels
    for r in range(2):
        dense = runs[(r, "0it", 0)]
        for k, k_it in (("0it", 0), ("10it", 10)):
            w_k = dense.weights(k_it)
            for level in (1, 2, 3):
                run = runs[(r, k, level)]
                start = run.load(k_it)
                assert not any(n.startswith("optim/") for n in start)   # optimizer state reset
                mask = {n[5:]: m for n, m in start.items() if n.startswith("mask/")}
                assert abs(sum(int(m.sum()) for m in mask.values()) / sum(m.numel() for m in mask.values())
                           - 0.8 ** level) < 1e-3
                for n, w in w_k.items():
                    expect = w * mask[n] if n in mask else w
                    assert torch.equal(start[f"model/{n}"], expect), (r, k, level, n)
                final = run.weights(40)
                for n, m in mask.items():
                    assert torch.count_nonzero(final[n][~m]) == 0
    # extending 3 -> 5 levels trains only levels 4 and 5
    keys2, opts2 = trained_keys()
    runs5 = study.run(5, replicates=2, options=opts2)
    assert len(keys2) == 2 * 2 * 2
    new = {runs5[(r, k, lv)].key for r in range(2) for k in ("0it", "10it") for lv in (4, 5)}
    assert keys2 == new
    # and the results table has the lottery columns
    table = study.table()
    acc = table[(table.metric == "accuracy") & (table.split == "test")]
    assert set(acc.level) == {0, 1, 2, 3, 4, 5} and set(acc.replicate) == {0, 1}
    assert set(acc.rewind_step.dropna()) == {"0it", "10it"} and set(acc.branch) == {"none"}
    lv5 = acc[acc.level == 5]
    assert len(lv5) == 4 and (abs(lv5.density - 0.8 ** 5) < 1e-3).all()


def test_branches_are_reproducible_and_recorded(tmp_path):
    study = tiny_study(tmp_path, rewinds="10it")
    study.run(2)
    a = study.branch("noise", [1, 2], {"scale": "0.5"})
    keys, opts = trained_keys()
    b = study.branch("noise", [1, 2], {"scale": 0.5}, options=opts)
    assert not keys and {k: r.key for k, r in a.items()} == {k: r.key for k, r in b.items()}
    c = study.branch("noise", [1], {"scale": 0.25})
    assert c[(0, "10it", 1)].key != a[(0, "10it", 1)].key
    rp = study.branch("random-prune", [2])[(0, "10it", 2)]
    ref_mask = study.mask(0, parse_steps("10it")[0], 2)
    start = rp.load(10)
    for n, m in ref_mask.items():
        assert int(start[f"mask/{n}"].sum()) == int(m.sum())
    table = study.table()
    assert {"noise", "random-prune", "none"} <= set(table.branch)
    noise_rows = table[table.branch == "noise"]
    assert set(noise_rows.branch_params.map(lambda s: json.loads(s)["scale"])) == {0.5, 0.25}
    with pytest.raises(rewind.SpecError, match="level 1"):
        study.branch("reinit", [0])


def _input(seed=0, shape=(64, 200)):
    model = create_model(rewind.ModelSpec("mlp", (200, 64)), (40,), 10, seed=1)
    w0 = {k: v.clone() for k, v in model.state_dict().items()}
    g = torch.Generator().manual_seed(123)
    wk = {k: v + 0.01 * torch.randn(v.shape, generator=g) for k, v in w0.items()}
    mask = {n: torch.rand(wk[n].shape, generator=g) < 0.4 for n in model.prunable()}
    fresh = lambda s: create_model(rewind.ModelSpec("mlp", (200, 64)), (40,), 10, seed=s).state_dict()  # noqa: E731
    return BranchInput(wk, mask, torch.Generator().manual_seed(seed), w0, fresh, rewind.Spec())


def run_branch(name, seed=0, **params):
    inp = _input(seed)
    return inp, get_branch(name).fn(inp, **coerce_params(get_branch(name), params))


def test_sign_reinit_keeps_signs_and_draws_init_magnitudes():
    inp, out = run_branch("sign-reinit")
    for n in inp.mask:
        assert torch.equal(torch.sign(out.weights[n]), torch.sign(inp.weights[n]))
        assert not torch.equal(out.weights[n].abs(), inp.weights[n].abs())
    w = out.weights["hidden.1.weight"]  # kaiming normal, fan_in 200: |w| has mean sqrt(2/200) * sqrt(2/pi)
    expect = (2 / 200) ** 0.5 * (2 / torch.pi) ** 0.5
    assert abs(w.abs().mean().item() - expect) < 0.03 * expect
    assert torch.equal(out.weights["hidden.0.bias"], inp.weights["hidden.0.bias"])


def test_sign_flip_and_random_sign_keep_magnitudes():
    inp, flip = run_branch("sign-flip")
    _, rand = run_branch("random-sign")
    for n in inp.mask:
        assert torch.equal(flip.weights[n], -inp.weights[n])
        assert torch.equal(rand.weights[n].abs(), inp.weights[n].abs())
    frac = (torch.sign(rand.weights["hidden.0.weight"]) != torch.sign(inp.weights["hidden.0.weight"])).float().mean()
    assert 0.45 < frac < 0.55


@pytest.mark.parametrize("name", ["shuffle-layer", "shuffle-filter"])
@pytest.mark.parametrize("keep_signs", [False, True])
def test_shuffles_keep_each_layers_multiset(name, keep_signs):
    inp, out = run_branch(name, keep_signs=keep_signs)
    for n, m in inp.mask.items():
        w, v = inp.weights[n], out.weights[n]
        assert torch.equal(v[~m], w[~m])       # pruned positions untouched (zeroed by the trainer)
        units = [(w[m], v[m])] if name == "shuffle-layer" else [(w[r][m[r]], v[r][m[r]]) for r in range(w.shape[0])]
        for before, after in units:
            if keep_signs:
                assert torch.equal(torch.sort(before.abs()).values, torch.sort(after.abs()).values)
                assert torch.equal(torch.sign(before), torch.sign(after))
            else:
                assert torch.equal(torch.sort(before).values, torch.sort(after).values)
        assert not torch.equal(v[m], w[m])


def test_noise_has_the_requested_std():
    inp, out = run_branch("noise", scale=2.0)
    for n in inp.mask:
        diff = out.weights[n] - inp.weights[n]
        target = 2.0 * inp.init_weights[n].std().item()
        k = diff.numel()
        assert abs(diff.std().item() - target) < 4 * target / (2 * k) ** 0.5 + 1e-7
        assert abs(diff.mean().item()) < 4 * target / k ** 0.5


@pytest.mark.parametrize("name", ["reinit", "random-prune", "sign-reinit", "random-sign", "shuffle-layer",
                                  "shuffle-filter", "noise"])
def test_branches_are_functions_of_their_seed(name):
    _, a = run_branch(name, seed=1)
    _, b = run_branch(name, seed=1)
    _, c = run_branch(name, seed=2)
    same = lambda x, y: all(torch.equal(x.weights[k], y.weights[k]) for k in x.weights) and \
        all(torch.equal(x.mask[k], y.mask[k]) for k in x.mask)  # noqa: E731
    assert same(a, b) and not same(a, c)


def test_every_registered_branch_is_tested():
    assert set(BRANCHES) == {"reinit", "random-prune", "sign-reinit", "sign-flip", "random-sign", "shuffle-layer",
                             "shuffle-filter", "noise", "retrain"}


def test_retrain_changes_fields_and_refuses_architecture():
    inp, out = run_branch("retrain", settings={"seeds.data_order": 7})
    assert out.spec.seeds.data_order == 7 and out.mask is inp.mask
    with pytest.raises(rewind.SpecError):
        run_branch("retrain", settings={"model.widths": "3"})
    with pytest.raises(rewind.SpecError, match="unknown parameter"):
        run_branch("noise", sigma=1)


def test_cli_lottery_branch_plot_results(tmp_path, capsys):
    root = str(tmp_path / "runs")
    sets = [a for k, v in TINY.items() for a in ("--set", f"{k}={v}")]
    assert main(["lottery", "--preset", "mnist1d_mlp", "--levels", "2", "--rewind", "0it,5it", *sets,
                 "--baselines", "reinit", "--replicates", "2", "--root", root, "--quiet"]) == 0
    out = capsys.readouterr().out
    key = out.split()[1]
    assert "reinit" in out and " 64.0" in out
    assert "k=5it minus k=0it, paired by replicate" in out
    assert main(["lottery", "--preset", "mnist1d_mlp", "--levels", "2", "--rewind", "0it,5it", *sets,
                 "--baselines", "reinit", "--baselines-at", "7it", "--root", root, "--quiet"]) == 2
    assert "--baselines-at: 7it not among the rewind steps" in capsys.readouterr().err
    table = rewind.lottery.Study.load(key, rewind.store.Store(root)).table()
    diff = rewind.report.paired_differences(table, "0it", "5it")
    test = table[(table.split == "test") & (table.metric == "accuracy") & (table.branch == "none")]
    at = lambda k: test[(test.level == 1) & (test.rewind_step == k)].sort_values("replicate")["value"].to_numpy()  # noqa: E731
    assert diff.loc[diff.level == 1, "difference"].item() == pytest.approx((at("5it") - at("0it")).mean())
    assert (diff.ci_low <= diff.difference).all() and (diff.difference <= diff.ci_high).all() and (diff.n == 2).all()
    assert main(["branch", "shuffle-layer", "--study", key[:6], "--levels", "1-2", "--keep-signs", "true",
                 "--rewind", "5it", "--root", root, "--quiet"]) == 0
    assert "shuffle-layer keep_signs=True" in capsys.readouterr().out
    assert main(["branch", "noise", "--study", key, "--levels", "1", "--scale", "x", "--root", root]) == 2
    assert "scale" in capsys.readouterr().err
    assert main(["branch", "noise", "--study", "zzz", "--levels", "1", "--root", root]) == 2
    assert "no study" in capsys.readouterr().err
    assert main(["plot", "lottery", "--study", key, "--root", root, "--out", str(tmp_path / "fig")]) == 0
    assert (tmp_path / "fig.png").stat().st_size > 10_000 and (tmp_path / "fig.svg").exists()
    svg = (tmp_path / "fig.svg").read_text()  # matplotlib keeps each text as a comment
    assert svg.count("reinit (masks of k=5it)") == 1 and "masks of k=0it" not in svg  # each baseline once
    assert "over 2 replicates" in svg and svg.count("IMP, rewind to k=") == 2
    df = rewind.results(root)
    for col in ("level", "density", "rewind_step", "branch", "replicate"):
        assert col in df.columns
    assert set(df.branch) == {"none", "reinit", "shuffle-layer"}


def test_a_branch_trains_every_replicate_as_one_population_with_the_same_bits_as_one_at_a_time(tmp_path):
    """Study.branch stacks every replicate and rewind step into one population (only seeds,
    weights and masks differ); each run's key and bits are those it has when its replicate is
    trained alone."""
    import torch

    from rewind.lottery import Study
    from rewind.step import Step
    from rewind.store import Store
    from rewind.train import TrainOptions

    spec = rewind.get_preset("mnist1d_resnet").spec.replace(
        **{"train.steps": "40it", "train.milestones": "", "train.checkpoints": "0it,5it"})
    opts, seen = TrainOptions(quiet=True), []

    def branch_runs(root, together):
        st = Study(spec, (Step(0, 0), Step(0, 5)), "mnist1d_resnet", Store(root))
        st.run(1, replicates=2, options=opts)
        if together:
            return st.branch("noise", [1], {"scale": 1.0}, replicates=2, options=opts)
        out = {}
        for r in (1, 2):   # replicate 0, then replicate 1 alone
            out.update(st.branch("noise", [1], {"scale": 1.0}, replicates=r, options=opts))
        return out

    import rewind.exec.plan as plan
    real = plan.train_here

    def spy(members, store, o):
        seen.append(len(members))
        return real(members, store, o)

    plan.train_here, together = spy, None
    try:
        together = branch_runs(tmp_path / "a", True)
    finally:
        plan.train_here = real
    alone = branch_runs(tmp_path / "b", False)
    assert 4 in seen   # 2 replicates x 2 rewind steps in one population
    assert sorted(map(str, together)) == sorted(map(str, alone)) and len(together) == 4
    for k, run in together.items():
        other = alone[k]
        assert run.key == other.key
        wa, wb = run.weights(40), other.weights(40)
        assert all(torch.equal(wa[n], wb[n]) for n in wa)
