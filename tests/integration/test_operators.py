"""What operators run against streamseg, run against a live service on the real broker
and Redis: Prometheus' promtool on /metrics, the CloudEvents SDK on the change topic,
schemathesis on the read API's OpenAPI spec; the read API's bearer tokens; and every
metric the Grafana dashboard and the alert rules name, on the live /metrics.

One service (``streamseg run`` as a subprocess, metrics and the API on loopback, a token
configured) is fed once for the whole module: simulated customers and a few malformed
records, so that every labelled series (rejections, changes, lag, sizes) exists.
"""

from __future__ import annotations

import contextlib
import json
import re
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from streamseg.core.events import CHANGE_EVENT_TYPE, RISK_EVENT_TYPE
from tests._ops import (
    ALERTS,
    PROMETHEUS_SERIES,
    Query,
    alert_queries,
    alert_rules,
    dashboard_queries,
    metric_names,
    run_promtool,
)
from tests.integration._service import (
    DEADLINE_S,
    Service,
    end_offsets,
    free_port,
    produce,
    read_topic,
    service_config,
    sixty_day_stream,
    wait_until,
)

pytestmark = pytest.mark.integration

TOKEN = f"it-operators-{uuid.uuid4().hex}"
CUSTOMERS = 600
MALFORMED = [
    "this is not json",
    "[1, 2, 3]",
    '{"event_id": "m1", "customer_id": "x", "timestamp": "2024-01-01", "amount": -5}',
    '{"event_id": "m2", "customer_id": "x", "timestamp": "1900-01-01", "amount": 5}',
]


@dataclass
class Live:
    service: Service
    api: str  # base URL of the read API
    kafka: str
    changes_topic: str
    customers: set[str]
    applied: int

    def metrics_text(self) -> str:
        port = self.service.metrics_port
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as reply:
            return str(reply.read().decode())


def _get(url: str, token: str | None = None) -> tuple[int, dict[str, str], Any]:
    request = urllib.request.Request(url)
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), json.load(response)
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), json.load(error)


@pytest.fixture(scope="module")
def live(kafka_servers: str, kafka_admin: Any, redis_url: str,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    run = uuid.uuid4().hex[:10]
    topic, changes, dlq = (f"it-ops-{kind}-{run}" for kind in ("in", "changes", "dlq"))
    kafka_admin.create_topics({name: {"num_partitions": 4, "replication_factor": 1,
                                      "configs": {}} for name in (topic, changes, dlq)},
                              wait_for_metadata=True)
    prefix = f"it-ops-{run}"
    api_port = free_port()
    config = service_config(
        kafka=kafka_servers, redis_url=redis_url, topic=topic, prefix=prefix,
        group=f"it-ops-{run}", changes_topic=changes, dlq_topic=dlq,
        model={"warmup": 200},
        api={"enabled": True, "host": "127.0.0.1", "port": api_port, "tokens": TOKEN},
    )
    service = Service(tmp_path_factory.mktemp("operators"), "ops", config,
                      metrics_port=free_port())
    try:
        events = sixty_day_stream(CUSTOMERS, seed=15)
        applied = produce(kafka_servers, topic, events)
        _produce_raw(kafka_servers, topic, MALFORMED)
        service.start()

        def settled() -> bool:
            samples = service.metrics()
            if samples is None:
                return False
            changes_metric = sum(v for k, v in samples.items()
                                 if k.startswith("streamseg_segment_changes_total{"))
            sizes = sum(v for k, v in samples.items()
                        if k.startswith("streamseg_segment_size_customers{"))
            lag = [v for k, v in samples.items()
                   if k.startswith("streamseg_consumer_lag_records{")]
            return (samples.get("streamseg_events_processed_total") == applied
                    and samples.get("streamseg_ready") == 1.0
                    # the dashboard's silhouette panel: measured once the model is seeded
                    and "streamseg_silhouette" in samples
                    and sizes == CUSTOMERS and len(lag) == 4 and sum(lag) == 0
                    and sum(end_offsets(kafka_servers, changes).values()) >= changes_metric > 0)

        wait_until(settled, "every event applied, its changes published and the gauges "
                   "caught up", services=[service])
        yield Live(service, f"http://127.0.0.1:{api_port}", kafka_servers, changes,
                   {event["customer_id"] for event in events}, applied)
    finally:
        service.stop_quietly()
        with contextlib.suppress(Exception):  # cleanup is best effort
            kafka_admin.delete_topics([topic, changes, dlq])
        from streamseg.store.redis import _delete_prefix

        client = redis.Redis.from_url(redis_url)
        _delete_prefix(client, prefix)
        client.close()


def _produce_raw(servers: str, topic: str, payloads: list[str]) -> None:
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=servers, acks="all")
    try:
        for payload in payloads:
            producer.send(topic, value=payload.encode())
        producer.flush(timeout=DEADLINE_S)
    finally:
        producer.close(timeout=10)


