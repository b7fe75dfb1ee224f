"""Configuration sections: one pydantic model per section of :class:`~streamseg.config.Settings`.

Each class holds one section's options (``source``, ``kafka``, ``store``, ``sinks``,
``features``, ``model``, ``traits``, ``naming``, ``pipeline``, ``metrics``, ``evaluate``,
``privacy``, ``api``), every option documented where it is defined, with the section's
own checks. :mod:`streamseg.config` assembles them into :class:`Settings`, loads them
and re-exports every name here.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, model_validator

from streamseg.core.features import CustomerFeatures, FeatureSnapshot
from streamseg.core.naming import DEFAULT_RULES, NameRule
from streamseg.io.file import CsvMapping
from streamseg.serve.auth import MIN_TOKEN_LENGTH, parse_tokens

#: Where the bundled real sample lives; ``source.uri: sample:cdnow`` points here.
SAMPLE_PATH = Path(__file__).parent / "data" / "cdnow_sample.csv"
SAMPLE_URI = "sample:cdnow"
#: Column mapping of the bundled CDNOW sample (``customer_id,date,quantity,amount``).
SAMPLE_CSV = CsvMapping(
    customer_id="customer_id", timestamp="date", amount="amount", quantity="quantity",
    timestamp_format="%Y%m%d",
)


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceSettings(_Section):
    uri: str = Field(
        SAMPLE_URI,
        description="Input: a .jsonl/.csv path, '-' for stdin, kafka://HOST:PORT/TOPIC, or "
        "sample:cdnow for the bundled real sample.",
    )
    csv: CsvMapping | None = Field(
        None, description="Column mapping for CSV input (the sample has its own)."
    )
    batch_size: int = Field(500, ge=1, le=100_000, description="Records per pipeline batch.")
    poll_timeout_s: float = Field(
        0.5, gt=0,
        description="How long one poll waits for records on Kafka, or on stdin while it stays "
        "open: a batch not full by then is processed as it is.",
    )


class KafkaSettings(_Section):
    """Passed to kafka-python's KafkaConsumer / KafkaProducer."""

    bootstrap_servers: str = Field(
        "127.0.0.1:9092", description="Comma-separated HOST:PORT list; a kafka:// URI wins."
    )
    group_id: str = Field("streamseg", description="Consumer group; offsets are kept per group.")
    client_id: str = Field("streamseg", description="Client id shown in broker logs/metrics.")
    dead_letter_topic: str | None = Field(
        None, description="Topic for rejected input; default '<first input topic>.dlq'."
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT", description="How to talk to the brokers."
    )
    sasl_mechanism: str | None = Field(None, description="PLAIN, SCRAM-SHA-256/512, ...")
    sasl_plain_username: str | None = Field(None, description="SASL user name.")
    sasl_plain_password: SecretStr | None = Field(
        None, description="SASL password (set via STREAMSEG_KAFKA__SASL_PLAIN_PASSWORD)."
    )
    ssl_cafile: str | None = Field(None, description="CA bundle to verify the brokers.")
    ssl_certfile: str | None = Field(None, description="Client certificate (mutual TLS).")
    ssl_keyfile: str | None = Field(None, description="Client private key (mutual TLS).")
    consumer: dict[str, Any] = Field(
        default_factory=dict, description="Extra KafkaConsumer options, passed through; "
        "they win over streamseg's (auto_offset_reset=earliest, fetch_max_wait_ms=5).",
    )
    producer: dict[str, Any] = Field(
        default_factory=dict, description="Extra KafkaProducer options, passed through; "
        "they win over streamseg's (acks=all, linger_ms=0, batch_size=262144).",
    )

    def client_options(self) -> dict[str, Any]:
        """Options shared by consumer and producer, secrets revealed only here."""
        options: dict[str, Any] = {
            "client_id": self.client_id,
            "security_protocol": self.security_protocol,
        }
        for name in ("sasl_mechanism", "sasl_plain_username", "ssl_cafile", "ssl_certfile",
                     "ssl_keyfile"):
            value = getattr(self, name)
            if value is not None:
                options[name] = value
        if self.sasl_plain_password is not None:
            options["sasl_plain_password"] = self.sasl_plain_password.get_secret_value()
        return options


