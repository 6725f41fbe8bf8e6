"""Hostile and broken inputs: a corpus generated here goes through the real CLI (worker processes,
memory limit, timeouts); each input gives a correct result or a failed/partial row with a clear
reason, nothing crashes, nothing is lost or duplicated, memory stays bounded.

The corpus (``build_hostile_corpus``) is also what README "Fault tests" counts.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import pymupdf
import pytest

from docroute.pipelines import ingest
from docroute.pipelines.process import process_document
from docroute.pipelines.settings import Settings
from docroute.pipelines.sink import sql_connection

from conftest import SAMPLES, cli, committed, file_permissions_apply

PASSWORD = "k3ep-0ut"
NON_UTF8 = os.fsdecode(b"inv\xff\xfe-latin1-r\xe9sum\xe9.pdf")  # not valid UTF-8: kept as bytes on disk
NON_UTF8_SHOWN = "inv\\xff\\xfe-latin1-r\\xe9sum\\xe9.pdf"  # how it is written to Parquet


# --------------------------------------------------------------------------- corpus builders
def raw_pdf(objects: list[bytes], root: int = 1) -> bytes:
    """A PDF from raw object bodies (object i+1 = objects[i]) with a correct xref table."""
    out = io.BytesIO()
    out.write(b"%PDF-1.7\n")
    offsets = []
    for i, body in enumerate(objects, 1):
        offsets.append(out.tell())
        out.write(f"{i} 0 obj\n".encode() + body + b"\nendobj\n")
    xref = out.tell()
    out.write(f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode())
    for off in offsets:
        out.write(f"{off:010d} 00000 n \n".encode())
    out.write(f"trailer\n<< /Size {len(objects) + 1} /Root {root} 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode())
    return out.getvalue()


def _stream(content: bytes, extra: bytes = b"") -> bytes:
    return b"<< /Length %d %s >>\nstream\n" % (len(content), extra) + content + b"\nendstream"


TEXT = b"BT /F1 12 Tf 72 720 Td (Invoice INV-1 total 100.00 EUR, a hostile test page) Tj ET"
FONT = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"


def _one_page(mediabox: bytes = b"[0 0 612 792]", content: bytes = TEXT,
              resources: bytes = b"<< /Font << /F1 5 0 R >> >>") -> list[bytes]:
    return [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            b"<< /Type /Page /Parent 2 0 R /MediaBox " + mediabox + b" /Contents 4 0 R /Resources " + resources + b" >>",
            _stream(content), FONT]


def deflate_repeated(block: bytes, times: int) -> bytes:
    """zlib data of ``block * times`` without compressing it all: after a full flush the compressor
    starts afresh, so each further copy compresses to the same bytes; the checksum is computed."""
    comp = zlib.compressobj(9)
    first = comp.compress(block) + comp.flush(zlib.Z_FULL_FLUSH)
    again = comp.compress(block) + comp.flush(zlib.Z_FULL_FLUSH)
    adler = 1
    for _ in range(times):
        adler = zlib.adler32(block, adler)
    # then a final empty fixed-Huffman block and the Adler-32 of the whole data
    return first + again * (times - 1) + b"\x03\x00" + struct.pack(">I", adler)


def _png(width: int, height: int, dpi: int | None = None) -> bytes:
    """A white 1-bit PNG: 30,000 x 30,000 px is 150 KB on disk and 900 MB once decoded to gray."""
    row = b"\x00" + b"\xff" * ((width + 7) // 8)
    rows_per_block = 500
    assert height % rows_per_block == 0
    body = deflate_repeated(row * rows_per_block, height // rows_per_block)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    phys = chunk(b"pHYs", struct.pack(">IIB", round(dpi / 0.0254), round(dpi / 0.0254), 1)) if dpi else b""
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)) + phys
            + chunk(b"IDAT", body) + chunk(b"IEND", b""))


def _big_image_pdf(side: int = 30000) -> bytes:
    """A letter page showing a side x side gray image (flate, 1 MB on disk, 900 MB if decoded whole)."""
    body = deflate_repeated(b"\x80" * side * 100, side // 100)
    content = b"q 612 0 0 792 0 0 cm /Im1 Do Q"
    image = (b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceGray "
             b"/BitsPerComponent 8 /Filter /FlateDecode /Length %d >>\nstream\n" % (side, side, len(body))
             + body + b"\nendstream")
    return raw_pdf([b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
                    b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
                    b"/Resources << /XObject << /Im1 5 0 R >> >> >>", _stream(content), image])


NOOPS = b"q Q " * 16384  # 64 KB of no-op drawing operators


def two_pages(second: bytes, first: bytes = TEXT) -> bytes:
    """Page 1 a text line; page 2 drawn by the content stream object ``second`` (a whole stream object)."""
    return raw_pdf([b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R 5 0 R] /Count 2 >>",
                    b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
                    b"/Resources << /Font << /F1 7 0 R >> >> >>", _stream(first),
                    b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 6 0 R "
                    b"/Resources << /Font << /F1 7 0 R >> >> >>", second, FONT])


def content_bomb(inflated_mb: int) -> bytes:
    """Page 2's content stream inflates to ``inflated_mb`` MB of no-op operators (about 1/1000 on disk)."""
    body = deflate_repeated(NOOPS, inflated_mb * 16)
    return two_pages(_stream(body, b"/Filter /FlateDecode"))


