"""Optional TLS / mutual TLS on internal gRPC (KOTOBA_GRPC_TLS_*) and reflection off in prod, through real
servers on the common bootstrap and real clients."""

from __future__ import annotations

import grpc
import pytest
import trustme
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from services.common.config import ConfigError
from services.common.grpc_server import GrpcService, channel
from services.common.grpc_tls import GrpcTls, reflection_enabled


@pytest.fixture
def pki(tmp_path):
    ca = trustme.CA()
    files = {"ca": tmp_path / "ca.pem"}
    ca.cert_pem.write_to_path(str(files["ca"]))
    for who in ("server", "client"):
        cert = ca.issue_cert("127.0.0.1", "localhost", f"{who}.kotoba.internal")
        files[f"{who}_cert"] = tmp_path / f"{who}.pem"
        files[f"{who}_key"] = tmp_path / f"{who}.key"
        files[f"{who}_cert"].write_bytes(b"".join(b.bytes() for b in cert.cert_chain_pems))
        cert.private_key_pem.write_to_path(str(files[f"{who}_key"]))
    other = trustme.CA().issue_cert("127.0.0.1")
    files["rogue_cert"], files["rogue_key"] = tmp_path / "rogue.pem", tmp_path / "rogue.key"
    files["rogue_cert"].write_bytes(b"".join(b.bytes() for b in other.cert_chain_pems))
    other.private_key_pem.write_to_path(str(files["rogue_key"]))
    return files


async def _healthy(addr: str) -> bool:
    async with channel(addr) as ch:
        try:
            reply = await health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=3)
        except grpc.aio.AioRpcError:
            return False
        return reply.status == health_pb2.HealthCheckResponse.SERVING


def _server_env(monkeypatch, pki, *, client_auth: bool) -> None:
    monkeypatch.setenv("KOTOBA_GRPC_TLS_CERT", str(pki["server_cert"]))
    monkeypatch.setenv("KOTOBA_GRPC_TLS_KEY", str(pki["server_key"]))
    monkeypatch.setenv("KOTOBA_GRPC_TLS_CA", str(pki["ca"]))
    monkeypatch.setenv("KOTOBA_GRPC_TLS_CLIENT_AUTH", "1" if client_auth else "0")


def _client_env(monkeypatch, pki, who: str | None) -> None:
    for name in ("KOTOBA_GRPC_TLS_CERT", "KOTOBA_GRPC_TLS_KEY", "KOTOBA_GRPC_TLS_CLIENT_AUTH"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KOTOBA_GRPC_TLS_CA", str(pki["ca"]))
    if who:
        monkeypatch.setenv("KOTOBA_GRPC_TLS_CERT", str(pki[f"{who}_cert"]))
        monkeypatch.setenv("KOTOBA_GRPC_TLS_KEY", str(pki[f"{who}_key"]))


@pytest.mark.parametrize("client_auth", [False, True])
async def test_tls_and_mutual_tls_between_services(monkeypatch, pki, client_auth):
    _server_env(monkeypatch, pki, client_auth=client_auth)
    service = GrpcService("tls", "127.0.0.1:0", [], drain_seconds=0.1)
    port = await service.start()
    await service.mark_ready()
    addr = f"127.0.0.1:{port}"
    try:
        _client_env(monkeypatch, pki, "client")
        assert await _healthy(addr)
        _client_env(monkeypatch, pki, None)  # TLS, but no client certificate
        assert await _healthy(addr) is (not client_auth)
        _client_env(monkeypatch, pki, "rogue")  # a certificate from another CA
        assert await _healthy(addr) is (not client_auth)
        async with grpc.aio.insecure_channel(addr) as plain:  # plaintext never gets in
            with pytest.raises(grpc.aio.AioRpcError):
                await health_pb2_grpc.HealthStub(plain).Check(health_pb2.HealthCheckRequest(), timeout=2)
    finally:
        await service.stop(0)


def test_tls_settings_are_checked(pki):
    with pytest.raises(ConfigError, match="KOTOBA_GRPC_TLS_CERT"):
        GrpcTls.from_env({"KOTOBA_GRPC_TLS_CERT": str(pki["server_cert"])})
    with pytest.raises(ConfigError, match="CLIENT_AUTH"):
        GrpcTls.from_env({"KOTOBA_GRPC_TLS_CLIENT_AUTH": "1"})
    with pytest.raises(ConfigError, match="no such file"):
        GrpcTls.from_env({"KOTOBA_GRPC_TLS_CA": "/nonexistent/ca.pem"})
    assert GrpcTls.from_env({}).server_credentials() is None and GrpcTls.from_env({}).channel_credentials() is None


async def test_reflection_is_off_in_prod(monkeypatch):
    assert reflection_enabled({}) and not reflection_enabled({"KOTOBA_ENV": "prod"})
    assert reflection_enabled({"KOTOBA_ENV": "prod", "KOTOBA_GRPC_REFLECTION": "1"})
    monkeypatch.setenv("KOTOBA_GRPC_REFLECTION", "0")
    service = GrpcService("norefl", "127.0.0.1:0", [], drain_seconds=0.1)
    port = await service.start()
    try:
        async with channel(f"127.0.0.1:{port}") as ch:
            async def ask():
                yield reflection_pb2.ServerReflectionRequest(list_services="")

            with pytest.raises(grpc.aio.AioRpcError) as err:
                async for _ in reflection_pb2_grpc.ServerReflectionStub(ch).ServerReflectionInfo(ask()):
                    pass
            assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        await service.stop(0)
