"""A Kafka connection that goes silent for good (no answer, no reset) is dropped after the
request timeout and a new one made: publishing resumes within seconds, not 30 s."""

from __future__ import annotations

import time

import pytest

from nativekit.backends.kafka import KafkaBroker
from nativekit.errors import BackendUnavailable
from nativekit.settings import Settings
from nativekit.testing.servers import free_port
from tests.faults.infra import TansuProcess
from tests.proxy import StallingProxy

pytestmark = [pytest.mark.kafka, pytest.mark.slow]


def test_the_request_timeout_defaults_to_10_seconds() -> None:
    """NATIVEKIT_KAFKA_REQUEST_TIMEOUT_SECONDS defaults to 10 s."""
    assert Settings(_env_file=None).kafka.request_timeout_seconds == 10.0


async def test_a_publish_on_a_stalled_connection_goes_through_a_new_one(unique: str) -> None:
    """The broker's connection stalls for good after a first publish: the next publish
    fails after the request timeout (2 s here) and the one after it goes through."""
    port = free_port()
    tansu = TansuProcess(advertised_port=port)  # every connection passes the proxy
    tansu.start()
    try:
        async with StallingProxy(("127.0.0.1", tansu.port), port=port) as proxy:
            settings = Settings(
                _env_file=None,
                kafka={"url": f"kafka://127.0.0.1:{port}", "idempotent_producer": False,
                       "request_timeout_seconds": 2},
            )  # fmt: skip
            broker = KafkaBroker(settings)
            topic = f"stalled-{unique}"
            try:
                await broker.create_topics({topic: 1})
                await broker.send(topic, b"before")
                proxy.stall()
                began = time.monotonic()
                failures = 0
                while True:
                    try:
                        sent = await broker.send(topic, b"after")
                        break
                    except BackendUnavailable:
                        failures += 1
                        assert time.monotonic() - began < 20, "publishing never resumed"
                took = time.monotonic() - began
            finally:
                await broker.aclose()
    finally:
        tansu.stop()
    assert sent.offset == 1
    assert failures >= 1  # the stalled connection was not answered
    assert took < 8, took  # the request timeout (2 s) and a new connection, not 30 s
