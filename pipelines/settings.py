"""The one settings class: defaults < TOML file < DOCROUTE_* environment < CLI flags.

The TOML file is ``$DOCROUTE_CONFIG`` or ``./docroute.toml`` when present. Unknown keys are errors in
every layer, environment included (pydantic-settings ignores unknown environment variables on its
own, so :func:`load_settings` checks them).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from docroute.extractors.layout import LayoutOptions
from docroute.extractors.ocr import OcrOptions
from docroute.extractors.vlm.base import VlmOptions
from docroute.pipelines.redact import RedactOptions
from docroute.pipelines.route import RouterOptions

ENV_PREFIX = "DOCROUTE_"
CONFIG_ENV = "DOCROUTE_CONFIG"


class Settings(BaseSettings):
    """Every setting of a run. Each stage's options are nested under its name and owned by its engine:
    ``layout`` (extractors/layout.py), ``ocr`` (extractors/ocr.py), ``router`` (pipelines/route.py),
    ``vlm`` (extractors/vlm/base.py), ``redact`` (pipelines/redact.py). Runtime state (the run id, the
    run's VLM page ledger) is not a setting: it travels in a ``RunContext`` (pipelines/context.py)."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, env_nested_delimiter="__", extra="forbid", frozen=True)

    schema_name: str = Field("invoice", description="target schema: a built-in name or module:Class")
    workers: int = Field(default_factory=lambda: os.cpu_count() or 1, ge=1,
                         description="documents in parallel; with runner 'dask' and no address, the LocalCluster's worker processes")
    runner: Literal["threads", "dask"] = Field(
        "threads", description="where document tasks run: 'threads' (local worker processes) or 'dask' (prefect-dask: "
        "a LocalCluster of `workers` processes, or the cluster at dask_address)",
    )
    dask_address: str | None = Field(None, description="runner 'dask': the scheduler to use (tcp://host:8786); "
                                     "None starts a LocalCluster for the run")
    force: bool = Field(False, description="reprocess documents already done")
    document_timeout_s: float = Field(600.0, gt=0, description="a document taking longer becomes a failed row")
    worker_memory_mb: int = Field(
        3072, ge=0, description="memory each worker process may allocate beyond what it holds after loading its "
        "engines (RLIMIT_DATA, inherited by tesseract); a document that needs more becomes a failed row. 0: no limit",
    )
    orchestrator: Literal["auto", "direct", "prefect"] = Field(
        "auto", description="what schedules the document tasks: 'prefect' (a flow run reported to a Prefect API), "
        "'direct' (a thread pool, no Prefect server), or 'auto': Prefect when PREFECT_API_URL is configured or "
        "the runner is dask, direct otherwise")
    commit_every_documents: int = Field(64, ge=1, description="commit finished documents to the Delta tables in "
                                        "batches of this many (one transaction per table, documents last)")
    commit_every_s: float = Field(30.0, gt=0, description="commit finished documents at least this often, even "
                                  "while no other document finishes")
    compact_files: int = Field(10, ge=2, description="a run compacts a table whose live data files exceed this")
    storage_options: dict[str, str] = Field(default_factory=dict, description="deltalake storage options for an "
                                            "object-store output (s3://, az://, gs://): credentials, region, endpoint; "
                                            "deltalake also reads its own AWS_*, AZURE_*, GOOGLE_* environment")
    state_dir: Path | None = Field(None, description="the run state folder (lock, manifests and commit journals, "
                                   "reports, VLM budget ledgers): default the output folder itself, or for an "
                                   "object-store output a folder under the user cache dir keyed by its URI")
    max_pages: int = Field(5000, ge=1, description="a document with more pages is a failed row (not read)")
    page_timeout_s: float = Field(
        120.0, gt=0, description="a page taking longer (reading, rendering, OCR, poppler) is a page error; the "
        "document's other pages are kept (checked between stages: see pipelines/process.py)",
    )
    max_content_stream_mb: float = Field(
        100.0, gt=0, description="a page whose content streams (and the forms it draws) inflate to more is a page "
        "error, refused before MuPDF interprets them (a content-stream bomb)",
    )
    poppler_fallback: bool = Field(True, description="read a page that MuPDF fails on, or draws blank in a "
                                   "damaged PDF, with poppler (pdftoppm) and OCR")
    poppler_timeout_s: float = Field(60.0, gt=0, description="one poppler call (pdfinfo, pdftoppm) taking longer "
                                     "is killed; it runs within page_timeout_s too")
    password_file: Path | None = Field(
        None, description="file of passwords, one per line, tried on encrypted PDFs (only the path is recorded)"
    )
    layout: LayoutOptions = LayoutOptions()
    ocr: OcrOptions = OcrOptions()
    router: RouterOptions = RouterOptions()
    vlm: VlmOptions = VlmOptions()
    redact: RedactOptions = RedactOptions()

    @model_validator(mode="before")
    @classmethod
    def _short_names(cls, data: Any) -> Any:
        """The short names (CLI flags, ``DOCROUTE_VLM_MODEL``) into their stage's options."""
        if not isinstance(data, dict):
            return data
        data = dict(data)
        for short, (section, key) in SHORT_NAMES.items():
            if short in data and not (short == "redact" and isinstance(data[short], dict | BaseModel)):
                value = data.pop(short)
                nested = data.get(section) or {}
                nested = nested.model_dump(exclude_unset=True) if isinstance(nested, BaseModel) else dict(nested)
                data[section] = {key: value, **nested}  # the nested name wins over the short one
        return data

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
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings, _ShortEnvSource(settings_cls)]
        toml = config_file()
        if toml is not None:
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=toml))
        return tuple(sources)


class SettingsError(ValueError):
    pass


# Short names accepted beside the nested ones: as keyword arguments (CLI flags), in the TOML file and,
# for the VLM pair the README shows, in the environment (DOCROUTE_VLM_MODEL, DOCROUTE_VLM_BACKEND).
SHORT_NAMES = {
    "parser": ("layout", "parser"), "layout_model": ("layout", "model"),
    "ocr_languages": ("ocr", "languages"), "ocr_timeout_s": ("ocr", "timeout_s"),
    "vlm_backend": ("vlm", "backend"), "vlm_model": ("vlm", "model"),
    "redact": ("redact", "kinds"), "redact_phone_regions": ("redact", "phone_regions"),
}
SHORT_ENV = ("vlm_backend", "vlm_model")


class _ShortEnvSource(PydanticBaseSettingsSource):
    """``DOCROUTE_VLM_MODEL`` / ``DOCROUTE_VLM_BACKEND``: read as ``vlm.model`` / ``vlm.backend``."""

    def get_field_value(self, field, field_name):  # the whole source is read by __call__
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        found = {name: os.environ[ENV_PREFIX + name.upper()] for name in SHORT_ENV
                 if ENV_PREFIX + name.upper() in os.environ}
        return {"vlm": {SHORT_NAMES[name][1]: value for name, value in found.items()}} if found else {}


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
    known = {name.upper() for name in Settings.model_fields} | {name.upper() for name in SHORT_ENV}
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
