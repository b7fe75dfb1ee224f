"""Redis with a password: a private ``redis-server --requirepass`` on a free port.

The password reaches the store the way an operator sets it -- the environment variable
``STREAMSEG_STORE__REDIS_PASSWORD`` read by :func:`~streamseg.config.load_settings` --
and must work end to end, while never showing up in ``repr(settings)``, in any log
record (captured at DEBUG), or in the error a wrong or missing password gives.
"""

from __future__ import annotations

import json
import logging
import secrets
import shutil
import socket
import subprocess
import time
import traceback
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import redis
from pydantic import SecretStr

from streamseg.app import Application
from streamseg.config import Settings, load_settings
from streamseg.store.redis import RedisStore

pytestmark = pytest.mark.integration

ENV = "STREAMSEG_STORE__REDIS_PASSWORD"


@dataclass(frozen=True)
class PrivateRedis:
    port: int
    password: str

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    """A redis-server of this test's own, with a random password; stopped afterwards."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.fail("redis-server is not installed: `scripts/services up redis` installs it",
                    pytrace=False)
    # Characters that would need escaping in a URL: the password must never be parsed.
    password = f"pw-{secrets.token_urlsafe(18)}:@/#?%"
    port = _free_port()
    log_path = tmp_path / "redis.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--requirepass", password,
             "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
            stdout=log_file, stderr=subprocess.STDOUT,
        )
    server = PrivateRedis(port, password)
    try:
        client = redis.Redis.from_url(server.url, password=password, socket_timeout=1)
        deadline = time.monotonic() + 15
        while True:
            try:
                client.ping()
                break
            except redis.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"private redis-server did not start:\n{log_path.read_text()}",
                                pytrace=False)
                time.sleep(0.05)
        client.close()
        yield server
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)


def _events(path: Path, customers: int = 40, per_customer: int = 5) -> int:
    start = datetime(2024, 1, 1, tzinfo=UTC)
    lines = []
    for c in range(customers):
        for k in range(per_customer):
            lines.append(json.dumps({
                "event_id": f"e{c}-{k}", "customer_id": f"c{c}",
                "timestamp": (start + timedelta(days=7 * k + c % 5)).isoformat(),
                "amount": 10.0 + (c % 4) * 40,
            }))
    lines.append("not json")  # one dead letter, so that path runs too
    path.write_text("\n".join(lines) + "\n")
    return customers * per_customer


def _settings(server: PrivateRedis, tmp_path: Path, prefix: str, **store: Any) -> Settings:
    return load_settings(overrides={
        "source": {"uri": str(tmp_path / "events.jsonl"), "batch_size": 50},
        "store": {"uri": server.url, "redis_prefix": prefix, **store},
        "sinks": {"changes": str(tmp_path / "changes.jsonl"),
                  "dead_letter": str(tmp_path / "dead.jsonl")},
        "model": {"n_clusters": 2, "warmup": 10},
    })


def _all_text(error: BaseException) -> str:
    """The error as anyone could see it: message, repr and the full traceback."""
    return "\n".join([str(error), repr(error), *traceback.format_exception(error)])


def _logged(caplog: pytest.LogCaptureFixture) -> str:
    parts = [caplog.text]
    for record in caplog.records:
        parts.append(record.getMessage())
        parts.append(repr(record.args))
        if record.exc_info and record.exc_info[1] is not None:
            parts.append(_all_text(record.exc_info[1]))
    return "\n".join(parts)


def test_password_from_the_environment_works_end_to_end_and_stays_secret(
    private_redis: PrivateRedis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    secret = private_redis.password
    expected = _events(tmp_path / "events.jsonl")
    monkeypatch.setenv(ENV, secret)
    prefix = f"auth-{uuid.uuid4().hex[:8]}"
    settings = _settings(private_redis, tmp_path, prefix)

    store_settings = settings.store
    assert store_settings.redis_password is not None
    assert store_settings.redis_password.get_secret_value() == secret
    for shown in (repr(settings), str(settings), repr(store_settings),
                  settings.model_dump_json(), json.dumps(settings.model_dump(), default=str)):
        assert secret not in shown

    caplog.set_level(logging.DEBUG)  # everything any library logs, at every level
    app = Application(settings)
    try:
        app.run(max_batches=2)
        # Drop the service's connections: it must log in again to carry on (the
        # reconnection and any recovery it logs must not reveal the password either).
        admin = redis.Redis.from_url(private_redis.url, password=secret)
        assert int(admin.client_kill_filter(_type="normal", skipme=True)) >= 1
        admin.close()
        summary = app.run()
        assert secret not in repr(app.store)
    finally:
        app.close()
    assert (summary.processed, summary.rejected) == (expected, 1)
    assert summary.customers == 40 and sum(summary.segments.values()) == 40

    # The state really is in the password-protected server ...
    store = RedisStore.from_uri(private_redis.url, password=SecretStr(secret), prefix=prefix)
    assert store.count() == 40
    assert sum(state.features.orders for state in store.iter_customers()) == expected
    store.close()
    # ... which refuses a client without the password.
    anonymous = redis.Redis.from_url(private_redis.url)
    with pytest.raises(redis.AuthenticationError):
        anonymous.ping()
    anonymous.close()

    assert secret not in _logged(caplog)
    for output in ("changes.jsonl", "dead.jsonl"):
        assert secret not in (tmp_path / output).read_text()


@pytest.mark.parametrize("given", ["wrong", "missing"])
def test_a_wrong_or_missing_password_fails_clearly_without_showing_it(
    private_redis: PrivateRedis, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture, given: str,
) -> None:
    secret = private_redis.password
    wrong = f"wrong-{secrets.token_urlsafe(12)}"
    _events(tmp_path / "events.jsonl")
    if given == "wrong":
        monkeypatch.setenv(ENV, wrong)
    else:
        monkeypatch.delenv(ENV, raising=False)
    settings = _settings(private_redis, tmp_path, f"auth-{uuid.uuid4().hex[:8]}")
    caplog.set_level(logging.DEBUG)

    with pytest.raises(ConnectionError) as caught:
        Application(settings)
    text = _all_text(caught.value)
    message = str(caught.value)
    assert f"127.0.0.1:{private_redis.port}" in message  # names the server ...
    assert "store.redis_password" in message  # ... and the setting to check
    # ... and says what went wrong: redis-py's AuthenticationError text
    assert ("invalid username-password pair" in message if given == "wrong"
            else "Authentication required" in message), message
    for hidden in (secret, wrong):
        assert hidden not in text and hidden not in _logged(caplog)


def test_a_password_in_the_uri_is_redacted_from_the_error(
    private_redis: PrivateRedis, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = f"wrong-{secrets.token_hex(8)}"
    with pytest.raises(ConnectionError) as caught:
        RedisStore.from_uri(f"redis://:{wrong}@127.0.0.1:{private_redis.port}/0")
    text = _all_text(caught.value)
    assert ":***@127.0.0.1" in str(caught.value)
    assert wrong not in text and wrong not in _logged(caplog)
    assert private_redis.password not in text
