"""aiokafka connection options and the Kafka readiness check."""

from __future__ import annotations

import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any

from nativekit._health import CheckResult
from nativekit.errors import BackendUnavailable
from nativekit.settings import Settings


def kafka_client_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments for aiokafka producers, consumers and clients.

    Carries bootstrap servers, TLS (CA, client certificate and key) and SASL
    (PLAIN, SCRAM) from the settings, so every aiokafka object of a service
    connects the same way.
    """
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka.bootstrap_servers,
        # A connection whose requests go unanswered (a network path that lost its
        # state, a broker host gone without a reset) is dropped and made again after
        # this long; 30 s held every publish and fetch of a service that long.
        "request_timeout_ms": round(settings.kafka.request_timeout_seconds * 1000),
        "connections_max_idle_ms": 540_000,
    }
    tls = settings.kafka.tls or bool(settings.kafka.tls_ca_file)
    if tls:
        context = ssl.create_default_context(
            cafile=str(settings.kafka.tls_ca_file) if settings.kafka.tls_ca_file else None
        )
        if settings.kafka.tls_cert_file:
            context.load_cert_chain(
                str(settings.kafka.tls_cert_file),
                str(settings.kafka.tls_key_file) if settings.kafka.tls_key_file else None,
            )
        options["ssl_context"] = context
    if settings.kafka.sasl_mechanism:
        options["security_protocol"] = "SASL_SSL" if tls else "SASL_PLAINTEXT"
        options["sasl_mechanism"] = settings.kafka.sasl_mechanism
        options["sasl_plain_username"] = settings.kafka.sasl_username
        password = settings.kafka.sasl_password
        options["sasl_plain_password"] = password.get_secret_value() if password else None
    else:
        options["security_protocol"] = "SSL" if tls else "PLAINTEXT"
    return options


async def start_or_close(
    start: Callable[[], Awaitable[Any]],
    close: Callable[[], Awaitable[Any]],
    unavailable: Callable[[Exception], Exception],
) -> None:
    """``await start()``; on any failure, cancellation included, ``await close()`` so no
    half-started client keeps connections or tasks, and raise ``unavailable(exc)``
    (a cancellation is re-raised as is)."""
    try:
        await start()
    except BaseException as exc:
        await close()
        if isinstance(exc, Exception):
            raise unavailable(exc) from exc
        raise


class KafkaProbe:
    """A long-lived aiokafka client used to check that the cluster answers metadata requests."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: Any = None

    async def start(self) -> None:
        """Connect to the bootstrap servers."""
        from aiokafka.client import AIOKafkaClient

        options = kafka_client_options(self.settings)
        options.pop("connections_max_idle_ms", None)
        client = AIOKafkaClient(**options)
        # Kept only once bootstrapped: a client cancelled by the check's timeout before
        # that knows no broker, and every later check would fail with it.
        await start_or_close(client.bootstrap, client.close, self._unavailable)
        self._client = client

    async def stop(self) -> None:
        """Close the connections."""
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def check(self) -> CheckResult:
        """Fetch cluster metadata; report the number of brokers."""
        if self._client is None:
            await self.start()
        started = time.perf_counter()
        try:
            metadata = await self._client.fetch_all_metadata()
        except Exception as exc:
            raise self._unavailable(exc) from exc
        brokers = len(metadata.brokers())
        if brokers == 0:
            raise BackendUnavailable("Kafka answered metadata with no brokers")
        return CheckResult(
            observed_value=round((time.perf_counter() - started) * 1000, 2),
            observed_unit="ms",
            output=f"{brokers} broker(s)",
        )

    def _unavailable(self, exc: BaseException) -> BackendUnavailable:
        servers = ",".join(self.settings.kafka.bootstrap_servers)
        return BackendUnavailable(
            f"Kafka at {servers} did not answer: {type(exc).__name__}: {exc}. "
            "Is NATIVEKIT_KAFKA_URL right and the broker up?"
        )
