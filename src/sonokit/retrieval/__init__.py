"""Similar cases: embeddings from a trained model, a nearest-neighbour index, kNN votes, t-SNE maps, montages."""

from sonokit.retrieval.embed import embed_batches, embed_dataset
from sonokit.retrieval.index import EmbeddingIndex
from sonokit.retrieval.montage import montage
from sonokit.retrieval.tsne import tsne_embed, tsne_plot

__all__ = ["EmbeddingIndex", "embed_batches", "embed_dataset", "montage", "tsne_embed", "tsne_plot"]
