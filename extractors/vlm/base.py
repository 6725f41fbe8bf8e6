"""The VLM backend protocol, its values and options, and the default backend ``none``.

A backend takes images (pages or region crops), a pydantic target schema and a prompt, and returns a
:class:`VlmResult`: the validated object, the raw text, a confidence per field, token counts, latency
and a status (ok, truncated, invalid, timeout, failed; ``unavailable`` for the ``none`` backend).

Nothing here imports torch, transformers or xgrammar.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from docroute.schemas import VlmStatus

if TYPE_CHECKING:
    from PIL import Image
    from pydantic import BaseModel


@dataclass(frozen=True)
class VlmOptions:
    """What a backend needs to know; ``pipelines/settings.VlmSettings`` documents each one."""

    model: str | None = None
    min_pixels: int = 256 * 28 * 28
    max_pixels: int = 1280 * 28 * 28
    max_new_tokens: int = 2048
    timeout_s: float = 120.0
    batch_size: int = 4
    max_string_chars: int = 300
    max_list_items: int = 1000
    loop_window: int = 64
    loop_max_period: int = 16
    device: str = "auto"
    dtype: str = "auto"
    server_url: str = "http://127.0.0.1:8000/v1"
    api_key_env: str = "VLLM_API_KEY"
    concurrency: int = 8
    retries: int = 3
    backoff_s: float = 0.5


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
