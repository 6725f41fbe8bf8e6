"""The ``openai`` backend: an OpenAI-compatible chat-completions server (vLLM, SGLang) serving the
VLM at scale.

Each request sends the images as PNG data URLs and asks for structured output with
``response_format: {"type": "json_schema", ...}``, the field current vLLM reads (it maps it to its
structured-outputs engine; the old ``guided_json`` extra field is ignored by current vLLM, which then
returns unconstrained text without an error), so the reply is parsed and validated here anyway.
``logprobs: true`` asks for the chosen tokens' log-probabilities, from which each field's confidence
is computed as in the transformers backend; a server that returns none gives every field
:data:`UNKNOWN_CONFIDENCE` (under the review threshold, so the values are flagged).

At most ``concurrency`` requests are in flight per process; connection errors, 429 and 5xx answers are
retried ``retries`` times with exponential backoff (``backoff_s`` x 2^n, with jitter); every request
has a ``timeout_s``. A reply cut at ``max_tokens`` (finish_reason ``length``) is retried once with
twice the tokens, then reported ``truncated``.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from docroute.extractors.vlm.base import VlmOptions, VlmRequest, VlmResult
from docroute.extractors.vlm.images import fit_pixels, png_data_url
from docroute.extractors.vlm.structured import (
    build_prompt,
    field_confidence,
    generation_schema,
    parse_and_validate,
)

UNKNOWN_CONFIDENCE = 0.5
DEFAULT_SERVER_URL = "http://127.0.0.1:8000/v1"  # vLLM's default, when backend "openai" names no server_url
IMAGE_FACTOR = 28  # Qwen2.5-VL's patch x merge; the server resizes again to its own model's factor
RETRY_STATUS = {408, 429, 500, 502, 503, 504}


class ServerError(RuntimeError):
    pass


class OpenAIServerVlm:
    name = "openai"

    def __init__(self, options: VlmOptions, client: httpx.Client | None = None):
        self.options = options
        self.url = (options.server_url or DEFAULT_SERVER_URL).rstrip("/")
        timeout = httpx.Timeout(options.timeout_s, connect=min(10.0, options.timeout_s))
        headers = {}
        key = os.environ.get(options.api_key_env) if options.api_key_env else None
        if key:
            headers["Authorization"] = f"Bearer {key}"
        limits = httpx.Limits(max_connections=max(1, options.concurrency))
        self._client = client or httpx.Client(timeout=timeout, headers=headers, limits=limits)
        self._slots = threading.BoundedSemaphore(max(1, options.concurrency))
        self._model = options.model
        self._model_lock = threading.Lock()

    @property
    def model_name(self) -> str:
        with self._model_lock:
            if not self._model:
                body = self._send("GET", "/models")
                models = [m.get("id") for m in body.get("data", []) if m.get("id")]
                if not models:
                    raise ServerError(f"{self.url}/models lists no model; set DOCROUTE_VLM_MODEL to the served name")
                self._model = models[0]
            return self._model

    def extract(self, images, schema, prompt: str) -> VlmResult:
        return self.extract_batch([VlmRequest(images=tuple(images), schema=schema, prompt=prompt)])[0]

    def extract_batch(self, requests: Sequence[VlmRequest]) -> list[VlmResult]:
        if len(requests) <= 1:
            return [self._one(r) for r in requests]
        with ThreadPoolExecutor(max_workers=min(len(requests), max(1, self.options.concurrency))) as pool:
            return list(pool.map(self._one, requests))

    # -- HTTP -----------------------------------------------------------------------------------------
    def _send(self, method: str, path: str, body: dict | None = None) -> dict[str, Any]:
        """One call with retries and backoff; raises ServerError or httpx.TimeoutException."""
        o = self.options
        last = ""
        for attempt in range(o.retries + 1):
            if attempt:
                time.sleep(o.backoff_s * 2 ** (attempt - 1) * (1 + random.random() / 2))
            try:
                with self._slots:
                    resp = self._client.request(method, self.url + path, json=body)
            except httpx.TimeoutException:
                raise
            except httpx.TransportError as exc:
                last = f"{type(exc).__name__}: {exc}"
                continue
            if resp.status_code in RETRY_STATUS:
                last = f"HTTP {resp.status_code}: {resp.text[:300]}"
                continue
            if resp.status_code >= 400:
                raise ServerError(f"HTTP {resp.status_code} from {self.url}{path}: {resp.text[:500]}")
            try:
                return resp.json()
            except ValueError as exc:
                raise ServerError(f"the server's reply is not JSON: {resp.text[:300]}") from exc
        raise ServerError(f"{self.url}{path} failed after {o.retries + 1} tries: {last}")

    def _body(self, req: VlmRequest, gen_schema: dict, images: list, max_tokens: int) -> dict:
        content: list[dict] = [{"type": "image_url", "image_url": {"url": png_data_url(im)}} for im in images]
        content.append({"type": "text", "text": req.prompt or build_prompt(req.schema, n_images=len(images))})
        return {
            "model": self.model_name,
            "messages": [{"role": "user", "content": content}],
            "response_format": {"type": "json_schema", "json_schema": {
                "name": getattr(req.schema, "schema_name", req.schema.__name__), "schema": gen_schema, "strict": True}},
            "max_tokens": max_tokens,
            "temperature": 0.0,
            "logprobs": True,
        }

    # -- one request ----------------------------------------------------------------------------------
    def _one(self, req: VlmRequest) -> VlmResult:
        o = self.options
        t0 = time.perf_counter()
        gen_schema = generation_schema(req.schema, o.max_string_chars, o.max_list_items)
        images = [fit_pixels(im, o.min_pixels, o.max_pixels, IMAGE_FACTOR) for im in req.images]
        pixels = sum(i.width * i.height for i in images)
        attempts, reply, choice = 0, {}, {}
        try:
            for max_tokens in (o.max_new_tokens, o.max_new_tokens * 2):
                attempts += 1
                reply = self._send("POST", "/chat/completions", self._body(req, gen_schema, images, max_tokens))
                choice = (reply.get("choices") or [{}])[0]
                if choice.get("finish_reason") != "length" or str(choice.get("stop_reason", "")).startswith("docroute:"):
                    break
        except httpx.TimeoutException as exc:
            return VlmResult(status="timeout", model=self._model, attempts=max(1, attempts), image_pixels=pixels,
                             latency_ms=_ms(t0), error=f"no reply within {o.timeout_s:g} s: {type(exc).__name__}")
        except (ServerError, httpx.HTTPError) as exc:
            return VlmResult(status="failed", model=self._model, attempts=max(1, attempts), image_pixels=pixels,
                             latency_ms=_ms(t0), error=str(exc))
        text = (choice.get("message") or {}).get("content") or ""
        usage = reply.get("usage") or {}
        common = dict(raw_text=text, prompt_tokens=int(usage.get("prompt_tokens", 0)),
                      output_tokens=int(usage.get("completion_tokens", 0)), latency_ms=_ms(t0),
                      model=reply.get("model") or self._model, attempts=attempts, image_pixels=pixels)
        finish, why = choice.get("finish_reason"), str(choice.get("stop_reason") or "")
        if why == "docroute:timeout":
            return VlmResult(status="timeout", error="the server's generation deadline passed", **common)
        if why in ("docroute:loop", "docroute:rejected"):
            return VlmResult(status="invalid", error=f"the server stopped on {why.split(':')[1]}", **common)
        if finish == "length":
            return VlmResult(status="truncated", error="finish_reason length twice: the JSON is cut off", **common)
        data, errors = parse_and_validate(text, req.schema)
        if data is None:
            return VlmResult(status="invalid", error="; ".join(errors), **common)
        conf, stats = _confidence(text, choice.get("logprobs"), data)
        bad = {e.split(":", 1)[0].split(".", 1)[0] for e in errors}
        return VlmResult(
            status="invalid" if errors else "ok", data=data,
            field_confidence={k: c for k, c in conf.items() if k not in bad},
            field_stats={k: s for k, s in stats.items() if k not in bad},
            error="; ".join(errors) or None, **common,
        )


def _ms(t0: float) -> float:
    return round((time.perf_counter() - t0) * 1000, 2)


def _confidence(text: str, logprobs: dict | None, data: dict) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    entries = (logprobs or {}).get("content") or []
    if not entries:
        return {k: UNKNOWN_CONFIDENCE for k in data}, {}
    token_bytes = [bytes(e["bytes"]) if e.get("bytes") is not None else str(e.get("token", "")).encode("utf-8")
                   for e in entries]
    lps = [max(float(e.get("logprob", 0.0)), -1e4) for e in entries]
    if b"".join(token_bytes).decode("utf-8", errors="replace") != text:
        return {k: UNKNOWN_CONFIDENCE for k in data}, {}
    conf, stats = field_confidence(text, token_bytes, lps)
    return {k: conf.get(k, UNKNOWN_CONFIDENCE) for k in data}, stats
