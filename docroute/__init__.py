"""docroute: documents in, typed and validated Delta Lake tables out.

The packages live in the repository's top-level folders (schemas/, extractors/, pipelines/, flows/)
and are installed as ``docroute.schemas`` and so on.
"""

from __future__ import annotations

__version__ = "0.1.0"
PIPELINE_VERSION = "0.1.0"


def read(out: str, storage_options: dict[str, str] | None = None):
    """Return the output tables of a run folder (or deltalake URI) as a dict of pandas DataFrames, read
    through each Delta table's log: documents, pages, elements, runs, extractions/<schema>.
    ``storage_options``: deltalake's, for an object store (else its own environment: ``AWS_*``, …)."""
    from docroute.pipelines.sink import read_tables

    return read_tables(out, storage_options)


def extract(path, schema="invoice", **settings):
    """One document through the pipeline, in memory (no Prefect, nothing written): the validated
    ``schema`` instance with per-field confidence, provenance and review reasons
    (:class:`docroute.pipelines.api.Extracted`). ``schema``: a TargetSchema class, a built-in name or
    ``module:Class``; ``settings``: Settings fields (``vlm={"backend": "none"}``...)."""
    from docroute.pipelines.api import extract as _extract

    return _extract(path, schema, **settings)