class StoreSettings(_Section):
    uri: str = Field(
        "sqlite:///.streamseg/state.db",
        description="memory://, sqlite:///PATH (relative) or sqlite:////ABS/PATH, or "
        "redis://HOST:PORT/DB (rediss:// for TLS).",
    )
    redis_password: SecretStr | None = Field(
        None, description="Redis password (STREAMSEG_STORE__REDIS_PASSWORD); never logged."
    )
    redis_prefix: str = Field("streamseg", description="Prefix of every Redis key.")
    redis_buckets: int | None = Field(
        None, ge=1,
        description="Customer hashes of a new Redis prefix (about customers / 50; default "
        "1024); fixed once the prefix exists. See streamseg/store/redis/keys.py.",
    )


class SinkSettings(_Section):
    changes: str = Field(
        ".streamseg/changes.jsonl",
        description="Segment-change events: a .jsonl path, '-' for stdout, or kafka://.../TOPIC.",
    )
    dead_letter: str | None = Field(
        None,
        description="Rejected input: a .jsonl path, '-', or kafka://.../TOPIC. Default: the "
        "topic kafka.dead_letter_topic (else '<input topic>.dlq') when the source is Kafka, "
        "else .streamseg/dead-letter.jsonl.",
    )


class FeatureSettings(_Section):
    half_life_days: float = Field(
        90.0, gt=0, description="Half-life of the time decay of orders and spend."
    )
    first_gap_days: float = Field(
        60.0, gt=0, description="Days after which a one-order customer counts as overdue."
    )
    grace_gaps: float = Field(
        4.0, ge=0, description="A customer is 'overdue' once their recency exceeds this many "
        "of their own typical gaps between orders (see streamseg.core.features).",
    )
    rescore_min_days: float = Field(
        1.0, gt=0, description="Shortest wait before an idle customer is re-scored."
    )
    rescore_max_days: float = Field(
        14.0, gt=0, description="Longest wait before an idle customer is re-scored."
    )
    rescore_growth: float = Field(
        0.5, gt=0,
        description="Wait = growth x current recency (clamped): recency is on a log scale, so "
        "re-scoring can grow sparser as a customer stays idle.",
    )


    @model_validator(mode="after")
    def _min_below_max(self) -> FeatureSettings:
        if self.rescore_min_days > self.rescore_max_days:
            raise ValueError(f"features.rescore_min_days ({self.rescore_min_days}) must not "
                             f"exceed features.rescore_max_days ({self.rescore_max_days})")
        return self

    def snapshot(self, features: CustomerFeatures, now: float) -> FeatureSnapshot:
        """The customer's features at ``now`` with these settings."""
        return features.snapshot(now, half_life_days=self.half_life_days,
                                 first_gap_days=self.first_gap_days, grace_gaps=self.grace_gaps)


class ModelSettings(_Section):
    kind: Literal["customer-kmeans", "river-kmeans"] = Field(
        "customer-kmeans", description="customer-kmeans (default) or River's KMeans baseline."
    )
    n_clusters: int = Field(5, ge=2, le=100, description="Number of segments k.")
    warmup: int = Field(500, ge=2, description="Customers buffered before k-means++ seeding.")
    reservoir_size: int = Field(
        5000, ge=10, description="Customers kept in a uniform sample for refinement."
    )
    refine_every: int = Field(
        1000, ge=1, description="Customer updates between Lloyd refinements of the centroids."
    )
    refine_interval_s: float = Field(
        5.0, ge=0, le=3600,
        description="With a Kafka source: wall-clock seconds at least between two "
        "refinements (and refine_every updates over all workers), run by the worker that "
        "holds the model lease. A finite source (a file) refines by count alone, so that "
        "replaying it gives the same segments.",
    )
    sweep_page: int = Field(
        500, ge=0,
        description="Customers re-placed per step of the sweep that follows each new model "
        "version: every customer stored is put at its nearest centroid (with hysteresis), "
        "not only the sampled ones. Steps run when idle and at each view refresh (not "
        "while a backlog fills every batch, unless a reorganisation waits for the sweep), "
        "and at the end of a finite stream until nobody moves. 0: no sweep, and no "
        "reorganisation of customers outside the sample.",
    )
    lloyd_iterations: int = Field(10, ge=1, description="Lloyd iterations per refinement.")
    n_init: int = Field(
        10, ge=1, description="k-means++ runs when seeding and at the end of a finite stream; "
        "in between, each refinement tries one restart candidate.",
    )
    hysteresis: float = Field(
        0.2, ge=0, lt=1,
        description="Relative margin by which a new centroid must be closer before a "
        "customer changes segment (against flapping).",
    )
    seed: int = Field(42, description="Random seed: same input and seed, same segments.")

    #: Settings of how the pipeline drives the model, not parameters of the model.
    PIPELINE_ONLY: ClassVar[frozenset[str]] = frozenset({"kind", "refine_interval_s", "sweep_page"})

    def params(self) -> dict[str, Any]:
        """The model's constructor parameters (``build_model(kind, **params())``)."""
        return self.model_dump(exclude=set(self.PIPELINE_ONLY))

    @model_validator(mode="after")
    def _at_least_k(self) -> ModelSettings:
        for name in ("warmup", "reservoir_size"):
            if getattr(self, name) < self.n_clusters:
                raise ValueError(f"model.{name} ({getattr(self, name)}) must be at least "
                                 f"model.n_clusters ({self.n_clusters})")
        return self


