"""Models: the base class (RewindModel: which tensors are prunable), the one registry of exact names
and name patterns (register_model, create_model, find_model), seeded initialisation and placement."""
from .base import MODELS, ModelEntry, find_model
from .registry import RewindModel, create_model, initialise, place, register_model, registered_models

__all__ = ["MODELS", "ModelEntry", "RewindModel", "create_model", "find_model", "initialise", "place",
           "register_model", "registered_models"]
