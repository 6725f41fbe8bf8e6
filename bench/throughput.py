"""Throughput and memory of docroute beside the engines underneath, in one run.

Builds N-page corpora from the sample invoices (digital and scanned; each copy gets distinct bytes so
docroute does not deduplicate it) and runs, each in its own process tree with the same worker count:

- docroute: the real ``docroute run`` CLI (worker processes, Delta tables out; without a Prefect API it
  runs without Prefect). Reported as wall time, the run's own processing time, the fixed cost (wall of
  a one-invoice run from a cold CLI) and the marginal cost ((wall - fixed) against the floor's time).
- floor: PyMuPDF words, drawings and ruled tables (digital) / PyMuPDF render + tesseract (scans) over
  the same files in one pool of the same size: what the engines underneath cost with nothing else.
- unstructured: ``partition_pdf`` with strategy fast (digital) / ocr_only (scans), a peer.

Peak RSS is the largest sum of RSS over the process tree, sampled every 50 ms.

With ``--dask`` docroute also runs with ``--runner dask`` (a LocalCluster of the same worker count,
started for the run) beside the thread runner, on the same files.

With ``--scale N`` it runs docroute alone on N one-page invoices (distinct bytes) and reports pages/s,
live data files per Delta table, the DuckDB time to read every invoice row, and peak RSS.

    python bench/throughput.py [--pages 40] [--workers 2] [--only digital|scanned] [--dask]
    python bench/throughput.py --scale 10000 [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "sample_docs"
CORPORA = {
    "digital": ["invoice_ruled.pdf", "invoice_unruled.pdf", "invoice_two_page.pdf"],
    "scanned": ["invoice_scanned.pdf"],
}

FLOOR = r"""
import sys, os
from multiprocessing import Pool
sys.modules["pymupdf.layout"] = None
import pymupdf
def one(path):
    doc = pymupdf.open(path); n = 0
    for page in doc:
        if page.get_text().strip():  # what a digital page needs at least: words, drawings, ruled tables
            page.get_text("words"); page.get_drawings(); page.find_tables()
        else:
            import pytesseract
            pix = page.get_pixmap(dpi=200, colorspace=pymupdf.csGRAY)
            from PIL import Image
            pytesseract.image_to_string(Image.frombytes("L", (pix.width, pix.height), pix.samples), timeout=120)
        n += 1
    return n
if __name__ == "__main__":
    files = sys.argv[2:]
    with Pool(int(sys.argv[1])) as pool:
        print(sum(pool.map(one, files, chunksize=1)))
"""

UNSTRUCTURED = r"""
import sys
from multiprocessing import Pool
def one(path):
    from docroute.extractors.unstructured_engine import ensure_nlp_pipeline
    ensure_nlp_pipeline()
    from unstructured.partition.pdf import partition_pdf
    import pymupdf
    scanned = not pymupdf.open(path)[0].get_text().strip()
    elements = partition_pdf(filename=path, strategy="ocr_only" if scanned else "fast")
    return len({e.metadata.page_number for e in elements})
if __name__ == "__main__":
    files = sys.argv[2:]
    with Pool(int(sys.argv[1])) as pool:
        print(sum(pool.map(one, files, chunksize=1)))
"""


def build_corpus(kind: str, pages: int, folder: Path) -> tuple[list[Path], int]:
    folder.mkdir(parents=True, exist_ok=True)
    import pymupdf

    sources = [(SAMPLES / name, pymupdf.open(SAMPLES / name).page_count) for name in CORPORA[kind]]
    files, total, i = [], 0, 0
    while total < pages:
        src, n = sources[i % len(sources)]
        dst = folder / f"{i:04d}_{src.name}"
        dst.write_bytes(src.read_bytes() + f"\n% bench copy {i}\n".encode())
        files.append(dst)
        total += n
        i += 1
    return files, total


def measure(cmd: list[str], env: dict | None = None) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MiB over the process tree, stdout)."""
    t0 = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.DEVNULL, env=env)
        root = psutil.Process(proc.pid)
        peak = 0
        while proc.poll() is None:
            try:
                procs = [root, *root.children(recursive=True)]
                peak = max(peak, sum(p.memory_info().rss for p in procs if p.is_running()))
            except psutil.Error:
                pass
            time.sleep(0.05)
        wall = time.perf_counter() - t0
        out.seek(0)
        text = out.read().decode(errors="replace")
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({proc.returncode}):\n{text[-2000:]}")
    return wall, peak / 2**20, text


def run_docroute(corpus: Path, out: Path, workers: int, runner: str = "threads") -> dict:
    docroute = str(Path(sys.executable).with_name("docroute"))
    wall, rss, _ = measure([docroute, "run", str(corpus), "--out", str(out), "--workers", str(workers),
                            "--runner", runner])
    from docroute.pipelines.sink import DeltaSink, read_table

    runs = max(read_table(DeltaSink(out, "invoice"), "runs").to_pylist(), key=lambda r: r["started_at"])
    flow_s = (runs["finished_at"] - runs["started_at"]).total_seconds()
    counts = dict(runs["counts"])
    return {"wall": wall, "flow": flow_s, "rss": rss, "pages": counts["pages"], "counts": counts}


