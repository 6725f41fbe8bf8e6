"""Throughput and memory of docroute beside the engines underneath, in one run.

Builds N-page corpora from the sample invoices (digital: 200 pages = 150 invoices by default, issue
13's corpus; scanned: 16 pages; each copy gets distinct bytes so docroute does not deduplicate it) and
runs, each in its own process tree with the same worker count:

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

With ``--repeat N`` the floor, the fixed cost and docroute run in turn N times and each figure is the
median; the last lines state the marginal cost against the floor's wall (issue 13's measure: (T150 -
T1) / floor) and against the floor's own marginal (its wall less its wall on one invoice: Python, the
imports and the pool start), which is the stricter comparison, and in CPU seconds of each process
tree (the corpus less one invoice), which other work on the machine disturbs far less than wall time.

    python bench/throughput.py [--pages 200] [--workers 2] [--only digital|scanned] [--repeat 3] [--dask]
    python bench/throughput.py --scale 10000 [--workers 2]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
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
DEFAULT_PAGES = {"digital": 200, "scanned": 16}  # digital: 150 invoices, issue 13's side-by-side corpus

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


def _children_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _adopt_orphans() -> bool:
    """Make this process the reaper of its orphaned descendants (Linux), so that the CPU time of a
    process whose parent exited first (multiprocessing's forkserver and its workers) is counted."""
    try:
        import ctypes

        return ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0) == 0  # PR_SET_CHILD_SUBREAPER
    except (OSError, AttributeError):
        return False


def _reap_orphans(limit_s: float = 30.0) -> None:
    """Wait (up to ``limit_s``) for the adopted descendants of a finished command to exit."""
    end = time.monotonic() + limit_s
    while time.monotonic() < end:
        try:
            pid, _status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            time.sleep(0.05)


def measure(cmd: list[str], env: dict | None = None) -> tuple[float, float, str, float]:
    """(wall seconds, peak RSS MiB over the process tree, stdout, CPU seconds of the process tree).

    The CPU seconds (user + system of every process of the tree: orphans are adopted and reaped here,
    see ``_adopt_orphans``) change far less than the wall time when other work shares the machine."""
    cpu0 = _children_cpu()
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
        _reap_orphans()
        out.seek(0)
        text = out.read().decode(errors="replace")
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({proc.returncode}):\n{text[-2000:]}")
    return wall, peak / 2**20, text, _children_cpu() - cpu0


def run_docroute(corpus: Path, out: Path, workers: int, runner: str = "threads") -> dict:
    docroute = str(Path(sys.executable).with_name("docroute"))
    wall, rss, _, cpu = measure([docroute, "run", str(corpus), "--out", str(out), "--workers", str(workers),
                                 "--runner", runner])
    from docroute.pipelines.sink import DeltaSink, read_table

    runs = max(read_table(DeltaSink(out, "invoice"), "runs").to_pylist(), key=lambda r: r["started_at"])
    flow_s = (runs["finished_at"] - runs["started_at"]).total_seconds()
    counts = dict(runs["counts"])
    return {"wall": wall, "flow": flow_s, "rss": rss, "pages": counts["pages"], "counts": counts, "cpu": cpu}


def fixed_cost(work: Path, workers: int) -> dict:
    """A cold ``docroute run`` on one invoice (wall, cpu...): what every run pays before its pages."""
    one = work / "one"
    one.mkdir(parents=True, exist_ok=True)
    shutil.copy(SAMPLES / "invoice_ruled.pdf", one / "invoice_ruled.pdf")
    return run_docroute(one, work / "out-one", workers)


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


