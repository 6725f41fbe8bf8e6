"""The VLM backend protocol, its values and options, and the default backend ``none``.

A backend takes images (pages or region crops), a pydantic target schema and a prompt, and returns a
:class:`VlmResult`: the validated object, the raw text, a confidence per field, token counts, latency
and a status (ok, truncated, invalid, timeout, failed; ``unavailable`` for the ``none`` backend).

Nothing here imports torch, transformers or xgrammar.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

from docroute.schemas import VlmStatus

if TYPE_CHECKING:
    from PIL import Image


Backend = Literal["auto", "none", "transformers", "openai"]


class VlmOptions(BaseModel):
    """The VLM stage's options, nested in Settings as ``vlm`` (``DOCROUTE_VLM__MAX_PIXELS`` ...).

    ``backend`` ``auto`` (the default) chooses itself: ``transformers`` when ``model`` names a local
    folder, ``openai`` when ``server_url`` is set, ``none`` otherwise (:meth:`resolved_backend`).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: Backend = Field("auto", description="auto: transformers for a local model folder, openai for a set "
                             "server_url, else none; 'none': routed pages keep their layout result")
    model: str | None = Field(None, description="transformers: local folder of the VLM (never a hub); "
                              "openai: the served model name (default: the server's first model)")
    min_pixels: int = Field(256 * 28 * 28, ge=1, description="smallest image area sent (pixels); smaller images are upscaled")
    max_pixels: int = Field(1280 * 28 * 28, ge=1, description="largest image area sent (pixels): image tokens are the cost")
    max_new_tokens: int = Field(2048, ge=8, description="output budget per call; a cut-off answer is retried once with twice this")
    timeout_s: float = Field(120.0, gt=0, description="per call (a transformers batch, or one server request)")
    batch_size: int = Field(4, ge=1, description="requests decoded together by the transformers backend")
    max_pages: int = Field(4, ge=1, description="pages of one document sent together when its schema spans pages")
    max_string_chars: int = Field(300, ge=1, description="longest string value the grammar admits")
    max_list_items: int = Field(1000, ge=0, description="most items of a list (line items, cells) the grammar admits (0: no bound)")
    loop_window: int = Field(64, ge=0, description="stop a sequence whose last N tokens repeat with a short period (0: off)")
    loop_max_period: int = Field(16, ge=1, description="longest period of a repetition the loop guard stops")
    device: str = Field("auto", description="transformers backend: auto (cuda when available), cpu, cuda, cuda:1 ...")
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field("auto", description="auto: bfloat16 on cuda, float32 on CPU")
    server_url: str | None = Field(None, description="openai backend: the server's base URL, e.g. http://127.0.0.1:8000/v1")
    api_key_env: str = Field("VLLM_API_KEY", description="openai backend: environment variable holding the API key")
    concurrency: int = Field(8, ge=1, description="openai backend: requests in flight per worker process")
    retries: int = Field(3, ge=0, description="openai backend: retries of connection errors, 429 and 5xx, with backoff")
    backoff_s: float = Field(0.5, ge=0, description="openai backend: first retry delay, doubled each retry")

    def resolved_backend(self) -> str:
        """The backend this run uses, with ``auto`` resolved (see the class docstring)."""
        if self.backend != "auto":
            return self.backend
        if self.model and Path(self.model).expanduser().is_dir():
            return "transformers"
        if self.server_url:
            return "openai"
        return "none"

    def why_none(self) -> str | None:
        """Why ``auto`` resolved to no VLM, in words a user can act on (None when there is one)."""
        if self.resolved_backend() != "none":
            return None
        if self.backend == "none":
            return "the VLM backend is 'none'"
        if self.model:
            return f"vlm.model {self.model!r} is not a local folder, and no vlm.server_url is set"
        return "none configured (DOCROUTE_VLM_MODEL=<model folder> or DOCROUTE_VLM__SERVER_URL=<url>)"


@dataclass(frozen=True)
class VlmRequest:
    """One call: images that go together (the pages of one document, or one region crop)."""

    images: tuple[Image.Image, ...]
    schema: type[BaseModel]
    prompt: str = ""
    tag: str = ""  # the caller's label (page numbers, element id), echoed in logs and results


@dataclass(frozen=True)
class VlmResult:
    status: VlmStatus
    data: dict[str, Any] | None = None  # validated against the schema (``schema.model_validate(data)`` passes)
    raw_text: str = ""
    field_confidence: dict[str, float] = field(default_factory=dict)  # top-level field -> [0, 1]
    prompt_tokens: int = 0
    output_tokens: int = 0
    latency_ms: float = 0.0
    model: str | None = None
    error: str | None = None
    attempts: int = 1  # calls made, retries included (truncation, out of memory, server errors)
    image_pixels: int = 0  # pixels of the images actually sent (after the budget)
    field_stats: dict[str, dict[str, float]] = field(default_factory=dict)  # per field: min_prob, n_tokens


class VlmBackend(Protocol):
    name: str

    def extract(self, images: list[Image.Image], schema: type[BaseModel], prompt: str) -> VlmResult: ...

    def extract_batch(self, requests: Sequence[VlmRequest]) -> list[VlmResult]: ...


class NoVlm:
    """No model configured: every call reports ``unavailable``."""

    name = "none"

    def extract(self, images: list[Image.Image], schema: type[BaseModel], prompt: str) -> VlmResult:
        return VlmResult(status="unavailable", error="no VLM backend configured (DOCROUTE_VLM_BACKEND=none)")

    def extract_batch(self, requests: Sequence[VlmRequest]) -> list[VlmResult]:
        return [self.extract(list(r.images), r.schema, r.prompt) for r in requests]
