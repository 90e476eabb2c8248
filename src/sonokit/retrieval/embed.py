"""Embeddings from a trained model: the penultimate layer (`model.embed(x) -> (B, D)`) over a dataset."""

from __future__ import annotations

from typing import Any

import numpy as np

from sonokit.errors import ModelError
from sonokit.utils import get_logger, progress

log = get_logger(__name__)


def _inputs(batch: Any) -> Any:
    """The model input of a batch: datasets here yield (image, target) tuples; dicts and bare tensors also work."""
    if isinstance(batch, (tuple, list)):
        return batch[0]
    if isinstance(batch, dict):
        for key in ("image", "x", "input", "video"):
            if key in batch:
                return batch[key]
        raise ModelError(f"cannot find the input in a batch with keys {sorted(batch)}")
    return batch


def embed_batches(model: Any, batches: Any, device: str = "cpu", with_logits: bool = False) -> Any:
    """Run `model.embed` (and optionally the head) over an iterable of batches; returns numpy arrays."""
    import torch

    if not hasattr(model, "embed"):
        raise ModelError(f"{type(model).__name__} has no .embed(x) method; retrieval needs a registry model")
    if with_logits and not (hasattr(model, "feature_map") and hasattr(model, "head")):
        raise ModelError(f"{type(model).__name__} lacks feature_map/head; embed and classify separately")
    was_training = model.training
    model.eval()
    feats, logits = [], []
    try:
        with torch.inference_mode():
            for batch in batches:
                x = _inputs(batch).to(device)
                if with_logits:  # one backbone pass for both: the head maps its embedding to logits
                    fmap = model.feature_map(x)
                    feats.append(model.head.embed(fmap).float().cpu().numpy())
                    logits.append(model.head(fmap).float().cpu().numpy())
                else:
                    feats.append(model.embed(x).float().cpu().numpy())
    finally:
        model.train(was_training)
    if not feats:
        raise ModelError("no items to embed")
    emb = np.concatenate(feats).reshape(sum(len(f) for f in feats), -1)
    return (emb, np.concatenate(logits)) if with_logits else emb


def embed_dataset(
    model: Any, dataset: Any, batch_size: int = 64, device: str = "cpu", with_logits: bool = False
) -> Any:
    """(N, D) float32 embeddings of every item, in dataset order; with `with_logits`, also the (N, K) logits."""
    from torch.utils.data import DataLoader

    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    return embed_batches(model, progress(loader, desc="embed", total=len(loader)), device, with_logits)
