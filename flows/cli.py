"""The ``docroute`` command line. Heavy modules (Prefect, engines) are imported inside commands."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from docroute.flows.inspector import inspect_command

app = typer.Typer(
    name="docroute",
    help="Batch document-AI ETL: a folder of documents in, warehouse-ready Delta Lake tables out.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _settings(**overrides):
    from pydantic import ValidationError

    from docroute.pipelines.settings import SettingsError, load_settings

    try:
        return load_settings(**overrides)
    except (SettingsError, ValidationError) as exc:
        typer.secho(f"error: invalid settings: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc


@app.command()
def run(
    input: Annotated[str, typer.Argument(help="a folder (recursive), a glob pattern, or one file")],
    out: Annotated[str, typer.Option("--out", "-o", help="output folder, or an object-store URI deltalake supports "
                                     "(s3://bucket/prefix, az://, gs://), for the Delta tables")] = "out",
    state_dir: Annotated[Path | None, typer.Option("--state-dir", help="local folder for the run state (lock, "
                                                   "manifests, journals, reports); default: the output folder, or "
                                                   "for a URI a folder under the user cache dir")] = None,
    schema: Annotated[str | None, typer.Option("--schema", help="target schema: invoice or module:Class")] = None,
    workers: Annotated[int | None, typer.Option("--workers", "-w", min=1, help="parallel documents (default: cores)")] = None,
    parser: Annotated[str | None, typer.Option("--parser", help="layout engine: pymupdf or unstructured")] = None,
    force: Annotated[bool, typer.Option("--force", help="reprocess documents already done")] = False,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="reprocess documents that failed before")] = False,
    password_file: Annotated[Path | None, typer.Option("--password-file", exists=True, dir_okay=False,
                                                       help="passwords for encrypted PDFs, one per line")] = None,
    redact: Annotated[str | None, typer.Option("--redact", help="PII kinds to redact before anything is written, "
                                               "comma-separated: email,phone,iban,card,ssn (or all)")] = None,
    reprocess_schema: Annotated[bool, typer.Option("--reprocess-schema", help="reprocess documents done under "
                                                   "an older version of the schema (kept as they are otherwise)")] = False,
    runner: Annotated[str | None, typer.Option("--runner", help="threads (default) or dask")] = None,
    address: Annotated[str | None, typer.Option("--address", help="with --runner dask: the scheduler, tcp://host:8786 "
                                                "(default: a LocalCluster of --workers processes)")] = None,
) -> None:
    """Extract every document under INPUT into Delta tables under --out."""
    from rich.console import Console

    from docroute.flows.report import ProgressView, print_summary
    from docroute.pipelines.ingest import InputError
    from docroute.pipelines.runlog import OutputLocked, StateFolderError

    if redact is not None and redact.strip().lower() == "all":
        from docroute.pipelines.pii import KINDS

        redact = ",".join(KINDS)
    settings = _settings(schema_name=schema, workers=workers, parser=parser, force=force or None,
                         password_file=password_file.resolve() if password_file else None, redact=redact,
                         runner=runner, dask_address=address, state_dir=state_dir.resolve() if state_dir else None)
    console = Console(stderr=True)
    from docroute.schemas.registry import UnknownSchemaError, get_schema

    try:
        get_schema(settings.schema_name)
    except UnknownSchemaError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc
    from docroute.flows import progress
    from docroute.flows.core import run_extract
    from docroute.flows.runners import RunnerError

    view = ProgressView(console)
    try:
        with view, progress.listening(view.on_event):
            summary = run_extract(input, out, settings, retry_failed=retry_failed,
                                  reprocess_schema=reprocess_schema)
    except (InputError, StateFolderError) as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc
    except OutputLocked as exc:  # another run holds --out: EX_TEMPFAIL, try again later
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(75) from exc
    except RunnerError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc
    print_summary(Console(), summary, out)
    from docroute.pipelines.runlog import state_folder

    state = state_folder(out, settings.state_dir)
    if state != Path(out):
        Console().print(f"run state (lock, manifests, journals, reports): {state.resolve()}",
                        markup=False, highlight=False, soft_wrap=True)


@app.command("serve")
def serve_cmd(
    input: Annotated[str, typer.Argument(help="a folder (recursive), a glob pattern, or one file")],
    out: Annotated[str, typer.Option("--out", "-o", help="output folder for the Delta tables")] = "out",
    cron: Annotated[str | None, typer.Option("--cron", help="run on this schedule, e.g. '0 2 * * *' (02:00 daily)")] = None,
    interval: Annotated[float | None, typer.Option("--interval", help="...or every this many seconds")] = None,
    timezone: Annotated[str, typer.Option("--timezone", help="time zone of --cron (IANA name)")] = "UTC",
    name: Annotated[str, typer.Option("--name", help="deployment name (one per input/output pair)")] = "docroute",
    schema: Annotated[str | None, typer.Option("--schema", help="target schema: invoice or module:Class")] = None,
    workers: Annotated[int | None, typer.Option("--workers", "-w", min=1, help="parallel documents per tick")] = None,
    retry_failed: Annotated[bool, typer.Option("--retry-failed", help="each tick also retries documents that failed")] = False,
    runner: Annotated[str | None, typer.Option("--runner", help="threads (default) or dask")] = None,
    address: Annotated[str | None, typer.Option("--address", help="with --runner dask: the scheduler, tcp://host:8786")] = None,
) -> None:
    """Serve the extract flow on a schedule: each tick processes the documents new under INPUT."""
    from docroute.flows.runners import RunnerError
    from docroute.flows.serve import ServeError, schedule, serve
    from docroute.schemas.registry import UnknownSchemaError, get_schema

    settings = _settings(schema_name=schema, workers=workers, runner=runner, dask_address=address)
    if "://" in out:  # typer would make s3://b/p the local folder s3:/b/p
        typer.secho(f"error: serve needs a local --out folder (its Prefect server log lives there), not {out}",
                    fg="red", err=True)
        raise typer.Exit(2)
    out = Path(out)
    try:
        get_schema(settings.schema_name)
        the_schedule = schedule(cron, interval, timezone)
        serve(input, out, settings, the_schedule, name=name, retry_failed=retry_failed,
              echo=lambda msg: typer.echo(msg, err=True))
    except (ServeError, RunnerError, UnknownSchemaError) as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc


@app.command("eval")
def eval_cmd(
    labels: Annotated[Path, typer.Argument(exists=True, help="labels: JSON, CSV (file,field,value) or a folder of *.expected.json")],
    out: Annotated[Path, typer.Option("--out", "-o", exists=True, file_okay=False, help="the run's output folder")] = Path("out"),
    schema: Annotated[str, typer.Option("--schema", help="which extraction table to score")] = "invoice",
) -> None:
    """Score a run's extractions against labels: per-field precision/recall, line items, routes, calibration."""
    from rich.console import Console

    from docroute.flows.report import print_eval
    from docroute.pipelines.evaluate import evaluate, load_labels

    report = evaluate(out, load_labels(labels), schema)
    print_eval(Console(), report)
    target = out / "eval.json"
    target.write_text(json.dumps(report.to_dict(), indent=2))
    typer.echo(f"written: {target}")