# -- Prometheus ---------------------------------------------------------------------------
def test_promtool_finds_no_problem_in_the_live_metrics(live: Live) -> None:
    text = live.metrics_text()
    assert "streamseg_end_to_end_latency_seconds_bucket{" in text  # a busy scrape
    assert 'streamseg_events_rejected_total{reason="malformed_json"}' in text
    result = run_promtool("check", "metrics", stdin=text)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout + result.stderr == ""
    # The same check does object to what the conventions forbid, here and now.
    broken = text + "# HELP streamseg_bad A counter without _total.\n" \
                    "# TYPE streamseg_bad counter\nstreamseg_bad 1\n"
    objection = run_promtool("check", "metrics", stdin=broken)
    assert objection.returncode != 0 and "streamseg_bad" in objection.stdout + objection.stderr


def _label_names(expr: str) -> set[str]:
    """Labels an expression groups by or matches on."""
    names: set[str] = set()
    for group in re.findall(r"\b(?:by|without|on|ignoring)\s*\(([^)]*)\)", expr):
        names |= {name.strip() for name in group.split(",") if name.strip()}
    for selector in re.findall(r"\{([^}]*)\}", expr):
        names |= set(re.findall(r"(\w+)\s*(?:=~|!~|!=|=)\s*\"", selector))
    return names


def test_every_metric_and_label_of_the_dashboard_and_alerts_is_exported(live: Live) -> None:
    """Names are read from config/grafana/dashboards/streamseg.json and config/alerts.yml;
    a counter shows as NAME_total and a histogram as NAME_bucket/_sum/_count, as queried."""
    labels_of: dict[str, set[str]] = {}
    for family in text_string_to_metric_families(live.metrics_text()):
        for sample in family.samples:
            labels_of.setdefault(sample.name, set()).update(sample.labels)
    queries: list[Query] = dashboard_queries() + alert_queries()
    used = {name for query in queries for name in metric_names(query.expr)}
    assert len(used) >= 15, used  # the extraction found the names
    missing = {f"{name} (in {q.where})" for q in queries for name in metric_names(q.expr)
               if name not in labels_of and name not in PROMETHEUS_SERIES}
    assert not missing, f"not on the live /metrics: {sorted(missing)}"
    # Prometheus adds `instance` and `job` to every scraped series.
    for query in queries:
        known = {"instance", "job"}.union(*(labels_of.get(n, set())
                                            for n in metric_names(query.expr)))
        unknown = _label_names(query.expr) - known
        assert not unknown, f"{query.where}: labels {unknown} not exported: {query.expr}"


