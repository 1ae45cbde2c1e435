"""Retrieval service configuration, read once from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from services.common.config import (
    DEFAULT_ADDRS,
    REPO_ROOT,
    addr_var,
    env_addr,
    env_bool,
    env_float,
    env_int,
    env_str,
)


@dataclass(frozen=True)
class RetrievalConfig:
    addr: str
    snapshot_uri: str
    watch_seconds: float  # how often LATEST is checked for a new version
    cache_size: int  # LRU entries of (query, filters) -> response
    max_query_chars: int
    max_top_k: int
    search_workers: int  # bounded pool for embedding + FAISS + lexical work
    build_if_missing: bool  # no snapshot at start: build one from DynamoDB

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> RetrievalConfig:
        """The retrieval service settings, read from the environment."""
        env = os.environ if env is None else env
        return cls(
            addr=env_addr(env, addr_var("retrieval"), DEFAULT_ADDRS["retrieval"]),
            snapshot_uri=env_str(env, "KOTOBA_SNAPSHOT_URI", (REPO_ROOT / ".data" / "snapshots").as_uri()),
            watch_seconds=env_float(env, "KOTOBA_SNAPSHOT_WATCH_SECONDS", 2.0, minimum=0.05),
            cache_size=env_int(env, "KOTOBA_SEARCH_CACHE_SIZE", 2048, minimum=0),
            max_query_chars=env_int(env, "KOTOBA_MAX_QUERY_CHARS", 512, minimum=1),
            max_top_k=env_int(env, "KOTOBA_MAX_TOP_K", 50, minimum=1),
            search_workers=env_int(env, "KOTOBA_SEARCH_WORKERS", 2, minimum=1, maximum=32),
            build_if_missing=env_bool(env, "KOTOBA_BUILD_IF_MISSING", True),
        )