PAGE2 = b"BT /F1 24 Tf 72 700 Td (Second page INVOICE 4471 total 312.50) Tj ET"


def mupdf_rejected_page(content: bytes = PAGE2) -> bytes:
    """Page 2's content stream names a PNG predictor with 100,000 colour components: MuPDF refuses the
    stream outright (``too many color components``) and cannot read the page; poppler ignores the
    predictor, draws it and its text. With ``content`` that is not zlib data, poppler draws it blank."""
    data = zlib.compress(content) if content == PAGE2 else content
    return two_pages(_stream(data, b"/Filter /FlateDecode /DecodeParms << /Predictor 2 /Colors 100000 >>"))


def _encrypted(password: str) -> bytes:
    doc = pymupdf.open(SAMPLES / "plain_text.pdf")
    data = doc.tobytes(encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw=password, owner_pw=password + "-owner")
    doc.close()
    return data


def _many_pages(n: int) -> bytes:
    """n pages, each with its own text layer line (page objects share the font)."""
    objs = [b"<< /Type /Catalog /Pages 2 0 R >>",
            b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(b"%d 0 R" % (4 + 2 * i) for i in range(n)), n),
            FONT]
    for i in range(n):
        text = b"BT /F1 12 Tf 72 720 Td (Page %d of a very long report, with a text layer on it) Tj ET" % (i + 1)
        objs += [b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
                 b"/Resources << /Font << /F1 3 0 R >> >> >>" % (5 + 2 * i), _stream(text)]
    return raw_pdf(objs)


