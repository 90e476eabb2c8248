"""Retrieval on a trained run folder: embed its splits, keep a train-set index in RUN/index/, find similar cases.

Embeddings are captured with a forward hook on the model's head while the task's own inference runs, so the
input goes through exactly the preprocessing and normalisation of training and one pass gives the embedding
(the head's `embed`, its last layer's input) and the logits together.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sonokit.core.loop import infer_items
from sonokit.core.run import file_sha256, split_index, split_items, weights_fingerprint
from sonokit.errors import InputError, ModelError
from sonokit.evaluate.metrics import probs_to_logits, softmax
from sonokit.models.capture import HeadCapture
from sonokit.retrieval.index import EmbeddingIndex
from sonokit.retrieval.montage import montage
from sonokit.utils import get_logger, write_csv

log = get_logger(__name__)

INDEX_DIR = "index"


@dataclass
class SplitOutputs:
    """One inference pass over item rows: embeddings, logits, softmax, targets (-1 unknown) and the task's arrays."""

    items: pd.DataFrame
    embeddings: np.ndarray
    logits: np.ndarray
    probs: np.ndarray
    y: np.ndarray
    collected: dict[str, np.ndarray]
    dataset: Any


def run_splits(run: Any, data: str | Path | None = None) -> dict[str, pd.DataFrame]:
    """Item rows per split, exactly as `sonokit evaluate` derives them (sonokit.core.run.split_index)."""
    index, _ = split_index(run, data, resplit=True)
    return split_items(run.task, index)


def infer_with_embeddings(
    run: Any, items: pd.DataFrame, batch_size: int | None = None, desc: str = "embed"
) -> SplitOutputs:
    """Run the task's inference over `items`, capturing the head's embedding and logits on the way."""
    capture = HeadCapture(run.model)
    try:
        _, collected, dataset = infer_items(run, items, batch_size, desc)
        feats, head_out = capture.take()
    finally:
        capture.close()
    order = np.argsort(collected["index"], kind="stable")  # rows back in item order
    emb, lg = feats[order], head_out[order]
    collected = {k: v[order] for k, v in collected.items()}
    probs = collected.get("probs")
    if probs is None:
        raise ModelError(f"task {run.task.name!r} is not a classifier (no probabilities to retrieve by)")
    y = np.asarray(collected.get("y", np.full(len(items), -1))).astype(np.int64)
    return SplitOutputs(items, emb.astype(np.float32), class_logits(lg, probs), probs, y, collected, dataset)


