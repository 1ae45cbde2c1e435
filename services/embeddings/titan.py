"""Bedrock Titan text embeddings v2: the production embedder.

One `InvokeModel` per text (the API takes one `inputText`), run on a bounded
thread pool; throttling and server errors are retried with full jitter and
surfaced as `EmbeddingError` once attempts run out. Token counts are kept for
cost accounting.
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import logging
import random
import threading
import time
from collections.abc import Sequence

import numpy as np
from botocore.config import Config as BotoConfig
from botocore.exceptions import BotoCoreError, ClientError

from services.embeddings.base import EmbedderConfig, normalise
from services.embeddings.passages import RECIPE_VERSION

log = logging.getLogger(__name__)

USD_PER_1K_TOKENS = 0.00002  # Titan Text Embeddings V2 on-demand price
RETRYABLE = {"ThrottlingException", "TooManyRequestsException", "ServiceUnavailableException",
             "InternalServerException", "ModelTimeoutException", "ModelNotReadyException", "RequestTimeout"}


class EmbeddingError(RuntimeError):
    """Embedding failed after retries (or for a reason retrying cannot fix)."""

    def __init__(self, message: str, code: str = "", attempts: int = 0) -> None:
        super().__init__(message)
        self.code = code
        self.attempts = attempts


def titan_model_name(model_id: str, dimensions: int) -> str:
    """The model name stored with Titan vectors: model id, dimensions and recipe version."""
    return f"titan:{model_id}/{dimensions}/{RECIPE_VERSION}"


class TitanEmbedder:
    def __init__(self, config: EmbedderConfig, client=None, base_delay: float = 0.2, max_delay: float = 8.0) -> None:
        from services.common.aws import session as aws_session

        self.config = config
        self.dim = config.titan_dimensions
        self.model = titan_model_name(config.titan_model_id, config.titan_dimensions)
        self.base_delay, self.max_delay = base_delay, max_delay
        # Our own retry loop (with jitter and counting) replaces botocore's.
        self.client = client or aws_session().client(
            "bedrock-runtime", region_name=config.region, endpoint_url=config.bedrock_endpoint or None,
            config=BotoConfig(connect_timeout=2, read_timeout=config.titan_timeout,
                              retries={"total_max_attempts": 1}, max_pool_connections=config.titan_concurrency))
        self._pool = cf.ThreadPoolExecutor(config.titan_concurrency, thread_name_prefix="titan")
        self._lock = threading.Lock()
        self.input_tokens = 0
        self.calls = 0
        self.retries = 0

    @property
    def cost_usd(self) -> float:
        """What the embeddings so far cost, at Titan's price per thousand input tokens."""
        return self.input_tokens / 1000 * USD_PER_1K_TOKENS

    def _invoke(self, text: str) -> np.ndarray:
        body = json.dumps({"inputText": text, "dimensions": self.dim, "normalize": True})
        attempts = self.config.titan_max_attempts
        for attempt in range(1, attempts + 1):
            try:
                reply = self.client.invoke_model(modelId=self.config.titan_model_id, body=body,
                                                 contentType="application/json", accept="application/json")
                data = json.loads(reply["body"].read())
                vector = np.asarray(data["embedding"], dtype=np.float32)
                if vector.shape != (self.dim,):
                    raise EmbeddingError(f"Titan returned {vector.shape[0]} dimensions, expected {self.dim}",
                                         "BadDimension", attempt)
                with self._lock:
                    self.calls += 1
                    self.input_tokens += int(data.get("inputTextTokenCount", 0))
                return vector
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
                if code not in RETRYABLE and status not in (429, 500, 502, 503, 504):
                    raise EmbeddingError(f"Titan refused the request: {code or status}: {exc}", code, attempt) from exc
                error = exc
            except BotoCoreError as exc:  # connection errors, timeouts
                code, error = type(exc).__name__, exc
            if attempt == attempts:
                raise EmbeddingError(f"Titan embedding failed after {attempts} attempts ({code}): {error}",
                                     code, attempt) from error
            with self._lock:
                self.retries += 1
            delay = random.uniform(0, min(self.max_delay, self.base_delay * 2 ** (attempt - 1)))
            log.warning("titan %s; retry %d/%d in %.2fs", code, attempt, attempts - 1, delay)
            time.sleep(delay)
        raise AssertionError("unreachable")

    def _embed(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        if len(texts) == 1:
            return normalise(self._invoke(texts[0]).reshape(1, -1))
        return normalise(np.stack(list(self._pool.map(self._invoke, texts))))

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors of search queries (Titan embeds queries and passages alike)."""
        return self._embed(texts)

    def embed_passages(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors of dictionary passages."""
        return self._embed(texts)
