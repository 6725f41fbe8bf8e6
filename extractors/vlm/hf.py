"""The ``transformers`` backend: a local VLM folder, schema-constrained JSON with xgrammar, per-field
confidence from the model's own token log-probabilities.

- Loading: ``AutoModelForImageTextToText`` and the model's processor from a local folder only
  (``local_files_only``; never a hub), on cuda in bfloat16 when available, else CPU in float32. Tested
  with the Qwen2.5-VL and Qwen3-VL families. In transformers 5 the Qwen-VL processors need torchvision
  for their video processor; where torchvision is absent (a CPU torch, beside which PyPI's CUDA-linked
  torchvision fails at import) the loader builds the same processor class without the video part,
  around the PIL image processor.
- Decoding: greedy, batched (left padding), constrained by the xgrammar grammar of the generation
  schema (``structured.generation_schema``), compiled once per (model, schema). The grammar is sized by
  the model's output embedding, not ``len(tokenizer)``: real Qwen vocabularies are padded.
- Confidence: a logits processor reads the raw logits (log-softmax) *before* applying the grammar's
  bitmask, which xgrammar applies in place, and keeps the chosen tokens' log-probabilities.
- Guards: at ``max_new_tokens`` a constrained run stops with a JSON prefix and no stop token, so the
  last token is checked (status ``truncated``; retried once with twice the tokens); a repetition loop
  (the last ``loop_window`` tokens periodic with a period up to ``loop_max_period``) stops that
  sequence (status ``invalid``); a per-call deadline (``timeout``); on GPU out-of-memory the batch is
  retried one request at a time at a quarter of the pixel budget, then reported ``failed``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import torch
import xgrammar as xgr
from transformers import LogitsProcessor, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

from docroute.extractors.vlm.base import VlmOptions, VlmRequest, VlmResult
from docroute.extractors.vlm.structured import (
    build_prompt,
    field_confidence,
    fit_pixels,
    generation_schema,
    parse_and_validate,
    schema_key,
)

log = logging.getLogger(__name__)

OOM_PIXEL_FACTOR = 4  # the retry after out-of-memory uses a quarter of the pixels (half of each side)
TRUNCATION_TOKEN_FACTOR = 2  # the retry after truncation gets twice the tokens


# ------------------------------------------------------------------------------------------- loading

@dataclass
class LoadedVlm:
    model: Any
    processor: Any
    tokenizer: Any
    name: str
    device: torch.device
    dtype: torch.dtype
    factor: int  # image side multiple: patch size x merge size
    vocab_size: int  # rows of the output embedding (>= len(tokenizer))
    stop_ids: list[int]
    tokenizer_info: Any
    compiler: Any
    image_only_processor: bool


def _chat_template(path: Path, tokenizer) -> str | None:
    if (path / "chat_template.jinja").is_file():
        return (path / "chat_template.jinja").read_text(encoding="utf-8")
    if (path / "chat_template.json").is_file():
        return json.loads((path / "chat_template.json").read_text(encoding="utf-8")).get("chat_template")
    return getattr(tokenizer, "chat_template", None)


def _image_only_processor(path: Path, config):
    """The model's own processor class, built without its video processor (which needs torchvision)."""
    import transformers
    from transformers import AutoImageProcessor, AutoTokenizer
    from transformers.models.auto.processing_auto import PROCESSOR_MAPPING_NAMES

    name = None
    if (path / "processor_config.json").is_file():
        name = json.loads((path / "processor_config.json").read_text()).get("processor_class")
    name = name or PROCESSOR_MAPPING_NAMES.get(config.model_type)
    if not name or not hasattr(transformers, name):
        raise ValueError(f"no processor class known for model type {config.model_type!r} in {path}")
    base = getattr(transformers, name)

    class ImageOnlyProcessor(base):  # type: ignore[misc, valid-type]
        @classmethod
        def get_attributes(cls):
            return [a for a in super().get_attributes() if a != "video_processor"]

    ImageOnlyProcessor.__name__ = ImageOnlyProcessor.__qualname__ = f"{name}ImageOnly"
    tokenizer = AutoTokenizer.from_pretrained(path, local_files_only=True)
    try:
        image_processor = AutoImageProcessor.from_pretrained(path, local_files_only=True, backend="pil")
    except TypeError:  # transformers 4.x: no backend argument; the slow image processor is PIL-based
        image_processor = AutoImageProcessor.from_pretrained(path, local_files_only=True, use_fast=False)
    return ImageOnlyProcessor(image_processor=image_processor, tokenizer=tokenizer,
                              chat_template=_chat_template(path, tokenizer))


def _device_dtype(device: str, dtype: str) -> tuple[torch.device, torch.dtype]:
    dev = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device))
    if dtype == "auto":
        dt = torch.bfloat16 if dev.type == "cuda" and torch.cuda.is_bf16_supported() else torch.float32
    else:
        dt = getattr(torch, dtype)
    return dev, dt


