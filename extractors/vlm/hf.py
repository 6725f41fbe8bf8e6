"""The ``transformers`` backend: a local VLM folder, schema-constrained JSON with xgrammar, per-field
confidence from the model's own token log-probabilities.

- Loading (:mod:`.hf_load`): the model and its processor from a local folder, and the xgrammar compiler.
- Decoding (:mod:`.hf_decode`): greedy, batched (left padding), constrained by the xgrammar grammar of
  the generation schema (``structured.generation_schema``), which this backend compiles once per
  (model, schema); the confidence processor and the loop and deadline guards.
- Here: requests become jobs in batches of ``batch_size``, with the retries, and results. At
  ``max_new_tokens`` a constrained run stops with a JSON prefix and no stop token (status ``truncated``;
  retried once with twice the tokens); a repetition loop or a token the grammar rejected is ``invalid``;
  past the per-call deadline, ``timeout``; on GPU out-of-memory the batch is retried one request at a
  time at a quarter of the pixel budget, then reported ``failed``.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import torch

from docroute.extractors.vlm.base import VlmOptions, VlmRequest, VlmResult
from docroute.extractors.vlm.hf_decode import Generation, Job, decode
from docroute.extractors.vlm.hf_load import LoadedVlm, load
from docroute.extractors.vlm.structured import (
    build_prompt,
    field_confidence,
    generation_schema,
    parse_and_validate,
    schema_key,
)

log = logging.getLogger(__name__)

OOM_PIXEL_FACTOR = 4  # the retry after out-of-memory uses a quarter of the pixels (half of each side)
TRUNCATION_TOKEN_FACTOR = 2  # the retry after truncation gets twice the tokens


class TransformersVlm:
    """Local model folder (``DOCROUTE_VLM_MODEL``) through transformers, constrained by xgrammar."""

    name = "transformers"

    def __init__(self, options: VlmOptions, loaded: LoadedVlm | None = None):
        if not options.model and loaded is None:
            raise ValueError("the transformers VLM backend needs a local model folder: set DOCROUTE_VLM_MODEL=/path")
        self.options = options
        self.vlm = loaded or load(options.model, options.device, options.dtype)  # type: ignore[arg-type]
        self._grammars: dict[str, Any] = {}
        self.compile_count = 0
        self._lock = threading.RLock()

    @property
    def model_name(self) -> str:
        return self.vlm.name

    # -- grammar cache: one compile per (model, schema) -----------------------------------------
    def grammar(self, gen_schema: dict):
        key = schema_key(gen_schema)
        if key not in self._grammars:
            self._grammars[key] = self.vlm.compiler.compile_json_schema(  # property order kept
                json.dumps(gen_schema), any_whitespace=False, strict_mode=True)
            self.compile_count += 1
        return self._grammars[key]

    # -- public API ------------------------------------------------------------------------------
    def extract(self, images, schema, prompt: str) -> VlmResult:
        return self.extract_batch([VlmRequest(images=tuple(images), schema=schema, prompt=prompt)])[0]

    def extract_batch(self, requests: Sequence[VlmRequest]) -> list[VlmResult]:
        o = self.options
        jobs = [Job(tuple(r.images), generation_schema(r.schema, o.max_string_chars, o.max_list_items),
                    r.prompt or build_prompt(r.schema, n_images=len(r.images))) for r in requests]
        gens, attempts = self.generate_jobs(jobs)
        return [self._result(r.schema, g, a) for r, g, a in zip(requests, gens, attempts, strict=True)]

    def generate_jobs(
        self, jobs: Sequence[Job], max_new_tokens: int | None = None
    ) -> tuple[list[Generation | str], list[int]]:
        """Decode every job (batches of ``batch_size``) with the truncation and out-of-memory retries.

        Returns one Generation per job (or an error string where it failed) and the attempts made.
        """
        budget = max_new_tokens or self.options.max_new_tokens
        out: list[Generation | str] = [""] * len(jobs)
        attempts = [0] * len(jobs)
        size = max(1, self.options.batch_size)

        def run(idx: list[int], tokens: int) -> None:
            for start in range(0, len(idx), size):
                part = idx[start:start + size]
                for i, g in zip(part, self._guarded([jobs[i] for i in part], tokens), strict=True):
                    out[i] = g
                    attempts[i] += g.attempts if isinstance(g, Generation) else 2  # 2: after out of memory

        run(list(range(len(jobs))), budget)
        run([i for i, g in enumerate(out) if isinstance(g, Generation) and g.finish == "length"],
            budget * TRUNCATION_TOKEN_FACTOR)
        return out, attempts

    def generate_raw(self, job: Job, max_new_tokens: int) -> Generation | str:
        """One job, no truncation retry (the OpenAI-compatible server answers with finish_reason)."""
        return self._guarded([job], max_new_tokens)[0]

    # -- internals ---------------------------------------------------------------------------------
    def _guarded(self, jobs: list[Job], max_new_tokens: int) -> list[Generation | str]:
        """A batch; after out-of-memory, each job alone at a smaller pixel budget; then an error."""
        o = self.options
        try:
            return self._generate(jobs, max_new_tokens, o.min_pixels, o.max_pixels)
        except torch.cuda.OutOfMemoryError:
            log.warning("VLM out of memory on a batch of %d; retrying one by one at 1/%d of the pixels",
                        len(jobs), OOM_PIXEL_FACTOR)
        self._free()
        small = max(self.vlm.factor ** 2, o.max_pixels // OOM_PIXEL_FACTOR)
        out: list[Generation | str] = []
        for job in jobs:
            try:
                out.extend(replace(g, attempts=2) for g in self._generate([job], max_new_tokens, min(o.min_pixels, small), small))
            except torch.cuda.OutOfMemoryError as exc:
                self._free()
                out.append(f"out of memory, also at {small} pixels per image: {exc}".splitlines()[0])
        return out

    def _free(self) -> None:
        if self.vlm.device.type == "cuda":
            torch.cuda.empty_cache()

    def _generate(self, jobs: list[Job], max_new_tokens: int, min_pixels: int, max_pixels: int) -> list[Generation]:
        o = self.options
        with self._lock:
            grammars = [self.grammar(j.gen_schema) for j in jobs]
            return decode(self.vlm, jobs, grammars, max_new_tokens, min_pixels, max_pixels,
                          o.timeout_s, o.loop_window, o.loop_max_period)

    def _result(self, schema, gen: Generation | str, attempts: int) -> VlmResult:
        name = self.model_name
        if isinstance(gen, str):
            return VlmResult(status="failed", model=name, error=gen, attempts=attempts)
        common = dict(raw_text=gen.text, prompt_tokens=gen.prompt_tokens, output_tokens=len(gen.token_ids),
                      latency_ms=round(gen.latency_ms, 2), model=name, attempts=attempts, image_pixels=gen.image_pixels)
        body_lps = gen.logprobs[:len(gen.token_bytes)]
        conf, stats = field_confidence(gen.text, gen.token_bytes, body_lps)
        if gen.finish == "length":
            return VlmResult(status="truncated", error=f"no stop token after {len(gen.token_ids)} tokens "
                             "(max_new_tokens reached twice): the JSON is cut off", **common)
        if gen.finish == "timeout":
            return VlmResult(status="timeout", error=f"generation passed {self.options.timeout_s:g} s", **common)
        if gen.finish in ("loop", "rejected"):
            what = "a repetition loop" if gen.finish == "loop" else "a token the grammar rejected"
            return VlmResult(status="invalid", error=f"stopped on {what} after {len(gen.token_ids)} tokens", **common)
        data, errors = parse_and_validate(gen.text, schema)
        if data is None:
            return VlmResult(status="invalid", error="; ".join(errors), **common)
        bad = {e.split(":", 1)[0].split(".", 1)[0] for e in errors}
        return VlmResult(
            status="invalid" if errors else "ok", data=data,
            field_confidence={k: c for k, c in conf.items() if k in data and k not in bad},
            field_stats={k: s for k, s in stats.items() if k in data and k not in bad},
            error="; ".join(errors) or None, **common,
        )

