"""Titan backend through boto3 against a local HTTP server speaking the Bedrock InvokeModel API."""

from __future__ import annotations

import numpy as np
import pytest

from services.embeddings.base import EmbedderConfig, make_embedder, model_name
from services.embeddings.titan import EmbeddingError, TitanEmbedder


def _config(endpoint: str, **env) -> EmbedderConfig:
    return EmbedderConfig.from_env({"KOTOBA_EMBEDDER": "titan", "AWS_ENDPOINT_URL_BEDROCK_RUNTIME": endpoint,
                                    "AWS_REGION": "us-east-1", **env})


def test_titan_embeds_normalised_with_dimension_and_tokens(bedrock, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    config = _config(bedrock.endpoint, KOTOBA_TITAN_DIMENSIONS="256", KOTOBA_TITAN_CONCURRENCY="3")
    embedder = make_embedder(config)
    assert isinstance(embedder, TitanEmbedder)
    assert embedder.dim == 256 and embedder.model == model_name(config)
    out = embedder.embed_passages(["Japanese word 犬 (いぬ), romaji inu: dog.", "two words", "three more words"])
    assert out.shape == (3, 256) and np.allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    q = embedder.embed_queries(["two words"])
    assert np.allclose(q[0], out[1], atol=1e-6)  # same text, same vector
    assert embedder.input_tokens == 7 + 2 + 3 + 2 and embedder.cost_usd > 0
    first = bedrock.requests[0]
    assert first["path"] == "/model/amazon.titan-embed-text-v2%3A0/invoke" or "titan-embed-text-v2" in first["path"]
    assert first["body"]["dimensions"] == 256 and first["body"]["normalize"] is True


def test_titan_retries_throttling_and_server_errors(bedrock, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    embedder = TitanEmbedder(_config(bedrock.endpoint, KOTOBA_TITAN_MAX_ATTEMPTS="5"), base_delay=0.01)
    bedrock.faults = [429, 500, 429]
    out = embedder.embed_queries(["dog"])
    assert out.shape == (1, 512)
    assert embedder.retries == 3 and len(bedrock.requests) == 4


def test_titan_throttling_is_surfaced_after_max_attempts(bedrock, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    embedder = TitanEmbedder(_config(bedrock.endpoint, KOTOBA_TITAN_MAX_ATTEMPTS="3"), base_delay=0.01)
    bedrock.faults = [429] * 10
    with pytest.raises(EmbeddingError) as err:
        embedder.embed_queries(["dog"])
    assert err.value.code == "ThrottlingException" and err.value.attempts == 3
    assert "after 3 attempts" in str(err.value)
    assert len(bedrock.requests) == 3


def test_titan_does_not_retry_bad_requests(bedrock, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    embedder = TitanEmbedder(_config(bedrock.endpoint), base_delay=0.01)
    bedrock.faults = [400]
    with pytest.raises(EmbeddingError, match="ValidationException"):
        embedder.embed_queries(["dog"])
    assert len(bedrock.requests) == 1


def test_titan_dimension_config_is_validated():
    from services.common.config import ConfigError

    with pytest.raises(ConfigError, match="KOTOBA_TITAN_DIMENSIONS"):
        EmbedderConfig.from_env({"KOTOBA_EMBEDDER": "titan", "KOTOBA_TITAN_DIMENSIONS": "300"})