def load(path: str | os.PathLike, device: str = "auto", dtype: str = "auto") -> LoadedVlm:
    """Load a VLM folder (weights, config, processor) for constrained generation. Local files only."""
    from transformers import AutoConfig, AutoModelForImageTextToText, AutoProcessor
    from transformers.utils import is_torchvision_available

    folder = Path(path).expanduser()
    if not (folder / "config.json").is_file():
        raise FileNotFoundError(
            f"DOCROUTE_VLM_MODEL={path} is not a model folder (no config.json); download the model first, e.g. "
            "`hf download Qwen/Qwen2.5-VL-3B-Instruct --local-dir models/qwen2.5-vl-3b` (models are never "
            "fetched at run time)"
        )
    config = AutoConfig.from_pretrained(folder, local_files_only=True)
    dev, dt = _device_dtype(device, dtype)
    image_only = not is_torchvision_available()
    processor = None
    if not image_only:
        try:
            processor = AutoProcessor.from_pretrained(folder, local_files_only=True)
        except (ImportError, OSError, ValueError) as exc:  # e.g. a folder without a video processor config
            log.warning("AutoProcessor failed for %s (%s); using the image-only processor", folder, exc)
            image_only = True
    if processor is None:
        processor = _image_only_processor(folder, config)
    tokenizer = processor.tokenizer
    tokenizer.padding_side = "left"
    model = AutoModelForImageTextToText.from_pretrained(folder, local_files_only=True, dtype=dt)
    model = model.to(dev).eval()
    ip = processor.image_processor
    factor = int(getattr(ip, "patch_size", 14)) * int(getattr(ip, "merge_size", 2))
    vocab_size = int(model.get_output_embeddings().weight.shape[0])
    stop_ids: list[int] = []
    for cand in (model.generation_config.eos_token_id, tokenizer.eos_token_id,
                 tokenizer.convert_tokens_to_ids("<|im_end|>")):
        for t in cand if isinstance(cand, list) else [cand]:
            if isinstance(t, int) and 0 <= t < vocab_size and t not in stop_ids:
                stop_ids.append(t)
    info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size, stop_token_ids=stop_ids)
    compiler = xgr.GrammarCompiler(info, max_threads=max(1, min(8, os.cpu_count() or 1)))
    return LoadedVlm(model=model, processor=processor, tokenizer=tokenizer, name=folder.name, device=dev, dtype=dt,
                     factor=factor, vocab_size=vocab_size, stop_ids=stop_ids, tokenizer_info=info,
                     compiler=compiler, image_only_processor=image_only)


# ------------------------------------------------------------------------------------------ decoding

@dataclass
class Generation:
    """One sequence's decoding: tokens (stop token included when it finished), their log-probabilities."""

    token_ids: list[int]
    logprobs: list[float]
    finish: str  # stop, length, loop, timeout, rejected
    text: str = ""
    token_bytes: list[bytes] = field(default_factory=list)
    prompt_tokens: int = 0
    latency_ms: float = 0.0
    image_pixels: int = 0
    attempts: int = 1  # calls it took (an out-of-memory retry makes it 2)


class _GrammarConfidence(LogitsProcessor):
    """Reads each step's log-probabilities before the grammar mask, then masks in place."""

    def __init__(self, matchers: list, vocab_size: int):
        self.matchers = matchers
        n = len(matchers)
        self.vocab_size = vocab_size
        self.bitmask = xgr.allocate_token_bitmask(n, vocab_size)
        self.prev_lp: torch.Tensor | None = None
        self.active_prev: list[int] = []
        self.tokens: list[list[int]] = [[] for _ in range(n)]
        self.lps: list[list[float]] = [[] for _ in range(n)]
        self.finish: list[str | None] = [None] * n

    def record(self, last: torch.Tensor) -> None:
        """Account the tokens chosen at the previous step (``last``: the newest column of input_ids)."""
        if self.prev_lp is None or not self.active_prev:
            return
        idx = torch.tensor(self.active_prev, device=self.prev_lp.device)
        toks = last.to(self.prev_lp.device)[idx]
        chosen = self.prev_lp[idx, toks].tolist()
        for i, tok, lp in zip(self.active_prev, toks.tolist(), chosen, strict=True):
            self.tokens[i].append(tok)
            self.lps[i].append(float(lp))
            if self.finish[i] is not None:  # stopped by a guard after this token: keep it, no grammar
                continue
            if not self.matchers[i].accept_token(tok):
                self.finish[i] = "rejected"
            elif self.matchers[i].is_terminated():
                self.finish[i] = "stop"
        self.active_prev = []

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        self.record(input_ids[:, -1])
        # the model's own distribution, read before the grammar mask (applied in place below)
        self.prev_lp = torch.log_softmax(scores.float(), dim=-1)
        active = [i for i, f in enumerate(self.finish) if f is None]
        xgr.reset_token_bitmask(self.bitmask)
        for i in active:
            self.matchers[i].fill_next_token_bitmask(self.bitmask, i)
        xgr.apply_token_bitmask_inplace(scores, self.bitmask.to(scores.device), vocab_size=self.vocab_size)
        self.active_prev = active
        return scores


