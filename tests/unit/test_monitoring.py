"""The operator files: alert rules (checked and unit-tested by promtool), the Grafana
dashboard (every query valid PromQL, and right with several workers), Grafana's
provisioning and its wiring in docker-compose.yml.

No Docker engine runs here, so Grafana itself is not started: its files are checked by
reading them against what compose mounts where. The metric names the dashboard and the
rules use are checked against a live /metrics in tests/integration/test_operators.py.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from streamseg.config import load_settings
from tests._ops import (
    ALERT_TESTS,
    ALERTS,
    CONFIG,
    DASHBOARD,
    GRAFANA,
    PROMETHEUS,
    ROOT,
    Query,
    alert_queries,
    alert_rules,
    dashboard,
    dashboard_queries,
    metric_names,
    panels,
    run_promtool,
)


def _compose() -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return data


def _mounts(service: str) -> dict[str, str]:
    """A compose service's bind mounts: container path -> host path (relative to ROOT)."""
    mounts = {}
    for volume in _compose()["services"][service].get("volumes", []):
        host, container, *_ = volume.split(":")
        mounts[container] = host
    return mounts


# -- alert rules ------------------------------------------------------------------------
def test_promtool_checks_the_alert_rules() -> None:
    result = run_promtool("check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout


def test_promtool_unit_tests_of_the_alerts_pass() -> None:
    result = run_promtool("test", "rules", str(ALERT_TESTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_every_alert_is_tested_firing_and_quiet() -> None:
    tests = yaml.safe_load(ALERT_TESTS.read_text())
    assert tests["rule_files"] == [ALERTS.name]
    fired: set[str] = set()
    quiet: set[str] = set()
    for case in tests["tests"]:
        for check in case.get("alert_rule_test", []):
            (fired if check.get("exp_alerts") else quiet).add(check["alertname"])
    names = {rule["alert"] for rule in alert_rules()}
    assert names >= {"StreamsegNotReady", "StreamsegConsumerLagGrowing",
                     "StreamsegDeadLetterRateHigh", "StreamsegStoreErrors",
                     "StreamsegBrokerErrors", "StreamsegWatermarkStalled",
                     "StreamsegSegmentChurnUnusual"}
    assert fired == names, f"alerts never seen firing in a test: {names - fired}"
    assert quiet == names, f"alerts never seen staying quiet in a test: {names - quiet}"


def test_every_alert_says_what_and_how_bad() -> None:
    for rule in alert_rules():
        assert rule["labels"]["severity"] in {"critical", "warning", "info"}, rule["alert"]
        assert rule["annotations"]["summary"] and rule["annotations"]["description"]
        assert "for" in rule, f"{rule['alert']}: a single bad scrape must not page"


def test_prometheus_loads_the_rules_it_is_given_in_compose() -> None:
    result = run_promtool("check", "config", str(PROMETHEUS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(alert_rules())} rules found" in result.stdout
    scrape = yaml.safe_load(PROMETHEUS.read_text())
    mounts = _mounts("prometheus")
    for rule_file in scrape["rule_files"]:  # relative to prometheus.yml, in the container
        assert mounts[f"/etc/prometheus/{rule_file}"] == f"./config/{rule_file}"
    assert mounts["/etc/prometheus/prometheus.yml"] == "./config/prometheus.yml"


# -- the dashboard ----------------------------------------------------------------------
def test_every_dashboard_query_is_valid_promql(tmp_path: Path) -> None:
    """promtool parses each query (Grafana's variables replaced) as a recording rule."""
    queries = dashboard_queries()

    def check(exprs: list[str]) -> Any:
        rules = tmp_path / "dashboard.rules.yml"
        rules.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": [
            {"record": f"dashboard:query_{i}", "expr": e} for i, e in enumerate(exprs)]}]}))
        return run_promtool("check", "rules", str(rules))

    result = check([query.expr for query in queries])
    if result.returncode != 0:  # name the panel of the first bad query
        for query in queries:
            single = check([query.expr])
            assert single.returncode == 0, f"{query.where}: {query.expr}\n{single.stdout}"
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(queries)} rules found" in result.stdout


