"""Batched constrained decoding for the ``transformers`` backend: one batch of jobs through
``model.generate``, greedy with left padding, under the xgrammar grammar of each job's generation
schema, with per-token confidence and the loop and deadline guards.

- Confidence: a logits processor reads the raw logits (log-softmax) *before* applying the grammar's
  bitmask, which xgrammar applies in place, and keeps the chosen tokens' log-probabilities.
- Guards: a repetition loop (the last ``loop_window`` tokens periodic with a period up to
  ``loop_max_period``) stops that sequence (finish ``loop``); a per-call deadline stops them all
  (``timeout``). A sequence that reaches ``max_new_tokens`` without its stop token finishes ``length``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import torch
import xgrammar as xgr
from transformers import LogitsProcessor, LogitsProcessorList, StoppingCriteria, StoppingCriteriaList

from docroute.extractors.vlm.hf_load import LoadedVlm
from docroute.extractors.vlm.images import fit_pixels


@dataclass(frozen=True)
class Job:
    """One request ready for decoding: images, generation schema, prompt."""

    images: tuple[Any, ...]
    gen_schema: dict
    prompt: str


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


class GrammarConfidence(LogitsProcessor):
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


class Guards(StoppingCriteria):
    """Per-sequence repetition-loop detection and a per-call deadline."""

    def __init__(self, proc: GrammarConfidence, prompt_len: int, deadline: float, window: int, max_period: int):
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


def encode(vlm: LoadedVlm, jobs: list[Job], min_pixels: int, max_pixels: int):
    """The batch's model inputs (chat template, images at the pixel budget) and each job's image pixels."""
    texts, images, pixels = [], [], []
    for job in jobs:
        imgs = [fit_pixels(im, min_pixels, max_pixels, vlm.factor) for im in job.images]
        content = [{"type": "image"} for _ in imgs] + [{"type": "text", "text": job.prompt}]
        texts.append(vlm.processor.apply_chat_template([{"role": "user", "content": content}],
                                                       add_generation_prompt=True, tokenize=False))
        images.append(imgs)
        pixels.append(sum(i.width * i.height for i in imgs))
    size = {"shortest_edge": min(min_pixels, vlm.factor ** 2), "longest_edge": max(max_pixels, vlm.factor ** 2)}
    has_images = any(images)
    enc = vlm.processor(text=texts, images=images if has_images else None, padding=True, return_tensors="pt",
                        **({"size": size} if has_images else {}))
    enc = enc.to(vlm.device)
    if "pixel_values" in enc:
        enc["pixel_values"] = enc["pixel_values"].to(vlm.dtype)
    return enc, pixels


def decode(vlm: LoadedVlm, jobs: list[Job], grammars: list, max_new_tokens: int, min_pixels: int, max_pixels: int,
           timeout_s: float, loop_window: int, loop_max_period: int) -> list[Generation]:
    """One batch: ``grammars[i]`` (compiled) constrains ``jobs[i]``; the deadline runs from the end of encoding."""
    t0 = time.perf_counter()
    enc, pixels = encode(vlm, jobs, min_pixels, max_pixels)
    proc = GrammarConfidence([xgr.GrammarMatcher(g) for g in grammars], vlm.vocab_size)
    guards = Guards(proc, enc["input_ids"].shape[1], time.monotonic() + timeout_s, loop_window, loop_max_period)
    with torch.inference_mode():
        out = vlm.model.generate(
            **enc, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
            temperature=None, top_p=None, top_k=None, repetition_penalty=None,
            logits_processor=LogitsProcessorList([proc]), stopping_criteria=StoppingCriteriaList([guards]),
            eos_token_id=vlm.stop_ids, pad_token_id=vlm.tokenizer.pad_token_id,
        )
    proc.record(out[:, -1])
    latency = (time.perf_counter() - t0) * 1000
    prompt_tokens = enc["attention_mask"].sum(dim=1).tolist()
    vocab = vlm.tokenizer_info.decoded_vocab
    gens = []
    for i in range(len(jobs)):
        toks, lps = proc.tokens[i], proc.lps[i]
        finish = proc.finish[i] or "length"
        if finish == "length" and toks and toks[-1] in vlm.stop_ids:  # cannot happen under the grammar
            finish = "stop"
        body = toks[:-1] if finish == "stop" else toks
        tb = [vocab[t] if t < len(vocab) else b"" for t in body]
        gens.append(Generation(
            token_ids=toks, logprobs=lps, finish=finish, token_bytes=tb,
            text=b"".join(tb).decode("utf-8", errors="replace"), prompt_tokens=int(prompt_tokens[i]),
            latency_ms=latency, image_pixels=pixels[i],
        ))
    return gens
