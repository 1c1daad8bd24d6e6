"""Masks and magnitude pruning."""
from .masks import (density, full_mask, layer_densities, magnitude_prune, prune_groups, prune_to_density,
                    random_mask)

__all__ = ["density", "full_mask", "layer_densities", "magnitude_prune", "prune_groups", "prune_to_density",
           "random_mask"]
