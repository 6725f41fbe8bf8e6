"""The Prefect flow ``extract_folder``: one task per document.

Used when there is a Prefect API to report to (``PREFECT_API_URL``, ``docroute serve``, deployments)
or Dask workers to reach (``--runner dask``); a plain local run goes without Prefect (flows/core.py,
the same run body). Where the tasks run is the task runner's business (flows/runners.py): threads of
this process, or the worker processes of a Dask cluster. Either way each document is parsed in a
worker process of its own pool (flows/isolation.py), so a document that crashes, hangs or balloons
becomes a ``failed`` row with the reason; a task that fails as a whole (a Dask worker lost, say)
becomes one too, written by the flow. Prefect retries a task only for transient infrastructure
errors, never for a bad document. The flow commits the tasks' staged rows in batches (flows/core.py).
"""

from __future__ import annotations

from typing import Any

from docroute.flows import prefect_env

prefect_env.apply()

from prefect import flow, task  # noqa: E402
from prefect.cache_policies import NO_CACHE  # noqa: E402
from prefect.futures import as_completed  # noqa: E402

from docroute.flows.core import (  # noqa: E402
    TRANSIENT,
    Finished,
    extract,
    process,
    run_extract,
    run_lock,
    worker_memory_limit,
)
from docroute.flows.runners import prefect_api_for, task_runner  # noqa: E402
from docroute.pipelines.batch import PlannedFile, RunSummary  # noqa: E402
from docroute.pipelines.context import RunContext  # noqa: E402
from docroute.pipelines.settings import Settings, load_settings  # noqa: E402
from docroute.pipelines.sink import new_run_id  # noqa: E402

__all__ = ["extract_folder", "run_extract", "run_on_prefect", "worker_memory_limit"]


def _transient(task, task_run, state) -> bool:
    try:
        state.result()
    except TRANSIENT:
        return True
    except Exception:
        return False
    return False


@task(name="process-document", retries=2, retry_delay_seconds=1, retry_condition_fn=_transient,
      cache_policy=NO_CACHE, log_prints=False)
def process_document_task(item: PlannedFile, settings: Settings, out: str, context: RunContext) -> Finished:
    return process(item, settings, out, context)


def _as_settings(settings: Settings | dict[str, Any] | None) -> Settings:
    """Settings as given (a direct call), or rebuilt from a deployment's JSON parameter: the values
    recorded when it was deployed win, this machine's TOML and DOCROUTE_* environment fill the rest."""
    if isinstance(settings, Settings):
        return settings
    return load_settings(**(settings or {}))


@flow(name="extract_folder", log_prints=False, validate_parameters=False)
def extract_folder(input: str, out: str, settings: Settings | dict[str, Any] | None = None,
                   retry_failed: bool = False, reprocess_schema: bool = False, run_id: str | None = None) -> RunSummary:
    """Plan, process and commit every document under ``input`` into ``out``.

    Call it through :func:`run_extract` (which picks the task runner and holds the output lock) or
    as a deployment (``docroute serve``, a prefect.yaml), whose ``settings`` arrive as JSON; a
    deployment run whose settings ask for ``runner = "dask"`` does its work in a subflow on Dask.
    """
    settings = _as_settings(settings)
    run_id = run_id or new_run_id()
    if settings.runner == "dask" and _on_threads():
        # a deployment run (served, or from a prefect.yaml) starts on Prefect's default thread runner:
        # the work runs in a subflow with the Dask runner the settings ask for
        with prefect_api_for(settings):
            return extract_folder.with_options(task_runner=task_runner(settings))(
                input, out, settings, retry_failed, reprocess_schema, run_id)
    with run_lock(out, settings, run_id, input):
        on_threads = _on_threads()
        mode = "prefect (" + ("threads" if on_threads else "dask") + " task runner)"
        return extract(input, out, settings, retry_failed, reprocess_schema, run_id,
                       lambda *args: process_document_task.submit(*args), as_completed, on_threads, mode)


def _on_threads() -> bool:
    """Whether this flow run's tasks run on threads of this process (decided by its actual runner)."""
    from prefect.context import FlowRunContext
    from prefect.task_runners import ThreadPoolTaskRunner

    ctx = FlowRunContext.get()
    return ctx is None or isinstance(ctx.task_runner, ThreadPoolTaskRunner)


def run_on_prefect(input: str, out: str, settings: Settings, retry_failed: bool, reprocess_schema: bool,
                   run_id: str) -> RunSummary:
    """Run the flow on ``settings.runner`` (the caller holds the output lock for ``run_id``)."""
    with prefect_api_for(settings):
        runner = task_runner(settings)
        return extract_folder.with_options(task_runner=runner)(input, out, settings, retry_failed,
                                                               reprocess_schema, run_id)
