"""VLM path benchmark: pages/s and tokens per page of the transformers backend, batch sizes 1 to 16.

    python bench/vlm_bench.py                                   # the tiny random Qwen2.5-VL (built here)
    python bench/vlm_bench.py --model models/qwen2.5-vl-3b      # a downloaded model folder
    python bench/vlm_bench.py --model ... --batch-sizes 1,4,16 --pages 32 --out out/vlm_bench
    python bench/vlm_bench.py --config bench/qwen2_5_vl_3b_config.json --fixed-new-tokens 256 --batches 2

Each page of sample_docs/ (cycled up to --pages; or the PNGs of --pages-dir) is one request for the
Invoice schema, rendered at the pixel budget and decoded with the grammar, exactly as the pipeline's
VLM stage sends it. For each batch size: one warm-up batch, then all pages timed (--batches K: K
batches, K x batch size pages); reported are pages/s, prompt, image and output tokens per page,
statuses, and peak GPU memory (torch.cuda.max_memory_allocated) or, on CPU, the process's peak RSS.
Writes ``<out>.json`` and ``<out>.md`` when --out is given.

--config builds a full-size model with random weights from an architecture config (bench/random_vlm.py)
into a temporary folder and loads it through the pipeline's loader; --fixed-new-tokens N makes every
page decode exactly N tokens (random weights stop at random), so its pages end ``invalid``.

Numbers from the tiny random model measure the decoding machinery (grammar, batching, confidence),
not a real model's speed: its answers are short and its forward pass is nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import time
from dataclasses import replace
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def sample_pages(n: int, dpi: float = 100.0, folder: Path | None = None):
    import tiny_vlm

    if folder:  # pages rendered beforehand (bench/gpu_check.sh --fetch-wheels; PyMuPDF is too big to carry)
        from PIL import Image

        images = [Image.open(p).convert("RGB") for p in sorted(Path(folder).glob("*.png"))]
        if not images:
            raise FileNotFoundError(f"no PNG pages in {folder}")
        return [images[i % len(images)] for i in range(n)]
    names = sorted(p.name for p in (REPO / "sample_docs").iterdir()
                   if p.suffix.lower() in (".pdf", ".png") and not p.name.startswith("broken"))
    images = [img for pages in tiny_vlm.sample_images(names, dpi).values() for img in pages]
    return [images[i % len(images)] for i in range(n)] if n else images


def _with(options, **changes):
    """The options with some values changed (a frozen dataclass or a frozen pydantic model)."""
    return options.model_copy(update=changes) if hasattr(options, "model_copy") else replace(options, **changes)


def peak_memory_mb(device) -> float:
    import torch

    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description="VLM path benchmark (pages/s, tokens per page, memory)")
    ap.add_argument("--model", default=os.environ.get("DOCROUTE_VLM_MODEL"),
                    help="local model folder (default: $DOCROUTE_VLM_MODEL, else a tiny random Qwen2.5-VL)")
    ap.add_argument("--batch-sizes", default="1,2,4,8,16")
    ap.add_argument("--config", type=Path, default=None,
                    help="architecture config: build a full-size model with random weights (bench/random_vlm.py)")
    ap.add_argument("--layers", type=int, default=None, help="with --config: cut to this many layers (a quick check)")
    ap.add_argument("--fixed-new-tokens", type=int, default=None, help="decode exactly this many tokens per page")
    ap.add_argument("--pages", type=int, default=16, help="pages timed per batch size")
    ap.add_argument("--batches", type=int, default=None, help="time this many batches per batch size instead")
    ap.add_argument("--pages-dir", type=Path, default=None, help="PNG pages to use instead of rendering sample_docs/")
    ap.add_argument("--max-new-tokens", type=int, default=None)
    ap.add_argument("--max-pixels", type=int, default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--out", type=Path, default=None, help="write <out>.json and <out>.md")
    ap.add_argument("--save-pages", type=Path, default=None, help="only render the sample pages as PNGs into this folder")
    args = ap.parse_args(argv)
    if args.save_pages:
        args.save_pages.mkdir(parents=True, exist_ok=True)
        images = sample_pages(0)
        for i, img in enumerate(images):
            img.save(args.save_pages / f"page{i:02d}.png")
        print(f"{len(images)} pages in {args.save_pages}")
        return {}

    import random_vlm
    import torch

    from docroute.extractors.vlm import VlmOptions, VlmRequest, get_backend
    from docroute.schemas.targets import Invoice

    torch.set_num_threads(max(1, min(8, os.cpu_count() or 1)))
    build_s = None
    if args.config:
        import atexit
        import shutil
        import tempfile

        dev = "cuda" if args.device == "auto" and torch.cuda.is_available() else args.device.replace("auto", "cpu")
        dtype = "bfloat16" if args.dtype == "auto" and dev.startswith("cuda") else args.dtype.replace("auto", "float32")
        folder = Path(tempfile.mkdtemp(prefix="docroute-random-vlm-"))
        atexit.register(shutil.rmtree, folder, True)
        t0 = time.perf_counter()
        random_vlm.build(args.config, folder, dev, dtype, layers=args.layers)
        build_s = round(time.perf_counter() - t0, 2)
        args.model = str(folder)
        label = f"{args.config.stem} with random weights" + (f", cut to {args.layers} layers" if args.layers else "")
    if args.model:
        options = VlmOptions(model=args.model, device=args.device, dtype=args.dtype)
        label = label if args.config else Path(args.model).name
    else:
        import tiny_vlm

        options = tiny_vlm.options("qwen2_5_vl", device=args.device, dtype=args.dtype)
        label = "tiny random Qwen2.5-VL (tests/tiny_vlm.py)"
    changes = {k: v for k, v in (("max_new_tokens", args.max_new_tokens or args.fixed_new_tokens),
                                 ("max_pixels", args.max_pixels)) if v}
    if args.fixed_new_tokens:  # no loop guard or deadline may end a page early
        changes |= {"loop_window": 0, "timeout_s": 3600.0}
    options = VlmOptions(**(options.__dict__ | changes))
    t0 = time.perf_counter()
    base = get_backend("transformers", options)
    load_s = time.perf_counter() - t0
    device = base.vlm.device
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    pages = sample_pages(max(sizes) * args.batches if args.batches else args.pages, folder=args.pages_dir)
    requests = [VlmRequest(images=(img,), schema=Invoice) for img in pages]
    counter = random_vlm.count_tokens(base, fixed=args.fixed_new_tokens)
    rows = []
    for bs in sizes:
        backend = type(base)(_with(base.options, batch_size=bs), loaded=base.vlm)
        counter.fixed = args.fixed_new_tokens and min(16, args.fixed_new_tokens)
        backend.extract_batch(requests[:bs])  # warm-up: kernels, grammar compile, allocator
        counter.fixed = args.fixed_new_tokens
        counter.reset()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        t = time.perf_counter()
        results = backend.extract_batch(requests[:bs * args.batches] if args.batches else requests)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        dt = time.perf_counter() - t
        statuses: dict[str, int] = {}
        for r in results:
            statuses[r.status] = statuses.get(r.status, 0) + 1
        rows.append({
            "batch_size": bs, "pages": len(results), "seconds": round(dt, 3), "pages_per_s": round(len(results) / dt, 3),
            "prompt_tokens_per_page": round(sum(r.prompt_tokens for r in results) / len(results), 1),
            "image_tokens_per_page": round(counter.image_tokens / max(1, counter.rows), 1),
            "output_tokens_per_page": round(sum(r.output_tokens for r in results) / len(results), 1),
            "output_tokens_per_s": round(sum(r.output_tokens for r in results) / dt, 1),
            "image_pixels_per_page": round(sum(r.image_pixels for r in results) / len(results)),
            "statuses": statuses, "peak_memory_mb": round(peak_memory_mb(device), 1),
        })
        print(json.dumps(rows[-1]), flush=True)
    report = {
        "model": label, "device": gpu or f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)",
        "dtype": str(base.vlm.dtype).replace("torch.", ""), "load_s": round(load_s, 2), "build_s": build_s,
        "max_pixels": options.max_pixels, "max_new_tokens": options.max_new_tokens,
        "fixed_new_tokens": args.fixed_new_tokens, "batches": args.batches,
        "memory": "peak GPU memory allocated" if gpu else "peak process RSS", "rows": rows,
        "versions": {"torch": torch.__version__, "transformers": __import__("transformers").__version__},
    }
    timed = f"{args.batches} batches per batch size" if args.batches else f"{args.pages} sample pages"
    fixed = f", exactly {args.fixed_new_tokens} new tokens per page" if args.fixed_new_tokens else ""
    md = [f"VLM path, {report['model']} on {report['device']} ({report['dtype']}), Invoice schema, "
          f"{timed}, max_pixels {options.max_pixels}{fixed}:", "",
          "| batch | pages/s | output tokens/s | prompt tokens/page | image tokens/page | output tokens/page | "
          f"{'GPU memory' if gpu else 'peak RSS'} (MiB) | statuses |",
          "|---:|---:|---:|---:|---:|---:|---:|---|"]
    md += [f"| {r['batch_size']} | {r['pages_per_s']:.2f} | {r['output_tokens_per_s']:.0f} | "
           f"{r['prompt_tokens_per_page']:.0f} | {r['image_tokens_per_page']:.0f} | {r['output_tokens_per_page']:.0f} | "
           f"{r['peak_memory_mb']:.0f} | "
           + ", ".join(f"{k} {v}" for k, v in sorted(r["statuses"].items())) + " |" for r in rows]
    print("\n".join(md))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps(report, indent=2))
        args.out.with_suffix(".md").write_text("\n".join(md) + "\n")
    return report


if __name__ == "__main__":
    main()
