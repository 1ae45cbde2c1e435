"""Dev certificate authority for the local Live engine (the Live client always speaks wss).

`python -m services.common.tls DIR` writes DIR/ca.pem, DIR/server.pem (cert chain) and
DIR/server.key for 127.0.0.1 and localhost. Existing files are kept.
"""

from __future__ import annotations

import ssl
import sys
from pathlib import Path

import trustme


def ensure_dev_ca(folder: Path) -> Path:
    """Create the local development CA and server certificate once; later calls reuse them."""
    folder.mkdir(parents=True, exist_ok=True)
    ca_pem, cert_pem, key_pem = folder / "ca.pem", folder / "server.pem", folder / "server.key"
    if not (ca_pem.exists() and cert_pem.exists() and key_pem.exists()):
        ca = trustme.CA(organization_name="Kotoba local dev CA")
        cert = ca.issue_cert("127.0.0.1", "localhost", "::1")
        ca.cert_pem.write_to_path(str(ca_pem))
        cert.private_key_pem.write_to_path(str(key_pem))
        cert_pem.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
        key_pem.chmod(0o600)
    return ca_pem


def server_context(folder: Path) -> ssl.SSLContext:
    """An SSL context serving the development certificate."""
    ensure_dev_ca(folder)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(folder / "server.pem", folder / "server.key")
    return ctx


def client_context(ca_file: Path) -> ssl.SSLContext:
    """An SSL context trusting only the development CA."""
    return ssl.create_default_context(cafile=str(ca_file))


if __name__ == "__main__":
    print(ensure_dev_ca(Path(sys.argv[1] if len(sys.argv) > 1 else ".data/tls")))
