"""Embedders behind one small interface, the passage recipes, and the shipped seed vectors' file format.

    from services.embeddings import make_embedder, passage_text
"""

from services.embeddings.base import Embedder, EmbedderConfig, make_embedder
from services.embeddings.passages import RECIPE_VERSION, passage_text, text_digest
from services.embeddings.seed import load_seed_embeddings, seed_embeddings_path

__all__ = [
    "RECIPE_VERSION", "Embedder", "EmbedderConfig", "load_seed_embeddings", "make_embedder",
    "passage_text", "seed_embeddings_path", "text_digest",
]