class TraitSettings(_Section):
    """Predictive traits (see streamseg.traits and the README, "Predictive traits")."""

    enabled: bool = Field(
        True, description="Predict every customer's purchase probability and expected spend "
        "within traits.horizon_days, learned online from the stream's own delayed labels. "
        "Fixed for a store written with a value (a store of an earlier release takes either).",
    )
    horizon_days: float = Field(
        90.0, gt=0, le=730,
        description="Horizon H of the traits: the probability to buy at least once, and the "
        "expected spend, within the next H days of event time. A snapshot's label is known H "
        "days after it. Fixed for a store (the stored snapshots and the learned model are "
        "for this H).",
    )
    snapshot_every_days: int = Field(
        90, ge=1,
        description="Days of event time between two snapshots of a customer (taken whether "
        "or not they buy). A customer waits for at most ceil(horizon_days / "
        "snapshot_every_days) labels, at about 7 bytes of store each; at most 6. Fixed for a "
        "store.",
    )

    risk_bands: dict[str, float] = Field(
        default_factory=lambda: {"at_risk": 0.0, "watch": 0.2, "likely": 0.5},
        description="Risk bands of the purchase probability: band name -> lowest probability "
        "of the band, increasing, the first 0. A customer whose band changes gets a "
        "CloudEvents event of type io.streamseg.risk.changed on the change stream (their first "
        "band is set without one). Fixed for a store (customers' bands are stored).",
    )
    risk_min_examples: int = Field(
        1000, ge=0,
        description="Risk-band changes are published once the trait model has learned this "
        "many labels over all partitions (its first predictions move a lot); bands are "
        "followed silently before.",
    )
    risk_hysteresis: float = Field(
        0.05, ge=0, lt=0.5,
        description="A customer leaves their risk band only once the probability is beyond "
        "its bounds by this much (against flapping at a border).",
    )

    @model_validator(mode="after")
    def _bands_increase(self) -> TraitSettings:
        lows = list(self.risk_bands.values())
        rising = all(b > a for a, b in zip(lows, lows[1:], strict=False))
        if not lows or lows[0] != 0.0 or not rising or lows[-1] >= 1.0:
            raise ValueError(f"traits.risk_bands ({self.risk_bands}) must map names to "
                             "increasing lowest probabilities, the first 0 and all below 1")
        return self

    @model_validator(mode="after")
    def _bounded_pending(self) -> TraitSettings:
        if self.horizon_days / self.snapshot_every_days > 6:
            raise ValueError(
                f"traits.snapshot_every_days ({self.snapshot_every_days}) must be at least "
                f"traits.horizon_days / 6 ({self.horizon_days / 6:g}): each customer keeps "
                "every snapshot that waits for its label")
        return self


class NamingSettings(_Section):
    rules: list[NameRule] = Field(
        default_factory=lambda: list(DEFAULT_RULES),
        description="Candidate segment names and the profiles that earn them; see "
        "streamseg.core.naming. More rules than segments is normal.",
    )
    stickiness: float = Field(
        0.5, ge=0, description="Score bonus for a segment keeping its current name."
    )


