"""Checks and masking of backend URLs and reading of mounted secrets."""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple
from urllib.parse import unquote, urlsplit, urlunsplit

from pydantic import SecretStr

from nativekit.settings._renames import env_variable

REDIS_SCHEMES = (
    "memory",
    "redis",
    "rediss",
    "unix",
    "redis+sentinel",
    "redis+cluster",
    "rediss+cluster",
)


def mask_url(url: str) -> str:
    """Return ``url`` with any password replaced by ``***`` (also with several hosts)."""
    parts = urlsplit(url)
    userinfo, at, hosts = parts.netloc.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    if not (at and colon):
        return url
    netloc = f"{user}:***@{hosts}"
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def read_secret(path: Path, field: str) -> SecretStr:
    """The secret in ``path``, trailing newline stripped; ``field`` is its dotted path."""
    try:
        return SecretStr(path.read_text(encoding="utf-8").rstrip("\r\n"))
    except OSError as exc:
        raise ValueError(
            f"cannot read the secret file given by {env_variable(field)}: {exc.strerror or exc}"
        ) from None


def check_redis_url(value: str) -> str:
    """``value`` if it is a Redis URL nativekit can use, else ValueError saying which are."""
    scheme = urlsplit(value).scheme
    if scheme not in REDIS_SCHEMES or (scheme != "memory" and value.count("://") != 1):
        raise ValueError(
            f"{mask_url(value)!r} is not a Redis URL; expected 'memory://', "
            "'redis://host:port/db', 'rediss://host:port/db', 'unix:///path' or "
            "'redis+sentinel://host:port[,host:port]/master[/db]' or "
            "'redis+cluster://host:port[,host:port]' ('rediss+cluster://' with TLS)"
        )
    if scheme == "redis+sentinel":
        parse_sentinel_url(value)
    if scheme.endswith("+cluster"):
        parse_cluster_url(value)
    return value


def check_kafka_url(value: str) -> str:
    """``value`` if it is ``memory://`` or ``kafka://host:port[,...]``, else ValueError."""
    if value == "memory://":
        return value
    scheme, _, rest = value.partition("://")
    hosts = [h for h in rest.split(",") if h]
    if scheme != "kafka" or not hosts or not all(_is_host_port(h) for h in hosts):
        raise ValueError(
            f"{mask_url(value)!r} is not a Kafka URL; expected "
            "'kafka://host:port[,host:port]' or 'memory://'"
        )
    return value


class SentinelURL(NamedTuple):
    """The parts of a ``redis+sentinel://`` URL."""

    sentinels: list[tuple[str, int]]
    master: str
    db: int
    username: str | None
    password: str | None


def parse_sentinel_url(url: str) -> SentinelURL:
    """Split ``redis+sentinel://[user:password@]host:port[,host:port]/master[/db]``; the
    user and password are those of the Redis servers, not of the Sentinels.

    Raises:
        ValueError: the URL lacks a Sentinel address or the master's name, or a port or
            the database number is not a number.
    """
    expected = "expected 'redis+sentinel://host:port[,host:port]/master[/db]'"
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    entries = [h for h in hosts.split(",") if h]
    if not entries or not all(_is_host_port(h) for h in entries):
        raise ValueError(f"{mask_url(url)!r} names no Sentinel as host:port; {expected}")
    path = [p for p in parts.path.split("/") if p]
    if not path or len(path) > 2 or (len(path) == 2 and not path[1].isdigit()):
        raise ValueError(
            f"{mask_url(url)!r} does not name the master (and optionally the database); {expected}"
        )
    user, colon, password = userinfo.partition(":")
    return SentinelURL(
        [(h.rpartition(":")[0], int(h.rpartition(":")[2])) for h in entries],
        unquote(path[0]),
        int(path[1]) if len(path) == 2 else 0,
        unquote(user) or None,
        unquote(password) if colon else None,
    )


class ClusterURL(NamedTuple):
    """The parts of a ``redis+cluster://`` (or ``rediss+cluster://``) URL."""

    nodes: list[tuple[str, int]]
    tls: bool
    username: str | None
    password: str | None


def parse_cluster_url(url: str) -> ClusterURL:
    """Split ``redis+cluster://[user:password@]host:port[,host:port][/]``: the nodes the
    client asks for the cluster's layout first (any live one will do).

    Raises:
        ValueError: no node as host:port, or a path (a cluster has only database 0).
    """
    expected = "expected 'redis+cluster://host:port[,host:port]'"
    parts = urlsplit(url)
    userinfo, _, hosts = parts.netloc.rpartition("@")
    entries = [h for h in hosts.split(",") if h]
    if not entries or not all(_is_host_port(h) for h in entries):
        raise ValueError(f"{mask_url(url)!r} names no cluster node as host:port; {expected}")
    if parts.path.strip("/") not in ("", "0"):
        raise ValueError(
            f"{mask_url(url)!r} names a database; Redis Cluster has only database 0; {expected}"
        )
    user, colon, password = userinfo.partition(":")
    return ClusterURL(
        [(h.rpartition(":")[0], int(h.rpartition(":")[2])) for h in entries],
        parts.scheme == "rediss+cluster",
        unquote(user) or None,
        unquote(password) if colon else None,
    )


def _is_host_port(entry: str) -> bool:
    host, sep, port = entry.rpartition(":")
    return bool(sep and host and port.isdigit() and 0 < int(port) < 65536)
