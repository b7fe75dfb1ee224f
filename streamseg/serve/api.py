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

>>> import json, urllib.request
>>> from streamseg.config import load_settings
>>> from streamseg.store import MemoryStore
>>> handle = start_api_in_thread(create_app(load_settings(), MemoryStore()), port=0)
>>> json.load(urllib.request.urlopen(f"http://127.0.0.1:{handle.port}/segments"))
{'as_of': None, 'customers': 0, 'segments': []}
>>> handle.close()
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from fastapi import Depends, FastAPI, HTTPException
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    model_serializer,
)

import streamseg
from streamseg.config import Settings
from streamseg.serve.auth import TOKENS_ENV, TokenVerifier, check_exposure
from streamseg.store import Store, open_store
from streamseg.traits.learner import TraitLearner, read_traits

log = logging.getLogger(__name__)

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

_T = TypeVar("_T")


# -- response bodies (these models are what the OpenAPI spec documents) -----------------
class Profile(BaseModel):
    """A typical customer in original units.

    Fields are those the pipeline records for segment centres; all optional, and new
    ones pass through, so the API follows the feature set without a change here.
    """

    model_config = ConfigDict(extra="allow")

    recency_days: float | None = Field(None, description="Days since the last purchase.")
    overdue_days: float | None = Field(
        None, description="Days since the last purchase beyond the customer's own usual gap."
    )
    orders_90d: float | None = Field(None, description="Orders per 90 days (decayed rate).")
    spend_90d: float | None = Field(None, description="Spend per 90 days (decayed rate).")
    avg_order_value: float | None = Field(None, description="Average order value.")
    tenure_days: float | None = Field(None, description="Days since the first purchase.")
    refund_share: float | None = Field(None, description="Share of spend refunded, 0..1.")

    # No return annotation on purpose: pydantic would take ``dict`` from it as the
    # serialisation schema, and the OpenAPI spec would lose the fields documented above.
    @model_serializer(mode="wrap")
    def _omit_unrecorded(self, handler: SerializerFunctionWrapHandler):
        """Leave out fields the pipeline did not record rather than send nulls."""
        return {k: v for k, v in handler(self).items() if v is not None}


class CustomerTraits(BaseModel):
    """Predictive traits of one customer (see the README, "Predictive traits")."""

    purchase_probability: float = Field(
        description="Probability of at least one purchase within the next horizon_days.")
    expected_spend: float = Field(description="Expected spend within the next horizon_days.")
    horizon_days: float = Field(description="The horizon (traits.horizon_days).")


class SegmentTraits(BaseModel):
    """The mean traits of a segment's customers (each as of their last scoring)."""

    purchase_probability: float = Field(
        description="Mean probability of a purchase within the next horizon_days.")
    expected_spend: float = Field(description="Mean expected spend within the horizon.")
    horizon_days: float = Field(description="The horizon (traits.horizon_days).")


class SegmentInfo(BaseModel):
    """One segment: who is in it and what its centre looks like."""

    segment: int = Field(description="Segment id (stable while the model runs).")
    name: str | None = Field(description="Plain-words name derived from the centre.")
    size: int = Field(description="Customers currently in the segment.")
    share: float = Field(description="size / customers in any segment, 0..1.")
    profile: Profile | None = Field(
        description="The segment's centre in original units (null if not recorded)."
    )
    traits: SegmentTraits | None = Field(
        None, description="Mean predictive traits of its customers (null without traits).")


class SegmentsResponse(BaseModel):
    """All segments, as of the last batch the pipeline wrote."""

    as_of: datetime | None = Field(description="Service clock of the figures (ISO 8601).")
    customers: int = Field(description="Customers in any segment (sum of the sizes).")
    segments: list[SegmentInfo]


class Features(BaseModel):
    """A customer's features at one instant, in original units.

    New snapshot fields pass through (``extra="allow"``) before they are documented here.
    """

    model_config = ConfigDict(extra="allow")

    recency_days: float = Field(description="Days since the last purchase.")
    overdue_days: float | None = Field(
        None, description="Days since the last purchase beyond the customer's own usual gap."
    )
    tenure_days: float = Field(description="Days since the first purchase.")
    orders: int = Field(description="Orders ever.")
    decayed_orders: float = Field(description="Orders, time-decayed (half-life weighting).")
    orders_90d: float = Field(description="Orders per 90 days (time-decayed rate).")
    spend_90d: float = Field(description="Spend per 90 days (time-decayed rate).")
    avg_order_value: float = Field(description="Average order value over all orders.")
    total_spend: float = Field(description="Spend ever (before refunds).")
    refund_share: float = Field(description="Share of spend refunded, 0..1.")


