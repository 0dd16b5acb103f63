"""Redis over TLS end to end: rediss:// with a CA file and a password."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from nativekit import Service, Settings
from nativekit.testing import serve, servers

pytestmark = pytest.mark.redis


@pytest.fixture
def tls_redis(tmp_path: Path) -> Iterator[tuple[int, Path]]:
    """A private Redis-protocol server accepting only TLS, with a password."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    ca_file, cert_file, key_file = tmp_path / "ca.pem", tmp_path / "cert.pem", tmp_path / "key.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    port = servers.free_port()
    command = [
        servers.redis_binary(),
        "--port",
        "0",
        "--tls-port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--tls-cert-file",
        str(cert_file),
        "--tls-key-file",
        str(key_file),
        "--tls-ca-cert-file",
        str(ca_file),
        "--tls-auth-clients",
        "no",
        "--requirepass",
        "s3cret",
        "--save",
        "",
        "--dir",
        str(tmp_path),
    ]
    log = tmp_path / "redis.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    servers.wait_until(lambda: servers.port_open("127.0.0.1", port), "TLS Redis", process, log, 20)
    try:
        yield port, ca_file
    finally:
        process.terminate()
        process.wait(timeout=10)


async def test_rediss_with_ca_and_password(tls_redis: tuple[int, Path], tmp_path: Path) -> None:
    """A service reaches a TLS Redis with the CA file and a password read from a secret file."""
    port, ca_file = tls_redis
    secret = tmp_path / "password"
    secret.write_text("s3cret\n")
    settings = Settings(
        _env_file=None,
        redis={
            "url": f"rediss://127.0.0.1:{port}/0",
            "tls_ca_file": ca_file,
            "password_file": secret,
        },
    )
    svc = Service("tls-client", settings=settings)
    async with serve(svc) as client:
        ready = await client.get("/readyz")
        await svc.redis.set("nativekit:tls:probe", b"1", ex=5)
        assert await svc.redis.get("nativekit:tls:probe") == b"1"
    assert ready.status_code == 200, ready.text


async def test_rediss_with_unknown_ca_is_not_ready(tls_redis: tuple[int, Path]) -> None:
    """Without the server's CA (not in the system store) the handshake fails; readiness says so."""
    port, _ = tls_redis
    settings = Settings(
        _env_file=None,
        connect_timeout_seconds=1,
        redis={"url": f"rediss://127.0.0.1:{port}/0", "password": "s3cret"},
    )
    svc = Service("tls-untrusted", settings=settings)
    assert svc.redis is not None  # used by the service: Redis is critical
    async with serve(svc) as client:
        ready = await client.get("/readyz")
    assert ready.status_code == 503
    assert "NATIVEKIT_REDIS_URL" in ready.json()["checks"]["redis:ping"][0]["output"]
