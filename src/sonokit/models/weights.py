"""Load a local weights file into a sonokit model, whatever wrote it.

Accepted: `.safetensors`; torch checkpoints (`.pt/.pth/.bin/.ckpt`) holding a state dict or a dict with a
`state_dict` / `model` / `model_state_dict` / `net` entry (EchoNet-Dynamic saves `{"state_dict": ...}` with
DataParallel's `module.` prefix). Keys may be the full sonokit model's or a bare timm/torchvision backbone's
(matched under `backbone.`). Everything loads onto the CPU first, so GPU-saved files open on a laptop.
torch files are read with `weights_only=True`: a checkpoint cannot run code on load.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from sonokit.errors import ModelError
from sonokit.utils import get_logger

log = get_logger(__name__)

_NESTED_KEYS = ("state_dict", "model_state_dict", "model", "net", "module")
_STRIP_PREFIXES = ("module.", "_orig_mod.", "model.")


def weights_file(path: str | Path) -> Path:
    """The file `path` names: a folder written by `sonokit pretrain` stands for its backbone.safetensors."""
    path = Path(path)
    return path / "backbone.safetensors" if (path / "backbone.safetensors").is_file() else path


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a weights file (or `sonokit pretrain` folder) as a flat {name: tensor} dict on the CPU
    (prefixes not yet stripped)."""
    path = weights_file(path)
    if not path.is_file():
        raise ModelError(f"{path}: weights file not found")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        try:
            obj: Any = load_file(str(path), device="cpu")
        except Exception as err:  # safetensors raises its own error types for corrupt headers
            raise ModelError(f"{path}: not a readable safetensors file ({_short(err)})") from err
    else:
        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as err:  # pickle, zip and weights_only errors all mean "cannot use this file"
            raise ModelError(f"{path}: not a readable torch checkpoint ({_short(err)})") from err
    if isinstance(obj, dict):
        for key in _NESTED_KEYS:
            if isinstance(obj.get(key), dict) and any(torch.is_tensor(v) for v in obj[key].values()):
                obj = obj[key]
                break
    if not isinstance(obj, dict):
        raise ModelError(f"{path}: holds a {type(obj).__name__}, not a state dict of tensors")
    tensors = {str(k): v for k, v in obj.items() if torch.is_tensor(v)}
    if not tensors:
        raise ModelError(f"{path}: holds no tensors")
    return tensors


def _short(err: Exception) -> str:
    text = str(err).strip().splitlines()
    return (text[0] if text else type(err).__name__)[:200]


def _strip(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in _STRIP_PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix) :], True
    return key


def _candidate_maps(keys: list[str], model_keys: set[str]) -> dict[str, str]:
    """Pick the renaming of file keys onto model keys that matches the most names.

    Tried: as written; with `module.`-style prefixes stripped; and either of those under `backbone.` (a bare
    timm/torchvision backbone). "model." is only stripped when that helps, since it may be a real prefix.
    """
    options = []
    for base in (lambda k: k, _strip):
        for prefix in ("", "backbone."):
            options.append({k: prefix + base(k) for k in keys})
    return max(options, key=lambda m: sum(v in model_keys for v in m.values()))


def _adapt_input_conv(name: str, tensor: torch.Tensor, want: torch.Size) -> torch.Tensor | None:
    """An RGB stem loaded into a grayscale model (or back): timm's channel adaptation (sum or repeat)."""
    if tensor.ndim != 4 or len(want) != 4 or tensor.shape[0] != want[0] or tensor.shape[2:] != want[2:]:
        return None
    from timm.models import adapt_input_conv

    log.info("adapting %s from %d to %d input channels", name, tensor.shape[1], want[1])
    return adapt_input_conv(int(want[1]), tensor)


def load_weights(model: nn.Module, path: str | Path, strict: bool = False) -> dict[str, list[str]]:
    """Load `path` into `model`; returns {"missing", "unexpected", "mismatched"} key lists.

    strict=True turns any missing, unexpected or shape-mismatched key into a ModelError; strict=False loads
    what matches and logs the rest (a backbone-only file leaves the head missing, as expected). A file whose
    names match none of the model's raises ModelError either way.
    """
    path = Path(path)
    state = read_state_dict(path)
    own = model.state_dict()
    mapping = _candidate_maps(list(state), set(own))

    loadable: dict[str, torch.Tensor] = {}
    unexpected: list[str] = []
    mismatched: list[str] = []
    for src, dst in mapping.items():
        if dst not in own:
            unexpected.append(src)
            continue
        tensor = state[src]
        if tensor.shape != own[dst].shape:
            adapted = _adapt_input_conv(dst, tensor, own[dst].shape) if _is_first_conv(dst, own) else None
            if adapted is None:
                mismatched.append(f"{dst} {tuple(tensor.shape)} vs {tuple(own[dst].shape)}")
                continue
            tensor = adapted
        loadable[dst] = tensor.to(own[dst].dtype)
    missing = [k for k in own if k not in loadable]

    learnt = sum(t.ndim > 0 for t in loadable.values())  # BatchNorm step counters are not learnt
    if not learnt:
        sample = ", ".join(list(state)[:3])
        raise ModelError(
            f"{path}: no tensor names match this model (file has e.g. {sample}){_architecture_hint(path)}"
        )
    if len(mismatched) + len(unexpected) > learnt:  # another network's file: a few stem tensors may fit
        raise ModelError(
            f"{path}: most of its tensors do not fit this model ({_summary([], unexpected, mismatched)})"
            f"{_architecture_hint(path)}"
        )
    if strict and (missing or unexpected or mismatched):
        raise ModelError(f"{path}: strict load failed: {_summary(missing, unexpected, mismatched)}")
    model.load_state_dict(loadable, strict=False)
    log.info("loaded %d/%d tensors from %s", len(loadable), len(own), path.name)
    if missing or unexpected or mismatched:
        log.warning("%s: %s", path.name, _summary(missing, unexpected, mismatched))
    return {"missing": missing, "unexpected": unexpected, "mismatched": mismatched}


def _architecture_hint(path: Path) -> str:
    """'; it holds a X backbone: train with --model X' when the file's card names its network (a `sonokit
    pretrain` run or the shipped backbone), else ''. Why: `pretrain --model A` then `train --weights RUN` with
    another default network is the likeliest way to get here."""
    from sonokit.models.shipped import backbone_card

    file = weights_file(path)
    if file.suffix != ".safetensors":
        return ""
    try:
        model = backbone_card(file).get("model")
    except Exception:  # an unreadable header was already reported by read_state_dict; no hint then
        return ""
    return f"; it holds a {model} backbone: train with --model {model}" if model else ""


def _is_first_conv(key: str, own: dict[str, torch.Tensor]) -> bool:
    first = next((k for k, v in own.items() if v.ndim == 4), None)
    return key == first


def _summary(missing: list[str], unexpected: list[str], mismatched: list[str]) -> str:
    parts = []
    for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape mismatch", mismatched)):
        if keys:
            more = f" (+{len(keys) - 3} more)" if len(keys) > 3 else ""
            parts.append(f"{len(keys)} {label}: {', '.join(keys[:3])}{more}")
    return "; ".join(parts)