@app.command("review")
def review_cmd(
    out: Annotated[Path, typer.Argument(exists=True, file_okay=False, help="the run's output folder")],
    export: Annotated[Path | None, typer.Option("--export", help="write review.csv, review.jsonl and crops here")] = None,
    apply: Annotated[Path | None, typer.Option("--apply", exists=True, dir_okay=False,
                                               help="corrections CSV: doc_id or file_name, field, correct_value")] = None,
    schema: Annotated[str, typer.Option("--schema")] = "invoice",
    threshold: Annotated[float, typer.Option("--threshold", min=0, max=1, help="also export fields under this confidence")] = 0.6,
    reviewer: Annotated[str | None, typer.Option("--reviewer", help="recorded in corrected_by")] = None,
    password_file: Annotated[Path | None, typer.Option("--password-file", exists=True, dir_okay=False,
                                                       help="passwords for encrypted PDFs, one per line")] = None,
) -> None:
    """Export fields that need a person's eye, or apply their corrections as new row versions."""
    from docroute.pipelines import review

    settings = _settings(password_file=password_file.resolve() if password_file else None)

    if (export is None) == (apply is None):
        typer.secho("error: give exactly one of --export DIR or --apply corrections.csv", fg="red", err=True)
        raise typer.Exit(2)
    try:
        if export is not None:
            items = review.export(out, export, schema, threshold, settings.passwords())
            typer.echo(f"{len(items)} field(s) to review written to {export / 'review.csv'} and review.jsonl, "
                       f"crops in {export / 'crops'}; fill correct_value and run --apply")
        else:
            from docroute.pipelines.runlog import OutputLocked, output_lock

            try:
                with output_lock(out, f"review-{os.getpid()}", str(apply)):  # never beside a running run
                    rows = review.apply(out, apply, schema, reviewer)
                    ft = review.export_finetune(out, rows, out / "finetune", schema, settings)
            except OutputLocked as exc:
                typer.secho(f"error: {exc}", fg="red", err=True)
                raise typer.Exit(75) from exc
            typer.echo(f"{len(rows)} document(s) corrected as new row versions; fine-tuning records in {ft}")
    except (FileNotFoundError, ValueError) as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc


