"""Configuration: precedence, clear errors, and the shipped files stay valid."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from streamseg.config import ConfigError, load_settings

ROOT = Path(__file__).resolve().parents[2]


def test_yaml_then_environment_then_flags(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "c.yaml"
    config.write_text("model:\n  n_clusters: 7\n  warmup: 50\nstore:\n  uri: memory://\n")
    assert load_settings(config).model.n_clusters == 7
    monkeypatch.setenv("STREAMSEG_MODEL__N_CLUSTERS", "8")
    settings = load_settings(config)
    assert (settings.model.n_clusters, settings.model.warmup) == (8, 50)  # env over YAML
    flagged = load_settings(config, {"model": {"n_clusters": 9}})
    assert (flagged.model.n_clusters, flagged.model.warmup) == (9, 50)  # flags over env
    assert flagged.store.uri == "memory://"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("model:\n  n_clusters: one\n", "model.n_clusters"),
        ("model:\n  kind: dbscan\n", "model.kind"),
        ("modle:\n  n_clusters: 3\n", "modle"),
        ("features:\n  half_life_days: -1\n", "features.half_life_days"),
        ("- a list\n", "mapping at the top level"),
    ],
)
def test_invalid_config_names_the_field(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_settings(config)


def test_secrets_are_not_shown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STREAMSEG_STORE__REDIS_PASSWORD", "hunter2")
    settings = load_settings()
    assert "hunter2" not in repr(settings) and "hunter2" not in str(settings.model_dump())
    assert settings.store.redis_password is not None
    assert settings.store.redis_password.get_secret_value() == "hunter2"


def test_default_yaml_is_the_embedded_default() -> None:
    assert load_settings(ROOT / "config" / "default.yaml") == load_settings()


def test_production_yaml_and_container_files_agree() -> None:
    production = load_settings(ROOT / "config" / "production.yaml")
    assert production.source.uri.startswith("kafka://")
    assert production.store.uri.startswith("redis://")
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "/etc/streamseg/production.yaml" in dockerfile
    assert "COPY config /etc/streamseg" in dockerfile
    assert f"EXPOSE {production.metrics.port} {production.api.port}" in dockerfile
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    assert set(compose["services"]) == {"kafka", "redis", "streamseg", "prometheus",
                                        "grafana"}
    scrape = yaml.safe_load((ROOT / "config" / "prometheus.yml").read_text())
    # Every worker is scraped: the service name resolves to one address per worker.
    discovery = scrape["scrape_configs"][0]["dns_sd_configs"][0]
    assert discovery["names"] == ["streamseg"]
    assert discovery["port"] == production.metrics.port
    # `docker compose up --scale streamseg=N`: no fixed host port may clash.
    for port in compose["services"]["streamseg"].get("ports", []):
        host = str(port).rsplit(":", 1)[0]
        assert "-" in host.rsplit(":", 1)[-1], f"a fixed host port stops scaling: {port}"
    kafka_host = production.source.uri.removeprefix("kafka://").split("/")[0]
    assert kafka_host == compose["services"]["kafka"]["environment"][
        "KAFKA_ADVERTISED_LISTENERS"].removeprefix("PLAINTEXT://")


def test_readme_configuration_table_is_current() -> None:
    from streamseg.config import reference_table

    readme = (ROOT / "README.md").read_text()
    start = readme.index("<!-- config-reference:start -->\n") + len(
        "<!-- config-reference:start -->\n")
    end = readme.index("<!-- config-reference:end -->")
    assert readme[start:end].strip() == reference_table().strip(), (
        "README's configuration table is stale: paste `streamseg config --reference`"
    )
