"""polymodal.retrieval: a gallery of global embeddings searched exactly with faiss (`GalleryIndex`, cosine or L2,
saved as a folder), `recall_at_k`, `retrieve` (predict an embedding from any inputs, search, `draw_matches`), and
`query` (the same from user inputs through a pipeline bundle: ``polymodal retrieve --model M --index I --from``)."""

from .index import METRICS, GalleryIndex, SearchResult, recall_at_k
from .pipeline_query import Query, embedding_outputs, pick_modality, query
from .retrieve import Retrieval, draw_matches, model_predictor, query_vectors, retrieve, world_pictures

__all__ = ["METRICS", "GalleryIndex", "Query", "Retrieval", "SearchResult", "draw_matches", "embedding_outputs",
           "model_predictor", "pick_modality", "query", "query_vectors", "recall_at_k", "retrieve", "world_pictures"]
