"""Target schemas that users extract documents into.

Their field names are part of the warehouse contract (DESIGN.md). Every field is optional: a value
the pipeline could not find is null and flagged for review, never guessed.
"""

from __future__ import annotations

import html
from datetime import date
from decimal import Decimal
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

Money = Decimal


class TargetSchema(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    schema_name: ClassVar[str]
    schema_version: ClassVar[str]


class LineItem(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    description: str | None = Field(default=None, description="What was sold, as printed.")
    quantity: Decimal | None = Field(default=None, description="Number of units.")
    unit_price: Money | None = Field(default=None, description="Price of one unit.")
    amount: Money | None = Field(default=None, description="Line total (quantity x unit price).")


class Invoice(TargetSchema):
    schema_name: ClassVar[str] = "invoice"
    schema_version: ClassVar[str] = "1"

    invoice_number: str | None = Field(default=None, description="The invoice's identifier as printed.")
    invoice_date: date | None = Field(default=None, description="Date of issue (ISO).")
    due_date: date | None = Field(default=None, description="Payment due date (ISO).")
    vendor_name: str | None = Field(default=None, description="Who issued the invoice.")
    vendor_address: str | None = None
    customer_name: str | None = Field(default=None, description="Who is billed.")
    customer_address: str | None = None
    currency: str | None = Field(default=None, pattern=r"^[A-Z]{3}$", description="ISO 4217 code.")
    subtotal: Money | None = Field(default=None, description="Total before tax.")
    tax_total: Money | None = Field(default=None, description="Sum of taxes.")
    total: Money | None = Field(default=None, description="Grand total of the invoice, tax included, before "
                                "any prepayment or credit is deducted (when only an amount due is printed "
                                "and nothing was paid or credited, that amount).")
    amount_due: Money | None = Field(default=None, description="Amount still to pay: the grand total less "
                                     "prepayments or credits already applied; null when not printed.")
    iban: str | None = Field(default=None, description="The payee's IBAN, without spaces.")
    payment_reference: str | None = Field(default=None, description="The reference to quote when paying.")
    line_items: list[LineItem] = Field(default_factory=list)


class TableCell(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    row: int
    col: int
    text: str
    row_span: int = 1
    col_span: int = 1
    is_header: bool = False


class Table(TargetSchema):
    """A table's cells with their grid place and spans: what the VLM answers for a complex table, and
    what the layout parser reads from a ruled table (``Element.table``)."""

    schema_name: ClassVar[str] = "table"
    schema_version: ClassVar[str] = "1"

    n_rows: int = 0
    n_cols: int = 0
    header_rows: int = 0
    cells: list[TableCell] = Field(default_factory=list)

    def html(self) -> str:
        """The table as HTML (the elements table's ``table_html``): one ``<tr>`` per row from the first
        to the last row with a cell, header cells (``is_header`` or in the first ``header_rows`` rows) as ``<th>``,
        spans as ``colspan`` / ``rowspan``, text escaped."""
        rows: dict[int, list[TableCell]] = {}
        for c in sorted(self.cells, key=lambda c: (c.row, c.col)):
            rows.setdefault(c.row, []).append(c)
        out = []
        for r in range(min(rows, default=0), max(rows, default=-1) + 1):
            tds = []
            for c in rows.get(r, ()):
                tag = "th" if c.is_header or r < self.header_rows else "td"
                attrs = (f' colspan="{c.col_span}"' if c.col_span > 1 else "") + \
                        (f' rowspan="{c.row_span}"' if c.row_span > 1 else "")
                tds.append(f"<{tag}{attrs}>{html.escape(c.text)}</{tag}>")
            out.append("<tr>" + "".join(tds) + "</tr>")
        return "<table>" + "".join(out) + "</table>"


class Series(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str | None = None
    labels: list[str] = Field(default_factory=list)
    values: list[float] = Field(default_factory=list)


class ChartData(TargetSchema):
    schema_name: ClassVar[str] = "chart"
    schema_version: ClassVar[str] = "1"

    chart_type: Literal["bar", "line", "pie", "scatter", "area", "other"] | None = None
    title: str | None = None
    x_axis_title: str | None = None
    y_axis_title: str | None = None
    series: list[Series] = Field(default_factory=list)


class HandwrittenText(TargetSchema):
    schema_name: ClassVar[str] = "handwriting"
    schema_version: ClassVar[str] = "1"

    lines: list[str] = Field(default_factory=list)
