"""Optional TLS (and mutual TLS) on the internal gRPC hops, and whether servers offer reflection.

Read from the environment when a server starts or a channel is made (docs/operations.md, "Internal gRPC"):

    KOTOBA_GRPC_TLS_CERT / KOTOBA_GRPC_TLS_KEY   this process's certificate chain and key (PEM). A server with
                                                 them listens with TLS; a client presents them (mTLS).
    KOTOBA_GRPC_TLS_CA                           CA bundle (PEM): clients verify servers with it (and switch to
                                                 TLS); servers with KOTOBA_GRPC_TLS_CLIENT_AUTH=1 require client
                                                 certificates signed by it.
    KOTOBA_GRPC_TLS_SERVER_NAME                  name to verify instead of the host in the address (optional).
    KOTOBA_GRPC_REFLECTION                       1/0; default on locally, off when KOTOBA_ENV=prod.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import grpc

from services.common.config import ConfigError, env_bool


def _path(env: Mapping[str, str], name: str) -> Path | None:
    value = env.get(name, "").strip()
    if not value:
        return None
    path = Path(value)
    if not path.is_file():
        raise ConfigError(name, f"no such file: {value}")
    return path


@dataclass(frozen=True)
class GrpcTls:
    cert: Path | None = None
    key: Path | None = None
    ca: Path | None = None
    client_auth: bool = False
    server_name: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> GrpcTls:
        """The gRPC TLS files the environment names (none: plaintext)."""
        env = os.environ if env is None else env
        tls = cls(cert=_path(env, "KOTOBA_GRPC_TLS_CERT"), key=_path(env, "KOTOBA_GRPC_TLS_KEY"),
                  ca=_path(env, "KOTOBA_GRPC_TLS_CA"), client_auth=env_bool(env, "KOTOBA_GRPC_TLS_CLIENT_AUTH", False),
                  server_name=env.get("KOTOBA_GRPC_TLS_SERVER_NAME", "").strip())
        if (tls.cert is None) != (tls.key is None):
            raise ConfigError("KOTOBA_GRPC_TLS_CERT", "set both KOTOBA_GRPC_TLS_CERT and KOTOBA_GRPC_TLS_KEY, or neither")
        if tls.client_auth and (tls.ca is None or tls.cert is None):
            raise ConfigError("KOTOBA_GRPC_TLS_CLIENT_AUTH", "mutual TLS needs KOTOBA_GRPC_TLS_CA and a server cert/key")
        return tls

    def server_credentials(self) -> grpc.ServerCredentials | None:
        """Server credentials from the certificate and key; None to serve plaintext."""
        if self.cert is None or self.key is None:
            return None
        return grpc.ssl_server_credentials(
            [(self.key.read_bytes(), self.cert.read_bytes())],
            root_certificates=self.ca.read_bytes() if self.client_auth and self.ca else None,
            require_client_auth=self.client_auth)

    def channel_credentials(self) -> grpc.ChannelCredentials | None:
        """Channel credentials trusting the configured CA; None for a plaintext channel."""
        if self.ca is None:
            return None
        pair = (self.key.read_bytes(), self.cert.read_bytes()) if self.cert and self.key else (None, None)
        return grpc.ssl_channel_credentials(root_certificates=self.ca.read_bytes(), private_key=pair[0],
                                            certificate_chain=pair[1])

    def channel_options(self) -> tuple[tuple[str, str], ...]:
        """Channel options: the name the server certificate is checked against, when it differs from the address."""
        return (("grpc.ssl_target_name_override", self.server_name),) if self.server_name else ()


def reflection_enabled(env: Mapping[str, str] | None = None) -> bool:
    """Whether the server offers gRPC reflection: on except in prod, unless set explicitly."""
    env = os.environ if env is None else env
    # Reflection hands anyone who can connect a map of every method: handy locally, not needed in prod.
    return env_bool(env, "KOTOBA_GRPC_REFLECTION", env.get("KOTOBA_ENV", "local") != "prod")


def make_channel(addr: str, options: tuple, interceptors) -> grpc.aio.Channel:
    """A gRPC channel to another service, over TLS when the environment configures it."""
    tls = GrpcTls.from_env()
    creds = tls.channel_credentials()
    if creds is None:
        return grpc.aio.insecure_channel(addr, options=options, interceptors=interceptors)
    return grpc.aio.secure_channel(addr, creds, options=options + tls.channel_options(), interceptors=interceptors)
