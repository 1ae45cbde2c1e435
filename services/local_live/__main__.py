"""`python -m services.local_live`: the local Live engine on KOTOBA_LIVE_ADDR (TLS)."""

from __future__ import annotations

import asyncio

from services.common.logs import setup_logging
from services.local_live.config import LiveConfig
from services.local_live.server import serve_forever


def main() -> None:
    """Entry point of the local Live engine process."""
    config = LiveConfig.from_env()
    setup_logging("local_live", config.log_level)
    asyncio.run(serve_forever(config))


if __name__ == "__main__":
    main()
