"""Live engine settings, read once from the environment."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from services.common.config import (
    DEFAULT_ADDRS,
    REPO_ROOT,
    env_addr,
    env_choice,
    env_float,
    env_int,
    env_str,
)


@dataclass(frozen=True)
class LiveConfig:
    addr: str
    api_key: str
    tls_dir: Path
    faults: str  # server-wide fault spec, same syntax as the x-kotoba-faults header
    max_frame_bytes: int
    frames_dir: Path | None  # when set, every connection's frames are appended as JSONL here
    resumption_ttl_seconds: float  # model seconds (see clock_speed)
    clock_speed: float  # model seconds per real second; >1 runs the session rules faster for tests
    log_level: str

    @property
    def host(self) -> str:
        """The host part of the listen address."""
        return self.addr.rpartition(":")[0]

    @property
    def port(self) -> int:
        """The port part of the listen address."""
        return int(self.addr.rpartition(":")[2])

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LiveConfig:
        """The engine settings, read from the environment."""
        env = os.environ if env is None else env
        ca_file = env.get("KOTOBA_LIVE_CA_FILE")
        tls_dir = Path(ca_file).parent if ca_file else REPO_ROOT / ".data" / "tls"
        frames_dir = env.get("KOTOBA_LIVE_FRAMES_DIR")
        return cls(
            addr=env_addr(env, "KOTOBA_LIVE_ADDR", DEFAULT_ADDRS["live"]),
            api_key=env_str(env, "KOTOBA_LIVE_API_KEY", "local-dev-key"),
            tls_dir=tls_dir,
            faults=env.get("KOTOBA_LIVE_FAULTS", ""),
            max_frame_bytes=env_int(env, "KOTOBA_LIVE_MAX_FRAME_BYTES", 4 * 2**20, minimum=1024),
            frames_dir=Path(frames_dir) if frames_dir else None,
            resumption_ttl_seconds=env_float(env, "KOTOBA_LIVE_RESUMPTION_TTL_SECONDS", 2 * 3600.0,
                                             minimum=1.0),
            clock_speed=env_float(env, "KOTOBA_LIVE_CLOCK_SPEED", 1.0, minimum=0.001),
            log_level=env_choice(env, "KOTOBA_LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR")),
        )
