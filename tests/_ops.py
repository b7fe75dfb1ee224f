"""What the operator files hold, for the tests that check them: the Grafana dashboard's and
the alert rules' PromQL, the metric names they use, and promtool.

promtool comes from Debian's ``prometheus`` package, which ``scripts/setup`` installs;
a test that needs it fails (never skips) without it, so a green run always ran it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "config"
ALERTS = CONFIG / "alerts.yml"
ALERT_TESTS = CONFIG / "alerts.test.yml"
PROMETHEUS = CONFIG / "prometheus.yml"
GRAFANA = CONFIG / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "streamseg.json"

#: Grafana's variables, replaced by what Prometheus would see with every worker selected.
GRAFANA_VARIABLES = {"$__rate_interval": "1m", "$__interval": "15s", "$__range": "1h",
                     "$instance": ".*"}
#: Series Prometheus makes itself (not on /metrics): an alert on a worker that is gone.
PROMETHEUS_SERIES = {"up"}

_METRIC = re.compile(r"\b(streamseg_[a-z0-9_]+|up)\b(?=\s*[{\[)\s]|\s*$)")


@dataclass(frozen=True)
class Query:
    """One PromQL expression of the dashboard or the rules, and where it comes from."""

    where: str
    expr: str
    legend: str = ""


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def panels() -> list[dict[str, Any]]:
    """Every panel, those inside collapsed rows too."""
    found: list[dict[str, Any]] = []
    for panel in dashboard()["panels"]:
        found.append(panel)
        found += panel.get("panels", [])
    return found


def dashboard_queries() -> list[Query]:
    """Every target of every panel, Grafana's variables replaced."""
    queries = []
    for panel in panels():
        for target in panel.get("targets", []):
            expr = target["expr"]
            for name, value in GRAFANA_VARIABLES.items():
                expr = expr.replace(name, value)
            queries.append(Query(f"panel {panel['title']!r} {target['refId']}", expr,
                                 target.get("legendFormat", "")))
    return queries


def alert_rules() -> list[dict[str, Any]]:
    rules: list[dict[str, Any]] = []
    for group in yaml.safe_load(ALERTS.read_text())["groups"]:
        rules += group["rules"]
    return rules


def alert_queries() -> list[Query]:
    return [Query(f"alert {rule['alert']}", rule["expr"]) for rule in alert_rules()]


def metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (not functions, labels or keywords).

    >>> sorted(metric_names('sum by (le) (rate(streamseg_x_bucket{a="b"}[1m])) / '
    ...                     'max(streamseg_y) > up{job="s"}'))
    ['streamseg_x_bucket', 'streamseg_y', 'up']
    """
    # Label values are strings: drop them so that a value never reads as a name.
    return set(_METRIC.findall(re.sub(r'"[^"]*"', '""', expr)))


def promtool() -> str:
    """The promtool binary; fails the test when it is missing."""
    path = shutil.which("promtool")
    if path is None:
        pytest.fail("promtool is not installed: scripts/setup installs Debian's `prometheus` "
                    "package (as root), or `apt-get install -y prometheus`", pytrace=False)
    return path


def run_promtool(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([promtool(), *args], input=stdin, capture_output=True, text=True,
                          timeout=120, check=False)