def side_by_side(kind: str, pages: int, args, work: Path) -> tuple[list[dict], str]:
    """Floor, peer and docroute on the same files; with ``--repeat`` the floor, the fixed cost and docroute
    run in turn ``repeat`` times and each figure is the median (the machine may be shared)."""
    files, pages = build_corpus(kind, pages, work / kind)
    names = [str(f) for f in files]
    floor_cmd = [sys.executable, "-c", FLOOR, str(args.workers)]
    floors, floor_ones, fixeds, runs = [], [], [], []
    for i in range(args.repeat):
        floors.append(measure([*floor_cmd, *names]))
        floor_ones.append(measure([*floor_cmd, names[0]]))  # the floor's own start: Python, imports, pool
        fixeds.append(fixed_cost(work / f"fixed-{i}", args.workers))
        d = run_docroute(work / kind, work / f"out-{kind}-{i}", args.workers)
        assert d["pages"] == pages, (d["pages"], pages)
        runs.append(d)
    floor_wall, floor_rss = statistics.median(f[0] for f in floors), max(f[1] for f in floors)
    floor_one, fixed = statistics.median(f[0] for f in floor_ones), statistics.median(f["wall"] for f in fixeds)
    floor_cpu = statistics.median(f[3] - o[3] for f, o in zip(floors, floor_ones, strict=True))
    cpu = statistics.median(d["cpu"] - f["cpu"] for d, f in zip(runs, fixeds, strict=True))
    wall = statistics.median(d["wall"] for d in runs)
    flow = statistics.median(d["flow"] for d in runs)
    rss = max(d["rss"] for d in runs)
    label = "floor (PyMuPDF" + (" + tesseract)" if kind == "scanned" else " words, drawings, tables)")
    measured = [(label, floor_wall, floor_rss)]
    if not args.no_peer:
        uns_wall, uns_rss, *_ = measure([sys.executable, "-c", UNSTRUCTURED, str(args.workers), *names])
        measured.append(("unstructured " + ("ocr_only" if kind == "scanned" else "fast"), uns_wall, uns_rss))
    measured += [("docroute run (wall)", wall, rss), ("docroute run (processing only)", flow, rss),
                 (f"docroute run marginal (wall - fixed {fixed:.1f} s)", wall - fixed, rss)]
    if args.dask:
        d = run_docroute(work / kind, work / f"out-{kind}-dask", args.workers, "dask")
        measured += [("docroute run --runner dask (wall)", d["wall"], d["rss"]),
                     ("docroute run --runner dask (processing only)", d["flow"], d["rss"])]
    rows = [{"corpus": kind, "engine": engine, "pages": pages, "seconds": round(w, 2),
             "pages_per_s": round(pages / w, 2), "peak_rss_mib": round(r), "x_floor_time": round(w / floor_wall, 2)}
            for engine, w, r in measured]
    marginal = wall - fixed
    verdict = (
        f"{kind}: {pages} pages, median of {args.repeat}: fixed cost {fixed:.2f} s (goal <= 3 s); marginal "
        f"{marginal:.2f} s = {marginal / floor_wall:.2f}x the floor's {floor_wall:.2f} s (goal <= 1.5x); against "
        f"the floor's own marginal ({floor_wall:.2f} - {floor_one:.2f} s for one invoice) "
        f"{marginal / max(floor_wall - floor_one, 1e-9):.2f}x; walls: floor {[round(f[0], 2) for f in floors]}, "
        f"fixed {[round(f['wall'], 2) for f in fixeds]}, docroute {[round(d['wall'], 2) for d in runs]}. "
        f"CPU seconds of the process trees, marginal (the corpus less one invoice): docroute {cpu:.2f} s, floor "
        f"{floor_cpu:.2f} s = {cpu / max(floor_cpu, 1e-9):.2f}x ({1000 * cpu / pages:.1f} against "
        f"{1000 * floor_cpu / pages:.1f} ms a page)"
    )
    return rows, verdict


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pages", type=int, help="pages per corpus (default: 200 digital = 150 invoices, 16 scanned)")
    ap.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    ap.add_argument("--only", choices=sorted(CORPORA))
    ap.add_argument("--repeat", type=int, default=1,
                    help="run floor, fixed cost and docroute this many times in turn and report medians")
    ap.add_argument("--no-peer", action="store_true", help="skip unstructured")
    ap.add_argument("--json", type=Path, help="also write the figures here")
    ap.add_argument("--dask", action="store_true", help="also run docroute with --runner dask")
    ap.add_argument("--scale", type=int, help="docroute alone on this many one-page invoices")
    args = ap.parse_args()
    _adopt_orphans()
    if args.scale:
        work = Path(tempfile.mkdtemp(prefix="docroute-bench-"))
        try:
            scale(args.scale, args.workers, work)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return
    kinds = [args.only] if args.only else list(CORPORA)
    rows, verdicts = [], []
    work = Path(tempfile.mkdtemp(prefix="docroute-bench-"))
    try:
        for kind in kinds:
            kind_rows, verdict = side_by_side(kind, args.pages or DEFAULT_PAGES[kind], args, work)
            rows += kind_rows
            verdicts.append(verdict)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(f"workers={args.workers}, cpu={os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} at the end")
    print("| corpus | engine | pages | s | pages/s | peak RSS MiB | time vs floor |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['corpus']} | {r['engine']} | {r['pages']} | {r['seconds']} | {r['pages_per_s']} | "
              f"{r['peak_rss_mib']} | {r['x_floor_time']}x |")
    for v in verdicts:
        print(v)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
