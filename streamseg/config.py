"""Configuration: one :class:`Settings` object, configured from one place.

Precedence, lowest first: the defaults (the embedded default: the bundled CDNOW
sample, SQLite, JSON Lines files), a YAML file (``--config``), environment variables
(``STREAMSEG_`` prefix, ``__`` between nested names, e.g.
``STREAMSEG_MODEL__N_CLUSTERS=6``), then command-line flags. Every option is documented
where it is defined: the sections in :mod:`streamseg.config_sections` (re-exported
here). Invalid values fail fast with the field's dotted name.

This module's one job: assemble the sections into :class:`Settings`, load it, and list
every option (:func:`reference_table`).
"""

from __future__ import annotations

import contextvars
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, Field, SecretStr, ValidationError
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SettingsConfigDict

# The sections and the sample's constants are defined in config_sections and importable
# from here, as they always were (``from streamseg.config import StoreSettings``).
from streamseg.config_sections import (
    SAMPLE_CSV,
    SAMPLE_PATH,
    SAMPLE_URI,
    ApiSettings,
    EvaluateSettings,
    FeatureSettings,
    KafkaSettings,
    MetricsSettings,
    ModelSettings,
    NamingSettings,
    PipelineSettings,
    PrivacySettings,
    SinkSettings,
    SourceSettings,
    StoreSettings,
    TraitSettings,
)
from streamseg.core.privacy import pseudonymise
from streamseg.io.file import CsvMapping

__all__ = [
    "SAMPLE_CSV",
    "SAMPLE_PATH",
    "SAMPLE_URI",
    "ApiSettings",
    "ConfigError",
    "EvaluateSettings",
    "FeatureSettings",
    "KafkaSettings",
    "MetricsSettings",
    "ModelSettings",
    "NamingSettings",
    "PipelineSettings",
    "PrivacySettings",
    "Settings",
    "SinkSettings",
    "SourceSettings",
    "StoreSettings",
    "TraitSettings",
    "deep_merge",
    "load_settings",
    "reference_table",
]


class Settings(BaseSettings):
    """All of streamseg's configuration."""

    model_config = SettingsConfigDict(
        env_prefix="STREAMSEG_", env_nested_delimiter="__", extra="forbid"
    )

    source: SourceSettings = Field(default_factory=SourceSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    store: StoreSettings = Field(default_factory=StoreSettings)
    sinks: SinkSettings = Field(default_factory=SinkSettings)
    features: FeatureSettings = Field(default_factory=FeatureSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    naming: NamingSettings = Field(default_factory=NamingSettings)
    traits: TraitSettings = Field(default_factory=TraitSettings)
    pipeline: PipelineSettings = Field(default_factory=PipelineSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    evaluate: EvaluateSettings = Field(default_factory=EvaluateSettings)
    privacy: PrivacySettings = Field(default_factory=PrivacySettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        return (init_settings, env_settings, _YamlSource(settings_cls, _yaml_data.get() or {}))

    def pseudonym_key(self) -> bytes | None:
        """The pseudonymisation key as bytes, or None when ids are kept."""
        key = self.privacy.pseudonymise_key
        return None if key is None else key.get_secret_value().encode("utf-8")

    def customer_key(self, customer_id: str) -> str:
        """The id under which a customer is stored (hashed when pseudonymising)."""
        key = self.pseudonym_key()
        return customer_id if key is None else pseudonymise(customer_id, key)

    def resolved_dead_letter(self) -> str:
        """Where rejected input goes (see ``sinks.dead_letter``)."""
        if self.sinks.dead_letter is not None:
            return self.sinks.dead_letter
        if self.source.uri.startswith("kafka://"):
            servers, _, topics = self.source.uri.removeprefix("kafka://").partition("/")
            topic = self.kafka.dead_letter_topic or topics.split(",")[0] + ".dlq"
            return f"kafka://{servers}/{topic}"
        return ".streamseg/dead-letter.jsonl"

    def resolved_source(self) -> tuple[str, CsvMapping | None]:
        """The source path/URI with the ``sample:cdnow`` alias resolved."""
        if self.source.uri == SAMPLE_URI:
            return str(SAMPLE_PATH), self.source.csv or SAMPLE_CSV
        return self.source.uri, self.source.csv


# The YAML file's content for the Settings being built (pydantic-settings calls the
# sources without arguments, so the file travels in a context variable).
_yaml_data: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "streamseg_yaml", default=None
)


class _YamlSource(PydanticBaseSettingsSource):
    """Feeds the parsed YAML file to pydantic-settings as the lowest-priority source."""

    def __init__(self, settings_cls: type[BaseSettings], data: dict[str, Any]) -> None:
        super().__init__(settings_cls)
        self._data = data

    def get_field_value(self, field: Any, field_name: str) -> tuple[Any, str, bool]:
        return self._data.get(field_name), field_name, False

    def __call__(self) -> dict[str, Any]:
        return dict(self._data)


class ConfigError(ValueError):
    """Invalid configuration, with every offending field named."""


def deep_merge(base: dict[str, Any], extra: dict[str, Any]) -> dict[str, Any]:
    """``base`` with ``extra`` merged in, section by section (neither is modified).

    >>> deep_merge({"store": {"uri": "memory://", "redis_prefix": "s"}},
    ...            {"store": {"uri": "sqlite:///s.db"}, "model": {"kind": "river-kmeans"}})
    {'store': {'uri': 'sqlite:///s.db', 'redis_prefix': 's'}, 'model': {'kind': 'river-kmeans'}}
    """
    merged = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def load_settings(
    config_file: str | Path | None = None, overrides: dict[str, Any] | None = None
) -> Settings:
    """Build :class:`Settings` from a YAML file, the environment and ``overrides``.

    ``overrides`` are nested dicts (``{"store": {"uri": "memory://"}}``), e.g. from flags;
    they are merged into the YAML values, then the environment is applied on top of the
    YAML but under the flags.

    >>> load_settings(overrides={"model": {"n_clusters": 7}}).model.n_clusters
    7
    >>> try:
    ...     load_settings(overrides={"model": {"n_clusters": 1}})
    ... except ConfigError as error:
    ...     print(error)
    invalid configuration: model.n_clusters: Input should be greater than or equal to 2
    """
    data: dict[str, Any] = {}
    if config_file is not None:
        path = Path(config_file)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as error:
            raise ConfigError(f"config file {path} is not valid YAML: {error}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping at the top level")
        data = loaded
    token = _yaml_data.set(data)
    try:
        return Settings(**(overrides or {}))
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in item['loc'])}: {item['msg']}"
            for item in error.errors(include_url=False)
        )
        raise ConfigError(f"invalid configuration: {problems}") from None
    finally:
        _yaml_data.reset(token)


def reference_table() -> str:
    """Every option as a Markdown table (``streamseg config --reference``; in the README)."""
    rows = ["| option | default | what it does |", "|---|---|---|"]

    def walk(model: BaseModel, prefix: str) -> None:
        for name, field in type(model).model_fields.items():
            value = getattr(model, name)
            if isinstance(value, BaseModel) and name != "csv":
                walk(value, f"{prefix}{name}.")
                continue
            shown = "(see below)" if isinstance(value, list) else value
            if isinstance(value, SecretStr):
                shown = "***"
            text = (field.description or "").replace("|", "\\|")
            rows.append(f"| `{prefix}{name}` | `{shown}` | {text} |")

    walk(Settings(), "")
    return "\n".join(rows)