def test_the_dashboard_has_the_panels_operators_need() -> None:
    board = dashboard()
    assert board["uid"] == "streamseg"
    ids = [panel["id"] for panel in panels()]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    by_metric: dict[str, set[str]] = {}
    for panel in panels():
        for target in panel.get("targets", []):
            for name in metric_names(target["expr"]):
                by_metric.setdefault(name, set()).add(panel["title"])
    for needed in ("streamseg_events_consumed_total", "streamseg_events_processed_total",
                   "streamseg_events_rejected_total", "streamseg_consumer_lag_records",
                   "streamseg_batch_duration_seconds_bucket",
                   "streamseg_end_to_end_latency_seconds_bucket",
                   "streamseg_segment_size_customers", "streamseg_segment_changes_total",
                   "streamseg_store_errors_total", "streamseg_broker_errors_total",
                   "streamseg_ready", "streamseg_silhouette", "streamseg_trait_auc",
                   "streamseg_trait_calibration_error", "streamseg_trait_spend_rmse"):
        assert needed in by_metric, f"no panel shows {needed}"
    exprs = [query.expr for query in dashboard_queries()]
    assert any("by (topic, partition)" in e for e in exprs), "lag per partition"
    assert any("sum by (reason) (rate(streamseg_segment_changes_total" in e for e in exprs)
    for q in ("0.5", "0.95", "0.99"):
        for metric in ("streamseg_batch_duration_seconds", "streamseg_end_to_end_latency"):
            assert any(e.startswith(f"histogram_quantile({q}, sum by (le)") and metric in e
                       for e in exprs), (q, metric)
    # Per worker where it matters: throughput, latency, errors and readiness.
    per_worker = {p["title"] for p in panels()
                  if any("instance" in t.get("legendFormat", "") for t in p.get("targets", []))}
    assert {"Readiness per worker", "Events processed per worker",
            "Batch duration p99 per worker", "End-to-end latency p99 per worker",
            "Store and broker errors per worker"} <= per_worker
    # Every panel reads the data source chosen in the dashboard's variable.
    for panel in panels():
        if panel["type"] != "row":
            assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    assert variables["instance"]["allValue"] == ".*"


def _counters_are_rated(query: Query) -> None:
    """A counter is only read through rate() or increase(): its raw value restarts with
    the worker and sums to nothing meaningful."""
    for match in re.finditer(r"streamseg_\w+_total\b", query.expr):
        before = query.expr[:match.start()]
        assert re.search(r"(rate|increase)\($", before), f"{query.where}: {query.expr}"


@pytest.mark.parametrize("query", dashboard_queries() + alert_queries(),
                         ids=lambda q: q.where)
def test_shared_gauges_are_never_summed_across_workers(query: Query) -> None:
    """Static rules for several workers: a gauge every worker reports alike is max()ed,
    per-partition gauges are aggregated per partition (or per segment, summing the
    partitions' shares), counters are rated."""
    expr = query.expr
    for name in ("streamseg_model_version", "streamseg_event_time_watermark_seconds",
                 # one model's figures: the same on every worker (the silhouette is only
                 # on the lease holder's, but a second one during a hand-over is alike)
                 "streamseg_silhouette", "streamseg_trait_auc",
                 "streamseg_trait_calibration_error", "streamseg_trait_spend_rmse",
                 "streamseg_trait_examples"):
        for match in re.finditer(name, expr):
            assert expr[:match.start()].endswith("max("), f"{query.where}: {expr}"
    for match in re.finditer("streamseg_segment_size_customers", expr):
        assert expr[:match.start()].endswith("sum by (segment) ("), f"{query.where}: {expr}"
    for match in re.finditer("streamseg_consumer_lag_records", expr):
        assert expr[:match.start()].endswith("max by (topic, partition) ("), \
            f"{query.where}: {expr}"
    for match in re.finditer(r"histogram_quantile\(", expr):
        assert re.match(r"histogram_quantile\([0-9.]+, sum by \((\w+, )*le\) \(rate\(",
                        expr[match.start():]), f"{query.where}: {expr}"
    _counters_are_rated(query)


def _promql_test(queries: list[tuple[str, list[dict[str, Any]]]]) -> dict[str, Any]:
    """A promtool test file: two workers' series and the expected result of each query."""
    two_workers = [
        # Both ready? w2 is not.
        ("streamseg_ready", {"instance": "w1"}, 1), ("streamseg_ready", {"instance": "w2"}, 0),
        # Shared by every worker: the same model and the same watermark.
        ("streamseg_model_version", {"instance": "w1"}, 7),
        ("streamseg_model_version", {"instance": "w2"}, 7),
        ("streamseg_event_time_watermark_seconds", {"instance": "w1"}, 1_700_000_000),
        ("streamseg_event_time_watermark_seconds", {"instance": "w2"}, 1_700_000_000),
        # Per partition, from each partition's owner: w1 owns partition 0, w2 partition 1.
        ("streamseg_segment_size_customers", {"instance": "w1", "partition": "0",
                                              "segment": "0"}, 10),
        ("streamseg_segment_size_customers", {"instance": "w2", "partition": "1",
                                              "segment": "0"}, 5),
        ("streamseg_segment_size_customers", {"instance": "w1", "partition": "0",
                                              "segment": "1"}, 3),
        ("streamseg_segment_size_customers", {"instance": "w2", "partition": "1",
                                              "segment": "1"}, 4),
        # Lag: w2 took partition 0 from w1, which still shows its last value.
        ("streamseg_consumer_lag_records", {"instance": "w1", "topic": "t", "partition": "0"},
         40),
        ("streamseg_consumer_lag_records", {"instance": "w2", "topic": "t", "partition": "0"},
         40),
        ("streamseg_consumer_lag_records", {"instance": "w2", "topic": "t", "partition": "1"},
         2),
    ]
    series = []
    for name, labels, value in two_workers:
        text = ", ".join(f'{k}="{v}"' for k, v in {"job": "streamseg", **labels}.items())
        series.append({"series": f"{name}{{{text}}}", "values": f"{value}x20"})
    return {"rule_files": [], "evaluation_interval": "15s", "tests": [{
        "interval": "15s", "input_series": series,
        "promql_expr_test": [{"expr": expr, "eval_time": "4m", "exp_samples": samples}
                             for expr, samples in queries],
    }]}