@app.command("schema")
def schema_cmd(
    name: Annotated[str, typer.Argument(help="schema name (invoice, table, chart, handwriting) or module:Class")] = "invoice",
) -> None:
    """Print a target schema's JSON schema and the Parquet columns of its extraction table."""
    from docroute.schemas.contract import extraction_schema
    from docroute.schemas.registry import UnknownSchemaError, get_schema

    try:
        cls = get_schema(name)
    except UnknownSchemaError as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc
    typer.echo(json.dumps(cls.model_json_schema(), indent=2))
    typer.echo(f"\nParquet columns of extractions/{cls.schema_name} (schema version {cls.schema_version}):")
    for f in extraction_schema(cls):
        typer.echo(f"  {f.name}: {f.type}")


@app.command("sql")
def sql_cmd(
    out: Annotated[str, typer.Argument(help="the output folder (or deltalake URI)")],
    query: Annotated[str, typer.Argument(help="SQL over the tables by name: documents, pages, elements, runs, "
                                         "invoice (and any other extractions/<schema> by its schema name)")],
    fmt: Annotated[str, typer.Option("--format", help="table, csv or json")] = "table",
) -> None:
    """Run a DuckDB query over the output's Delta tables (read through their logs; no DuckDB extension)."""
    import duckdb

    from docroute.pipelines.settings import load_settings
    from docroute.pipelines.sink import sql_connection

    con = sql_connection(out, load_settings().storage_options)
    if not con.sql("SHOW TABLES").fetchall():
        typer.secho(f"error: no Delta tables in {out}: run `docroute run ... --out {out}` first", fg="red", err=True)
        raise typer.Exit(2)
    try:
        rel = con.sql(query)
    except duckdb.Error as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc
    if rel is None:
        return
    if fmt == "table":
        rel.show(max_width=10_000, max_rows=10_000)
    else:
        df = rel.df()
        typer.echo(df.to_csv(index=False) if fmt == "csv" else df.to_json(orient="records", date_format="iso"))


@app.command("compact")
def compact_cmd(
    out: Annotated[str, typer.Argument(help="the output folder (or deltalake URI)")],
    retain_days: Annotated[float, typer.Option("--retain-days", min=0, help="keep this many days of table "
                                               "history (older unreferenced files are deleted)")] = 7,
    state_dir: Annotated[Path | None, typer.Option("--state-dir", help="the run state folder of this output, "
                                                   "if the runs were given one")] = None,
) -> None:
    """Merge each table's small files (OPTIMIZE), then vacuum files no version within --retain-days needs."""
    from docroute.pipelines.runlog import OutputLocked, is_uri, output_lock, state_folder
    from docroute.pipelines.sink import DeltaSink

    settings = _settings(state_dir=state_dir.resolve() if state_dir else None)
    sink = DeltaSink(out, "invoice", settings.storage_options)
    state = state_folder(out, settings.state_dir)  # never beside a run on this output from this machine
    try:
        with output_lock(state, f"compact-{os.getpid()}", "compact", output=out if is_uri(out) else None):
            for name in sink.tables():
                before = sink.live_files(name)
                done = sink.compact(name, retention_hours=int(retain_days * 24))
                typer.echo(f"{name}: {before} -> {sink.live_files(name)} live file(s), "
                           f"{done.get('vacuumed', 0)} file(s) vacuumed")
    except OutputLocked as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(75) from exc


app.command("inspect")(inspect_command)  # docroute inspect FILE [--page N] [--out PNG] (flows/inspector.py)


def main() -> None:
    try:
        app()
    except KeyboardInterrupt:
        typer.secho("interrupted: finished documents are saved; rerun the same command to go on", err=True)
        sys.exit(130)


if __name__ == "__main__":
    main()
