"""Region targets the VLM stage returns (tables, charts, handwriting) land in their own extraction tables;
tables, from the layout or the VLM, are one typed value that the sink writes as table_html."""

from __future__ import annotations

from docroute.pipelines.process import process_document
from docroute.pipelines.settings import Settings
from docroute.pipelines.sink import DeltaSink, element_rows, sql_connection
from docroute.schemas import Extraction
from docroute.schemas.targets import ChartData, Series, Table, TableCell

from conftest import SAMPLES


def test_region_targets_are_written_beside_the_main_schema(tmp_path):
    result = process_document(SAMPLES / "complex_table.pdf", Settings(workers=1))
    table = Table(n_rows=2, n_cols=2, header_rows=1, cells=[
        TableCell(row=0, col=0, text="Region", col_span=2, is_header=True), TableCell(row=1, col=0, text="North"),
        TableCell(row=1, col=1, text="12")])
    chart = ChartData(chart_type="bar", title="Sales", series=[Series(name="2023", labels=["Q1"], values=[3.5])])
    extras = tuple(Extraction(schema_name=t.schema_name, schema_version=t.schema_version, data=t.model_dump(),
                              model="tiny") for t in (table, table, chart))
    result = result.model_copy(update={"extractions": result.extractions + extras})
    DeltaSink(tmp_path, "invoice").write(result, "run-1")
    con = sql_connection(tmp_path)
    rows = con.sql("SELECT doc_id, n_cols, cells FROM \"table\"").fetchall()
    assert len(rows) == 2 and rows[0][0] == result.document.doc_id and rows[0][1] == 2
    assert rows[0][2][0]["col_span"] == 2 and rows[0][2][0]["text"] == "Region"
    series = con.sql("SELECT series FROM chart").fetchall()[0][0]
    assert series[0]["values"] == [3.5]
    assert con.sql("SELECT count(*) FROM invoice").fetchall() == [(1,)]


def test_the_layout_table_is_typed_cells_and_the_sink_writes_their_html():
    result = process_document(SAMPLES / "complex_table.pdf", Settings(workers=1))
    element = next(e for p in result.pages for e in p.parsed.elements if e.kind == "table")
    table = element.table
    assert table is not None and table.n_cols == 9 and table.n_rows == len({c.row for c in table.cells})
    by_text = {c.text: c for c in table.cells}
    # the nested header: Region spans the two header rows, each year spans its four quarters
    assert (by_text["Region"].row, by_text["Region"].col, by_text["Region"].row_span) == (0, 0, 2)
    assert [(by_text[y].col, by_text[y].col_span) for y in ("2023", "2024")] == [(1, 4), (5, 4)]
    assert [c.col for c in table.cells if c.row == 1] == list(range(1, 9))  # placed beside the row span
    html = next(r["table_html"] for r in element_rows(result, "run-1") if r["element_id"] == element.element_id)
    assert html == table.html() and '<td colspan="4">2023</td>' in html
    assert all(r["table_html"] is None for r in element_rows(result, "run-1") if r["kind"] != "table")


def test_a_vlm_table_answer_and_a_layout_table_make_html_the_same_way():
    layout = process_document(SAMPLES / "complex_table.pdf", Settings(workers=1))
    element = next(e for p in layout.pages for e in p.parsed.elements if e.kind == "table")
    answer = Table.model_validate(element.table.model_dump(mode="json"))  # the same cells, as a VLM answers
    assert answer.html() == element.table.html()
    headed = answer.model_copy(update={"header_rows": 2})
    assert headed.html().count("<th") == sum(c.row < 2 for c in answer.cells)
    assert headed.html().replace("<th", "<td").replace("</th>", "</td>") == element.table.html()
