"""polymodal.retrieval: a gallery of global embeddings searched exactly with faiss (`GalleryIndex`, cosine or L2,
saved as a folder), `recall_at_k`, and `retrieve` (predict an embedding from any inputs, search, `draw_matches`)."""

from .index import METRICS, GalleryIndex, SearchResult, recall_at_k
from .retrieve import Retrieval, draw_matches, model_predictor, query_vectors, retrieve, world_pictures

__all__ = ["METRICS", "GalleryIndex", "Retrieval", "SearchResult", "draw_matches", "model_predictor", "query_vectors",
           "recall_at_k", "retrieve", "world_pictures"]
