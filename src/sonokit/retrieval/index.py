"""Nearest-neighbour index over embeddings of known images: "show me the closest training cases".

Three backends give the same exact answer: scikit-learn's NearestNeighbors (brute force, the reference), and a
matrix product over L2-normalised float32 embeddings followed by a top-k, in numpy (argpartition) or in torch
(torch.topk). See benchmarks/bench_retrieval.py for their speed. Exact search is enough for ultrasound datasets
(10^3 to 10^5 images); an approximate index would add a dependency for no gain at that size.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from sonokit.errors import InputError
from sonokit.utils import atomic_path, atomic_write_json, get_logger

log = get_logger(__name__)

METRICS = ("cosine", "euclidean")
BACKENDS = ("sklearn", "numpy", "torch")
FORMAT_VERSION = 1
_CHUNK_BYTES = 256 * 1024 * 1024  # bound the (queries x items) similarity block


def _l2_normalise(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


@dataclass
class EmbeddingIndex:
    """Embeddings (N, D) of known items with their paths, frames ("" for still images) and integer labels
    (-1 where unknown)."""

    embeddings: np.ndarray
    paths: list[str]
    labels: np.ndarray
    frames: list[str]
    metric: str = "cosine"
    backend: str = "numpy"
    meta: dict[str, Any] = field(default_factory=dict)
    _searcher: Any = field(default=None, init=False, repr=False)

    # ------------------------------------------------------------------ construction
    @classmethod
    def build(
        cls,
        embeddings: np.ndarray,
        paths: list[str] | None = None,
        labels: np.ndarray | None = None,
        metric: str = "cosine",
        backend: str = "sklearn",
        meta: dict[str, Any] | None = None,
        frames: list[str] | None = None,
    ) -> EmbeddingIndex:
        emb = np.asarray(embeddings, dtype=np.float32)
        if emb.ndim != 2 or emb.shape[0] == 0:
            raise InputError(f"embeddings must be a non-empty (N, D) array, got shape {emb.shape}")
        if not np.all(np.isfinite(emb)):
            raise InputError("embeddings contain NaN or infinite values")
        if metric not in METRICS:
            raise InputError(f"metric must be one of {METRICS}, got {metric!r}")
        if backend not in BACKENDS:
            raise InputError(f"backend must be one of {BACKENDS}, got {backend!r}")
        n = emb.shape[0]
        paths = [str(p) for p in paths] if paths is not None else [str(i) for i in range(n)]
        labels_arr = (
            np.full(n, -1, np.int64) if labels is None else np.asarray(labels).astype(np.int64).ravel()
        )
        frames = [str(f) for f in frames] if frames is not None else [""] * n
        if len(paths) != n or labels_arr.size != n or len(frames) != n:
            raise InputError(
                f"{n} embeddings but {len(paths)} paths, {len(frames)} frames, {labels_arr.size} labels"
            )
        index = cls(emb, paths, labels_arr, frames, metric, backend, dict(meta or {}))
        index._prepare()
        return index

    def _prepare(self) -> None:
        if self.backend == "sklearn":
            from sklearn.neighbors import NearestNeighbors

            algorithm = "brute" if self.metric == "cosine" else "auto"
            self._searcher = NearestNeighbors(metric=self.metric, algorithm=algorithm).fit(self.embeddings)
            return
        items = _l2_normalise(self.embeddings) if self.metric == "cosine" else self.embeddings
        sq = np.einsum("ij,ij->i", items, items)
        if self.backend == "torch":
            import torch

            self._searcher = (torch.from_numpy(np.ascontiguousarray(items)), torch.from_numpy(sq))
        else:
            self._searcher = (items, sq)

    def __len__(self) -> int:
        return self.embeddings.shape[0]

    @property
    def dim(self) -> int:
        return self.embeddings.shape[1]

    # ------------------------------------------------------------------ search
    def query(self, emb: np.ndarray, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """Indices and distances (N, k) of the k nearest items, nearest first.

        Cosine distance is 1 - cosine similarity (0 = same direction); euclidean is the L2 distance.
        """
        q = np.asarray(emb, dtype=np.float32)
        if q.ndim == 1:
            q = q[None, :]
        if q.ndim != 2 or q.shape[1] != self.dim:
            raise InputError(f"query embeddings have shape {q.shape}; the index holds {self.dim}-d vectors")
        if k < 1:
            raise InputError(f"k must be at least 1, got {k}")
        k = min(k, len(self))
        if self.backend == "sklearn":
            dist, idx = self._searcher.kneighbors(q, n_neighbors=k)
            return idx.astype(np.int64), dist.astype(np.float32)
        return self._matmul_query(q, k)

    def query_distinct(self, emb: np.ndarray, k: int = 5) -> tuple[np.ndarray, np.ndarray]:
        """Like `query`, but at most one item per path: the k nearest *cases*, not k frames of one video.

        Rows with fewer than k distinct paths in the whole index are padded with index -1 and distance inf.
        """
        q = np.asarray(emb, dtype=np.float32).reshape(-1, self.dim)
        codes = np.unique(np.asarray(self.paths), return_inverse=True)[1]
        n_paths = int(codes.max()) + 1
        want = min(k, n_paths)
        cand = min(len(self), max(4 * k, k * int(np.ceil(len(self) / n_paths))))
        while True:
            idx, dist = self.query(q, cand)
            out_i = np.full((len(q), k), -1, np.int64)
            out_d = np.full((len(q), k), np.inf, np.float32)
            short = False
            for r in range(len(q)):
                _, first = np.unique(codes[idx[r]], return_index=True)
                keep = np.sort(first)[:k]
                out_i[r, : len(keep)], out_d[r, : len(keep)] = idx[r, keep], dist[r, keep]
                short |= len(keep) < want
            if not short or cand >= len(self):
                return out_i, out_d
            cand = min(len(self), cand * 4)

    def _scores(self, block: np.ndarray) -> Any:
        """Larger-is-nearer score of each query against every item: cosine similarity, or |q|^2 - d^2."""
        items, sq = self._searcher
        if self.backend == "torch":
            import torch

            b = torch.from_numpy(block)
            return b @ items.T if self.metric == "cosine" else 2.0 * (b @ items.T) - sq[None, :]
        return block @ items.T if self.metric == "cosine" else 2.0 * (block @ items.T) - sq[None, :]

    def _top_k(self, score: Any, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Indices and scores of the k largest per row, largest first."""
        if self.backend == "torch":
            import torch

            top, part = torch.topk(score, k, dim=1, largest=True, sorted=True)
            return part.numpy(), top.numpy()
        n = score.shape[1]
        part = (
            np.argpartition(score, n - k, axis=1)[:, n - k :]
            if k < n
            else np.tile(np.arange(n), (len(score), 1))
        )
        top = np.take_along_axis(score, part, axis=1)
        order = np.argsort(-top, axis=1, kind="stable")
        return np.take_along_axis(part, order, axis=1), np.take_along_axis(top, order, axis=1)

    def _matmul_query(self, q: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        rows = max(1, _CHUNK_BYTES // (4 * len(self)))
        idx_out = np.empty((q.shape[0], k), np.int64)
        dist_out = np.empty((q.shape[0], k), np.float32)
        if self.metric == "cosine":
            q = _l2_normalise(q)
        for start in range(0, q.shape[0], rows):
            block = np.ascontiguousarray(q[start : start + rows])
            part, top = self._top_k(self._scores(block), k)
            if self.metric == "cosine":
                dist = 1.0 - top
            else:  # exact distances for the k winners (the expansion above loses digits in float32)
                dist = np.linalg.norm(block[:, None, :] - self.embeddings[part], axis=2)
            idx_out[start : start + rows] = part
            dist_out[start : start + rows] = np.maximum(dist, 0.0)
        return idx_out, dist_out

    def knn_vote(
        self,
        emb: np.ndarray,
        k: int,
        n_classes: int,
        weighted: bool = False,
        exclude: np.ndarray | None = None,
    ) -> np.ndarray:
        """(N, n_classes) class frequencies among the k nearest labelled items: a fallback classifier.

        `weighted` weights each vote by its similarity (1 - cosine distance, or 1 / (1 + L2)). `exclude`
        (N,) gives, per query, an index not to count, e.g. the item itself when voting for the indexed set.
        """
        extra = 1 if exclude is not None else 0
        idx, dist = self.query(emb, k + extra)
        if exclude is not None:
            keep = idx != np.asarray(exclude).reshape(-1, 1)
            # drop the excluded column per row (or the last one when the item was not among the neighbours)
            keep[
                np.arange(len(idx)), np.where(keep.all(axis=1), idx.shape[1] - 1, np.argmin(keep, axis=1))
            ] = False
            idx = idx[keep].reshape(len(idx), -1)
            dist = dist[keep].reshape(len(dist), -1)
        labels = self.labels[idx]
        if weighted:
            w = np.clip(1.0 - dist, 0.0, None) if self.metric == "cosine" else 1.0 / (1.0 + dist)
        else:
            w = np.ones_like(dist)
        valid = (labels >= 0) & (labels < n_classes)
        probs = np.zeros((len(idx), n_classes))
        rows = np.repeat(np.arange(len(idx)), idx.shape[1]).reshape(idx.shape)
        np.add.at(probs, (rows[valid], labels[valid]), w[valid])
        total = probs.sum(axis=1, keepdims=True)
        uniform = np.full_like(probs, 1.0 / n_classes)
        return np.where(total > 0, probs / np.maximum(total, 1e-12), uniform)

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path) -> Path:
        """embeddings.npz + items.csv + index.json, each written atomically; index.json last, as the commit."""
        import pandas as pd

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with atomic_path(directory / "embeddings.npz") as tmp, open(tmp, "wb") as fh:
            np.savez(fh, embeddings=self.embeddings, labels=self.labels)
        df = pd.DataFrame({"path": self.paths, "frame": self.frames, "label": self.labels})
        with atomic_path(directory / "items.csv") as tmp:
            df.to_csv(tmp, index_label="index")
        atomic_write_json(
            directory / "index.json",
            {
                "format_version": FORMAT_VERSION,
                "n": len(self),
                "dim": self.dim,
                "metric": self.metric,
                "backend": self.backend,
                "meta": self.meta,
            },
        )
        return directory

    @classmethod
    def load(cls, directory: str | Path, backend: str | None = None) -> EmbeddingIndex:
        import pandas as pd

        directory = Path(directory)
        info_path = directory / "index.json"
        if not info_path.is_file():
            raise InputError("not an index folder (index.json missing)", directory)
        try:
            info = json.loads(info_path.read_text())
            with np.load(directory / "embeddings.npz") as z:
                emb, labels = z["embeddings"], z["labels"]
            items = pd.read_csv(
                directory / "items.csv", keep_default_na=False, dtype={"path": str, "frame": str}
            )
        except (OSError, ValueError, KeyError) as err:
            raise InputError(f"cannot read index: {err}", directory) from err
        if emb.shape != (info.get("n"), info.get("dim")) or len(items) != emb.shape[0]:
            raise InputError(
                f"index files disagree: index.json says {info.get('n')}x{info.get('dim')}, "
                f"embeddings {emb.shape}, items.csv {len(items)} rows",
                directory,
            )
        return cls.build(
            emb,
            items["path"].astype(str).tolist(),
            labels,
            metric=info["metric"],
            backend=backend or info["backend"],
            meta=info.get("meta", {}),
            frames=items["frame"].astype(str).tolist() if "frame" in items.columns else None,
        )
