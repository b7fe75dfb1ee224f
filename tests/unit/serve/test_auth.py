"""Bearer tokens on the read API: over real HTTP, in the spec, at start, in the settings."""

from __future__ import annotations

import hmac
import json
import logging
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from streamseg.config import ConfigError, load_settings
from streamseg.serve import auth
from streamseg.serve.api import create_app, start_api_in_thread
from streamseg.serve.auth import ApiExposedError, TokenVerifier, check_exposure, is_loopback
from streamseg.store import MemoryStore

TOKEN = "test-token-0123456789abcdef"
OTHER = "rotated-token-fedcba9876543210"
STREAMSEG = [sys.executable, "-m", "streamseg.cli"]


def _request(url: str, token: str | None = None,
             authorization: str | None = None) -> tuple[int, dict[str, str], Any]:
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    if authorization is not None:
        request.add_header("Authorization", authorization)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.load(error)


@pytest.fixture(scope="module")
def guarded() -> Iterator[str]:
    """The API with two tokens configured (an old and a new one, during a rotation)."""
    settings = load_settings(overrides={"api": {"tokens": f"{TOKEN},{OTHER}"}})
    with start_api_in_thread(create_app(settings, MemoryStore())) as api:
        yield f"http://127.0.0.1:{api.port}"


def test_no_token_is_a_401_that_asks_for_a_bearer_token(guarded: str) -> None:
    for path in ("/segments", "/customers/c1"):
        status, headers, body = _request(guarded + path)
        assert status == 401, path
        assert headers["www-authenticate"].startswith("Bearer"), headers
        assert body == {"detail": "missing bearer token"}


@pytest.mark.parametrize("authorization", [
    f"Bearer {TOKEN[:-1]}",  # one character short
    f"Bearer {TOKEN}x",
    f"Bearer {TOKEN.upper()}",
    f"Basic {TOKEN}",  # right secret, wrong scheme
    "Bearer ",
])
def test_a_wrong_token_is_a_401_that_does_not_echo_it(guarded: str, authorization: str,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        status, headers, body = _request(guarded + "/segments", authorization=authorization)
    assert status == 401
    assert headers["www-authenticate"].startswith("Bearer")
    assert body["detail"] in {"invalid bearer token", "missing bearer token"}
    secret = authorization.partition(" ")[2]
    if secret:
        assert secret not in json.dumps(body) and secret not in str(headers)
        assert secret not in caplog.text


def test_the_right_token_is_let_through(guarded: str) -> None:
    for token in (TOKEN, OTHER):  # either token of the list
        status, _, body = _request(guarded + "/segments", token)
        assert (status, body["segments"]) == (200, [])
        # Past the check: an unknown customer is the API's own 404, not a 401.
        status, _, body = _request(guarded + "/customers/nobody", token)
        assert (status, body) == (404, {"detail": "customer 'nobody' not found"})


def test_health_readiness_and_the_spec_stay_open(guarded: str) -> None:
    assert _request(guarded + "/healthz")[:3:2] == (200, {"status": "ok"})
    assert _request(guarded + "/readyz")[:3:2] == (200, {"status": "ready"})
    assert _request(guarded + "/openapi.json")[0] == 200


def test_the_spec_declares_the_bearer_scheme_where_it_is_enforced(guarded: str) -> None:
    spec = _request(guarded + "/openapi.json")[2]
    schemes = spec["components"]["securitySchemes"]
    assert schemes == {"bearerAuth": {"type": "http", "scheme": "bearer", "description":
                                      "One of the tokens of api.tokens (STREAMSEG_API__TOKENS)."}}
    for path in ("/customers/{customer_id}", "/segments"):
        operation = spec["paths"][path]["get"]
        assert operation["security"] == [{"bearerAuth": []}], path
        assert "401" in operation["responses"], path
    for path in ("/healthz", "/readyz"):
        assert "security" not in spec["paths"][path]["get"], path


def test_without_tokens_the_loopback_api_is_open_and_claims_no_scheme() -> None:
    with start_api_in_thread(create_app(load_settings(), MemoryStore())) as api:
        base = f"http://127.0.0.1:{api.port}"
        assert _request(base + "/segments")[0] == 200
        spec = _request(base + "/openapi.json")[2]
    assert "securitySchemes" not in spec.get("components", {})
    assert all("security" not in op["get"] for op in spec["paths"].values())


def test_an_open_api_is_refused_beyond_loopback() -> None:
    app = create_app(load_settings(), MemoryStore())
    with pytest.raises(ApiExposedError, match=r"api\.tokens.*STREAMSEG_API__TOKENS"):
        start_api_in_thread(app, "0.0.0.0", 0)


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.1.2.3", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("LOCALHOST", True),
    ("0.0.0.0", False), ("::", False), ("", False), ("10.0.0.5", False),
    ("192.168.1.10", False), ("streamseg", False), ("localhost.example.org", False),
])
def test_what_counts_as_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback
    if loopback:
        check_exposure(host, protected=False)
    else:
        with pytest.raises(ApiExposedError):
            check_exposure(host, protected=False)
    check_exposure(host, protected=True)  # with tokens any address will do