def _tiff(truncate: bool) -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (400, 300), 255).save(buf, format="TIFF")
    data = buf.getvalue()
    return data[: len(data) // 2] if truncate else data


def _distinct(data: bytes, tag: str) -> bytes:
    """Same document, different bytes (a comment after %%EOF): a distinct doc_id."""
    return data + f"\n% {tag}\n".encode()


# name -> (allowed statuses, a phrase the error must contain or None); the CLI run checks each row
EXPECT: dict[str, tuple[set[str], str | None]] = {
    "empty.pdf": ({"failed"}, "empty"),
    "truncated_60.pdf": ({"partial", "failed"}, "damaged"),
    "truncated_header.pdf": ({"failed"}, "cannot open"),
    "pdf_named.png": ({"ok"}, None),  # type from the bytes, not the name
    "png_named.pdf": ({"ok"}, None),
    "text_named.pdf": ({"failed"}, "not a supported document type"),
    "encrypted_password_given.pdf": ({"ok"}, None),
    "encrypted_password_unknown.pdf": ({"failed"}, "none of the 2 password"),
    "deep_nested_array.pdf": ({"partial"}, "damaged"),
    "deep_nested_dict.pdf": ({"partial"}, "damaged"),
    "deep_page_tree.pdf": ({"ok"}, None),  # 3,000 levels of /Pages
    "self_ref_page_tree.pdf": ({"partial"}, "cycle in page tree"),
    "self_ref_object.pdf": ({"failed"}, "no pages"),
    "self_drawing_xobject.pdf": ({"ok"}, None),  # a form XObject that draws itself
    "huge_page.pdf": ({"failed"}, "render budget"),
    "zero_size_page.pdf": ({"ok"}, None),
    "pages_2000.pdf": ({"ok"}, None),
    "image_30000px.png": ({"failed"}, "render budget"),
    "image_30000px_600dpi.png": ({"failed"}, "out of memory"),  # 900 MB to decode, over the 768 MB worker limit
    "pdf_with_30000px_image.pdf": ({"ok"}, None),  # MuPDF subsamples while decoding: bounded
    "corrupt.tif": ({"failed"}, "cannot open"),
    "truncated.tif": ({"ok", "partial", "failed"}, None),
    "fifo.pdf": ({"failed"}, "fifo"),
    "dangling_link.pdf": ({"failed"}, "missing"),
    "self_link.pdf": ({"failed"}, "symbolic link loop"),
    NON_UTF8_SHOWN: ({"ok"}, None),
    "inside_a_folder_named.pdf": ({"ok"}, None),
    "content_bomb_1500mb.pdf": ({"partial"}, "max_content_stream_mb"),  # page 2 refused, page 1 kept
    "mupdf_rejects_page_2.pdf": ({"partial"}, "read with poppler"),
    "neither_reads_page_2.pdf": ({"partial"}, "poppler drew it blank"),
}
UNREADABLE_AS_ROOT = {"fifo.pdf", "dangling_link.pdf", "self_link.pdf"}


def build_hostile_corpus(folder: Path) -> dict[str, tuple[set[str], str | None]]:
    """Write the hostile corpus into ``folder``; returns the expectations by file name as written."""
    folder.mkdir(parents=True, exist_ok=True)
    two_page = (SAMPLES / "invoice_two_page.pdf").read_bytes()
    files = {
        "empty.pdf": b"",
        "truncated_60.pdf": two_page[: int(len(two_page) * 0.6)],
        "truncated_header.pdf": two_page[:40],
        "pdf_named.png": (SAMPLES / "invoice_ruled.pdf").read_bytes(),
        "png_named.pdf": (SAMPLES / "invoice_photo.png").read_bytes(),
        "text_named.pdf": b"Dear customer,\nthis is a plain text letter, not a PDF.\n" * 20,
        "encrypted_password_given.pdf": _encrypted(PASSWORD),
        "encrypted_password_unknown.pdf": _encrypted("another-one"),
        "huge_page.pdf": raw_pdf(_one_page(b"[0 0 200000 200000]", b"0 0 1 rg 0 0 100 100 re f")),
        "zero_size_page.pdf": raw_pdf(_one_page(b"[0 0 0 0]")),
        "pages_2000.pdf": _many_pages(2000),
        "image_30000px.png": _png(30000, 30000),
        "image_30000px_600dpi.png": _png(30000, 30000, dpi=600),
        "pdf_with_30000px_image.pdf": _big_image_pdf(),
        "corrupt.tif": b"II*\x00" + struct.pack("<IH", 8, 500) + bytes(range(64)),
        "truncated.tif": _tiff(truncate=True),
        "content_bomb_1500mb.pdf": content_bomb(1500),
        "mupdf_rejects_page_2.pdf": mupdf_rejected_page(),
        "neither_reads_page_2.pdf": mupdf_rejected_page(b"not zlib data at all"),
    }
    deep_array = b"[" * 100_000 + b"]" * 100_000
    objs = _one_page()
    objs[2] = objs[2].replace(b"/MediaBox", b"/Junk " + deep_array + b" /MediaBox")
    files["deep_nested_array.pdf"] = raw_pdf(objs)
    objs = _one_page()
    objs[2] = objs[2].replace(b"/MediaBox", b"/Junk " + b"<< /A " * 50_000 + b"1" + b" >>" * 50_000 + b" /MediaBox")
    files["deep_nested_dict.pdf"] = raw_pdf(objs)
    depth = 3000
    objs = [b"<< /Type /Catalog /Pages 2 0 R >>"]
    for i in range(depth):
        parent = b"" if i == 0 else b"/Parent %d 0 R " % (i + 1)
        objs.append(b"<< /Type /Pages %s/Kids [%d 0 R] /Count 1 >>" % (parent, i + 3))
    objs += [b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 612 792] /Contents %d 0 R "
             b"/Resources << /Font << /F1 %d 0 R >> >> >>" % (depth + 1, depth + 3, depth + 4), _stream(TEXT), FONT]
    files["deep_page_tree.pdf"] = raw_pdf(objs)
    objs = _one_page()
    objs[1] = b"<< /Type /Pages /Kids [3 0 R 2 0 R] /Count 2 >>"
    files["self_ref_page_tree.pdf"] = raw_pdf(objs)
    objs = _one_page()
    objs[0] = b"<< /Type /Catalog /Pages 6 0 R >>"
    objs.append(b"6 0 R")
    files["self_ref_object.pdf"] = raw_pdf(objs)
    objs = _one_page(content=b"/X1 Do " + TEXT, resources=b"<< /Font << /F1 5 0 R >> /XObject << /X1 6 0 R >> >>")
    objs.append(_stream(b"/X1 Do", b"/Type /XObject /Subtype /Form /BBox [0 0 100 100] "
                                   b"/Resources << /XObject << /X1 6 0 R >> >>"))
    files["self_drawing_xobject.pdf"] = raw_pdf(objs)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    # the file system's own hazards
    os.mkfifo(folder / "fifo.pdf")  # opening it would block forever
    os.symlink("nowhere.pdf", folder / "dangling_link.pdf")
    os.symlink("self_link.pdf", folder / "self_link.pdf")
    (folder / "sub").mkdir()
    os.symlink("..", folder / "sub" / "loop")  # a folder cycle: walked once, not forever
    (folder / NON_UTF8).write_bytes(_distinct((SAMPLES / "plain_text.pdf").read_bytes(), "non-utf8 name"))
    (folder / "folder_named.pdf").mkdir()  # a folder posing as a file is a folder: walked
    (folder / "folder_named.pdf" / "inside_a_folder_named.pdf").write_bytes(
        _distinct((SAMPLES / "plain_text.pdf").read_bytes(), "inside"))
    return dict(EXPECT)


