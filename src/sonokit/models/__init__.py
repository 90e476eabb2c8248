"""Model registry, backbones, heads and weight loading: `sonokit.models.create(name, ...)` is the front door."""

from sonokit.models.registry import (
    SonoModel,
    count_params,
    create,
    create_from_spec,
    list_models,
    model_names,
    register_model,
)
from sonokit.models.weights import load_weights, read_state_dict

__all__ = [
    "SonoModel",
    "count_params",
    "create",
    "create_from_spec",
    "list_models",
    "load_weights",
    "model_names",
    "read_state_dict",
    "register_model",
]
