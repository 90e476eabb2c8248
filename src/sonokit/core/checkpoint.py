"""Best weights as safetensors (card in the metadata) and a full resumable checkpoint, both written atomically.

The resumable checkpoint holds only tensors, numbers, strings and containers, so it loads with
`torch.load(weights_only=True)` on any machine (no pickled code, CPU-safe: EchoNet users asked for that).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sonokit.errors import ModelError
from sonokit.utils.atomic import atomic_path

CARD_KEY = "sonokit_model_card"


def unwrap(model: nn.Module) -> nn.Module:
    """The plain module inside DistributedDataParallel / torch.compile wrappers."""
    while True:
        if hasattr(model, "module") and isinstance(model.module, nn.Module):
            model = model.module
        elif hasattr(model, "_orig_mod"):
            model = model._orig_mod
        else:
            return model


def save_weights(path: str | Path, model: nn.Module, card: dict[str, Any] | None = None) -> Path:
    """model.safetensors: contiguous CPU tensors, the model card as JSON under metadata[CARD_KEY]."""
    from safetensors.torch import save

    state = {k: v.detach().cpu().contiguous() for k, v in unwrap(model).state_dict().items()}
    metadata = {"format": "pt"}
    if card is not None:
        metadata[CARD_KEY] = json.dumps(card, default=str)
    path = Path(path)
    with atomic_path(path) as tmp:
        # Serialised in memory, written by Python: a write error (full disk) is an OSError naming the file,
        # where safetensors' own writer raises a SafetensorError with the reason in its text.
        data = save(state, metadata=metadata)
        try:
            tmp.write_bytes(data)
        except OSError as err:
            raise OSError(err.errno, err.strerror, str(path)) from err
    return path


def read_weights(path: str | Path) -> tuple[dict[str, torch.Tensor], dict[str, Any] | None]:
    """(state_dict, model card or None) from a model.safetensors."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: weights file not found")
    try:
        state = load_file(str(path), device="cpu")
        card = read_card(path)
    except (SafetensorError, OSError, ValueError) as err:
        raise ModelError(f"{path}: not a readable safetensors file ({err})") from err
    return state, card


def read_card(path: str | Path) -> dict[str, Any] | None:
    """The model card stored in a safetensors file's metadata (None when it has none)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    return json.loads(meta[CARD_KEY]) if CARD_KEY in meta else None


def rng_state() -> dict[str, Any]:
    """Python, numpy and torch RNG states in weights_only-loadable types."""
    np_state = np.random.get_state()  # noqa: NPY002 (the legacy global state is what we must restore)
    state: dict[str, Any] = {
        "python": _tuples_to_lists(random.getstate()),
        "numpy": {
            "key": torch.from_numpy(np_state[1].astype(np.int64)),
            "pos": int(np_state[2]),
            "has_gauss": int(np_state[3]),
            "cached_gaussian": float(np_state[4]),
        },
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(_lists_to_tuples(state["python"]))
    npst = state["numpy"]
    np.random.set_state(  # noqa: NPY002
        (
            "MT19937",
            npst["key"].numpy().astype(np.uint32),
            npst["pos"],
            npst["has_gauss"],
            npst["cached_gaussian"],
        )
    )
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _tuples_to_lists(obj: Any) -> Any:
    return [_tuples_to_lists(o) for o in obj] if isinstance(obj, (tuple, list)) else obj


def _lists_to_tuples(obj: Any) -> Any:
    return tuple(_lists_to_tuples(o) for o in obj) if isinstance(obj, list) else obj


class _KeepWriteError:
    """A binary file that keeps its write error: torch.save reports a failed write (a full disk) only as
    "unexpected pos", without the reason."""

    def __init__(self, fh: Any) -> None:
        self.fh = fh
        self.error: OSError | None = None

    def write(self, data: Any) -> int:
        try:
            return self.fh.write(data)
        except OSError as err:
            self.error = err
            raise

    def flush(self) -> None:
        self.fh.flush()


def save_checkpoint(path: str | Path, state: dict[str, Any]) -> Path:
    """Atomic torch.save: a kill during the write leaves the previous checkpoint intact; a write error is an
    OSError naming the checkpoint."""
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        out = _KeepWriteError(fh)
        try:
            torch.save(state, out)
        except RuntimeError as err:
            if out.error is None:
                raise
            raise OSError(out.error.errno, out.error.strerror, str(path)) from err
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: no checkpoint to resume from")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # unpickling errors come in many types
        raise ModelError(f"{path}: cannot read checkpoint ({type(err).__name__}: {err})") from err