# --------------------------------------------------------------------------- the CLI over the corpus
@pytest.mark.slow
def test_hostile_corpus_through_the_cli(prefect_api, tmp_path, monkeypatch, fault_record):
    corpus = tmp_path / "hostile"
    expect = build_hostile_corpus(corpus)
    pw = tmp_path / "passwords.txt"
    pw.write_text(f"not-this-one\n{PASSWORD}\n")
    out = tmp_path / "out"
    monkeypatch.setenv("DOCROUTE_WORKER_MEMORY_MB", "768")
    proc = cli(["run", str(corpus), "--out", str(out), "--workers", "2", "--password-file", str(pw)],
               api_url=prefect_api, timeout=400)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    def rows(sql: str) -> list[tuple]:
        for t in ("documents", "pages", "elements"):
            sql = sql.replace("{" + t + "}", t)
        return con.sql(sql).fetchall()

    con = sql_connection(out)

    docs = rows("SELECT file_name, status, error, n_pages, source_path, doc_id FROM {documents}")
    by_name = {r[0]: r for r in docs}
    _, duplicated = committed(out)
    lost = len(expect) - len({r[5] for r in docs if r[0] in expect})
    renderers = dict(rows("SELECT file_name || '/' || page_number, renderer FROM {pages} JOIN {documents} USING (doc_id) "
                          "WHERE file_name IN ('content_bomb_1500mb.pdf', 'mupdf_rejects_page_2.pdf', "
                          "'neither_reads_page_2.pdf')"))
    (poppler_pages,), = rows("SELECT count(*) FROM {pages} WHERE renderer = 'poppler'")
    fault_record(inputs=len(expect), lost=lost, duplicated=duplicated, poppler_pages=poppler_pages)
    assert (lost, duplicated) == (0, 0), "every input has its row, no row twice"
    assert len(docs) == len(by_name) == len({r[5] for r in docs}), "one row per input, none twice"
    assert set(by_name) == set(expect), "every input is accounted for, nothing else"
    for name, (statuses, phrase) in expect.items():
        _, status, error, _, _, _ = by_name[name]
        assert status in statuses, (name, status, error)
        if status != "ok":
            assert error, (name, "a failed or partial row says why")
        if phrase:
            assert phrase.lower() in (error or "").lower(), (name, error)
    assert by_name["pages_2000.pdf"][3] == 2000
    assert renderers == {"content_bomb_1500mb.pdf/1": "pymupdf", "mupdf_rejects_page_2.pdf/1": "pymupdf",
                         "mupdf_rejects_page_2.pdf/2": "poppler", "neither_reads_page_2.pdf/1": "pymupdf"}, renderers
    assert rows("SELECT count(*) FROM {pages} JOIN {documents} USING (doc_id) WHERE file_name = 'pages_2000.pdf'") == [(2000,)]
    assert by_name[NON_UTF8_SHOWN][4].endswith(NON_UTF8_SHOWN), "non-UTF-8 bytes are written as \\xNN"
    for table in ("pages", "elements"):
        n, distinct = rows(f"SELECT count(*), count(DISTINCT (doc_id, {'page_number' if table == 'pages' else 'element_id'})) FROM {{{table}}}")[0]
        assert n == distinct, table
    assert not list(out.rglob("*.tmp")) and (out / ".docroute.lock").read_text() == "", "lock released"
    assert "render budget" in proc.stdout and "out of memory" in proc.stdout, "the summary names the failures"
    for name in sorted(by_name):
        print("HOSTILE", name, by_name[name][1], by_name[name][3], (by_name[name][2] or "")[:160])