def class_logits(head_out: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """The head's outputs when they are the class logits (softmax reproduces the task's probabilities), else
    log-probabilities. A head may carry extra outputs (the quality task adds an SSIM column)."""
    k = probs.shape[1]
    if head_out.ndim == 2 and head_out.shape[1] >= k:
        cand = head_out[:, :k].astype(np.float64)
        if np.allclose(softmax(cand), probs, atol=1e-3):
            return cand
    log.debug("head outputs are not plain class logits; using log-probabilities")
    return probs_to_logits(probs)


#: a neighbour this close (cosine distance) is the query itself: float32 round-off, not a similar case
SAME_ITEM_DISTANCE = 1e-5


def in_training_set(
    query_path: str | Path, query_frame: str, path: str, frame: str, distance: float, hashes: dict[str, str]
) -> bool:
    """Whether a training neighbour is the query itself: the same file content (and frame), or distance ~0.

    `hashes` caches file hashes across calls (each file is read once)."""
    if distance <= SAME_ITEM_DISTANCE:
        return True
    if str(frame) != str(query_frame):
        return False
    digests = []
    for p in (str(query_path), path):
        if p not in hashes:
            try:
                hashes[p] = file_sha256(p)
            except OSError:
                hashes[p] = ""
        digests.append(hashes[p])
    return bool(digests[0]) and digests[0] == digests[1]


def item_frames(items: pd.DataFrame) -> list[str]:
    """Frame numbers as strings; "" for still images (whose item rows may still carry frame 0)."""
    from sonokit.data.frames import may_have_frames

    if "frame" not in items.columns:
        return [""] * len(items)
    return [
        str(int(float(f))) if may_have_frames(p) and not pd.isna(f) and f != "" else ""
        for p, f in zip(items["path"].astype(str), items["frame"], strict=True)
    ]


def index_from_outputs(run: Any, train: SplitOutputs, backend: str = "numpy") -> EmbeddingIndex:
    return EmbeddingIndex.build(
        train.embeddings,
        train.items["path"].astype(str).tolist(),
        train.y,
        metric="cosine",
        backend=backend,
        frames=item_frames(train.items),
        meta={
            "weights_sha256": weights_fingerprint(run.run_dir),
            "data": str(run.task.cfg.data),
            "classes": list(run.task.classes or []),
            "split": "train",
        },
    )


def load_or_build_index(
    run: Any, data: str | Path | None = None, rebuild: bool = False, backend: str = "numpy"
) -> EmbeddingIndex:
    """The train-set index in RUN/index/, rebuilt when missing, asked for, or made with other weights or data."""
    folder = Path(run.run_dir) / INDEX_DIR
    if not rebuild and (folder / "index.json").is_file():
        index = EmbeddingIndex.load(folder, backend=backend)
        wanted_data = str(data) if data is not None else str(run.cfg.data)
        if (
            index.meta.get("weights_sha256") == weights_fingerprint(run.run_dir)
            and index.meta.get("data") == wanted_data
        ):
            return index
        log.info("index in %s is stale (other weights or data): rebuilding", folder)
    splits = run_splits(run, data)
    if "train" not in splits:
        raise InputError("the dataset has no train split to index", run.task.cfg.data)
    index = index_from_outputs(run, infer_with_embeddings(run, splits["train"], desc="index train"), backend)
    index.save(folder)
    return index


def _caption(index: EmbeddingIndex, classes: list[str], j: int, dist: float, same: bool = False) -> str:
    label = classes[index.labels[j]] if 0 <= index.labels[j] < len(classes) else "?"
    name = Path(index.paths[j]).name + (f" #{index.frames[j]}" if index.frames[j] else "")
    return f"{label}  d={dist:.3f}" + ("  = query, in the training set" if same else "") + f"\n{name}"


def _read_frame(path: str, frame: str) -> np.ndarray:
    """The frame a montage shows: outside the imaging region set to 0 (burned-in text never reaches a PNG)."""
    from sonokit.data.shown import read_shown

    return read_shown(path, int(frame) if frame else 0)


def find_similar(
    run_dir: str | Path,
    inputs: list[str | Path],
    out: str | Path,
    k: int = 5,
    data: str | Path | None = None,
    device: str = "auto",
    rebuild: bool = False,
    max_montages: int = 50,
    distinct: bool = True,
) -> tuple[Path | None, list[Path], list[str]]:
    """The k nearest training items of each input image/frame: similar.csv and one montage PNG per query.

    With `distinct` (default) each neighbour comes from a different training file.

    Returns (csv path or None when nothing could be read, montage paths, one error line per unreadable input).
    """
    from sonokit.core.run import input_items, load_run

    run = load_run(run_dir, device)
    classes = list(run.task.classes or [])
    items, errors = input_items(run, inputs)
    if items.empty:
        return None, [], errors
    index = load_or_build_index(run, data, rebuild)
    query = infer_with_embeddings(run, items.reset_index(drop=True), desc="embed inputs")
    # one neighbour per source file: five frames of one training clip are one case, not five
    idx, dist = index.query_distinct(query.embeddings, k) if distinct else index.query(query.embeddings, k)
    found = idx >= 0
    knn = index.knn_vote(query.embeddings, k, len(classes))
    q_frames = item_frames(query.items)
    hashes: dict[str, str] = {}
    same = np.zeros(idx.shape, bool)
    for i, r in zip(*np.nonzero(found), strict=True):
        q_path, j = str(query.items["path"].iloc[i]), int(idx[i, r])
        same[i, r] = in_training_set(q_path, q_frames[i], index.paths[j], index.frames[j], dist[i, r], hashes)
    rows = []
    for i in range(len(query.items)):
        pred = int(query.probs[i].argmax())
        for r in np.flatnonzero(found[i]):
            j = int(idx[i, r])
            rows.append(
                {
                    "query_path": str(query.items["path"].iloc[i]),
                    "query_frame": q_frames[i],
                    "y_pred": classes[pred] if classes else pred,
                    "p_pred": float(query.probs[i, pred]),
                    "knn_pred": classes[int(knn[i].argmax())] if classes else int(knn[i].argmax()),
                    "rank": r + 1,
                    "path": index.paths[j],
                    "frame": index.frames[j],
                    "label": classes[index.labels[j]] if 0 <= index.labels[j] < len(classes) else "",
                    "distance": float(dist[i, r]),
                    "in_training_set": bool(same[i, r]),
                }
            )
    out = Path(out)
    montages = []
    for i in range(min(len(query.items), max_montages)):
        q_path = str(query.items["path"].iloc[i])
        name = Path(q_path).stem + (f"_f{q_frames[i]}" if q_frames[i] else "")
        hits = idx[i][found[i]]
        neighbours = [_read_frame(index.paths[j], index.frames[j]) for j in hits]
        captions = [
            _caption(index, classes, int(j), float(d), bool(m))
            for j, d, m in zip(hits, dist[i][found[i]], same[i][found[i]], strict=True)
        ]
        pred = int(query.probs[i].argmax())
        title = f"query: {classes[pred] if classes else pred} ({query.probs[i, pred]:.2f})"
        montages.append(
            montage(
                _read_frame(q_path, q_frames[i]),
                neighbours,
                captions,
                out / f"similar_{i:03d}_{name}.png",
                title,
            )
        )
    csv_path = write_csv(pd.DataFrame(rows), out / "similar.csv")  # last: its presence means the run finished
    if len(query.items) > max_montages:
        log.info("montages written for the first %d of %d query items", max_montages, len(query.items))
    return csv_path, montages, errors
