"""Tiny random Qwen2.5-VL and Qwen3-VL models, built from configs in seconds (about 1.3 MB each).

They stand in for trained weights that cannot be downloaded here (DESIGN.md, principle 1): the real
production loader, processor, chat template, constrained decoding and confidence code run on them.
The tokenizer is a byte-level BPE trained locally with the ``tokenizers`` library on the sample
documents' text and JSON, with Qwen's special tokens and a Qwen-style chat template. The output
embedding is padded past the tokenizer's length, as real Qwen vocabularies are, so that code sizing
the grammar by ``len(tokenizer)`` instead of the model's vocabulary fails here too.

Usage: ``python tests/tiny_vlm.py OUT_DIR [qwen2_5_vl|qwen3_vl]`` (both when no family is given).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

FAMILIES = ("qwen2_5_vl", "qwen3_vl")

SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|object_ref_start|>", "<|object_ref_end|>",
    "<|box_start|>", "<|box_end|>", "<|quad_start|>", "<|quad_end|>", "<|vision_start|>",
    "<|vision_end|>", "<|vision_pad|>", "<|image_pad|>", "<|video_pad|>",
]

CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and message['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "<|im_start|>{{ message['role'] }}\n"
    "{% if message['content'] is string %}{{ message['content'] }}<|im_end|>\n"
    "{% else %}{% for content in message['content'] %}"
    "{% if content['type'] == 'image' or 'image' in content or 'image_url' in content %}"
    "<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif content['type'] == 'text' %}{{ content['text'] }}{% endif %}"
    "{% endfor %}<|im_end|>\n{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)

VOCAB_SIZE = 700  # BPE merges learned on the corpus (the special tokens come on top)
PAD_MULTIPLE = 64  # the output embedding is padded past len(tokenizer), like Qwen's 151936 vs 151665


def _corpus() -> list[str]:
    repo = Path(__file__).resolve().parents[1]
    texts = [p.read_text(encoding="utf-8") for p in sorted((repo / "sample_docs").glob("*.expected.json"))]
    from docroute.schemas.registry import BUILTIN

    texts += [json.dumps(cls.model_json_schema()) for cls in BUILTIN.values()]
    texts += ["0123456789 .,-:/ $ EUR USD GBP 2024-03-15 null true false {} [] \" \\n"] * 20
    texts += [(repo / "README.md").read_text(encoding="utf-8")]
    return texts


def build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE, special_tokens=SPECIAL_TOKENS, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(_corpus(), trainer=trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", unk_token=None,
        chat_template=CHAT_TEMPLATE, padding_side="left", model_max_length=32768,
    )


def _configs(family: str, tokenizer):
    ids = {t: tokenizer.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS}
    vocab = -(-len(tokenizer) // PAD_MULTIPLE) * PAD_MULTIPLE + PAD_MULTIPLE
    common = dict(
        image_token_id=ids["<|image_pad|>"], video_token_id=ids["<|video_pad|>"],
        vision_start_token_id=ids["<|vision_start|>"], vision_end_token_id=ids["<|vision_end|>"],
    )
    text = dict(
        vocab_size=vocab, hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=32768, bos_token_id=ids["<|endoftext|>"],
        eos_token_id=ids["<|im_end|>"], pad_token_id=ids["<|endoftext|>"],
    )
    if family == "qwen2_5_vl":
        from transformers import Qwen2_5_VLConfig

        text["rope_scaling"] = {"type": "mrope", "mrope_section": [2, 3, 3], "rope_theta": 1000000.0}
        vision = dict(depth=2, hidden_size=16, intermediate_size=32, num_heads=2, patch_size=14,
                      spatial_merge_size=2, temporal_patch_size=2, window_size=56, out_hidden_size=32,
                      fullatt_block_indexes=[1])
        return Qwen2_5_VLConfig(text_config=text, vision_config=vision, **common), 14
    if family == "qwen3_vl":
        from transformers import Qwen3VLConfig

        text["head_dim"] = 16
        text["rope_scaling"] = {"rope_type": "default", "mrope_section": [2, 3, 3], "mrope_interleaved": True,
                                "rope_theta": 5000000.0}
        vision = dict(depth=2, hidden_size=16, intermediate_size=32, num_heads=2, patch_size=16,
                      spatial_merge_size=2, temporal_patch_size=2, out_hidden_size=32,
                      num_position_embeddings=256, deepstack_visual_indexes=[0])
        return Qwen3VLConfig(text_config=text, vision_config=vision, **common), 16
    raise ValueError(f"unknown family {family!r}; one of {FAMILIES}")


def build(out: Path, family: str = "qwen2_5_vl", seed: int = 0) -> Path:
    """Write a tiny random model of ``family`` with its processor to ``out``; returns ``out``."""
    import torch
    from transformers import AutoModelForImageTextToText, GenerationConfig
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    config, patch = _configs(family, tokenizer)
    torch.manual_seed(seed)
    model = AutoModelForImageTextToText.from_config(config, dtype=torch.float32)
    with torch.no_grad():  # larger logits than the default init: a random model with some preferences
        model.get_output_embeddings().weight.normal_(0.0, 0.5)
    model.generation_config = GenerationConfig(
        eos_token_id=[config.text_config.eos_token_id, tokenizer.convert_tokens_to_ids("<|endoftext|>")],
        pad_token_id=tokenizer.pad_token_id, do_sample=False,
    )
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    factor = patch * 2
    image_processor = Qwen2VLImageProcessorPil(
        patch_size=patch, merge_size=2, temporal_patch_size=2,
        size={"shortest_edge": factor * factor * 4, "longest_edge": factor * factor * 64},
        image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5],
    )
    image_processor.save_pretrained(out)
    processor_class = {"qwen2_5_vl": "Qwen2_5_VLProcessor", "qwen3_vl": "Qwen3VLProcessor"}[family]
    (out / "processor_config.json").write_text(json.dumps({"processor_class": processor_class}, indent=2))
    (out / "chat_template.jinja").write_text(CHAT_TEMPLATE)
    return out


_BUILT: dict[str, Path] = {}
SAMPLES = Path(__file__).resolve().parents[1] / "sample_docs"


def sample_images(names: list[str], dpi: float = 60.0) -> dict[str, list]:
    """Rendered pages of sample documents, {file name: [PIL image per page]}.

    Where PyMuPDF is not installed (a bare GPU image: its wheel is too big to carry there), every
    document is stood in for by the sample phone photo (sample_docs/invoice_photo.png), a two-page
    one by its top and bottom halves.
    """
    try:
        from docroute.extractors import pdf

        pdf._pymupdf()
    except ImportError:
        from PIL import Image

        photo = Image.open(SAMPLES / "invoice_photo.png").convert("RGB")
        photo.thumbnail((600, 800))
        w, h = photo.size
        halves = [photo.crop((0, 0, w, h // 2)), photo.crop((0, h // 2, w, h))]
        return {name: halves if "two_page" in name else [photo] for name in names}
    out = {}
    for name in names:
        mime = "image/png" if name.endswith(".png") else "application/pdf"
        with pdf.open_document(SAMPLES / name, mime) as doc:
            out[name] = [pdf.render(doc.load_page(i), dpi, gray=False) for i in range(doc.page_count)]
    return out
FACTOR = {"qwen2_5_vl": 28, "qwen3_vl": 32}  # image side multiple: patch size x merge size


def options(family: str, **changes):
    """VlmOptions for the tiny model: small images, short strings, few list items, float32."""
    from docroute.extractors.vlm import VlmOptions

    f = FACTOR[family]
    base = dict(model=str(model_dir(family)), min_pixels=f * f * 4, max_pixels=f * f * 48, max_new_tokens=400,
                max_string_chars=24, max_list_items=3, loop_window=0, batch_size=4, dtype="float32")
    return VlmOptions(**(base | changes))


def model_dir(family: str) -> Path:
    """The tiny model of ``family``, built once per process into a temporary folder removed at exit."""
    if family not in _BUILT:
        import atexit
        import shutil
        import tempfile

        root = Path(tempfile.mkdtemp(prefix="docroute-tiny-vlm-"))
        atexit.register(shutil.rmtree, root, True)
        _BUILT[family] = build(root / family, family)
    return _BUILT[family]


if __name__ == "__main__":
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "tiny_vlm")
    for fam in sys.argv[2:] or FAMILIES:
        print(build(target / fam, fam))