# --------------------------------------------------------------------------- small, in-process checks
def test_discovery_survives_loops_fifos_and_odd_names(tmp_path):
    root = tmp_path / "in"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "doc.pdf").write_bytes(b"%PDF-1.4")
    os.symlink("../..", root / "a" / "b" / "up")  # back to root: a cycle
    os.symlink(str(tmp_path), root / "a" / "outside")  # above the input: never walked
    os.symlink("a", root / "alias")  # a second way to the same folder: walked once
    os.mkfifo(root / "pipe.pdf")
    os.symlink("pipe.pdf", root / "link_to_pipe.pdf")
    (root / NON_UTF8).write_bytes(b"%PDF-1.4")
    (root / ".hidden").mkdir()
    (root / ".hidden" / "x.pdf").write_bytes(b"%PDF-1.4")
    found = ingest.discover(str(root))
    rel = sorted(ingest.display_path(p.relative_to(root)) for p in found)
    assert rel == sorted(["a/doc.pdf", "pipe.pdf", "link_to_pipe.pdf", NON_UTF8_SHOWN]) or \
        rel == sorted(["alias/doc.pdf", "pipe.pdf", "link_to_pipe.pdf", NON_UTF8_SHOWN])
    for p in found:
        if p.name.endswith("pipe.pdf"):
            with pytest.raises(OSError, match="FIFO"):
                ingest.ingest(p)  # refused without opening: opening a FIFO blocks
    # globs go through the same walker: no loop, and ** still recurses
    assert [p.name for p in ingest.discover(str(root / "**" / "doc.pdf"))] == ["doc.pdf"]
    out = root / "out"
    (out / "documents").mkdir(parents=True)
    (out / "documents" / "x.pdf").write_bytes(b"%PDF-1.4")
    assert not any("out" in p.parts for p in ingest.discover(str(root), exclude=(out,))), "output folder skipped"


def test_max_pages_is_a_clear_failed_row(tmp_path):
    f = tmp_path / "long.pdf"
    f.write_bytes(_many_pages(30))
    result = process_document(f, Settings(workers=1, max_pages=20))
    assert result.status == "failed" and "30 pages, over the limit of 20" in result.error


def test_render_budget_caps_dpi_then_refuses():
    from docroute.extractors import pdf
    from docroute.schemas import PageContent

    a4 = PageContent(page_number=1, width=595, height=842, has_text_layer=False, native_dpi=300)
    assert pdf.render_dpi(a4) == 300
    poster = PageContent(page_number=1, width=72 * 40, height=72 * 60, has_text_layer=False, native_dpi=300)
    dpi = pdf.render_dpi(poster)
    assert 50 <= dpi < 300 and (40 * dpi) * (60 * dpi) <= pdf.MAX_RENDER_PIXELS
    huge = PageContent(page_number=1, width=200_000, height=200_000, has_text_layer=False)
    with pytest.raises(pdf.PageTooLarge, match="render budget"):
        pdf.render_dpi(huge)


PROCESS_EACH = """
import json, sys
from pathlib import Path
from docroute.pipelines.process import process_document
from docroute.pipelines.settings import Settings
for f in sorted(Path(sys.argv[1]).iterdir()):
    r = process_document(f, Settings(workers=1))
    print("ROW", json.dumps({"file": f.name, "status": r.status, "error": r.error}))
"""


def test_permission_denied_is_a_failed_row_and_the_others_go_on(tmp_path):
    """As a user who may not read the file: as root, without root's power to read every file."""
    folder = tmp_path / "in"
    folder.mkdir()
    shutil.copy(SAMPLES / "invoice_ruled.pdf", folder / "a_locked.pdf")
    (folder / "a_locked.pdf").chmod(0)
    shutil.copy(SAMPLES / "plain_text.pdf", folder / "b_readable.pdf")
    proc = subprocess.run(file_permissions_apply([sys.executable, "-c", PROCESS_EACH, str(folder)]),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line[4:]) for line in proc.stdout.splitlines() if line.startswith("ROW ")]
    by_name = {r["file"]: r for r in rows}
    assert [r["file"] for r in rows] == ["a_locked.pdf", "b_readable.pdf"], proc.stdout[-3000:]
    assert by_name["a_locked.pdf"]["status"] == "failed", by_name
    assert "cannot read" in by_name["a_locked.pdf"]["error"], by_name
    assert by_name["b_readable.pdf"]["status"] == "ok", by_name
