"""Example user schemas for documents that are not invoices (used by sample_docs/other/ and the tests).

Run them with ``docroute run sample_docs/other/purchase_orders --schema sample_docs.schemas_demo:PurchaseOrder``.
Labels come from the field names; ``json_schema_extra={"labels": [...]}`` adds printed labels the name
does not say, and ``model_config["json_schema_extra"]["checks"]`` declares arithmetic checks.
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from docroute.schemas.targets import TargetSchema


class POLine(BaseModel):
    model_config = ConfigDict(frozen=True)

    item_code: str | None = Field(default=None, json_schema_extra={"labels": ["sku", "item code", "code"]})
    description: str | None = None
    quantity: Decimal | None = None
    unit_price: Decimal | None = None
    amount: Decimal | None = None


class PurchaseOrder(TargetSchema):
    schema_name: ClassVar[str] = "purchase_order"
    schema_version: ClassVar[str] = "1"
    model_config = ConfigDict(frozen=True, extra="forbid", json_schema_extra={
        "checks": ["sum(lines[].amount) == total", "lines[].quantity * lines[].unit_price == lines[].amount"]})

    po_number: str | None = Field(default=None, description="Purchase order number.")
    order_date: date | None = None
    delivery_date: date | None = Field(default=None, json_schema_extra={"labels": ["required by", "deliver by"]})
    supplier: str | None = None
    buyer: str | None = None
    currency: Literal["USD", "EUR", "GBP"] | None = None
    total: Decimal | None = None
    lines: list[POLine] = Field(default_factory=list)


class DeliveryItem(BaseModel):
    model_config = ConfigDict(frozen=True)

    item_code: str | None = Field(default=None, json_schema_extra={"labels": ["item code", "art nr", "art.-nr"]})
    description: str | None = None
    quantity: Decimal | None = None
    unit: str | None = None


class DeliveryNote(TargetSchema):
    schema_name: ClassVar[str] = "delivery_note"
    schema_version: ClassVar[str] = "1"
    model_config = ConfigDict(frozen=True, extra="forbid",
                              json_schema_extra={"checks": ["sum(items[].quantity) == total_quantity"]})

    delivery_note_number: str | None = None
    delivery_date: date | None = None
    order_reference: str | None = Field(default=None, json_schema_extra={"labels": ["your order", "ihre bestellung"]})
    recipient: str | None = None
    carrier: str | None = None
    packages: int | None = Field(default=None, json_schema_extra={"labels": ["parcels", "packstücke", "colis"]})
    received_in_good_condition: bool | None = Field(
        default=None, json_schema_extra={"labels": ["goods received in good condition", "ware einwandfrei erhalten"]})
    total_quantity: Decimal | None = Field(default=None, json_schema_extra={"labels": ["gesamtmenge"]})
    items: list[DeliveryItem] = Field(default_factory=list)


class Transaction(BaseModel):
    model_config = ConfigDict(frozen=True)

    booked_on: date | None = Field(default=None, json_schema_extra={"labels": ["date", "value date", "booking date"]})
    description: str | None = Field(default=None, json_schema_extra={"labels": ["details", "transaction details"]})
    amount: Decimal | None = None
    balance: Decimal | None = None


class BankStatement(TargetSchema):
    schema_name: ClassVar[str] = "bank_statement"
    schema_version: ClassVar[str] = "1"
    model_config = ConfigDict(frozen=True, extra="forbid", json_schema_extra={
        "checks": ["opening_balance + sum(transactions[].amount) == closing_balance"]})

    account_holder: str | None = None
    account_number: str | None = None
    statement_date: date | None = None
    currency: str | None = None
    opening_balance: Decimal | None = None
    closing_balance: Decimal | None = None
    transactions: list[Transaction] = Field(default_factory=list)
