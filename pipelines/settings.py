"""The one settings class: defaults < TOML file < DOCROUTE_* environment < CLI flags.

The TOML file is ``$DOCROUTE_CONFIG`` or ``./docroute.toml`` when present. Unknown keys are errors in
every layer, environment included (pydantic-settings ignores unknown environment variables on its
own, so :func:`load_settings` checks them).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

ENV_PREFIX = "DOCROUTE_"
CONFIG_ENV = "DOCROUTE_CONFIG"


class RouterSettings(BaseModel):
    """Thresholds of the routing policy (see pipelines/route.py)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    ocr_mean_conf_min: float = Field(0.66, ge=0, le=1, description="scan pages under this mean word confidence go to the VLM")
    ocr_p10_conf_min: float = Field(0.20, ge=0, le=1, description="...or under this 10th-percentile word confidence")
    ocr_min_words: int = Field(5, ge=0, description="a scan with ink but fewer OCR words than this is unreadable")
    ocr_unread_print_max: float = Field(0.35, ge=0, le=1, description="...or with more than this share of its text-sized ink in print OCR left unread")
    ink_annotations_min: int = Field(1, ge=1, description="ink annotations (with no text under them) that make a region handwriting")
    handwriting_score_min: float = Field(0.5, ge=0, le=1, description="pen strokes, signature images and unread irregular ink above this score are handwriting")
    table_header_spans_min: int = Field(1, ge=1, description="spanning (grouping) header cells that make a table complex")
    table_spans_min: int = Field(3, ge=1, description="spanning cells anywhere that make a table complex")
    chart_score_min: float = Field(0.6, ge=0, le=1, description="chart score (vector axes or raster figure) above which a region is a chart")
    page_share_for_whole_page: float = Field(0.5, ge=0, le=1, description="send the whole page, not crops, when routed regions cover more than this share of it")
    max_vlm_pages_per_document: int | None = Field(None, ge=0, description="VLM pages per document at most; the most valuable pages go first (None: no cap)")
    max_vlm_pages_per_run: int | None = Field(None, ge=0, description="VLM pages per run at most, granted to documents as they finish routing (None: no cap)")
    run_budget_file: Path | None = Field(None, description="set by the flow, not by hand: the run's VLM page ledger (pipelines/budget.py)")


class VlmSettings(BaseModel):
    """Options of the VLM backends (extractors/vlm); the backend and model are ``vlm_backend``/``vlm_model``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    min_pixels: int = Field(256 * 28 * 28, ge=1, description="smallest image area sent (pixels); smaller images are upscaled")
    max_pixels: int = Field(1280 * 28 * 28, ge=1, description="largest image area sent (pixels): image tokens are the cost")
    max_new_tokens: int = Field(2048, ge=8, description="output budget per call; a cut-off answer is retried once with twice this")
    timeout_s: float = Field(120.0, gt=0, description="per call (a transformers batch, or one server request)")
    batch_size: int = Field(4, ge=1, description="requests decoded together by the transformers backend")
    max_pages: int = Field(4, ge=1, description="pages of one document sent together when its schema spans pages")
    max_string_chars: int = Field(300, ge=1, description="longest string value the grammar admits")
    max_list_items: int = Field(1000, ge=0, description="most items of a list (line items, cells) the grammar admits (0: no bound)")
    loop_window: int = Field(64, ge=0, description="stop a sequence whose last N tokens repeat with a short period (0: off)")
    device: str = Field("auto", description="transformers backend: auto (cuda when available), cpu, cuda, cuda:1 ...")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field("auto", description="auto: bfloat16 on cuda, float32 on CPU")
    server_url: str = Field("http://127.0.0.1:8000/v1", description="openai backend: the server's base URL")
    api_key_env: str = Field("VLLM_API_KEY", description="openai backend: environment variable holding the API key")
    concurrency: int = Field(8, ge=1, description="openai backend: requests in flight per worker process")
    retries: int = Field(3, ge=0, description="openai backend: retries of connection errors, 429 and 5xx, with backoff")


PiiKind = Literal["email", "phone", "iban", "card", "ssn"]


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True)

    schema_name: str = Field("invoice", description="target schema: a built-in name or module:Class")
    parser: Literal["pymupdf", "unstructured"] = "pymupdf"
    layout_model: Literal["off", "auto", "on"] = Field(
        "auto", description="PyMuPDF's offline layout model: 'auto' runs it only on pages with large pictures "
        "or heavy vector graphics and no ruled table (it costs 0.3-0.9 s a page)",
    )
    workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1,
                         description="documents in parallel; with runner 'dask' and no address, the LocalCluster's worker processes")
    runner: Literal["threads", "dask"] = Field(
        "threads", description="where document tasks run: 'threads' (local worker processes) or 'dask' (prefect-dask: "
        "a LocalCluster of `workers` processes, or the cluster at dask_address)",
    )
    dask_address: str | None = Field(None, description="runner 'dask': the scheduler to use (tcp://host:8786); "
                                     "None starts a LocalCluster for the run")
    force: bool = Field(False, description="reprocess documents already done")
    ocr_languages: tuple[str, ...] = ("eng",)
    ocr_timeout_s: float = Field(120.0, gt=0)
    document_timeout_s: float = Field(600.0, gt=0, description="a document taking longer becomes a failed row")
    worker_memory_mb: int = Field(
        3072, ge=0, description="memory each worker process may allocate beyond what it holds after loading its "
        "engines (RLIMIT_DATA, inherited by tesseract); a document that needs more becomes a failed row. 0: no limit",
    )
    max_pages: int = Field(5000, ge=1, description="a document with more pages is a failed row (not read)")
    password_file: Path | None = Field(
        None, description="file of passwords, one per line, tried on encrypted PDFs (only the path is recorded)"
    )
    vlm_backend: Literal["none", "transformers", "openai"] = Field(
        "none", description="'none': routed pages keep their layout result; 'transformers': a local model folder; "
        "'openai': an OpenAI-compatible server (vLLM, SGLang) at vlm.server_url",
    )
    vlm_model: str | None = Field(None, description="transformers: local folder of the VLM (never a hub); "
                                  "openai: the served model name (default: the server's first model)")
    vlm: VlmSettings = VlmSettings()
    redact: Annotated[tuple[PiiKind, ...], NoDecode] = Field(
        (), description="PII kinds to redact from text, elements and extracted values before anything is "
        "written: email, phone, iban, card, ssn (a comma-separated string is accepted)",
    )
    redact_phone_regions: Annotated[tuple[str, ...], NoDecode] = Field(
        ("US", "GB", "DE", "FR"), description="regions whose national phone formats are recognised "
        "(ISO 3166 codes); international +NN numbers are recognised whatever the region",
    )
    router: RouterSettings = RouterSettings()

    @field_validator("redact", "redact_phone_regions", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):  # "email,phone" (CLI, environment) or a JSON list
            if value.lstrip().startswith("["):
                return tuple(json.loads(value))
            return tuple(v.strip() for v in value.split(",") if v.strip())
        return value

    @model_validator(mode="after")
    def _address_needs_dask(self) -> Settings:
        if self.dask_address and self.runner != "dask":
            raise ValueError("dask_address is set but runner is 'threads': use runner 'dask' (--runner dask)")
        return self

    def passwords(self) -> tuple[str, ...]:
        """The passwords of ``password_file``, one per line (read when a document needs them)."""
        if self.password_file is None:
            return ()
        lines = self.password_file.read_text(encoding="utf-8").splitlines()
        return tuple(line.rstrip("\r") for line in lines if line.strip())

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