class _Guards(StoppingCriteria):
    """Per-sequence repetition-loop detection and a per-call deadline."""

    def __init__(self, proc: _GrammarConfidence, prompt_len: int, deadline: float, window: int, max_period: int):
        self.proc, self.prompt_len, self.deadline = proc, prompt_len, deadline
        self.window, self.max_period = window, max_period

    def __call__(self, input_ids: torch.LongTensor, scores, **kwargs) -> torch.BoolTensor:
        n = input_ids.shape[0]
        done = torch.zeros(n, dtype=torch.bool, device=input_ids.device)
        live = [i for i, f in enumerate(self.proc.finish) if f is None]
        if time.monotonic() > self.deadline:
            for i in live:
                self.proc.finish[i] = "timeout"
            return torch.ones(n, dtype=torch.bool, device=input_ids.device)
        if self.window and input_ids.shape[1] - self.prompt_len >= self.window and live:
            tail = input_ids[:, -self.window:]
            looping = torch.zeros(n, dtype=torch.bool, device=input_ids.device)
            for p in range(1, min(self.max_period, self.window // 2) + 1):
                looping |= (tail[:, p:] == tail[:, :-p]).all(dim=1)
            for i in live:
                if looping[i]:
                    self.proc.finish[i] = "loop"
                    done[i] = True
        return done


# ------------------------------------------------------------------------------------------- backend

@dataclass(frozen=True)
class Job:
    """One request ready for decoding: images, generation schema, prompt."""

    images: tuple[Any, ...]
    gen_schema: dict
    prompt: str


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

    def _encode(self, jobs: list[Job], min_pixels: int, max_pixels: int):
        v = self.vlm
        texts, images, pixels = [], [], []
        for job in jobs:
            imgs = [fit_pixels(im, min_pixels, max_pixels, v.factor) for im in job.images]
            content = [{"type": "image"} for _ in imgs] + [{"type": "text", "text": job.prompt}]
            texts.append(v.processor.apply_chat_template([{"role": "user", "content": content}],
                                                         add_generation_prompt=True, tokenize=False))
            images.append(imgs)
            pixels.append(sum(i.width * i.height for i in imgs))
        size = {"shortest_edge": min(min_pixels, v.factor ** 2), "longest_edge": max(max_pixels, v.factor ** 2)}
        has_images = any(images)
        enc = v.processor(text=texts, images=images if has_images else None, padding=True, return_tensors="pt",
                          **({"size": size} if has_images else {}))
        enc = enc.to(v.device)
        if "pixel_values" in enc:
            enc["pixel_values"] = enc["pixel_values"].to(v.dtype)
        return enc, pixels

    def _generate(self, jobs: list[Job], max_new_tokens: int, min_pixels: int, max_pixels: int) -> list[Generation]:
        v = self.vlm
        with self._lock:
            t0 = time.perf_counter()
            enc, pixels = self._encode(jobs, min_pixels, max_pixels)
            matchers = [xgr.GrammarMatcher(self.grammar(j.gen_schema)) for j in jobs]
            proc = _GrammarConfidence(matchers, v.vocab_size)
            prompt_len = enc["input_ids"].shape[1]
            guards = _Guards(proc, prompt_len, time.monotonic() + self.options.timeout_s,
                             self.options.loop_window, self.options.loop_max_period)
            with torch.inference_mode():
                out = v.model.generate(
                    **enc, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                    temperature=None, top_p=None, top_k=None, repetition_penalty=None,
                    logits_processor=LogitsProcessorList([proc]), stopping_criteria=StoppingCriteriaList([guards]),
                    eos_token_id=v.stop_ids, pad_token_id=v.tokenizer.pad_token_id,
                )
            proc.record(out[:, -1])
            latency = (time.perf_counter() - t0) * 1000
            prompt_tokens = enc["attention_mask"].sum(dim=1).tolist()
        vocab = v.tokenizer_info.decoded_vocab
        gens = []
        for i in range(len(jobs)):
            toks, lps = proc.tokens[i], proc.lps[i]
            finish = proc.finish[i] or "length"
            if finish == "length" and toks and toks[-1] in v.stop_ids:  # cannot happen under the grammar
                finish = "stop"
            body = toks[:-1] if finish == "stop" else toks
            tb = [vocab[t] if t < len(vocab) else b"" for t in body]
            gens.append(Generation(
                token_ids=toks, logprobs=lps, finish=finish, token_bytes=tb,
                text=b"".join(tb).decode("utf-8", errors="replace"), prompt_tokens=int(prompt_tokens[i]),
                latency_ms=latency, image_pixels=pixels[i],
            ))
        return gens

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


def with_options(backend: TransformersVlm, **changes) -> TransformersVlm:
    """The same loaded model with other options (tests and the benchmark use it to vary batch sizes)."""
    other = TransformersVlm(replace(backend.options, **changes), loaded=backend.vlm)
    other._grammars = backend._grammars
    return other
