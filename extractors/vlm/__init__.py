"""VLM backends: ``none`` (default), ``transformers`` (a local model folder) and ``openai`` (an
OpenAI-compatible server such as vLLM or SGLang).

Importing this package never imports torch, transformers or xgrammar: the ``transformers`` backend
loads them when it is first asked for. Backends are cached per process and per options, so a worker
loads a model once.
"""

from __future__ import annotations

import threading

from docroute.extractors.vlm.base import NoVlm, VlmBackend, VlmOptions, VlmRequest, VlmResult

__all__ = ["BACKENDS", "NoVlm", "VlmBackend", "VlmOptions", "VlmRequest", "VlmResult", "get_backend"]

BACKENDS = ("none", "transformers", "openai")
_CACHE: dict[tuple[str, VlmOptions], VlmBackend] = {}
_LOCK = threading.Lock()


def get_backend(name: str, options: VlmOptions | None = None) -> VlmBackend:
    """The backend called ``name``, built once per process for the same options."""
    if name == "none":
        return NoVlm()
    if name not in BACKENDS:
        raise ValueError(f"unknown VLM backend {name!r}; available: {', '.join(BACKENDS)}")
    options = options or VlmOptions()
    key = (name, options)
    with _LOCK:
        if key not in _CACHE:
            if name == "transformers":
                from docroute.extractors.vlm.hf import TransformersVlm

                _CACHE[key] = TransformersVlm(options)
            else:
                from docroute.extractors.vlm.server import OpenAIServerVlm

                _CACHE[key] = OpenAIServerVlm(options)
        return _CACHE[key]
