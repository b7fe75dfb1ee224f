"""A read-only HTTP API over the store: one customer's segment, the segments, health.

Endpoints (OpenAPI spec at ``/openapi.json``, interactive docs at ``/docs``):

``GET /customers/{customer_id}``
    The customer's segment id and name, that segment's profile, the customer's features
    in original units as of the service clock, when they were last scored and the model
    version that scored them. Unknown customer: ``404 {"detail": "customer 'x' not found"}``.
``GET /segments``
    Every segment's size, share and profile. Read from the summaries the pipeline writes
    into the store's metadata with every batch, so the cost is O(k), not a scan.
``GET /healthz``
    The process is alive (no store call).
``GET /readyz``
    The store answers ``ping()``: 200, else 503.

Authentication (:mod:`streamseg.serve.auth`)
    With ``api.tokens`` set, ``/customers`` and ``/segments`` need ``Authorization:
    Bearer <token>`` (401 with ``WWW-Authenticate: Bearer`` otherwise) and the OpenAPI
    spec declares the scheme; ``/healthz``, ``/readyz``, the spec and the docs stay open.
    Without tokens the API is open, and then it may only listen on loopback:
    :func:`serve_api` and :func:`start_api_in_thread` refuse any other address.

The API only reads. It runs next to a pipeline that writes (``streamseg run``), in the
same process or another; what it serves is as fresh as the last batch written.

Profiles
    A segment's profile is its *centre* (the k-means centroid mapped back to original
    units through the standardiser and ``log1p``), not the median customer that
    ``streamseg segments`` computes with a full scan; both describe the typical member,
    the centre at O(k) cost.

The clock
    Features are a snapshot at the service clock, as in the engine: the event-time
    watermark the pipeline last wrote (``pipeline.clock: event``), or the machine's
    clock (``pipeline.clock: wall``). The watermark is read from the store rather than
    from an engine built at start-up, because a long-running API must follow the
    pipeline's clock as it moves on.

This module's job is the routes, the app factory and serving them; the response bodies
are in :mod:`streamseg.serve.api_models` (re-exported here), the store access in
:mod:`streamseg.serve.api_reader`.

>>> import json, urllib.request
>>> from streamseg.config import load_settings
>>> from streamseg.store import MemoryStore
>>> handle = start_api_in_thread(create_app(load_settings(), MemoryStore()), port=0)
>>> json.load(urllib.request.urlopen(f"http://127.0.0.1:{handle.port}/segments"))
{'as_of': None, 'customers': 0, 'segments': []}
>>> handle.close()
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

import streamseg
from streamseg.config import Settings
from streamseg.serve.api_models import (
    CustomerResponse,
    CustomerTraits,
    ErrorBody,
    Features,
    Profile,
    SegmentInfo,
    SegmentsResponse,
    SegmentTraits,  # noqa: F401 - importable from here, as before the split
    Status,
)
from streamseg.serve.api_reader import _lookup_key, _Meta, _StoreReader, _timestamp
from streamseg.serve.auth import TOKENS_ENV, TokenVerifier, check_exposure
from streamseg.serve.docs import add_offline_docs
from streamseg.store import Store, open_reader

__all__ = [
    "ApiHandle",
    "CustomerResponse",
    "Features",
    "Profile",
    "SegmentInfo",
    "SegmentsResponse",
    "create_app",
    "serve_api",
    "start_api_in_thread",
]

#: Loopback by default: beyond it the API needs bearer tokens (``api.tokens``).
DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000

# How long the store's metadata (watermark, segment summaries) is reused between
# requests. The pipeline rewrites it once per batch; re-reading (and JSON-decoding the
# size history with it) on every customer lookup would cost more than the lookup.
DEFAULT_META_TTL_SECONDS = 1.0


# -- authentication ---------------------------------------------------------------------
#: The OpenAPI name of the bearer scheme.
SECURITY_SCHEME = "bearerAuth"


def _bearer_dependency(verifier: TokenVerifier) -> Callable[..., None]:
    """A FastAPI dependency that lets a request through only with a valid bearer token.

    Declared through ``HTTPBearer`` so that the OpenAPI spec names the scheme. The
    presented token is never logged nor echoed in the error.
    """
    scheme = HTTPBearer(
        auto_error=False, scheme_name=SECURITY_SCHEME,
        description=f"One of the tokens of api.tokens ({TOKENS_ENV}).",
    )

    def require_token(
        credentials: HTTPAuthorizationCredentials | None = Depends(scheme),  # noqa: B008
    ) -> None:
        if credentials is None:
            raise HTTPException(401, "missing bearer token",
                                headers={"WWW-Authenticate": 'Bearer realm="streamseg"'})
        if not verifier.accepts(credentials.credentials):
            raise HTTPException(401, "invalid bearer token", headers={
                "WWW-Authenticate": 'Bearer realm="streamseg", error="invalid_token"'})

    return require_token


# -- the application --------------------------------------------------------------------
def create_app(
    settings: Settings,
    store: Store | None = None,
    *,
    meta_ttl_seconds: float = DEFAULT_META_TTL_SECONDS,
    wall_clock: Callable[[], float] = time.time,
) -> FastAPI:
    """The read API over ``store``, or over the store ``settings.store`` names.

    A store passed in stays the caller's to close. Without one, the app opens its own
    connection and closes it when the server shuts down; that is also the right choice
    next to a pipeline in the same process with SQLite or Redis (a separate connection:
    SQLite's WAL lets it read while the pipeline writes). Share the pipeline's store
    object only for ``memory://``, which has nothing to connect to.

    >>> from streamseg.config import load_settings
    >>> from streamseg.store import MemoryStore
    >>> app = create_app(load_settings(), MemoryStore())
    >>> sorted(p for p in app.openapi()["paths"])
    ['/customers/{customer_id}', '/healthz', '/readyz', '/segments']
    """
    verifier = TokenVerifier(settings.api.token_list())
    # Declared only when enforced: an open API's spec must not claim a scheme it ignores.
    guarded: dict[str, Any] = {}
    unauthorised: dict[int | str, dict[str, Any]] = {}
    if verifier:
        guarded = {"dependencies": [Depends(_bearer_dependency(verifier))]}
        unauthorised = {401: {"model": ErrorBody,
                              "description": "No bearer token, or not a valid one."}}
    owned = store is None
    if store is None:
        store = open_reader(settings.store)  # the API only reads: it must not write
    reader = _StoreReader(store, meta_ttl_seconds)
    if settings.traits.enabled:
        reader.traits_settings = (settings.traits.horizon_days,
                                  settings.traits.snapshot_every_days)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        if owned:
            reader.store.close()

    app = FastAPI(
        title="streamseg",
        version=streamseg.__version__,
        summary="Live customer segments: read API.",
        lifespan=lifespan,
        docs_url=None,  # FastAPI's pages load their assets from a CDN: served here instead
        redoc_url=None,
    )
    add_offline_docs(app)
    app.state.reader = reader
    #: Whether requests need a token (start_api_in_thread refuses to expose an open API).
    app.state.auth_required = bool(verifier)

    def service_clock(meta: _Meta) -> float | None:
        if settings.pipeline.clock == "wall":
            return wall_clock()
        return meta.watermark

    # ``:path`` so that ids containing "/" (sent as %2F) still reach the handler.
    @app.get(
        "/customers/{customer_id:path}",
        response_model=CustomerResponse,
        responses={**unauthorised,
                   404: {"model": ErrorBody, "description": "Unknown customer."},
                   503: {"model": ErrorBody, "description": "The store does not answer."}},
        summary="One customer's segment and features",
        **guarded,
    )
    def get_customer(customer_id: str) -> CustomerResponse:
        key = _lookup_key(customer_id, settings)
        state = reader.call(lambda s: s.get(key))
        if state is None:
            raise HTTPException(404, f"customer {customer_id!r} not found")
        meta = reader.meta()
        now = service_clock(meta)
        features = traits = None
        if state.features.has_purchases:
            # Without a watermark (nothing written yet) the snapshot is taken at the
            # customer's own latest event: snapshot() never goes back before it.
            snap = settings.features.snapshot(state.features, now or 0.0)
            features = Features.model_validate(snap.to_dict())
            if meta.traits is not None:
                traits = CustomerTraits(**meta.traits.predict(state.features, max(
                    now or 0.0, state.features.reference_time or 0.0)).to_dict())
        info = meta.segments.get(state.segment) if state.segment is not None else None
        return CustomerResponse(
            customer_id=customer_id,
            segment=state.segment,
            # Names belong to segments and are re-derived as centroids move: the
            # segment's current name, else the one stored when the customer was assigned.
            segment_name=(info.name if info and info.name else state.segment_name),
            segment_profile=info,
            features=features,
            as_of=_timestamp(now),
            updated_at=_timestamp(state.updated_at),
            model_version=state.model_version,
            traits=traits,
        )

    @app.get("/segments", response_model=SegmentsResponse,
             responses={**unauthorised,
                        503: {"model": ErrorBody, "description": "The store does not answer."}},
             summary="Every segment's size, share and profile", **guarded)
    def get_segments() -> SegmentsResponse:
        meta = reader.meta()
        segments = [meta.segments[k] for k in sorted(meta.segments)]
        return SegmentsResponse(
            as_of=_timestamp(service_clock(meta)),
            customers=sum(s.size for s in segments),
            segments=segments,
        )

    @app.get("/healthz", response_model=Status, summary="Liveness")
    def healthz() -> Status:
        return Status(status="ok")

    @app.get("/readyz", response_model=Status,
             responses={503: {"model": Status, "description": "The store does not answer."}},
             summary="Readiness: the store answers")
    def readyz() -> Any:
        try:
            ready = bool(reader.call(lambda s: s.ping()))
        except HTTPException:
            ready = False
        if ready:
            return Status(status="ready")
        return JSONResponse({"status": "not ready"}, status_code=503)

    return app


# -- serving ----------------------------------------------------------------------------
def serve_api(
    settings: Settings,
    host: str = DEFAULT_HOST,
    port: int = DEFAULT_PORT,
    store: Store | None = None,
) -> None:
    """Serve the API with uvicorn until interrupted (SIGINT/SIGTERM); blocks.

    ``streamseg api`` calls this. Binds loopback unless told otherwise; any other address
    needs ``api.tokens`` (:class:`~streamseg.serve.auth.ApiExposedError` otherwise, before
    the store is opened).
    """
    import uvicorn

    check_exposure(host, protected=bool(settings.api.token_list()))
    uvicorn.run(create_app(settings, store), host=host, port=port, log_level="info")


class ApiHandle:
    """A uvicorn server running in a daemon thread; ``close()`` stops it."""

    def __init__(self, server: Any, thread: threading.Thread, port: int) -> None:
        self._server = server
        self._thread = thread
        #: The port actually bound (resolves port 0).
        self.port = port

    def close(self, timeout: float = 10.0) -> None:
        """Ask the server to exit and wait for it (in-flight requests finish)."""
        self._server.should_exit = True
        self._thread.join(timeout)

    def __enter__(self) -> ApiHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_api_in_thread(
    app: FastAPI,
    host: str = DEFAULT_HOST,
    port: int = 0,
    *,
    startup_timeout: float = 10.0,
) -> ApiHandle:
    """Start ``app`` with uvicorn in a daemon thread; return once it accepts requests.

    ``port=0`` binds an ephemeral port (see ``handle.port``). Used by the tests, and to
    run the API inside ``streamseg run``. The socket is bound here, in the caller's
    thread, so that "address in use" is raised to the caller rather than lost in the
    server thread. An app without tokens is refused on a non-loopback ``host``
    (:class:`~streamseg.serve.auth.ApiExposedError`).

    >>> from streamseg.config import load_settings
    >>> from streamseg.store import MemoryStore
    >>> with start_api_in_thread(create_app(load_settings(), MemoryStore())) as api:
    ...     api.port > 0
    True
    """
    import uvicorn

    check_exposure(host, protected=bool(getattr(app.state, "auth_required", False)))
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError:
        sock.close()
        raise
    sock.set_inheritable(True)
    bound_port = int(sock.getsockname()[1])
    # Signal handlers stay with the main thread's owner (uvicorn skips them off it).
    config = uvicorn.Config(app, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True,
                              name="streamseg-api")
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive():
            sock.close()
            raise RuntimeError("the API server failed to start (see the log)")
        if time.monotonic() > deadline:
            server.should_exit = True
            raise RuntimeError(f"the API server did not start within {startup_timeout}s")
        time.sleep(0.01)
    return ApiHandle(server, thread, bound_port)
