"""The operator console: server-rendered pages for sagas, dead letters and consumers.

Served under ``NATIVEKIT_CONSOLE_PATH`` when ``NATIVEKIT_CONSOLE_ENABLED=true``,
behind the same bearer authentication as the operator API (see docs/console.md).
"""

from nativekit._console._app import ConsoleSources
from nativekit._console._build import build_console, console_mount

__all__ = ["ConsoleSources", "build_console", "console_mount"]
