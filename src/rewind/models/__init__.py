"""Model registry: ``create_model(spec, input_shape, num_classes, seed)``."""
from .registry import RewindModel, create_model, initialise, place, register_model, registered_models

__all__ = ["RewindModel", "create_model", "initialise", "place", "register_model", "registered_models"]
