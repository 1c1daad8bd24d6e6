"""Masks and pruning: pools and rates (masks.py), and the criteria that score the weights (criteria.py)."""
from .criteria import CRITERIA, Criterion, ScoreInput, get_criterion, prune, register_criterion
from .masks import (density, full_mask, layer_densities, magnitude_prune, prune_groups, prune_to_density,
                    random_mask)

__all__ = ["CRITERIA", "Criterion", "ScoreInput", "density", "full_mask", "get_criterion", "layer_densities",
           "magnitude_prune", "prune", "prune_groups", "prune_to_density", "random_mask", "register_criterion"]