def test_a_real_prometheus_loads_the_rules_and_answers_every_dashboard_query(
        live: Live, tmp_path: Path) -> None:
    """Debian's prometheus server (the package that brings promtool) scrapes the live
    service every second with config/alerts.yml loaded: every rule evaluates without
    error and none fires on a healthy service; every dashboard query returns series."""
    import shutil

    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is not installed: scripts/test installs Debian's `prometheus` "
                    "package", pytrace=False)
    port = free_port()
    (tmp_path / "alerts.yml").write_text(ALERTS.read_text())
    (tmp_path / "prometheus.yml").write_text(json.dumps({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": ["alerts.yml"],
        "scrape_configs": [{"job_name": "streamseg", "static_configs": [
            {"targets": [f"127.0.0.1:{live.service.metrics_port}"]}]}],
    }))
    log = (tmp_path / "prometheus.log").open("wb")
    server = subprocess.Popen(
        [binary, f"--config.file={tmp_path / 'prometheus.yml'}",
         f"--storage.tsdb.path={tmp_path / 'data'}", f"--web.listen-address=127.0.0.1:{port}",
         "--log.level=warn"], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)

    def api(path: str) -> Any:
        url = f"http://127.0.0.1:{port}/api/v1/{path}"
        with urllib.request.urlopen(url, timeout=10) as reply:
            body = json.load(reply)
        assert body["status"] == "success", body
        return body["data"]

    def query(expr: str) -> list[Any]:
        result: list[Any] = api("query?" + urllib.parse.urlencode({"query": expr}))["result"]
        return result

    def scraped_enough() -> bool:
        if server.poll() is not None:
            pytest.fail(f"prometheus exited: {(tmp_path / 'prometheus.log').read_text()}")
        with contextlib.suppress(OSError, ValueError):
            # rate() over the dashboard's 1m needs two scrapes; the rules' 5m windows too.
            return bool(query('count_over_time(up{job="streamseg"}[1m]) >= 5'))
        return False

    try:
        wait_until(scraped_enough, "prometheus to scrape the service five times",
                   services=[live.service])
        assert [s["value"][1] for s in query('up{job="streamseg"}')] == ["1"]
        rules = [rule for group in api("rules")["groups"] for rule in group["rules"]]
        assert {rule["name"] for rule in rules} == {r["alert"] for r in alert_rules()}
        for rule in rules:
            assert rule["health"] == "ok", rule
            assert rule["state"] == "inactive", rule  # a healthy service raises nothing
        empty = [f"{q.where}: {q.expr}" for q in dashboard_queries() if not query(q.expr)]
        assert not empty, "queries without a series on a live service:\n" + "\n".join(empty)
    finally:
        server.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            server.wait(30)
        if server.poll() is None:
            server.kill()
            server.wait(30)
        log.close()


# -- CloudEvents ---------------------------------------------------------------------------
def test_every_change_event_on_the_topic_is_a_valid_cloudevent(live: Live) -> None:
    """The CloudEvents SDK's Kafka binding parses each record of the change topic into a
    v1.0 event (it validates the required attributes and their types).

    With the SDK's auto-detecting reader, as a consumer that does not know the mode uses
    it: it takes any ``ce_*`` header for binary mode, so a structured record that carried
    one would fail here (on the ``ce_source`` it then misses)."""
    from cloudevents.core.bindings.kafka import KafkaMessage, from_kafka_event
    from cloudevents.core.v1.event import CloudEvent

    messages = read_topic(live.kafka, live.changes_topic)
    samples = live.service.metrics() or {}
    counted = sum(v for k, v in samples.items()
                  if k.startswith("streamseg_segment_changes_total{"))
    assert len(messages) >= counted > 0  # at least once: every counted change is there
    subjects: set[str] = set()
    for message in messages:
        headers = {name: value for name, value in message.headers}
        where = f"partition {message.partition} offset {message.offset}"
        # Kafka protocol binding: the content-type header says structured mode.
        assert headers["content-type"] == b"application/cloudevents+json", where
        event = from_kafka_event(KafkaMessage(headers=headers, key=message.key,
                                              value=message.value))
        assert isinstance(event, CloudEvent), where  # v1.0, detected from the body
        assert event.get_specversion() == "1.0", where
        assert event.get_id() and isinstance(event.get_id(), str), where
        assert event.get_source() == "streamseg", where
        assert event.get_type() in {CHANGE_EVENT_TYPE, RISK_EVENT_TYPE}, where
        assert event.get_subject() == message.key.decode() == event.get_extension(
            "partitionkey"), where
        time = event.get_time()
        assert isinstance(time, datetime) and time.utcoffset() is not None, where
        assert event.get_datacontenttype() == "application/json", where
        data = event.get_data()
        assert isinstance(data, dict) and data["customer_id"] == event.get_subject(), where
        if event.get_type() == RISK_EVENT_TYPE:  # a risk band's change: no reason
            assert data["to_band"] in {"at_risk", "watch", "likely"}, where
            continue
        assert data["reason"] in {"first_assignment", "behaviour", "inactivity",
                                  "model_update"}, where
        subjects.add(event.get_subject() or "")
    assert subjects == live.customers  # every customer was assigned, and announced


