"""The VLM stage's protocol and its default backend.

A backend takes page images and a target schema and returns a validated object with per-field
confidence. The default backend ``none`` runs no model: routed pages keep their layout result with
vlm_status ``unavailable`` and the extraction is flagged for review (reason ``vlm_unavailable``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from docroute.schemas import VlmStatus

if TYPE_CHECKING:
    from PIL import Image
    from pydantic import BaseModel


@dataclass(frozen=True)
class VlmResult:
    status: VlmStatus
    data: dict[str, Any] | None = None
    raw_text: str = ""
    field_confidence: dict[str, float] = field(default_factory=dict)
    prompt_tokens: int = 0
    output_tokens: int = 0
    latency_ms: float = 0.0
    model: str | None = None
    error: str | None = None


class VlmBackend(Protocol):
    name: str

    def extract(self, images: list[Image.Image], schema: type[BaseModel], prompt: str) -> VlmResult: ...


class NoVlm:
    """No model configured: every call reports ``unavailable``."""

    name = "none"

    def extract(self, images: list[Image.Image], schema: type[BaseModel], prompt: str) -> VlmResult:
        return VlmResult(status="unavailable", error="no VLM backend configured (DOCROUTE_VLM_BACKEND=none)")


def get_backend(name: str) -> VlmBackend:
    if name == "none":
        return NoVlm()
    raise ValueError(f"unknown VLM backend {name!r}; available: none")
