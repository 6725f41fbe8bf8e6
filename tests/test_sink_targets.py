"""Region targets the VLM stage returns (tables, charts, handwriting) land in their own extraction tables."""

from __future__ import annotations

import duckdb

from docroute.pipelines.process import process_document
from docroute.pipelines.settings import Settings
from docroute.pipelines.sink import ParquetSink
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
    ParquetSink(tmp_path, "invoice").write(result, "run-1")
    con = duckdb.connect()
    rows = con.sql(f"SELECT doc_id, n_cols, cells FROM read_parquet('{tmp_path}/extractions/table/*.parquet')").fetchall()
    assert len(rows) == 2 and rows[0][0] == result.document.doc_id and rows[0][1] == 2
    assert rows[0][2][0]["col_span"] == 2 and rows[0][2][0]["text"] == "Region"
    series = con.sql(f"SELECT series FROM read_parquet('{tmp_path}/extractions/chart/*.parquet')").fetchall()[0][0]
    assert series[0]["values"] == [3.5]
    assert con.sql(f"SELECT count(*) FROM read_parquet('{tmp_path}/extractions/invoice/*.parquet')").fetchall() == [(1,)]
