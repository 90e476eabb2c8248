"""Retrieval: nearest-neighbour index (two backends), persistence, kNN votes, embeddings, t-SNE, montage."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sonokit.errors import InputError, ModelError
from sonokit.retrieval import EmbeddingIndex, embed_dataset, montage, tsne_plot

PNG = b"\x89PNG\r\n\x1a\n"


def clusters(
    n_per: int, k: int, d: int, rng: np.random.Generator, spread: float = 0.3
) -> tuple[np.ndarray, np.ndarray]:
    centres = rng.normal(size=(k, d))
    y = np.repeat(np.arange(k), n_per)
    return (centres[y] + spread * rng.normal(size=(len(y), d))).astype(np.float32), y


@pytest.mark.parametrize("backend", ["sklearn", "numpy", "torch"])
@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_every_item_is_its_own_nearest_neighbour(backend, metric) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(500, 32)).astype(np.float32)
    index = EmbeddingIndex.build(x, metric=metric, backend=backend)
    idx, dist = index.query(x, k=5)
    assert idx.shape == dist.shape == (500, 5)
    assert np.array_equal(idx[:, 0], np.arange(500))
    assert np.abs(dist[:, 0]).max() < 1e-4
    assert np.all(np.diff(dist, axis=1) >= -1e-6)  # nearest first


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_numpy_backend_matches_sklearn(metric) -> None:
    rng = np.random.default_rng(1)
    x, q = rng.normal(size=(3000, 48)), rng.normal(size=(200, 48))
    ia, da = EmbeddingIndex.build(x, metric=metric, backend="sklearn").query(q, 10)
    for backend in ("numpy", "torch"):
        ib, db = EmbeddingIndex.build(x, metric=metric, backend=backend).query(q, 10)
        assert np.mean(ia == ib) > 0.999
        np.testing.assert_allclose(da, db, atol=1e-4)
    if metric == "cosine":  # cosine distance of a query and a scaled copy of an item is 0
        index = EmbeddingIndex.build(x, metric="cosine", backend="numpy")
        i, d = index.query(5.0 * x[7], 1)
        assert i[0, 0] == 7 and d[0, 0] < 1e-5


def test_save_load_round_trip_and_bad_folders(tmp_path) -> None:
    rng = np.random.default_rng(2)
    x, y = clusters(20, 3, 16, rng)
    paths = [f"images/case_{i:03d}.png" for i in range(len(y))]
    index = EmbeddingIndex.build(x, paths, y, backend="numpy", meta={"model": "abc"})
    index.save(tmp_path / "index")
    assert sorted(p.name for p in (tmp_path / "index").iterdir()) == [
        "embeddings.npz",
        "index.json",
        "items.csv",
    ]
    loaded = EmbeddingIndex.load(tmp_path / "index")
    assert loaded.paths == paths and np.array_equal(loaded.labels, y) and loaded.meta == {"model": "abc"}
    np.testing.assert_array_equal(loaded.query(x[:5], 3)[0], index.query(x[:5], 3)[0])
    assert EmbeddingIndex.load(tmp_path / "index", backend="sklearn").backend == "sklearn"

    with pytest.raises(InputError, match="index.json missing"):
        EmbeddingIndex.load(tmp_path / "nowhere")
    items = tmp_path / "index" / "items.csv"
    items.write_text("\n".join(items.read_text().splitlines()[:-5]) + "\n")  # truncated table
    with pytest.raises(InputError, match="disagree"):
        EmbeddingIndex.load(tmp_path / "index")


def test_knn_vote_classifies_clusters_and_can_exclude_self() -> None:
    rng = np.random.default_rng(3)
    x, y = clusters(50, 4, 16, rng)
    index = EmbeddingIndex.build(x, labels=y, backend="numpy")
    probs = index.knn_vote(x, k=5, n_classes=4, exclude=np.arange(len(y)))
    np.testing.assert_allclose(probs.sum(1), 1.0)
    assert np.mean(probs.argmax(1) == y) > 0.95
    # excluding self removes exactly one vote: with k=1 each item is voted for by its nearest *other* item
    single = np.array([[0.0, 0.0], [0.0, 0.1], [5.0, 5.0]], np.float32)
    idx = EmbeddingIndex.build(single, labels=[0, 1, 1], metric="euclidean", backend="numpy")
    np.testing.assert_allclose(idx.knn_vote(single[:1], 1, 2), [[1.0, 0.0]])
    np.testing.assert_allclose(idx.knn_vote(single[:1], 1, 2, exclude=np.array([0])), [[0.0, 1.0]])


def test_query_distinct_returns_one_neighbour_per_file() -> None:
    rng = np.random.default_rng(6)
    base = rng.normal(size=(6, 8))
    # six "videos" of five nearly identical frames each: plain kNN returns frames of one video
    x = np.repeat(base, 5, axis=0) + 0.01 * rng.normal(size=(30, 8))
    paths = [f"v{i // 5}.avi" for i in range(30)]
    index = EmbeddingIndex.build(x, paths, frames=[str(i % 5) for i in range(30)], backend="numpy")
    plain, _ = index.query(base[2], 3)
    assert {paths[j] for j in plain[0]} == {"v2.avi"}
    idx, dist = index.query_distinct(base[2], 3)
    assert paths[idx[0, 0]] == "v2.avi" and len({paths[j] for j in idx[0]}) == 3
    assert np.all(np.diff(dist[0]) >= 0)
    idx, dist = index.query_distinct(base[:1], 8)  # more than the 6 files: padded
    assert (idx[0] >= 0).sum() == 6 and np.isinf(dist[0, 6:]).all()


def test_index_rejects_bad_input() -> None:
    with pytest.raises(InputError):
        EmbeddingIndex.build(np.zeros((0, 4)))
    with pytest.raises(InputError):
        EmbeddingIndex.build(np.full((3, 4), np.nan))
    index = EmbeddingIndex.build(np.eye(4), backend="numpy")
    with pytest.raises(InputError):
        index.query(np.zeros((1, 3)), 1)
    assert index.query(np.eye(4)[:1], k=10)[0].shape == (1, 4)  # k larger than the index: all items


class _Images(torch.utils.data.Dataset):
    """The sonokit dataset convention: (image tensor (C, H, W), target)."""

    def __init__(self, n: int) -> None:
        self.x = torch.rand(n, 1, 32, 32, generator=torch.Generator().manual_seed(0))

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.x[i], i % 3


def test_embed_dataset_uses_the_penultimate_layer_of_a_registry_model() -> None:
    from sonokit.models import create

    torch.manual_seed(0)
    model = create("tinycnn", num_classes=3, in_chans=1, img_size=32)
    data = _Images(10)
    emb, logits = embed_dataset(model, data, batch_size=4, with_logits=True)
    assert emb.shape == (10, model.spec["feature_dim"]) and logits.shape == (10, 3)
    model.eval()
    with torch.no_grad():
        np.testing.assert_allclose(emb[3], model.embed(data.x[3:4])[0].numpy(), atol=1e-5)
        np.testing.assert_allclose(logits, model(data.x).numpy(), atol=1e-5)
    np.testing.assert_allclose(embed_dataset(model, data, batch_size=3), emb, atol=1e-5)
    with pytest.raises(ModelError):
        embed_dataset(torch.nn.Linear(4, 2), data)


def test_tsne_plot_runs_on_a_small_set(tmp_path) -> None:
    rng = np.random.default_rng(4)
    x, y = clusters(20, 3, 64, rng, spread=0.2)
    xy = tsne_plot(x, y, tmp_path / "tsne.png", class_names=["A", "B", "C"])
    assert xy.shape == (60, 2) and np.all(np.isfinite(xy))
    assert (tmp_path / "tsne.png").read_bytes()[:8] == PNG
    # well separated clusters stay separated: each point's nearest map neighbour shares its label
    index = EmbeddingIndex.build(xy, labels=y, metric="euclidean", backend="numpy")
    assert np.mean(index.knn_vote(xy, 1, 3, exclude=np.arange(60)).argmax(1) == y) > 0.95
    with pytest.raises(InputError):
        tsne_plot(x[:2], y[:2], tmp_path / "few.png")
    assert not (tmp_path / "few.png").exists()


def test_montage_writes_one_png(tmp_path) -> None:
    rng = np.random.default_rng(5)
    query = (rng.random((40, 40)) * 255).astype(np.uint8)
    neighbours = [rng.random((40, 40, 3)), torch.rand(1, 40, 40).numpy()]
    out = montage(query, neighbours, ["A d=0.01", "B d=0.20"], tmp_path / "m.png")
    assert out.read_bytes()[:8] == PNG
    with pytest.raises(InputError):
        montage(query, neighbours, ["only one caption"], tmp_path / "bad.png")
