"""The one model registry (image backbones + heads, video, segmentation and landmark networks), and weight loading:
`sonokit.models.create(name, ...)` builds an image model, `build(name, kind=...)` any registered network."""

from sonokit.models.registry import (
    KINDS,
    ModelEntry,
    SonoModel,
    build,
    count_params,
    create,
    create_from_spec,
    get_entry,
    list_models,
    model_names,
    register_model,
)
from sonokit.models.weights import load_weights, read_state_dict

__all__ = [
    "KINDS",
    "ModelEntry",
    "SonoModel",
    "build",
    "count_params",
    "create",
    "create_from_spec",
    "get_entry",
    "list_models",
    "load_weights",
    "model_names",
    "read_state_dict",
    "register_model",
]
