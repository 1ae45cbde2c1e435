"""Typed configuration read once from the environment.

Every service builds one `CommonConfig` (and, where it needs more, its own
small dataclass using the `env_*` readers below) at start-up. A missing or
malformed variable raises `ConfigError` naming the variable, so a bad
deployment fails at once with a message an operator can act on.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]

DEFAULT_ADDRS = {
    "gateway": "127.0.0.1:8080",
    "retrieval": "127.0.0.1:50051",
    "tools": "127.0.0.1:50052",
    "conversations": "127.0.0.1:50053",
    "live": "127.0.0.1:8765",
    "dynamodb": "127.0.0.1:8000",
}

LOCAL_DEV_JWT_SECRET = "kotoba-local-dev-secret-not-for-production"
# Secrets that are public (this repository, docs, examples): a token signed with one proves nothing, so prod
# refuses to start with any of them.
KNOWN_DEV_SECRETS = frozenset({LOCAL_DEV_JWT_SECRET, "kotoba-local-dev-pseudonym-key", "secret", "changeme",
                               "change-me", "dev-secret"})
# In prod a token may not be valid for longer than this: a leaked long-lived token is a standing key.
PROD_MAX_TOKEN_LIFETIME_S = 24 * 3600


class ConfigError(ValueError):
    """A configuration variable is missing or malformed."""

    def __init__(self, variable: str, problem: str) -> None:
        super().__init__(f"{variable}: {problem}")
        self.variable = variable


def env_str(env: Mapping[str, str], name: str, default: str | None = None) -> str:
    """A required or defaulted string setting; ConfigError names the variable when it is missing."""
    value = env.get(name)
    if value is None or value == "":
        if default is None:
            raise ConfigError(name, "is required but not set")
        return default
    return value


def env_int(env: Mapping[str, str], name: str, default: int, *, minimum: int | None = None,
            maximum: int | None = None) -> int:
    """An integer setting within bounds; ConfigError names the variable when it is not one."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(name, f"expected an integer, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ConfigError(name, f"must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ConfigError(name, f"must be <= {maximum}, got {value}")
    return value


def env_float(env: Mapping[str, str], name: str, default: float, *, minimum: float | None = None) -> float:
    """A float setting within bounds; ConfigError names the variable when it is not one."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(name, f"expected a number, got {raw!r}") from None
    if minimum is not None and value < minimum:
        raise ConfigError(name, f"must be >= {minimum}, got {value}")
    return value


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    """A yes/no setting (1/0, true/false, yes/no, on/off); ConfigError for anything else."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    if raw.lower() in _TRUE:
        return True
    if raw.lower() in _FALSE:
        return False
    raise ConfigError(name, f"expected true/false, got {raw!r}")


def env_choice(env: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    """A setting that must be one of a few named values."""
    value = env.get(name) or default
    if value not in choices:
        raise ConfigError(name, f"expected one of {', '.join(choices)}, got {value!r}")
    return value


def env_addr(env: Mapping[str, str], name: str, default: str) -> str:
    """host:port; the port must be a number in range."""
    value = env.get(name) or default
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ConfigError(name, f"expected host:port, got {value!r}")
    return value


def addr_var(service: str) -> str:
    """The environment variable holding a service's host:port."""
    return f"KOTOBA_{service.upper()}_ADDR"


@dataclass(frozen=True)
class AuthConfig:
    """JWT settings. Local: HS256 with a dev secret. Production: RS256 via JWKS."""

    algorithm: str  # "HS256" or "RS256"
    secret: str  # HS256 only
    jwks_url: str  # RS256 only
    issuer: str
    audience: str
    token_ttl_seconds: int
    # Tokens whose exp lies further ahead than this are refused; 0 = no bound (local runs).
    max_token_lifetime_seconds: int = 0


@dataclass(frozen=True)
class AwsConfig:
    region: str
    dynamodb_endpoint: str  # empty = AWS default
    s3_endpoint: str
    table_prefix: str


@dataclass(frozen=True)
class CommonConfig:
    environment: str  # "local" or "prod"
    data_dir: Path
    log_level: str
    auth: AuthConfig
    aws: AwsConfig
    addrs: dict[str, str] = field(default_factory=dict)
    drain_seconds: float = 5.0
    otel_exporter: str = "none"  # none | console | otlp

    def addr(self, service: str) -> str:
        """The host:port of a service."""
        return self.addrs[service]

    def table(self, name: str) -> str:
        """A table's name with the environment's prefix."""
        return f"{self.aws.table_prefix}{name}"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> CommonConfig:
        """The settings every service shares, read from the environment; ConfigError names a bad one."""
        env = os.environ if env is None else env
        environment = env_choice(env, "KOTOBA_ENV", "local", ("local", "prod"))
        algorithm = env_choice(env, "KOTOBA_JWT_ALGORITHM", "HS256" if environment == "local" else "RS256",
                               ("HS256", "RS256"))
        if algorithm == "HS256":
            secret = env_str(env, "KOTOBA_JWT_SECRET", LOCAL_DEV_JWT_SECRET if environment == "local" else None)
            if environment == "prod" and len(secret) < 32:
                raise ConfigError("KOTOBA_JWT_SECRET", "must be at least 32 characters in prod")
            if environment == "prod" and secret.strip().lower() in KNOWN_DEV_SECRETS:
                raise ConfigError("KOTOBA_JWT_SECRET", "is a published development secret; set a random one in prod")
            jwks_url = ""
        else:
            secret = ""
            jwks_url = env_str(env, "KOTOBA_JWKS_URL")
            if not jwks_url.startswith(("https://", "http://127.0.0.1", "http://localhost")):
                raise ConfigError("KOTOBA_JWKS_URL", f"expected an https URL, got {jwks_url!r}")
        auth = AuthConfig(
            algorithm=algorithm,
            secret=secret,
            jwks_url=jwks_url,
            issuer=env_str(env, "KOTOBA_JWT_ISSUER", "kotoba-local"),
            audience=env_str(env, "KOTOBA_JWT_AUDIENCE", "kotoba"),
            token_ttl_seconds=env_int(env, "KOTOBA_TOKEN_TTL_SECONDS", 12 * 3600, minimum=60,
                                      maximum=PROD_MAX_TOKEN_LIFETIME_S if environment == "prod" else None),
            max_token_lifetime_seconds=PROD_MAX_TOKEN_LIFETIME_S if environment == "prod" else 0,
        )
        local_dynamo = "http://" + env_addr(env, addr_var("dynamodb"), DEFAULT_ADDRS["dynamodb"])
        aws = AwsConfig(
            region=env_str(env, "AWS_REGION", env.get("AWS_DEFAULT_REGION") or "us-east-1"),
            dynamodb_endpoint=env.get("AWS_ENDPOINT_URL_DYNAMODB")
            or env.get("AWS_ENDPOINT_URL")
            or (local_dynamo if environment == "local" else ""),
            s3_endpoint=env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL") or "",
            table_prefix=env.get("KOTOBA_TABLE_PREFIX", "kotoba-"),
        )
        addrs = {name: env_addr(env, addr_var(name), default) for name, default in DEFAULT_ADDRS.items()}
        return cls(
            environment=environment,
            data_dir=Path(env.get("KOTOBA_DATA_DIR") or REPO_ROOT / ".data"),
            log_level=env_choice(env, "KOTOBA_LOG_LEVEL", "INFO", ("DEBUG", "INFO", "WARNING", "ERROR")),
            auth=auth,
            aws=aws,
            addrs=addrs,
            drain_seconds=env_float(env, "KOTOBA_DRAIN_SECONDS", 5.0, minimum=0.0),
            otel_exporter=env_choice(
                env, "KOTOBA_OTEL_EXPORTER",
                "otlp" if env.get("OTEL_EXPORTER_OTLP_ENDPOINT") else "none",
                ("none", "console", "otlp", "memory"),
            ),
        )
