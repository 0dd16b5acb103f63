"""The faster log processors write what structlog's stock processors write."""

from __future__ import annotations

import datetime
import json
import re
from typing import Any

from structlog.processors import JSONRenderer, TimeStamper

from nativekit._telemetry import logging as nklogging

ISO_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{6})?Z$")


def test_timestamp_matches_timestamper_format_and_clock() -> None:
    """The cached-prefix timestamp has TimeStamper's ISO-UTC shape and the current time."""
    stock = TimeStamper(fmt="iso", utc=True)(None, "info", {})["timestamp"]
    fast = nklogging._timestamp(None, "info", {})["timestamp"]
    assert ISO_UTC.match(stock) and ISO_UTC.match(fast)
    parse = datetime.datetime.fromisoformat
    assert abs((parse(fast) - parse(stock)).total_seconds()) < 1


def test_json_serializer_output_equals_json_dumps() -> None:
    """JSONRenderer with the reused encoder renders byte-for-byte like the default one."""

    class Odd:
        def __repr__(self) -> str:
            return "<odd>"

    event: dict[str, Any] = {"event": "x", "n": 1.5, "odd": Odd(), "nested": {"ü": [1, None]}}
    assert JSONRenderer(serializer=nklogging._json_dumps)(None, "info", dict(event)) == (
        JSONRenderer()(None, "info", dict(event))
    )


def test_redaction_unchanged_for_plain_and_secret_keys() -> None:
    """Secrets are masked whatever the key's case; nativekit's own keys keep URL masking."""
    event = {
        "Authorization": "Bearer abc",
        "path": "/x?next=https://bob:hunter2@example.com/",
        "route": None,
        "headers": {"Cookie": "s=1", "host": "a"},
        "password": None,
    }
    out = nklogging.redact(None, "info", event)
    assert out == {
        "Authorization": "[REDACTED]",
        "path": "/x?next=https://bob:***@example.com/",
        "route": None,
        "headers": {"Cookie": "[REDACTED]", "host": "a"},
        "password": None,
    }
    assert json.dumps(out)
