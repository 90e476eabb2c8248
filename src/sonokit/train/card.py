"""The model card: what a trained model is, what it was trained on, how well it does, and what it is not for.

Modelled on MONAI's metadata.json and timm's pretrained_cfg: enough to rebuild the network and its input
pipeline without the training code, and to tell a reader the limits of the numbers. It is written to
model_card.json and embedded in model.safetensors, so the weights never travel without it.
"""

from __future__ import annotations

import datetime as _dt
import platform
from importlib import metadata as _metadata
from typing import Any

from sonokit import __version__

SCHEMA = "sonokit.model_card/1"
DISCLAIMER = "Research software, not for clinical use. Not a medical device; outputs must not guide diagnosis or treatment."
_LIBS = ("torch", "torchvision", "timm", "numpy", "scikit-learn", "opencv-python-headless", "pydicom")


def library_versions() -> dict[str, str]:
    out = {"sonokit": __version__, "python": platform.python_version()}
    for lib in _LIBS:
        try:
            out[lib] = _metadata.version(lib)
        except _metadata.PackageNotFoundError:
            continue
    return out


def headline_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """{metric: {"value": x, "ci95": [lo, hi]}} for every scalar metric that has a CI."""
    return {
        k: {"value": v, "ci95": metrics.get(f"{k}_ci95")}
        for k, v in metrics.items()
        if f"{k}_ci95" in metrics and not isinstance(v, (list, dict))
    }


def build_card(
    *,
    task: Any,
    run_name: str,
    model: Any,
    cfg: Any,
    training_data: dict[str, Any],
    metrics: dict[str, dict[str, Any]] | None = None,
    training: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The card of a `model` trained with `cfg` for `task` (its classes, input and state); `metrics` maps split ->
    metrics dict (only the scalar metrics with CIs are kept), `training` says how the run went."""
    spec = dict(getattr(model, "spec", {}) or {})
    spec.setdefault("name", cfg.model)
    spec["params"] = int(sum(p.numel() for p in model.parameters()))
    card: dict[str, Any] = {
        "schema": SCHEMA,
        "name": run_name,
        "task": task.name,
        "architecture": spec,
        "classes": task.classes,
        "input": task.input_spec(),
        "training_data": training_data,
        "metrics": {split: headline_metrics(m) for split, m in (metrics or {}).items()},
        "seed": cfg.seed,
        "config_hash": cfg.hash(),
        "versions": library_versions(),
        "intended_use": task.intended_use,
        "not_for_clinical_use": True,
        "disclaimer": DISCLAIMER,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "training": training or {},
        "task_state": task.state(),
    }
    return card
