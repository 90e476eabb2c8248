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
    task: str,
    run_name: str,
    architecture: dict[str, Any],
    classes: list[str] | None,
    input_spec: dict[str, Any],
    training_data: dict[str, Any],
    seed: int,
    config_hash: str,
    intended_use: str,
    metrics: dict[str, dict[str, Any]] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Assemble the card; `metrics` maps split -> metrics dict (only the scalar metrics with CIs are kept)."""
    card: dict[str, Any] = {
        "schema": SCHEMA,
        "name": run_name,
        "task": task,
        "architecture": architecture,
        "classes": classes,
        "input": input_spec,
        "training_data": training_data,
        "metrics": {split: headline_metrics(m) for split, m in (metrics or {}).items()},
        "seed": seed,
        "config_hash": config_hash,
        "versions": library_versions(),
        "intended_use": intended_use,
        "not_for_clinical_use": True,
        "disclaimer": DISCLAIMER,
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
    }
    if extra:
        card.update(extra)
    return card
