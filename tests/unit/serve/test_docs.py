"""The API's docs page works on a closed network: headless Chromium (Debian's
``chromium``) opens ``/docs`` with every host but loopback unresolvable, runs Swagger
UI, and finds every operation of the OpenAPI spec on the page. Were the assets loaded
from a CDN, the page would stay blank and the test fail.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import urllib.request
from collections.abc import Iterator

import pytest

from streamseg.config import load_settings
from streamseg.serve.api import create_app, start_api_in_thread
from streamseg.store import MemoryStore


@pytest.fixture(scope="module")
def api() -> Iterator[str]:
    settings = load_settings(overrides={"api": {"tokens": "a-token-of-24-characters"}})
    handle = start_api_in_thread(create_app(settings, MemoryStore()), "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{handle.port}"
    finally:
        handle.close()


def _chromium(url: str) -> str:
    browser = shutil.which("chromium")
    assert browser, "Debian's chromium is needed (scripts/test installs it)"
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run(
            [browser, "--headless", "--no-sandbox", "--disable-gpu",
             "--disable-background-networking", "--no-first-run", "--disable-extensions",
             f"--user-data-dir={profile}",
             # No network beyond loopback: any other host fails to resolve.
             "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
             "--virtual-time-budget=15000", "--dump-dom", url],
            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_the_docs_page_shows_every_operation_offline(api: str) -> None:
    with urllib.request.urlopen(f"{api}/openapi.json") as response:
        spec = json.load(response)
    operations = [(method.upper(), path) for path, item in spec["paths"].items()
                  for method in item if method in {"get", "post", "put", "patch", "delete"}]
    assert len(operations) >= 4
    page = _chromium(f"{api}/docs")
    assert "swagger-ui" in page and 'class="opblock-summary-path"' in page, page[:2000]
    for method, path in operations:
        assert f'data-path="{path}"' in page, (method, path)
    assert page.count('class="opblock-summary-method"') == len(operations)


def test_the_docs_page_names_no_outside_host(api: str) -> None:
    with urllib.request.urlopen(f"{api}/docs") as response:
        html = response.read().decode()
    assert "/docs-assets/swagger-ui-bundle.js" in html
    assert "cdn" not in html.lower() and "https://" not in html
    for asset in ("swagger-ui-bundle.js", "swagger-ui.css", "favicon.png"):
        with urllib.request.urlopen(f"{api}/docs-assets/{asset}") as response:
            assert response.status == 200 and len(response.read()) > 1000
    with urllib.request.urlopen(f"{api}/redoc") as response:
        redoc = response.read().decode()
    assert "/docs-assets/redoc.standalone.js" in redoc and "https://" not in redoc
