"""Conversations settings, read once from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from services.common.config import CommonConfig, ConfigError, env_choice, env_float, env_int, env_str

# Only good for local runs: production must bring its own key, or pseudonyms
# could be reversed by anyone who read this file and guessed an id.
LOCAL_DEV_PSEUDONYM_KEY = "kotoba-local-dev-pseudonym-key"


@dataclass(frozen=True)
class ConversationsConfig:
    common: CommonConfig
    ttl_days: int
    pseudonym_key: bytes
    summary_backend: str  # "offline" | "gemini"
    gemini_api_key: str
    gemini_model: str
    gemini_base_url: str  # empty = Google's endpoint; tests point it at a local stub
    summary_queue_size: int
    summary_batch_size: int
    summary_linger_seconds: float
    summary_retries: int
    summary_backoff_seconds: float
    summary_timeout_seconds: float
    db_threads: int

    @property
    def addr(self) -> str:
        """The host:port the conversations service listens on."""
        return self.common.addr("conversations")

    @property
    def table(self) -> str:
        """The conversations table: turns, summaries, counters and indexes."""
        return self.common.table("conversations")

    @property
    def settings_table(self) -> str:
        """The settings table: each learner's privacy choices."""
        return self.common.table("settings")

    @property
    def connections_table(self) -> str:
        """The gateway's connections table, erased with a learner's logs."""
        return self.common.table("connections")

    @property
    def usage_table(self) -> str:
        """The gateway's usage table, erased with a learner's logs."""
        return self.common.table("usage")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, common: CommonConfig | None = None) -> ConversationsConfig:
        """The conversations service settings, read from the environment."""
        env = os.environ if env is None else env
        common = common or CommonConfig.from_env(env)
        key = env.get("KOTOBA_PSEUDONYM_KEY") or ""
        if not key:
            if common.environment != "local":
                raise ConfigError("KOTOBA_PSEUDONYM_KEY", "is required outside local runs")
            key = LOCAL_DEV_PSEUDONYM_KEY
        elif common.environment == "prod" and len(key) < 32:
            raise ConfigError("KOTOBA_PSEUDONYM_KEY", "must be at least 32 characters in prod")
        backend = env_choice(env, "KOTOBA_SUMMARY_BACKEND", "offline", ("offline", "gemini"))
        api_key = env.get("GEMINI_API_KEY", "")
        if backend == "gemini":
            api_key = env_str(env, "GEMINI_API_KEY")
        return cls(
            common=common,
            ttl_days=env_int(env, "KOTOBA_CONVERSATION_TTL_DAYS", 90, minimum=1, maximum=3650),
            pseudonym_key=key.encode(),
            summary_backend=backend,
            gemini_api_key=api_key,
            gemini_model=env.get("KOTOBA_SUMMARY_MODEL") or "gemini-2.5-flash",
            gemini_base_url=env.get("KOTOBA_SUMMARY_BASE_URL", ""),
            summary_queue_size=env_int(env, "KOTOBA_SUMMARY_QUEUE_SIZE", 10_000, minimum=1),
            summary_batch_size=env_int(env, "KOTOBA_SUMMARY_BATCH_SIZE", 16, minimum=1, maximum=100),
            summary_linger_seconds=env_float(env, "KOTOBA_SUMMARY_LINGER_SECONDS", 0.5, minimum=0.0),
            summary_retries=env_int(env, "KOTOBA_SUMMARY_RETRIES", 4, minimum=0, maximum=20),
            summary_backoff_seconds=env_float(env, "KOTOBA_SUMMARY_BACKOFF_SECONDS", 1.0, minimum=0.0),
            summary_timeout_seconds=env_float(env, "KOTOBA_SUMMARY_TIMEOUT_SECONDS", 30.0, minimum=0.1),
            db_threads=env_int(env, "KOTOBA_CONVERSATIONS_DB_THREADS", 8, minimum=1, maximum=64),
        )