def test_dashboard_totals_are_right_with_two_workers(tmp_path: Path) -> None:
    """promtool evaluates the dashboard's queries over two workers' series: shared gauges
    count once, per-partition ones add up."""
    by_panel: dict[str, list[Query]] = {}
    for query in dashboard_queries():
        by_panel.setdefault(query.where.rsplit(" ", 1)[0].removeprefix("panel "), []).append(
            query)

    def expr(title: str, legend: str | None = None) -> str:
        found = [q.expr for q in by_panel[repr(title)] if legend in (None, q.legend)]
        assert len(found) == 1, (title, legend, found)
        return found[0]

    expected = [
        (expr("Workers ready", "ready"), [{"labels": "{}", "value": 1}]),
        (expr("Workers ready", "workers"), [{"labels": "{}", "value": 2}]),
        (expr("Customers"), [{"labels": "{}", "value": 22}]),
        (expr("Model version"), [{"labels": "{}", "value": 7}]),
        (expr("Event time"), [{"labels": "{}", "value": 1_700_000_000_000}]),
        (expr("Segment sizes"), [{"labels": '{segment="0"}', "value": 15},
                                 {"labels": '{segment="1"}', "value": 7}]),
        (expr("Consumer lag per partition"), [
            {"labels": '{partition="0", topic="t"}', "value": 40},
            {"labels": '{partition="1", topic="t"}', "value": 2}]),
    ]
    test_file = tmp_path / "dashboard.test.yml"
    test_file.write_text(yaml.safe_dump(_promql_test(expected), sort_keys=False))
    result = run_promtool("test", "rules", str(test_file))
    assert result.returncode == 0, result.stdout + result.stderr


# -- Grafana's provisioning and compose -------------------------------------------------
def test_grafana_is_provisioned_by_compose() -> None:
    services = _compose()["services"]
    grafana = services["grafana"]
    assert "prometheus" in grafana["depends_on"]
    assert any(str(port).startswith("127.0.0.1:") for port in grafana["ports"])
    mounts = _mounts("grafana")
    assert mounts["/etc/grafana/provisioning"] == "./config/grafana/provisioning"
    provisioning = GRAFANA / "provisioning"

    sources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text())
    assert sources["apiVersion"] == 1
    [source] = sources["datasources"]
    assert (source["type"], source["url"], source["access"]) == (
        "prometheus", "http://prometheus:9090", "proxy")
    assert source["isDefault"] is True
    assert "127.0.0.1:9090:9090" in services["prometheus"]["ports"]  # Prometheus on 9090
    # $__rate_interval needs to know the scrape interval.
    scrape = yaml.safe_load(PROMETHEUS.read_text())
    assert source["jsonData"]["timeInterval"] == scrape["global"]["scrape_interval"]

    providers = yaml.safe_load((provisioning / "dashboards" / "streamseg.yml").read_text())
    assert providers["apiVersion"] == 1
    [provider] = providers["providers"]
    assert provider["type"] == "file"
    # The provider's folder is where compose mounts the dashboards, and it holds ours.
    host = mounts[provider["options"]["path"]]
    assert (ROOT / host).resolve() == DASHBOARD.parent
    home = grafana["environment"]["GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH"]
    assert home == f"{provider['options']['path']}/{DASHBOARD.name}"
    for host_path in mounts.values():
        assert (ROOT / host_path).exists(), host_path


def test_compose_passes_the_api_token_from_the_environment_only() -> None:
    production = load_settings(CONFIG / "production.yaml")
    assert production.api.enabled and production.api.host == "0.0.0.0"
    assert production.api.tokens is None  # never in the file
    environment = _compose()["services"]["streamseg"]["environment"]
    # Compose's ${VAR:?message} refuses to start when the variable is unset or empty.
    token = environment["STREAMSEG_API__TOKENS"]
    assert re.fullmatch(r"\$\{STREAMSEG_API__TOKENS:\?[^}]+\}", token), token