class PipelineSettings(_Section):
    clock: Literal["event", "wall"] = Field(
        "event",
        description="'event': time is the latest event time seen (replays behave like live "
        "traffic); 'wall': the machine's clock.",
    )
    max_rescore_per_batch: int = Field(
        2000, ge=0, description="Bound on inactivity re-scorings done after each batch."
    )
    history_every_days: float = Field(
        1.0, gt=0, description="Service-clock days between points of the segment-size history "
        "kept for the report (bounded to 1000 points, thinned when full).",
    )
    state_cache_size: int = Field(
        200_000, ge=0,
        description="Customer states kept in memory between batches, so a customer seen "
        "recently is not read back from the store (0: read every batch). A worker owns its "
        "customers (Kafka partitions by customer), so its own last write is the stored "
        "state; the cache is dropped on a partition rebalance and on recovery. About 1 KB "
        "each.",
    )
    lease_ttl_s: float = Field(
        15.0, ge=1.0, le=600.0,
        description="Seconds the model lease lives without a renewal (renewed every third "
        "of it). One worker at a time holds a store's model lease: with a Kafka source "
        "and customer-kmeans it refines for everyone and the others take it over when it "
        "lapses; otherwise (a file, river-kmeans) a second worker stops at start while it "
        "lives. A worker paused longer than this loses it, and its writes under it are "
        "refused.",
    )
    worker_id: str | None = Field(
        None, description="This worker's name in the lease and logs; default host:pid.",
    )
    view_refresh_s: float = Field(
        0.2, gt=0, le=60,
        description="With a Kafka source: seconds between two reads of the other "
        "partitions' share of the model (statistics, standardiser, clock) and of the "
        "refiner's last version. Workers score with the same model up to this delay.",
    )
    dedupe_window: int = Field(
        8, ge=0, le=64,
        description="Event ids remembered per customer: a repeated event_id among a "
        "customer's last N events is applied once (0 disables).",
    )


class MetricsSettings(_Section):
    enabled: bool = Field(False, description="Serve Prometheus metrics and health over HTTP.")
    host: str = Field("127.0.0.1", description="Bind address; loopback unless you need more.")
    port: int = Field(9108, ge=0, le=65535, description="Port of /metrics, /healthz, /readyz.")
    silhouette_sample: int = Field(
        1000, ge=0, le=20000,
        description="Customers in the sample behind the `streamseg_silhouette` gauge (taken "
        "from the model's hash-based sample; its cost grows with the square of this; 0: no "
        "gauge). Only the worker that holds the model lease exports it.",
    )
    silhouette_interval_s: float = Field(
        300.0, gt=0,
        description="Seconds between two refreshes of the `streamseg_silhouette` gauge, "
        "computed in a background thread with its own read-only store connection.",
    )


class EvaluateSettings(_Section):
    sample: int = Field(
        2000, ge=10, le=50000,
        description="`streamseg evaluate` and the report's quality figures: customers drawn "
        "at random (uniform, over the whole store) for the measures, which are exact on "
        "this sample. Silhouette costs O(sample^2) time; memory stays bounded.",
    )
    seed: int = Field(0, description="Seed of that draw and of the batch k-means runs.")


class PrivacySettings(_Section):
    pseudonymise_key: SecretStr | None = Field(
        None,
        description="When set (STREAMSEG_PRIVACY__PSEUDONYMISE_KEY), customer ids are "
        "replaced by HMAC-SHA256(key, id) before anything is stored, published or logged.",
    )


class ApiSettings(_Section):
    enabled: bool = Field(False, description="Also serve the read API inside `streamseg run`.")
    host: str = Field("127.0.0.1", description="Bind address; loopback unless you need more.")
    port: int = Field(8000, ge=0, le=65535, description="Port of the read API.")
    tokens: SecretStr | None = Field(
        None,
        description="Bearer tokens of the read API, comma-separated (set via "
        "STREAMSEG_API__TOKENS; each at least 16 characters; never logged). When set, "
        "/customers and /segments need `Authorization: Bearer <token>` (/healthz, /readyz "
        "and the OpenAPI docs stay open); required unless api.host is a loopback address.",
    )

    @model_validator(mode="after")
    def _tokens_long_enough(self) -> ApiSettings:
        if self.tokens is not None and not parse_tokens(self.tokens):
            raise ValueError("api.tokens is set but holds no token")
        short = sum(len(t) < MIN_TOKEN_LENGTH for t in parse_tokens(self.tokens))
        if short:  # never echo a token, not even a bad one
            raise ValueError(f"api.tokens: {short} token(s) shorter than {MIN_TOKEN_LENGTH} "
                             "characters")
        return self

    def token_list(self) -> list[str]:
        """The configured tokens (revealed only here, for the API's verifier)."""
        return parse_tokens(self.tokens)
