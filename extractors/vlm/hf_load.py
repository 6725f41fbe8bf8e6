"""Loading a local VLM folder for the ``transformers`` backend: model, processor, stop tokens, and the
xgrammar tokenizer info and compiler.

``AutoModelForImageTextToText`` and the model's processor come from a local folder only
(``local_files_only``; never a hub), on cuda in bfloat16 when available, else CPU in float32. Tested
with the Qwen2.5-VL and Qwen3-VL families. In transformers 5 the Qwen-VL processors need torchvision
for their video processor; where torchvision is absent (a CPU torch, beside which PyPI's CUDA-linked
torchvision fails at import) the loader builds the same processor class without the video part,
around the PIL image processor. The grammar is sized by the model's output embedding, not
``len(tokenizer)``: real Qwen vocabularies are padded.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import xgrammar as xgr

log = logging.getLogger(__name__)


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
