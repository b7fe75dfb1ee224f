"""Connecting to Redis: URLs, their options, timeouts, passwords kept out of messages.

>>> redact_url("redis://app:hunter2@cache:6380/0")
'redis://app:***@cache:6380/0'
>>> _split_options("redis://cache:6379/0?buckets=64&socket_timeout=2")
('redis://cache:6379/0?socket_timeout=2', {'buckets': '64'})
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit, urlunsplit

import redis
from pydantic import SecretStr

#: Seconds a Redis command may take before it fails (``?socket_timeout=`` overrides):
#: far above a batch write (milliseconds), far below forever.
DEFAULT_SOCKET_TIMEOUT_S = 30.0
#: Seconds to open a connection (``?socket_connect_timeout=`` overrides).
DEFAULT_CONNECT_TIMEOUT_S = 10.0


def redact_url(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for logs and error messages)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))


def _split_options(url: str) -> tuple[str, dict[str, str]]:
    """Remove streamseg's own query options (``buckets``) from a Redis URL."""
    parts = urlsplit(url)
    query = parse_qs(parts.query, keep_blank_values=True)
    ours = {name: query.pop(name)[-1] for name in ("buckets",) if name in query}
    rest = urlencode([(k, v) for k, values in query.items() for v in values])
    return urlunsplit(parts._replace(query=rest)), ours


def _connect(url: str, password: SecretStr | str | None) -> redis.Redis:
    """A client for ``url`` that has answered a PING; a clear error if it cannot."""
    secret = password.get_secret_value() if isinstance(password, SecretStr) else password
    # Without timeouts a Redis that stops answering (paused, a network partition that
    # drops packets) blocks the worker forever, and /readyz with it. With them the
    # batch fails, the pipeline reports not-ready and retries. A ``socket_timeout`` in
    # the URL's query string wins (redis-py applies URL options last).
    options: dict[str, Any] = {
        "health_check_interval": 30,
        "socket_timeout": DEFAULT_SOCKET_TIMEOUT_S,
        "socket_connect_timeout": DEFAULT_CONNECT_TIMEOUT_S,
    }
    if secret:
        options["password"] = secret  # a password in the URL itself takes precedence
    client = redis.Redis.from_url(url, **options)
    try:
        client.ping()
    except redis.RedisError as error:
        client.close()
        raise ConnectionError(
            f"cannot use Redis at {redact_url(url)}: {error}. Is redis-server running "
            "(scripts/services up redis) and are store.uri / store.redis_password right?"
        ) from None
    return client


def _text(value: bytes | str) -> str:
    """A reply as text (the client returns bytes; typed as ``bytes | str``)."""
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _raw(value: bytes | str | None) -> bytes | None:
    """A reply as bytes, or None."""
    return value.encode("utf-8") if isinstance(value, str) else value
