"""The one settings class: defaults < TOML file < DOCROUTE_* environment < CLI flags.

The TOML file is ``$DOCROUTE_CONFIG`` or ``./docroute.toml`` when present. Unknown keys are errors in
every layer, environment included (pydantic-settings ignores unknown environment variables on its
own, so :func:`load_settings` checks them).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

ENV_PREFIX = "DOCROUTE_"
CONFIG_ENV = "DOCROUTE_CONFIG"


class RouterSettings(BaseModel):
    """Thresholds of the routing policy (see pipelines/route.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ocr_mean_conf_min: float = Field(0.70, ge=0, le=1, description="scan pages under this mean word confidence go to the VLM")
    ocr_p10_conf_min: float = Field(0.20, ge=0, le=1, description="...or under this 10th-percentile word confidence")
    ocr_min_words: int = Field(5, ge=0, description="a scan with ink but fewer OCR words than this is unreadable")
    ink_outside_words_max: float = Field(0.45, ge=0, le=1, description="share of scan ink outside confident words above which it is handwriting")
    ink_annotations_min: int = Field(1, ge=1, description="unexplained PDF ink annotations that make a page handwriting")
    table_header_spans_min: int = Field(1, ge=1, description="spanning header cells that make a table complex")
    table_spans_min: int = Field(3, ge=1, description="spanning cells anywhere that make a table complex")
    chart_score_min: float = Field(0.6, ge=0, le=1, description="vector chart score above which a page is a chart")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True)

    schema_name: str = Field("invoice", description="target schema: a built-in name or module:Class")
    parser: Literal["pymupdf", "unstructured"] = "pymupdf"
    layout_model: Literal["off", "auto", "on"] = Field(
        "auto", description="PyMuPDF's offline layout model: 'auto' runs it only on pages with large pictures "
        "or heavy vector graphics and no ruled table (it costs 0.3-0.9 s a page)",
    )
    workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1)
    force: bool = Field(False, description="reprocess documents already done")
    ocr_languages: tuple[str, ...] = ("eng",)
    ocr_timeout_s: float = Field(120.0, gt=0)
    document_timeout_s: float = Field(600.0, gt=0, description="a document taking longer becomes a failed row")
    password_file: Path | None = Field(
        None, description="file of passwords, one per line, tried on encrypted PDFs (only the path is recorded)"
    )
    vlm_backend: Literal["none"] = Field("none", description="'none': routed pages keep their layout result")
    vlm_model: str | None = Field(None, description="local folder of the VLM weights (never a hub)")
    redact: tuple[str, ...] = Field((), description="PII kinds to redact before anything is written")
    router: RouterSettings = RouterSettings()

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        toml = config_file()
        if toml is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml))
        return tuple(sources)


class SettingsError(ValueError):
    pass


def config_file() -> Path | None:
    explicit = os.environ.get(CONFIG_ENV)
    if explicit:
        path = Path(explicit)
        if not path.is_file():
            raise SettingsError(f"{CONFIG_ENV}={explicit} does not name a file")
        return path
    local = Path("docroute.toml")
    return local if local.is_file() else None


def _check_environment(env: dict[str, str]) -> None:
    known = {name.upper() for name in Settings.model_fields}
    for key in env:
        if not key.startswith(ENV_PREFIX) or key == CONFIG_ENV:
            continue
        name = key[len(ENV_PREFIX):].split("__", 1)[0]
        if name not in known:
            raise SettingsError(
                f"unknown setting {key}; known: " + ", ".join(sorted(ENV_PREFIX + k for k in known))
            )


def load_settings(**overrides: Any) -> Settings:
    """Settings from every layer; ``overrides`` (CLI flags) that are None are left out."""
    _check_environment(dict(os.environ))
    return Settings(**{k: v for k, v in overrides.items() if v is not None})
