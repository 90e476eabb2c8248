"""t-SNE maps of raw images, softmax vectors or embeddings, coloured by label.

Shows at a glance whether a representation separates the classes; the LUS work used it to pick neighbours.
Features above 50 dimensions are first reduced by PCA (the usual recipe: faster, and less noise for t-SNE).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from sonokit.errors import InputError
from sonokit.utils import atomic_path


def tsne_embed(features: np.ndarray, seed: int = 0, perplexity: float | None = None) -> np.ndarray:
    """(N, 2) t-SNE coordinates of (N, ...) features (images are flattened)."""
    from sklearn.decomposition import PCA
    from sklearn.manifold import TSNE
    from threadpoolctl import threadpool_limits

    x = np.asarray(features, dtype=np.float32)
    x = x.reshape(x.shape[0], -1)
    n = x.shape[0]
    if n < 3:
        raise InputError(f"t-SNE needs at least 3 items, got {n}")
    if x.shape[1] > 50 and n > 50:
        x = PCA(n_components=50, random_state=seed).fit_transform(x)
    x = (x - x.mean(axis=0)) / (x.std(axis=0).mean() + 1e-8)
    perp = perplexity if perplexity is not None else float(min(30.0, (n - 1) / 3.0))
    tsne = TSNE(n_components=2, perplexity=perp, init="pca", random_state=seed)
    # Barnes-Hut's OpenMP threads spin against each other on a busy machine (10x slower on 2 shared cores);
    # below a few thousand points one thread is as fast as many
    with threadpool_limits(limits=1 if n <= 5000 else None):
        return tsne.fit_transform(x)


def tsne_plot(
    features: np.ndarray,
    labels: np.ndarray,
    out_png: str | Path,
    seed: int = 0,
    class_names: Sequence[str] | None = None,
    title: str = "t-SNE",
) -> np.ndarray:
    """Write a scatter of the 2-D t-SNE map coloured by label; returns the coordinates."""
    from matplotlib.figure import Figure

    labels = np.asarray(labels).ravel()
    if labels.size != len(features):
        raise InputError(f"{len(features)} items but {labels.size} labels")
    xy = tsne_embed(features, seed=seed)
    fig = Figure(figsize=(5.5, 4.8), dpi=110, layout="constrained")
    ax = fig.add_subplot()
    for i, c in enumerate(np.unique(labels)):
        m = labels == c
        name = class_names[int(c)] if class_names is not None and 0 <= int(c) < len(class_names) else str(c)
        ax.scatter(xy[m, 0], xy[m, 1], s=8, color=f"C{i % 10}", label=name, alpha=0.8)
    ax.set(title=title, xticks=[], yticks=[])
    ax.legend(fontsize=7, markerscale=2, loc="best")
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, format="png")
    return xy