# -- the read API: auth and schemathesis ------------------------------------------------
def test_the_live_api_needs_the_token(live: Live) -> None:
    customer = sorted(live.customers)[0]
    url = f"{live.api}/customers/{customer}"
    status, headers, body = _get(url)
    assert (status, body) == (401, {"detail": "missing bearer token"})
    assert headers["www-authenticate"].startswith("Bearer")
    status, headers, body = _get(url, "not-" + TOKEN)
    assert (status, body) == (401, {"detail": "invalid bearer token"})
    assert 'error="invalid_token"' in headers["www-authenticate"]
    status, _, body = _get(url, TOKEN)
    assert status == 200 and body["customer_id"] == customer
    assert body["segment"] is not None
    assert _get(f"{live.api}/segments", TOKEN)[2]["customers"] == len(live.customers)
    assert _get(f"{live.api}/healthz")[0] == 200 and _get(f"{live.api}/readyz")[0] == 200
    assert TOKEN not in live.service.log_text()


def test_schemathesis_finds_no_failure_in_the_api(live: Live, tmp_path: Path) -> None:
    """schemathesis (its CLI, as an operator runs it) against the running API, with the
    token, every check, bounded in examples per operation and in time; known customer
    ids are given as examples of the path parameter, so lookups also find customers."""
    spec = _get(f"{live.api}/openapi.json")[2]
    known = sorted(live.customers)[:3]
    [parameter] = spec["paths"]["/customers/{customer_id}"]["get"]["parameters"]
    parameter["examples"] = {f"known{i}": {"value": c} for i, c in enumerate(known)}
    spec_path = tmp_path / "openapi.json"
    spec_path.write_text(json.dumps(spec))
    reports = tmp_path / "reports"
    result = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "run", str(spec_path), "--url", live.api,
         "--header", f"Authorization: Bearer {TOKEN}", "--checks", "all",
         "--max-examples", "100", "--max-time", "20", "--seed", "15", "--workers", "1",
         "--request-timeout", "10", "--report", "ndjson", "--report-dir", str(reports)],
        capture_output=True, text=True, timeout=300, check=False, stdin=subprocess.DEVNULL,
        cwd=tmp_path,  # its example database (.schemathesis/) stays out of the repository
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "No issues found" in output, output
    assert TOKEN not in output
    statuses = _customer_statuses(next(reports.glob("*.ndjson")), set(known))
    # Known customers were found, unknown ones were not, and no token was refused.
    assert statuses.get((True, 200), 0) > 0, statuses
    assert statuses.get((False, 404), 0) > 0, statuses
    assert statuses.get((True, 401), 0) + statuses.get((False, 401), 0) > 0, statuses


def _customer_statuses(report: Path, known: set[str]) -> dict[tuple[bool, int], int]:
    """(known id?, status) -> count, of every GET /customers/{id} in a schemathesis
    NDJSON report."""
    counts: dict[tuple[bool, int], int] = {}
    for line in report.read_text().splitlines():
        finished = json.loads(line).get("ScenarioFinished")
        if not finished:
            continue
        recorder = finished["recorder"]
        if recorder["label"] != "GET /customers/{customer_id}":
            continue
        for case_id, interaction in recorder.get("interactions", {}).items():
            response = interaction.get("response") or {}
            if "status_code" not in response:
                continue
            case = recorder["cases"][case_id]["value"]
            key = (case.get("path_parameters", {}).get("customer_id") in known,
                   int(response["status_code"]))
            counts[key] = counts.get(key, 0) + 1
    return counts
