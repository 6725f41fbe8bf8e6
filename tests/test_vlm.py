"""The transformers VLM backend on tiny random Qwen2.5-VL and Qwen3-VL models built locally.

The production loader, processor, chat template, xgrammar-constrained decoding, confidence and guards
all run for real; only the weights are random (trained ones cannot be downloaded here). Outputs are
therefore nonsense, but they must always validate against the target schema.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
import tiny_vlm

from docroute.extractors.vlm import VlmRequest, get_backend
from docroute.extractors.vlm.images import fit_pixels
from docroute.extractors.vlm.structured import (
    answer_text,
    field_confidence,
    generation_schema,
    parse_and_validate,
    string_pattern,
    top_level_spans,
)
from docroute.schemas.targets import ChartData, HandwrittenText, Invoice, Table

from conftest import all_expected

os.environ.setdefault("OMP_NUM_THREADS", "1")
FACTOR = tiny_vlm.FACTOR
SCHEMAS = (Invoice, Table, ChartData, HandwrittenText)
tiny_options = tiny_vlm.options


@pytest.fixture(scope="session")
def tiny_backends():
    """Both tiny models, loaded once through the production loader (get_backend -> hf.load)."""
    import torch

    torch.set_num_threads(1)
    return {fam: get_backend("transformers", tiny_options(fam)) for fam in tiny_vlm.FAMILIES}


@pytest.fixture(scope="session")
def pages():
    """Real sample pages, rendered: a two-page invoice, a chart, a complex table, a handwritten note."""
    return tiny_vlm.sample_images(["invoice_two_page.pdf", "chart.pdf", "complex_table.pdf", "handwriting_note.pdf"])


# ------------------------------------------------------------------------------- schema and parsing

def test_generation_schema_is_strict_and_compilable():
    import xgrammar as xgr

    gs = generation_schema(Invoice, 300)
    assert gs["required"] == list(Invoice.model_fields) and gs["additionalProperties"] is False
    item = gs["$defs"]["LineItem"]
    assert item["required"] == ["description", "quantity", "unit_price", "amount"]
    text = json.dumps(gs)
    assert "maxLength" not in text and '"title"' not in text
    total = gs["properties"]["total"]["anyOf"]  # Decimal: a bounded number, no string alternative
    assert {a.get("type") for a in total} == {"number", "null"} and total[0]["maximum"] == 1e12
    assert gs["properties"]["currency"]["anyOf"][0]["pattern"] == "^[A-Z]{3}$"  # the schema's own pattern kept
    for schema in SCHEMAS:  # every target compiles (a plain {0,300} repetition would not, in xgrammar 0.2)
        xgr.Grammar.from_json_schema(json.dumps(generation_schema(schema, 300)), any_whitespace=False)


def test_string_pattern_excludes_control_characters_quotes_and_long_strings():
    import re

    for n in (24, 128, 300):
        rx = re.compile(string_pattern(n))
        assert rx.match("x" * n) and not rx.match("x" * (n + 1))
        assert not rx.match("a\x01b") and not rx.match('a"b') and not rx.match("a\\b")


def test_parse_is_lenient_then_validates():
    data, errors = parse_and_validate('{"lines": ["a\x07b", "c"]}', HandwrittenText)  # raw control char
    assert data == {"lines": ["a\x07b", "c"]} and errors == []
    data, errors = parse_and_validate('{"invoice_number": "A1", "total": 12.10, "invoice_date": "2024-02-30"}', Invoice)
    assert data["total"] == Decimal("12.10") and data["invoice_date"] is None and errors[0].startswith("invoice_date")
    assert parse_and_validate('{"invoice_number": "A', Invoice)[0] is None


def test_field_confidence_covers_each_value_tokens():
    text = '{"a": "xy", "b": null, "c": [1, 2]}'
    toks = [b'{"a": "', b"x", b'y"', b', "b": ', b"null", b', "c": [', b"1, 2", b"]}"]
    lps = [-0.1, -0.2, -0.3, -0.01, -2.0, -0.5, -1.0, -0.7]
    conf, stats = field_confidence(text, toks, lps)
    assert set(conf) == {"a", "b", "c"} and all(0 <= v <= 1 for v in conf.values())
    assert abs(conf["b"] - 0.1353) < 1e-3 and stats["b"]["n_tokens"] == 1
    assert top_level_spans('{"a": 1, "b": "cut') == {"a": (6, 7)}


def test_fit_pixels_keeps_the_budget_and_the_patch_grid():
    from PIL import Image

    for size in ((2480, 3508), (50, 40), (3000, 20)):
        img = fit_pixels(Image.new("L", size, 255), 28 * 28 * 4, 28 * 28 * 100, 28)
        w, h = img.size
        assert img.mode == "RGB" and w % 28 == 0 and h % 28 == 0 and w * h <= 28 * 28 * 100


def test_importing_the_pipeline_does_not_load_torch():
    code = ("import sys, docroute.pipelines.process, docroute.extractors.vlm, docroute.extractors.vlm.structured; "
            "print(sorted(m for m in ('torch', 'transformers', 'xgrammar') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# ------------------------------------------------------------------------------------------ loading

@pytest.mark.parametrize("family", tiny_vlm.FAMILIES)
def test_loader_local_folder_image_only_processor_and_padded_vocab(tiny_backends, family):
    from transformers.utils import is_torchvision_available

    vlm = tiny_backends[family].vlm
    assert vlm.image_only_processor is (not is_torchvision_available())
    assert vlm.model.config.model_type == family and type(vlm.model).__name__.endswith("ForConditionalGeneration")
    emb = vlm.model.get_output_embeddings().weight.shape[0]
    assert vlm.vocab_size == emb == vlm.tokenizer_info.vocab_size > len(vlm.tokenizer)  # padded, like Qwen's
    assert vlm.factor == FACTOR[family]
    with pytest.raises(FileNotFoundError, match="not a model folder"):
        get_backend("transformers", tiny_options(family, model=str(Path(vlm.tokenizer.name_or_path) / "missing")))


# ----------------------------------------------------------------------------- constrained decoding

@pytest.mark.parametrize("family", tiny_vlm.FAMILIES)
def test_every_output_validates_with_confidence_in_range(tiny_backends, pages, family):
    backend = tiny_backends[family]
    reqs = [VlmRequest(images=(pages[name][0],), schema=schema)
            for name, schema in (("invoice_two_page.pdf", Invoice), ("complex_table.pdf", Table),
                                 ("chart.pdf", ChartData), ("handwriting_note.pdf", HandwrittenText))]
    reqs.append(VlmRequest(images=tuple(pages["invoice_two_page.pdf"]), schema=Invoice))  # two pages, one call
    results = backend.extract_batch(reqs)
    for req, res in zip(reqs, results, strict=True):
        assert res.status == "ok", (res.error, res.raw_text)
        req.schema.model_validate(res.data)
        assert json.loads(res.raw_text, strict=False).keys() == req.schema.model_fields.keys()
        assert set(res.field_confidence) == set(req.schema.model_fields)
        assert all(0.0 <= c <= 1.0 for c in res.field_confidence.values())
        # within the budget, or twice it after the one retry a cut-off answer gets
        assert res.prompt_tokens > 0 and 0 < res.output_tokens <= 2 * tiny_options(family).max_new_tokens
        assert res.model == family
        assert res.image_pixels <= len(req.images) * tiny_options(family).max_pixels
    assert results[-1].prompt_tokens > results[0].prompt_tokens  # the second page's image tokens
    assert backend.compile_count <= len(SCHEMAS)  # once per (model, schema), reused across calls
    before = backend.compile_count
    backend.extract_batch(reqs[:2])
    assert backend.compile_count == before


def test_answer_text_is_what_the_grammar_decodes(tiny_backends, pages):
    """The serializer of fine-tuning targets writes text the backend's own grammar decodes to the end:
    the backend's outputs re-serialized, and the sample invoices' true values at the default limits."""
    import xgrammar as xgr

    def decodes(backend, schema, text: str, chars: int, items: int) -> bool:
        matcher = xgr.GrammarMatcher(backend.grammar(generation_schema(schema, chars, items)))
        tokens = backend.vlm.tokenizer.encode(text, add_special_tokens=False)
        return (all(matcher.accept_token(t) for t in tokens) and matcher.accept_token(backend.vlm.stop_ids[0])
                and matcher.is_terminated())

    checked = 0
    for backend in tiny_backends.values():
        o = backend.options
        reqs = [VlmRequest(images=(pages[name][0],), schema=schema)
                for name, schema in (("invoice_two_page.pdf", Invoice), ("complex_table.pdf", Table),
                                     ("chart.pdf", ChartData), ("handwriting_note.pdf", HandwrittenText))]
        for req, res in zip(reqs, backend.extract_batch(reqs), strict=True):
            if "\ufffd" in res.raw_text:  # random bytes that are no UTF-8 text: no correction looks like that
                continue
            text = answer_text(req.schema, res.data, o.max_string_chars, o.max_list_items)
            assert decodes(backend, req.schema, text, o.max_string_chars, o.max_list_items), text
            assert parse_and_validate(text, req.schema) == (res.data, [])
            checked += 1
    assert checked >= 6
    backend = tiny_backends["qwen2_5_vl"]
    invoices = [e["invoice"] for e in all_expected() if e.get("invoice")]
    assert len(invoices) >= 4
    for inv in invoices:
        text = answer_text(Invoice, inv, 300, 1000)
        assert decodes(backend, Invoice, text, 300, 1000), text
        assert parse_and_validate(text, Invoice) == (Invoice.model_validate(inv).model_dump(), [])
    assert '"total": 3797.94,' in answer_text(Invoice, invoices[-1] | {"total": "3797.94"})  # a number, not a string
    edge = answer_text(Invoice, {"total": "1.2000000", "invoice_date": "2024-03-05", "vendor_name": "Å\n\tB"}, 24)
    assert decodes(backend, Invoice, edge, 24, 0) and '"total": 1.2,' in edge and '"vendor_name": "Å B"' in edge
    for bad in ({"total": "0.0000001"}, {"total": "2e12"}, {"vendor_name": 'a "b"'}, {"vendor_name": "x" * 25}):
        with pytest.raises(ValueError):
            answer_text(Invoice, bad, 24)


@pytest.mark.parametrize("family", tiny_vlm.FAMILIES)
def test_batch_gives_the_same_results_as_single_calls(tiny_backends, pages, family):
    backend = tiny_backends[family]
    reqs = [VlmRequest(images=(img,), schema=schema) for img in
            (pages["chart.pdf"][0], pages["complex_table.pdf"][0], pages["invoice_two_page.pdf"][1])
            for schema in (Invoice, ChartData)]
    batch = backend.extract_batch(reqs)
    single = [backend.extract_batch([r])[0] for r in reqs]
    for b, s in zip(batch, single, strict=True):
        assert (b.status, b.raw_text, b.data, b.output_tokens) == (s.status, s.raw_text, s.data, s.output_tokens)
        assert b.field_confidence.keys() == s.field_confidence.keys()
        assert all(abs(b.field_confidence[k] - s.field_confidence[k]) < 1e-3 for k in b.field_confidence)


def test_truncation_is_detected_and_retried(tiny_backends, pages):
    base = tiny_backends["qwen2_5_vl"]
    req = VlmRequest(images=(pages["chart.pdf"][0],), schema=ChartData)
    full = base.extract_batch([req])[0]
    assert full.status == "ok" and full.attempts == 1
    n = full.output_tokens  # stop token included
    retried = get_backend("transformers", tiny_options("qwen2_5_vl", max_new_tokens=n // 2 + 1)).extract_batch([req])[0]
    assert (retried.status, retried.attempts, retried.raw_text) == ("ok", 2, full.raw_text)
    cut = get_backend("transformers", tiny_options("qwen2_5_vl", max_new_tokens=8)).extract_batch([req])[0]
    assert cut.status == "truncated" and cut.attempts == 2 and cut.data is None
    assert cut.output_tokens == 16 and full.raw_text.startswith(cut.raw_text) and cut.raw_text != full.raw_text


def test_timeout_and_out_of_memory_guards(tiny_backends, pages, monkeypatch):
    import torch

    req = VlmRequest(images=(pages["invoice_two_page.pdf"][0],), schema=Invoice)
    assert get_backend("transformers", tiny_options("qwen2_5_vl", timeout_s=1e-9)).extract_batch([req])[0].status == "timeout"

    backend = tiny_backends["qwen2_5_vl"]  # monkeypatch puts its _generate back after the test
    real = backend._generate
    calls = []

    def oom_at_full_budget(jobs, max_new_tokens, min_pixels, max_pixels):
        calls.append((len(jobs), max_pixels))
        if max_pixels == backend.options.max_pixels:
            raise torch.OutOfMemoryError("CUDA out of memory (simulated)")
        return real(jobs, max_new_tokens, min_pixels, max_pixels)

    monkeypatch.setattr(backend, "_generate", oom_at_full_budget)
    results = backend.extract_batch([req, req])
    assert [r.status for r in results] == ["ok", "ok"] and all(r.attempts == 2 for r in results)
    assert calls == [(2, backend.options.max_pixels)] + [(1, backend.options.max_pixels // 4)] * 2
    assert results[0].image_pixels <= backend.options.max_pixels // 4

    def always_oom(*args):
        raise torch.OutOfMemoryError("CUDA out of memory (simulated)")

    monkeypatch.setattr(backend, "_generate", always_oom)
    res = backend.extract_batch([req])[0]
    assert res.status == "failed" and "out of memory" in res.error and res.data is None


def test_repetition_loop_guard():
    import torch

    from docroute.extractors.vlm.hf_decode import Guards

    class Proc:
        finish = [None, None, "stop"]

    prompt = torch.arange(10).repeat(3, 1)
    loop = torch.tensor([5, 6, 7] * 22)[:64]
    varied = torch.arange(100, 164)
    ids = torch.cat([prompt, torch.stack([loop, varied, loop])], dim=1)
    guard = Guards(Proc(), prompt_len=10, deadline=float("inf"), window=64, max_period=16)
    assert guard(ids, None).tolist() == [True, False, False]  # the finished third row is not flagged again
    assert Proc.finish == ["loop", None, "stop"]


def test_loop_guard_on_a_real_run_stops_early(pages):
    """A tiny model whose output embedding is zero gives every token the same logit, so greedy decoding
    takes the grammar's lowest admitted token id at each step: inside the first string that is one token,
    repeated. The guard must stop that decoding; without it the same decoding runs on."""
    import torch

    from docroute.extractors.vlm.hf import TransformersVlm
    from docroute.extractors.vlm.hf_load import load

    vlm = load(tiny_vlm.model_dir("qwen2_5_vl"), dtype="float32")  # its own copy: the shared model stays random
    with torch.no_grad():
        vlm.model.get_output_embeddings().weight.zero_()
    req = VlmRequest(images=(pages["invoice_two_page.pdf"][0],), schema=Invoice)
    budget, window = 200, 16
    looped = TransformersVlm(tiny_options("qwen2_5_vl", loop_window=window, max_string_chars=300,
                                          max_new_tokens=budget), loaded=vlm).extract_batch([req])[0]
    free = TransformersVlm(tiny_options("qwen2_5_vl", loop_window=0, max_string_chars=300,
                                        max_new_tokens=budget), loaded=vlm).extract_batch([req])[0]
    assert looped.status == "invalid" and "repetition loop" in looped.error and looped.data is None
    assert looped.attempts == 1 and window <= looped.output_tokens < budget
    assert looped.raw_text.startswith('{"invoice_number": "')  # stopped inside the first string
    # the same decoding, cut by the guard: unguarded it goes on past the loop and is not stopped as one
    assert free.raw_text.startswith(looped.raw_text) and free.output_tokens > looped.output_tokens
    assert "repetition loop" not in (free.error or "")
