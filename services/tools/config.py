"""Tools service configuration, read once from the environment."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from services.common.config import CommonConfig, ConfigError, env_addr, env_int, env_str


@dataclass(frozen=True)
class ToolsConfig:
    common: CommonConfig
    addr: str
    retrieval_addr: str
    retrieval_timeout_ms: int  # meaning-level fallback of search_words; past it we answer degraded
    page_secret: bytes  # HMAC key for page tokens
    page_token_ttl_seconds: int
    prefix_refresh_seconds: int  # full rebuild of the in-memory prefix index
    prefix_poll_seconds: int  # incremental refresh from the dirty-index
    prefix_cache: Path | None  # the words of the last full build, to start from (None: always scan at start)
    catalog_cache_seconds: int
    threads: int  # bounded pool for boto3 calls

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, common: CommonConfig | None = None) -> ToolsConfig:
        """The tools service settings, read from the environment."""
        env = os.environ if env is None else env
        common = common or CommonConfig.from_env(env)
        secret = env.get("KOTOBA_TOOLS_PAGE_SECRET", "")
        if not secret:
            if common.environment == "prod":
                raise ConfigError("KOTOBA_TOOLS_PAGE_SECRET", "is required in prod (shared by every tools replica)")
            # Local: derived from the dev JWT secret so every local replica agrees.
            secret = hashlib.sha256(f"page-token|{common.auth.secret}".encode()).hexdigest()
        elif len(secret) < 32:
            raise ConfigError("KOTOBA_TOOLS_PAGE_SECRET", "must be at least 32 characters")
        return cls(
            common=common,
            addr=common.addr("tools"),
            retrieval_addr=env_addr(env, "KOTOBA_RETRIEVAL_ADDR", common.addr("retrieval")),
            retrieval_timeout_ms=env_int(env, "KOTOBA_TOOLS_RETRIEVAL_TIMEOUT_MS", 400, minimum=10, maximum=10_000),
            page_secret=env_str(env, "KOTOBA_TOOLS_PAGE_SECRET", secret).encode(),
            page_token_ttl_seconds=env_int(env, "KOTOBA_TOOLS_PAGE_TOKEN_TTL_SECONDS", 3600, minimum=60),
            prefix_refresh_seconds=env_int(env, "KOTOBA_TOOLS_PREFIX_REFRESH_SECONDS", 600, minimum=5),
            prefix_poll_seconds=env_int(env, "KOTOBA_TOOLS_PREFIX_POLL_SECONDS", 15, minimum=1),
            prefix_cache=Path(env["KOTOBA_TOOLS_PREFIX_CACHE"]) if env.get("KOTOBA_TOOLS_PREFIX_CACHE") else None,
            catalog_cache_seconds=env_int(env, "KOTOBA_TOOLS_CATALOG_CACHE_SECONDS", 60, minimum=0),
            threads=env_int(env, "KOTOBA_TOOLS_THREADS", 16, minimum=1, maximum=128),
        )