class CustomerResponse(BaseModel):
    """One customer's segment and features."""

    customer_id: str = Field(description="The id as requested.")
    segment: int | None = Field(description="Segment id; null until the model is seeded.")
    segment_name: str | None = Field(description="The segment's current name.")
    segment_profile: SegmentInfo | None = Field(description="The customer's segment.")
    features: Features | None = Field(
        description="Features at the service clock; null for a customer with no purchase."
    )
    as_of: datetime | None = Field(description="Service clock the features are taken at.")
    updated_at: datetime | None = Field(
        description="Event time of the customer's last scoring (ISO 8601)."
    )
    model_version: int = Field(description="Version of the model that last assigned them.")
    traits: CustomerTraits | None = Field(
        None, description="Predictive traits at the service clock (null with traits disabled "
        "or for a customer with no purchase).")


class Status(BaseModel):
    """Liveness or readiness."""

    status: str = Field(examples=["ok"])


class ErrorBody(BaseModel):
    """An error, FastAPI's usual shape."""

    detail: str = Field(examples=["customer 'x' not found"])


# -- reading the store ------------------------------------------------------------------
@dataclass(slots=True)
class _Meta:
    """What the pipeline last wrote besides customer states, decoded once."""

    watermark: float | None = None
    segments: dict[int, SegmentInfo] = field(default_factory=dict)
    read_at: float = float("-inf")  # time.monotonic() of the read
    #: The trait model (the sum of the partitions' shares); None: traits disabled.
    traits: TraitLearner | None = None


class _StoreReader:
    """Serialises store calls and caches the store's metadata for a short while.

    FastAPI runs plain ``def`` endpoints in a thread pool. A SQLite connection must not be
    used by two threads at once, so every store call takes one lock; store calls are
    point reads, so the lock is held for microseconds.
    """

    def __init__(self, store: Store, meta_ttl_seconds: float) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._meta_ttl = meta_ttl_seconds
        self._meta = _Meta()
        #: (horizon_days, snapshot_every_days) of the traits; None: disabled.
        self.traits_settings: tuple[float, float] | None = None

    def call(self, what: Callable[[Store], _T]) -> _T:
        """Run ``what(store)`` under the lock; a failing store becomes a 503."""
        try:
            with self._lock:
                return what(self.store)
        except Exception as error:  # noqa: BLE001 - any backend error means unavailable
            log.warning("store call failed: %s", error)
            raise HTTPException(503, f"store unavailable: {type(error).__name__}") from error

    def meta(self) -> _Meta:
        cached = self._meta
        if time.monotonic() - cached.read_at < self._meta_ttl:
            return cached
        raw = self.call(lambda store: store.meta())
        self._meta = _decode_meta(raw, self.call, self.traits_settings)
        return self._meta


def _decode_meta(raw: dict[str, Any], call: Callable[[Callable[[Store], Any]], Any],
                 traits_settings: tuple[float, float] | None = None) -> _Meta:
    """Segment summaries (id, name, size, centre) from the metadata the pipeline writes,
    and the trait model with each segment's mean traits from the partitions' shares."""
    summaries: list[dict[str, Any]] = list(raw.get("segments") or [])
    if summaries:
        sizes = {int(s["segment"]): int(s.get("size") or 0) for s in summaries}
    else:
        # A store written before summaries were recorded: sizes from the store itself
        # (one GROUP BY in SQLite), without profiles.
        sizes = call(lambda store: store.segment_sizes())
        summaries = [{"segment": segment} for segment in sorted(sizes)]
    total = sum(sizes.values())
    traits = means = None
    if traits_settings is not None:
        horizon, every = traits_settings
        traits = call(lambda store: read_traits(store, horizon, every))
        means = traits.total().segment_means()
    segments: dict[int, SegmentInfo] = {}
    for summary in summaries:
        segment = int(summary["segment"])
        centre = summary.get("centre")
        segments[segment] = SegmentInfo(
            segment=segment,
            name=summary.get("name"),
            size=sizes[segment],
            share=round(sizes[segment] / total, 4) if total else 0.0,
            profile=Profile.model_validate(centre) if centre else None,
            traits=(SegmentTraits(**means[segment], horizon_days=traits_settings[0])
                    if means and segment in means and traits_settings else None),
        )
    watermark = raw.get("watermark")
    return _Meta(
        watermark=None if watermark is None else float(watermark),
        segments=segments,
        read_at=time.monotonic(),
        traits=traits,
    )


def _lookup_key(customer_id: str, settings: Settings) -> str:
    """The store key of a requested customer id.

    The one place to pseudonymise: with ``privacy.pseudonymise_key`` set the pipeline
    stores a keyed hash instead of the id, so the API looks customers up by the same
    hash. Responses and errors echo the id as requested, never the key.

    >>> _lookup_key("0042", Settings())
    '0042'
    """
    return settings.customer_key(customer_id)


def _timestamp(epoch: float | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, tz=UTC)


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
        store = open_store(settings.store)
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
    )
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