def fixed_cost(work: Path, workers: int) -> float:
    """Wall seconds of a cold ``docroute run`` on one invoice: what every run pays before its pages."""
    one = work / "one"
    one.mkdir(parents=True, exist_ok=True)
    shutil.copy(SAMPLES / "invoice_ruled.pdf", one / "invoice_ruled.pdf")
    return run_docroute(one, work / "out-one", workers)["wall"]


def scale(n: int, workers: int, work: Path) -> None:
    """docroute alone on ``n`` one-page invoices: pages/s, live files per table, DuckDB read time, RSS."""
    from docroute.pipelines.sink import DeltaSink, sql_connection

    corpus = work / "scale"
    corpus.mkdir(parents=True)
    data = (SAMPLES / "invoice_ruled.pdf").read_bytes()
    for i in range(n):
        (corpus / f"{i:06d}.pdf").write_bytes(data + f"\n% bench copy {i}\n".encode())
    out = work / "out-scale"
    d = run_docroute(corpus, out, workers)
    sink = DeltaSink(out, "invoice")
    files = {name: sink.live_files(name) for name in sink.tables()}
    t0 = time.perf_counter()
    rows = sql_connection(out).sql("SELECT count(*), count(DISTINCT doc_id) FROM invoice").fetchall()[0]
    duck = time.perf_counter() - t0
    print(f"scale: {n} one-page invoices, workers={workers}, cpu={os.cpu_count()} cores")
    print(f"  wall {d['wall']:.1f} s, run {d['flow']:.1f} s, {d['pages'] / d['wall']:.2f} pages/s (wall), "
          f"peak RSS {d['rss']:.0f} MiB; {d['counts'].get('batches')} commit batches, "
          f"{d['counts'].get('commit_ms', 0) / 1000:.1f} s committing")
    print(f"  live data files per table: {files}")
    print(f"  DuckDB: read every invoice row ({rows[0]} rows, {rows[1]} distinct doc_id) in {duck:.3f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, default=40)
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--only", choices=sorted(CORPORA))
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--dask", action="store_true", help="also run docroute with --runner dask")
    ap.add_argument("--scale", type=int, help="docroute alone on this many one-page invoices")
    args = ap.parse_args()
    if args.scale:
        work = Path(tempfile.mkdtemp(prefix="docroute-bench-"))
        try:
            scale(args.scale, args.workers, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return
    kinds = [args.only] if args.only else list(CORPORA)
    rows = []
    work = Path(tempfile.mkdtemp(prefix="docroute-bench-"))
    try:
        fixed = fixed_cost(work, args.workers)
        for kind in kinds:
            files, pages = build_corpus(kind, args.pages, work / kind)
            names = [str(f) for f in files]
            floor_wall, floor_rss, _ = measure([sys.executable, "-c", FLOOR, str(args.workers), *names])
            uns_wall, uns_rss, _ = measure([sys.executable, "-c", UNSTRUCTURED, str(args.workers), *names])
            measured = [
                ("floor (PyMuPDF" + (" + tesseract)" if kind == "scanned" else " words, drawings, tables)"), floor_wall,
                 floor_rss),
                ("unstructured " + ("ocr_only" if kind == "scanned" else "fast"), uns_wall, uns_rss),
            ]
            for runner in ("threads", "dask") if args.dask else ("threads",):
                d = run_docroute(work / kind, work / f"out-{kind}-{runner}", args.workers, runner)
                assert d["pages"] == pages, (d["pages"], pages)
                label = "" if runner == "threads" else " --runner dask"
                measured += [(f"docroute run{label} (wall)", d["wall"], d["rss"]),
                             (f"docroute run{label} (processing only)", d["flow"], d["rss"]),
                             (f"docroute run{label} marginal (wall - fixed {fixed:.1f} s)", d["wall"] - fixed, d["rss"])]
            for engine, wall, rss in measured:
                rows.append({"corpus": kind, "engine": engine, "pages": pages, "seconds": round(wall, 2),
                             "pages_per_s": round(pages / wall, 2), "peak_rss_mib": round(rss),
                             "x_floor_time": round(wall / floor_wall, 2)})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"workers={args.workers}, cpu={os.cpu_count()} cores; fixed cost (cold one-invoice run): {fixed:.2f} s")
    print("| corpus | engine | pages | s | pages/s | peak RSS MiB | time vs floor |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['corpus']} | {r['engine']} | {r['pages']} | {r['seconds']} | {r['pages_per_s']} | "
              f"{r['peak_rss_mib']} | {r['x_floor_time']}x |")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
