"""The API's documentation pages, served whole by the service: they work on a closed
network.

FastAPI's own ``/docs`` and ``/redoc`` load Swagger UI's and ReDoc's script and style
from a public CDN, so behind a firewall (or anywhere without the internet) the pages
stay blank. :func:`add_offline_docs` serves the same pages with the assets from the
service itself, under ``/docs-assets/``: the files ship in the ``fastapi-offline``
package (MIT; Swagger UI and ReDoc are Apache-2.0 and MIT), and FastAPI's own
``get_swagger_ui_html`` and ``get_redoc_html`` write the pages around them.

>>> from fastapi import FastAPI
>>> app = FastAPI(docs_url=None, redoc_url=None)
>>> add_offline_docs(app)
>>> sorted(route.path for route in app.routes if "doc" in route.path)
['/docs', '/docs-assets', '/docs/oauth2-redirect', '/redoc']
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import FastAPI, Request
from fastapi.openapi.docs import (
    get_redoc_html,
    get_swagger_ui_html,
    get_swagger_ui_oauth2_redirect_html,
)
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles

__all__ = ["ASSETS_URL", "add_offline_docs", "assets_folder"]

#: Where the pages' scripts, styles and icon are served.
ASSETS_URL = "/docs-assets"
_FILES = ("swagger-ui-bundle.js", "swagger-ui.css", "redoc.standalone.js", "favicon.png")


def assets_folder() -> Path:
    """The folder of the shipped assets; a clear error if the package lacks one."""
    folder = Path(str(files("fastapi_offline") / "static"))
    missing = [name for name in _FILES if not (folder / name).is_file()]
    if missing:
        raise RuntimeError(f"the fastapi-offline package lacks {missing} in {folder}: "
                           "reinstall it (pip install 'fastapi-offline>=1.7')")
    return folder


def add_offline_docs(app: FastAPI, docs_url: str = "/docs", redoc_url: str = "/redoc") -> None:
    """Serve Swagger UI at ``docs_url`` and ReDoc at ``redoc_url`` from local assets.

    ``app`` must have been made with ``docs_url=None, redoc_url=None`` (FastAPI's CDN
    pages off). The pages stay open like the spec (no customer data in them).
    """
    app.mount(ASSETS_URL, StaticFiles(directory=assets_folder()), name="docs-assets")
    openapi_url = app.openapi_url or "/openapi.json"
    redirect_url = app.swagger_ui_oauth2_redirect_url or f"{docs_url}/oauth2-redirect"

    @app.get(docs_url, include_in_schema=False)
    async def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{openapi_url}", title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=f"{root}{redirect_url}",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            swagger_ui_parameters=app.swagger_ui_parameters)

    @app.get(redirect_url, include_in_schema=False)
    async def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get(redoc_url, include_in_schema=False)
    async def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{openapi_url}", title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png", with_google_fonts=False)
