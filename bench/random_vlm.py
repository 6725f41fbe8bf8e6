"""A full-size VLM with random weights, and fixed-length decoding, for GPU figures without weights.

``build(config, out)`` writes a model folder that the pipeline's own loader reads like a downloaded
one: the architecture from a config shipped in bench/ (``qwen2_5_vl_3b_config.json``: Qwen2.5-VL-3B-
Instruct, 3.75 B parameters), weights drawn at random on the given device, and the tokenizer, chat
template and image processor of tests/tiny_vlm.py (a byte-level BPE trained locally; no hub). The
special-token ids of the config are remapped onto that tokenizer; the embedding keeps the config's
151,936 rows, most of them past the tokenizer, as real Qwen vocabularies are padded.

``count_tokens(backend, fixed=N)`` wraps the loaded model's ``generate`` (the call the transformers
backend makes) to count the image tokens per page and, with ``fixed``, to decode exactly N new tokens
per page. Random weights end the grammar-constrained JSON at random, so a bench-only logits
processor, placed after the backend's grammar processor, removes the stop tokens until the N-th new
token and forces one there. Where the grammar then allows nothing but a stop token (the JSON object is
complete) it picks a filler token, which the grammar rejects: from there that page decodes
unconstrained. Every page thus costs N decoding steps and ends with status ``invalid`` (never
``truncated``, so the backend's truncation retry does not run). The backend's code is not changed.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH.parent / "tests"))

CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]  # Qwen2.5-VL's image processor normalisation
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def build(config_path: Path, out: Path, device: str = "cpu", dtype: str = "bfloat16", layers: int | None = None,
          seed: int = 0) -> Path:
    """Write a random-weight model of the architecture in ``config_path`` to ``out``; returns ``out``.

    ``layers`` (a quick check of the code path only) cuts both the text and the vision tower to that
    many layers.
    """
    import tiny_vlm
    import torch
    from transformers import AutoConfig, AutoModelForImageTextToText, GenerationConfig
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = tiny_vlm.build_tokenizer()
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in tiny_vlm.SPECIAL_TOKENS}
    cfg = json.loads(Path(config_path).read_text())
    cfg.update(image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
               vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"])
    text, vision = cfg["text_config"], cfg["vision_config"]
    text.update(bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"])
    if len(tokenizer) > text["vocab_size"]:
        raise ValueError(f"tokenizer ({len(tokenizer)}) larger than the model's vocabulary ({text['vocab_size']})")
    if layers:
        text["num_hidden_layers"] = layers
        vision["depth"] = layers
        vision["fullatt_block_indexes"] = [i for i in vision.get("fullatt_block_indexes", []) if i < layers]
    (out / "config.json").write_text(json.dumps(cfg, indent=2))
    config = AutoConfig.from_pretrained(out, local_files_only=True)
    torch.manual_seed(seed)
    try:  # drawn where it runs: 3.75 B parameters are drawn in seconds on a GPU
        with torch.device(device):
            model = AutoModelForImageTextToText.from_config(config, dtype=getattr(torch, dtype))
    except (RuntimeError, NotImplementedError) as exc:
        print(f"building on {device} failed ({exc}); building on the CPU", file=sys.stderr)
        model = AutoModelForImageTextToText.from_config(config, dtype=getattr(torch, dtype))
    model.generation_config = GenerationConfig(
        eos_token_id=[ids["<|im_end|>"], ids["<|endoftext|>"]], pad_token_id=tokenizer.pad_token_id, do_sample=False)
    model.save_pretrained(out)
    del model
    if device.startswith("cuda"):
        torch.cuda.empty_cache()
    tokenizer.save_pretrained(out)
    patch, merge = vision["patch_size"], vision["spatial_merge_size"]
    Qwen2VLImageProcessorPil(
        patch_size=patch, merge_size=merge, temporal_patch_size=vision["temporal_patch_size"],
        size={"shortest_edge": 56 * 56, "longest_edge": 28 * 28 * 1280}, image_mean=CLIP_MEAN, image_std=CLIP_STD,
    ).save_pretrained(out)
    (out / "processor_config.json").write_text(json.dumps({"processor_class": "Qwen2_5_VLProcessor"}, indent=2))
    (out / "chat_template.jinja").write_text(tiny_vlm.CHAT_TEMPLATE)
    return out


def _fixed_length_processor(prompt_len: int, n: int, stop_ids: list[int], filler: int):
    import torch
    from transformers import LogitsProcessor

    class FixedLength(LogitsProcessor):
        """Bench only: no stop token before the n-th new token, a stop token as the n-th."""

        def __call__(self, input_ids, scores):
            if input_ids.shape[1] - prompt_len >= n - 1:
                scores.fill_(float("-inf"))
                scores[:, stop_ids[0]] = 0.0
                return scores
            scores[:, stop_ids] = float("-inf")
            dead = torch.isneginf(scores).all(dim=-1)  # the grammar allowed only a stop token
            scores[:, filler] = torch.where(dead, torch.zeros_like(scores[:, filler]), scores[:, filler])
            return scores

    return FixedLength()


class TokenCounter:
    """Wraps ``model.generate``: counts the image tokens of the prompts; ``fixed`` decodes N tokens per row."""

    def __init__(self, model, image_token_id: int, filler: int, fixed: int | None = None):
        self.model, self.image_token_id, self.filler, self.fixed = model, image_token_id, filler, fixed
        self.generate = model.generate
        self.reset()
        model.generate = self._generate  # the instance attribute shadows the method; undo() restores it

    def reset(self) -> None:
        self.calls = self.rows = self.image_tokens = 0

    def undo(self) -> None:
        del self.model.generate

    def _generate(self, *args, **kwargs):
        from transformers import LogitsProcessorList

        ids = kwargs["input_ids"]
        if self.fixed:
            stop = kwargs.get("eos_token_id")
            stop = list(stop) if isinstance(stop, (list, tuple)) else [stop]
            kwargs["max_new_tokens"] = self.fixed
            kwargs["logits_processor"] = LogitsProcessorList(
                [*(kwargs.get("logits_processor") or []),
                 _fixed_length_processor(ids.shape[1], self.fixed, stop, self.filler)])
        out = self.generate(*args, **kwargs)
        self.calls += 1
        self.rows += ids.shape[0]
        self.image_tokens += int((ids == self.image_token_id).sum())
        return out


def count_tokens(backend, fixed: int | None = None) -> TokenCounter:
    """A TokenCounter on the backend's loaded model (``fixed``: decode exactly that many tokens per page)."""
    model, tokenizer = backend.vlm.model, backend.vlm.tokenizer
    filler = tokenizer.encode(" ", add_special_tokens=False)[0]
    return TokenCounter(model, int(model.config.image_token_id), filler, fixed)
