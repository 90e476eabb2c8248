"""Reading a classifier head's embedding and raw outputs during an ordinary forward pass (retrieval, the
applicability check and the app all use it), so no second pass and no model surgery is needed."""

from __future__ import annotations

from typing import Any

import numpy as np

from sonokit.errors import InputError, ModelError


class HeadCapture:
    """While attached, collects the head's embedding (its `embed`) and raw outputs of every forward pass."""

    def __init__(self, model: Any) -> None:
        head = getattr(model, "head", None)
        if head is None or not hasattr(head, "embed"):
            raise ModelError(
                f"{type(model).__name__} has no head with embed(): retrieval needs a registry model "
                "(and the torch backend)"
            )
        self._emb: list[np.ndarray] = []
        self._out: list[np.ndarray] = []
        self._handle = head.register_forward_hook(self._hook)

    def _hook(self, module: Any, inputs: tuple[Any, ...], output: Any) -> None:
        self._emb.append(module.embed(inputs[0]).float().cpu().numpy())
        self._out.append(output.float().cpu().numpy())

    def take(self) -> tuple[np.ndarray, np.ndarray]:
        """(embeddings, head outputs) captured since the last call, in forward order."""
        if not self._emb:
            raise InputError("no items to embed")
        emb, out = np.concatenate(self._emb), np.concatenate(self._out)
        self._emb, self._out = [], []
        return emb, out

    def close(self) -> None:
        self._handle.remove()
