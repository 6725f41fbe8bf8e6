"""VLM path benchmark: pages/s and tokens per page of the transformers backend, batch sizes 1 to 16.

    python bench/vlm_bench.py                                   # the tiny random Qwen2.5-VL (built here)
    python bench/vlm_bench.py --model models/qwen2.5-vl-3b      # a downloaded model folder
    python bench/vlm_bench.py --model ... --batch-sizes 1,4,16 --pages 32 --out out/vlm_bench

Each page of sample_docs/ (cycled up to --pages) is one request for the Invoice schema, rendered at
the pixel budget and decoded with the grammar, exactly as the pipeline's VLM stage sends it. For each
batch size: one warm-up batch, then all pages timed; reported are pages/s, prompt and output tokens
per page, statuses, and peak GPU memory (torch.cuda.max_memory_allocated) or, on CPU, the process's
peak RSS. Writes ``<out>.json`` and ``<out>.md`` when --out is given.

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
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))


def sample_pages(n: int, dpi: float = 100.0):
    import tiny_vlm

    names = sorted(p.name for p in (REPO / "sample_docs").iterdir()
                   if p.suffix.lower() in (".pdf", ".png") and not p.name.startswith("broken"))
    images = [img for pages in tiny_vlm.sample_images(names, dpi).values() for img in pages]
    return [images[i % len(images)] for i in range(n)]


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
    ap.add_argument("--pages", type=int, default=16, help="pages timed per batch size")
    ap.add_argument("--max-new-tokens", type=int, default=None)
    ap.add_argument("--max-pixels", type=int, default=None)
    ap.add_argument("--device", default="auto")
    ap.add_argument("--dtype", default="auto")
    ap.add_argument("--out", type=Path, default=None, help="write <out>.json and <out>.md")
    args = ap.parse_args(argv)

    import torch

    from docroute.extractors.vlm import VlmOptions, VlmRequest, get_backend
    from docroute.extractors.vlm.hf import with_options
    from docroute.schemas.targets import Invoice

    torch.set_num_threads(max(1, min(8, os.cpu_count() or 1)))
    if args.model:
        options = VlmOptions(model=args.model, device=args.device, dtype=args.dtype)
        label = Path(args.model).name
    else:
        import tiny_vlm

        options = tiny_vlm.options("qwen2_5_vl", device=args.device, dtype=args.dtype)
        label = "tiny random Qwen2.5-VL (tests/tiny_vlm.py)"
    changes = {k: v for k, v in (("max_new_tokens", args.max_new_tokens), ("max_pixels", args.max_pixels)) if v}
    options = VlmOptions(**(options.__dict__ | changes))
    t0 = time.perf_counter()
    base = get_backend("transformers", options)
    load_s = time.perf_counter() - t0
    device = base.vlm.device
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    pages = sample_pages(args.pages)
    requests = [VlmRequest(images=(img,), schema=Invoice) for img in pages]
    rows = []
    for bs in [int(b) for b in args.batch_sizes.split(",") if b.strip()]:
        backend = with_options(base, batch_size=bs)
        backend.extract_batch(requests[:bs])  # warm-up: kernels, grammar compile, allocator
        if device.type == "cuda":
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
        t = time.perf_counter()
        results = backend.extract_batch(requests)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        dt = time.perf_counter() - t
        statuses: dict[str, int] = {}
        for r in results:
            statuses[r.status] = statuses.get(r.status, 0) + 1
        rows.append({
            "batch_size": bs, "pages": len(results), "seconds": round(dt, 3), "pages_per_s": round(len(results) / dt, 3),
            "prompt_tokens_per_page": round(sum(r.prompt_tokens for r in results) / len(results), 1),
            "output_tokens_per_page": round(sum(r.output_tokens for r in results) / len(results), 1),
            "output_tokens_per_s": round(sum(r.output_tokens for r in results) / dt, 1),
            "image_pixels_per_page": round(sum(r.image_pixels for r in results) / len(results)),
            "statuses": statuses, "peak_memory_mb": round(peak_memory_mb(device), 1),
        })
        print(json.dumps(rows[-1]), flush=True)
    report = {
        "model": label, "device": gpu or f"CPU ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)",
        "dtype": str(base.vlm.dtype).replace("torch.", ""), "load_s": round(load_s, 2),
        "max_pixels": options.max_pixels, "max_new_tokens": options.max_new_tokens,
        "memory": "peak GPU memory allocated" if gpu else "peak process RSS", "rows": rows,
        "versions": {"torch": torch.__version__, "transformers": __import__("transformers").__version__},
    }
    md = [f"VLM path, {report['model']} on {report['device']} ({report['dtype']}), Invoice schema, "
          f"{args.pages} sample pages, max_pixels {options.max_pixels}:", "",
          "| batch | pages/s | output tokens/s | prompt tokens/page | output tokens/page | "
          f"{'GPU memory' if gpu else 'peak RSS'} (MiB) | statuses |",
          "|---:|---:|---:|---:|---:|---:|---|"]
    md += [f"| {r['batch_size']} | {r['pages_per_s']:.2f} | {r['output_tokens_per_s']:.0f} | "
           f"{r['prompt_tokens_per_page']:.0f} | {r['output_tokens_per_page']:.0f} | {r['peak_memory_mb']:.0f} | "
           + ", ".join(f"{k} {v}" for k, v in sorted(r["statuses"].items())) + " |" for r in rows]
    print("\n".join(md))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.with_suffix(".json").write_text(json.dumps(report, indent=2))
        args.out.with_suffix(".md").write_text("\n".join(md) + "\n")
    return report


if __name__ == "__main__":
    main()
