"""The fast character list for ``find_tables`` equals PyMuPDF's own, page by page, key by key."""

from __future__ import annotations

import pytest

from docroute.extractors import layout_pymupdf, table_chars
from docroute.extractors.pdf import read_page

from conftest import REALDOCS, SAMPLES

pymupdf, T = table_chars._table_module()


def _pdfs():
    files = sorted(SAMPLES.glob("*.pdf"))
    for corpus in ("camelot", "icdar2013"):
        files += sorted((REALDOCS / corpus).glob("*.pdf"))
    return files


def _pages():
    """(file, page) for every page of the readable, unencrypted PDFs of _pdfs()."""
    for path in _pdfs():
        try:
            doc = pymupdf.open(path)
        except Exception:  # noqa: BLE001  (the broken samples)
            continue
        if doc.needs_pass:
            continue
        for page in doc:
            yield path, page


def _probes(page) -> list:
    """Boxes to test characters against: the page's drawings and a grid of cells at two sizes."""
    r = page.rect
    boxes = [pymupdf.Rect(d["rect"]) for d in page.get_drawings()[:40]]
    for n in (2, 9):
        w, h = r.width / n, r.height / n
        boxes += [pymupdf.Rect(r.x0 + i * w, r.y0 + j * h, r.x0 + (i + 1) * w, r.y0 + (j + 1) * h)
                  for i in range(n) for j in range(n)]
    return boxes + [r]


def _chars(make, page) -> list[dict]:
    """The CHARS list ``make`` fills for ``page``, under the settings ``find_tables`` sets around it."""
    small = bool(pymupdf.TOOLS.set_small_glyph_heights())
    pymupdf.TOOLS.set_small_glyph_heights(True)
    quads = pymupdf.TOOLS.unset_quad_corrections()
    try:
        T._CHARS_VAR.set([])
        make(page)
        return list(T.CHARS)
    finally:
        pymupdf.TOOLS.set_small_glyph_heights(small)
        pymupdf.TOOLS.unset_quad_corrections(quads)


def test_same_characters_on_every_page():
    assert pymupdf.VersionBind == table_chars.CHECKED, "new PyMuPDF: recheck table_chars.make_chars against it"
    original = T.make_chars
    with table_chars.fast_chars():
        assert T.make_chars is table_chars.make_chars
    assert T.make_chars is original
    pages = fast_pages = 0
    for path, page in _pages():
        if page.rotation:  # find_tables derotates the page before it lists the characters
            page, *_ = T.page_rotation_set0(page)
        expected = _chars(original, page)
        got = _chars(table_chars.make_chars, page)
        assert len(got) == len(expected), (path.name, page.number)
        for i, (want, have) in enumerate(zip(expected, got, strict=True)):
            assert have == want and list(have) == list(want), (path.name, page.number, i)
        pages += 1
        fast_pages += bool(expected) and table_chars._fast_path(page)
        T._CHARS_VAR.set(got)
        for rect in _probes(page):
            assert table_chars.chars_in_rect(T.CHARS, rect) == T.chars_in_rect(T.CHARS, rect), (path.name, rect)
    assert pages >= 60 and fast_pages >= 50, (pages, fast_pages)


@pytest.mark.parametrize("name", ["invoice_ruled.pdf", "complex_table.pdf"])
def test_same_tables(name):
    doc = pymupdf.open(SAMPLES / name)
    page = doc[0]
    content = read_page(page, 1)
    fast = [(t.bbox, t.cells) for t in layout_pymupdf._find_tables(page, content)]  # with fast_chars
    shipped = [(t.bbox, t.cells) for t in page.find_tables(strategy="lines", use_layout=False).tables
               if t.row_count >= 2 and t.col_count >= 2]
    assert fast == shipped and fast


def test_pages_judged_gridless_have_no_table():
    """``may_hold_grid`` only skips pages where find_tables finds no table at all."""
    skipped = 0
    for path, page in _pages():
        if layout_pymupdf.may_hold_grid(page):
            continue
        found = page.find_tables(strategy="lines", use_layout=False)
        assert not found.tables, (path.name, page.number)
        skipped += 1
    two_page = pymupdf.open(SAMPLES / "invoice_two_page.pdf")[0]  # 22 rulings, all rows of one column
    assert not layout_pymupdf.may_hold_grid(two_page) and len(two_page.get_drawings()) >= 4
    assert skipped >= 10, skipped