def test_every_configured_token_is_compared_in_constant_time(
        monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[int, int]] = []
    real = hmac.compare_digest

    def counting(a: bytes, b: bytes) -> bool:
        calls.append((len(a), len(b)))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", counting)
    verifier = TokenVerifier([TOKEN, OTHER, "third-token-aaaaaaaaaaaa"])
    for presented, expected in ((TOKEN, True), ("x", False), (OTHER * 10, False)):
        calls.clear()
        assert verifier.accepts(presented) is expected
        # No early exit on a match, and only equal-length digests are compared.
        assert calls == [(32, 32)] * 3


def test_tokens_come_from_the_environment_and_are_checked_without_echo(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMSEG_API__TOKENS", f" {TOKEN} ,{OTHER},")
    settings = load_settings()
    assert settings.api.token_list() == [TOKEN, OTHER]
    assert TOKEN not in repr(settings) and TOKEN not in settings.model_dump_json()
    monkeypatch.setenv("STREAMSEG_API__TOKENS", f"{TOKEN},short-secret")
    with pytest.raises(ConfigError, match=r"api\.tokens: 1 token\(s\) shorter than 16") as err:
        load_settings()
    assert "short-secret" not in str(err.value)
    monkeypatch.setenv("STREAMSEG_API__TOKENS", " , ")
    with pytest.raises(ConfigError, match="holds no token"):
        load_settings()


def _cli(args: list[str], cwd: Path, env: dict[str, str] | None = None
         ) -> subprocess.CompletedProcess[str]:
    import os

    clean = {k: v for k, v in os.environ.items() if not k.startswith("STREAMSEG_")}
    return subprocess.run([*STREAMSEG, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, env={**clean, **(env or {})}, stdin=subprocess.DEVNULL)


def test_config_command_masks_the_tokens(tmp_path: Path) -> None:
    result = _cli(["config"], tmp_path, {"STREAMSEG_API__TOKENS": TOKEN})
    assert result.returncode == 0, result.stderr
    assert TOKEN not in result.stdout + result.stderr
    assert "tokens: '**********'" in result.stdout


def test_api_command_on_a_public_address_without_tokens_fails_at_start(tmp_path: Path) -> None:
    result = _cli(["api", "--store", "memory://", "--host", "0.0.0.0", "--port", "0"], tmp_path)
    assert result.returncode == 2
    assert result.stderr.startswith("error: the read API would listen on 0.0.0.0")
    assert "api.tokens" in result.stderr and "STREAMSEG_API__TOKENS" in result.stderr


def test_run_with_a_public_api_and_no_tokens_fails_before_it_reads_anything(
        tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text(
        "api:\n  enabled: true\n  host: 0.0.0.0\n  port: 0\nstore:\n  uri: memory://\n")
    result = _cli(["run", "--config", "c.yaml", "--no-progress"], tmp_path)
    assert result.returncode == 2, result.stderr
    assert "api.tokens" in result.stderr and "STREAMSEG_API__TOKENS" in result.stderr
    assert "processed" not in result.stdout + result.stderr
    assert not (tmp_path / ".streamseg").exists()  # no sink was opened
