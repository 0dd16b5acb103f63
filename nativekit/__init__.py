"""nativekit: saga-based cloud-native services on Starlette.

Importing nativekit is cheap: Redis, Kafka and OpenTelemetry modules load
only when a backend or tracing is used.
"""

from nativekit._gc import restore_gc, tune_gc
from nativekit._group import ServiceGroup, combine
from nativekit._health import CheckResult
from nativekit._http.openapi._declare import RouteDocs, operation_schema
from nativekit._http.routing import Header
from nativekit._service import Service
from nativekit._transaction import Transaction
from nativekit.errors import BackendUnavailable, ConfigError, HTTPError, NativekitError
from nativekit.messaging._commands.handlers import CommandRejected
from nativekit.saga import Saga, SagaContext
from nativekit.settings import Settings

__version__ = "0.1.0"

__all__ = [
    "BackendUnavailable",
    "CheckResult",
    "combine",
    "CommandRejected",
    "ConfigError",
    "Header",
    "HTTPError",
    "NativekitError",
    "operation_schema",
    "restore_gc",
    "RouteDocs",
    "Saga",
    "SagaContext",
    "Service",
    "ServiceGroup",
    "Settings",
    "Transaction",
    "tune_gc",
]
