"""What the user sees: a rich progress bar while a run goes, a summary table when it ends."""

from __future__ import annotations

import threading
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from docroute.flows.progress import Event, Planned
from docroute.pipelines.batch import RunSummary


class ProgressView:
    """Documents done out of planned, pages done, with the last file seen."""

    def __init__(self, console: Console):
        self.console = console
        self.lock = threading.Lock()
        self.pages = 0
        self.progress = Progress(
            TextColumn("[bold]documents"), BarColumn(), MofNCompleteColumn(),
            TextColumn("pages {task.fields[pages]}"), TimeElapsedColumn(),
            TextColumn("[dim]{task.fields[last]}"), console=console, transient=False,
        )
        self.task = self.progress.add_task("documents", total=None, pages=0, last="discovering files...")

    def __enter__(self):
        self.progress.start()
        return self

    def __exit__(self, *exc):
        self.progress.stop()

    def on_event(self, event: Event) -> None:
        with self.lock:
            if isinstance(event, Planned):
                note = f"{event.skipped} already done" if event.skipped else ""
                self.progress.update(self.task, total=event.todo, last=note)
            else:
                self.pages += event.pages
                mark = "" if event.status == "ok" else f" [{event.status}]"
                self.progress.update(self.task, advance=1, pages=self.pages, last=event.file_name + mark)


def print_summary(console: Console, summary: RunSummary, out: Path) -> None:
    totals = summary.totals
    table = Table(title=f"docroute run {summary.run_id}", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    table.add_row("documents processed", str(totals.documents))
    table.add_row("  ok / partial / failed", f"{totals.ok} / {totals.partial} / {totals.failed}")
    table.add_row("  skipped (already done)", str(totals.skipped))
    if totals.duplicates:
        table.add_row("  duplicates (same bytes)", str(totals.duplicates))
    if totals.stale_schema:
        table.add_row(f"  kept: done under an older {summary.schema} schema version",
                      f"{totals.stale_schema} (--reprocess-schema redoes them)")
    for run in summary.interrupted:
        table.add_row(f"  resumed interrupted run {run['run_id']}",
                      f"{run['committed']} of {run['planned']} had been committed")
    if summary.maintenance.get("compacted_tables"):
        table.add_row("tables compacted (too many files)", str(summary.maintenance["compacted_tables"]))
    table.add_row("pages", str(totals.pages))
    table.add_row("  layout route / vlm route", f"{totals.pages_layout} / {totals.pages_vlm}")
    for reason, n in sorted(totals.reasons.items()):
        table.add_row(f"    {reason}", str(n))
    table.add_row("documents needing review", str(totals.needs_review))
    table.add_row("fields needing review", str(totals.fields_review))
    table.add_row("VLM", summary.vlm)
    table.add_row("orchestrator", summary.orchestrator)
    if totals.vlm_unanswered:
        table.add_row("  routed pages without a VLM answer", str(totals.vlm_unanswered))
        for why, n in totals.vlm_why.most_common():
            table.add_row(f"    {why}", str(n))
    table.add_row("throughput", f"{summary.pages_per_s:.2f} pages/s ({summary.elapsed_s:.1f} s)")
    table.add_row("output", str(out))
    table.add_row("report", summary.report)
    console.print(table)
    for path, error in totals.failures:
        console.print(f"[yellow]{path}[/]: {error}")
    schema = summary.schema
    columns = "file_name, invoice_number, invoice_date, total, currency, needs_review" if schema == "invoice" else "*"
    console.print("\nQuery the results (DuckDB over the Delta tables, offline):")
    console.print(
        f"  {_docroute()} sql {out} \"SELECT {columns} FROM {schema}\"",
        markup=False, highlight=False, soft_wrap=True,
    )


def _docroute() -> str:
    """The docroute command as this one was started (``.venv/bin/docroute`` under make), else ``docroute``."""
    import sys

    return sys.argv[0] if Path(sys.argv[0]).name == "docroute" else "docroute"


def print_eval(console: Console, report) -> None:
    table = Table(title="field-level scores (labelled fields only)")
    for col in ("field", "labelled", "predicted", "correct", "precision", "recall"):
        table.add_column(col, justify="left" if col == "field" else "right")
    for name, s in sorted(report.per_field.items()):
        table.add_row(name, str(s.labelled), str(s.predicted), str(s.correct), f"{s.precision:.2f}", f"{s.recall:.2f}")
    o = report.overall
    table.add_row("[bold]overall", str(o.labelled), str(o.predicted), str(o.correct), f"{o.precision:.2f}", f"{o.recall:.2f}")
    console.print(table)
    console.print(f"documents with every labelled field right: {report.exact_documents}/{report.documents}")
    right, scored = report.straight_fields
    console.print(f"straight through (needs_review false): {report.straight_through}/{report.documents}; "
                  f"their labelled fields right: {right}/{scored}; escalated after extraction: {report.escalated}")
    m, p, g = report.items
    console.print(f"line items: {m} matched of {p} predicted and {g} labelled")
    if report.confusion:
        conf = Table(title="router: labelled route (rows) vs predicted route (columns), pages")
        predicted = sorted({k[1] for k in report.confusion})
        conf.add_column("label")
        for col in predicted:
            conf.add_column(col, justify="right")
        for label in sorted({k[0] for k in report.confusion}):
            conf.add_row(label, *(str(report.confusion.get((label, c), 0)) for c in predicted))
        console.print(conf)
    cal = Table(title=f"calibration of field_confidence (ECE {report.ece:.3f})")
    for col in ("bin", "n", "mean confidence", "accuracy"):
        cal.add_column(col, justify="right")
    for row in report.calibration:
        cal.add_row(row["bin"], str(row["n"]), f"{row['mean_confidence']:.2f}", f"{row['accuracy']:.2f}")
    console.print(cal)
    if report.missing_files:
        console.print(f"[yellow]labelled files not in the run: {', '.join(report.missing_files)}")
