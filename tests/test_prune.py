import pytest
import torch

from rewind.prune import density, magnitude_prune, prune_to_density, random_mask
from rewind.spec import PruneSpec, SpecError

SHAPES = {"c0.weight": (8, 1, 5), "c1.weight": (16, 8, 3), "fc.weight": (50, 64), "out.weight": (10, 50)}
KINDS = {"c0.weight": "conv", "c1.weight": "conv", "fc.weight": "fc", "out.weight": "output"}


def weights(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {n: torch.randn(s, generator=g) for n, s in SHAPES.items()}


def full():
    return {n: torch.ones(s, dtype=torch.bool) for n, s in SHAPES.items()}


def kept(mask, names):
    return sum(int(mask[n].sum()) for n in names)


def run_levels(spec, levels=12):
    mask, masks = full(), []
    for level in range(1, levels + 1):
        new = magnitude_prune(weights(level), mask, spec, level, KINDS.__getitem__)
        for n in new:  # pruned weights stay pruned
            assert not (new[n] & ~mask[n]).any()
        mask = new
        masks.append(mask)
    return masks


def test_global_density_is_exact_at_every_level():
    spec = PruneSpec("global", 0.2)
    pool = sum(torch.Size(s).numel() for s in SHAPES.values())
    for level, mask in enumerate(run_levels(spec), start=1):
        assert kept(mask, SHAPES) == round(pool * 0.8 ** level)
        assert abs(density(mask) - 0.8 ** level) <= 1 / pool


def test_layerwise_density_is_exact_per_layer():
    spec = PruneSpec("layerwise", 0.3)
    for level, mask in enumerate(run_levels(spec), start=1):
        for n, s in SHAPES.items():
            assert int(mask[n].sum()) == round(torch.Size(s).numel() * 0.7 ** level)


def test_per_type_rates_and_exclusion():
    spec = PruneSpec("global", 0.2, exclude=("c0.weight",), conv_fraction=0.1, output_fraction=0.1)
    for level, mask in enumerate(run_levels(spec, 6), start=1):
        assert mask["c0.weight"].all()
        assert int(mask["c1.weight"].sum()) == round(16 * 8 * 3 * 0.9 ** level)
        assert int(mask["out.weight"].sum()) == round(500 * 0.9 ** level)
        assert int(mask["fc.weight"].sum()) == round(50 * 64 * 0.8 ** level)


def test_global_pruning_removes_the_smallest_magnitudes():
    w = weights()
    mask = magnitude_prune(w, full(), PruneSpec("global", 0.5), 1, KINDS.__getitem__)
    kept_min = min(w[n][mask[n]].abs().min() for n in w)
    pruned_max = max(w[n][~mask[n]].abs().max() for n in w)
    assert kept_min >= pruned_max


def test_ties_are_broken_deterministically_by_position():
    w = {n: torch.ones(s) for n, s in SHAPES.items()}
    a = magnitude_prune(w, full(), PruneSpec("layerwise", 0.5), 1, KINDS.__getitem__)
    b = magnitude_prune(w, full(), PruneSpec("layerwise", 0.5), 1, KINDS.__getitem__)
    for n in a:
        assert torch.equal(a[n], b[n])
        flat = a[n].flatten()
        half = flat.numel() - int(flat.sum())
        assert not flat[:half].any() and flat[half:].all()   # earlier positions go first


def test_one_shot_to_a_target_density():
    mask = prune_to_density(weights(), full(), 0.05, PruneSpec("global"), KINDS.__getitem__)
    pool = sum(torch.Size(s).numel() for s in SHAPES.values())
    assert kept(mask, SHAPES) == round(pool * 0.05)
    with pytest.raises(SpecError):
        prune_to_density(weights(), full(), 0.0, PruneSpec("global"), KINDS.__getitem__)


def test_unknown_exclusion_is_named():
    with pytest.raises(SpecError, match="prune.exclude"):
        magnitude_prune(weights(), full(), PruneSpec(exclude=("nope.weight",)), 1, KINDS.__getitem__)


def test_random_masks_keep_counts():
    ref = run_levels(PruneSpec("global", 0.2), 5)[-1]
    lw = random_mask(ref, torch.Generator().manual_seed(0), "layerwise")
    for n in ref:
        assert int(lw[n].sum()) == int(ref[n].sum()) and not torch.equal(lw[n], ref[n])
    gl = random_mask(ref, torch.Generator().manual_seed(0), "global", exclude=("c0.weight",))
    assert torch.equal(gl["c0.weight"], ref["c0.weight"])
    assert kept(gl, SHAPES) == kept(ref, SHAPES)
    again = random_mask(ref, torch.Generator().manual_seed(0), "layerwise")
    assert all(torch.equal(lw[n], again[n]) for n in ref)
