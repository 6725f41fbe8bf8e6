"""VLM page budgets: per document (pure, in the routing policy) and per run (a shared ledger).

Per document: ``RouterOptions.max_vlm_pages_per_document`` keeps the VLM for the most valuable
routed pages of each document (:func:`docroute.pipelines.route.apply_budget`).

Per run: documents are processed in parallel worker processes, so the run's budget is a small JSON
ledger file (``OUT/_budget/<run_id>.json``) that each document reserves pages from under an
exclusive ``flock`` once its pages are routed and before its VLM stage runs. Grants are first come,
first served across documents (within a document the most valuable pages go first); with
``--workers 1`` they follow the input order. A document reprocessed in the same run (a retry) gets
its earlier grant back. Pages left out keep their layout result and say why: route ``layout``,
reason ``budget_exceeded``, and what they would have been routed for.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
from pathlib import Path

from docroute.pipelines import route
from docroute.pipelines.context import RunContext
from docroute.pipelines.route import RouterOptions
from docroute.schemas import PageResult


class RunBudget:
    """A run's VLM page ledger, safe across threads and processes on one machine."""

    def __init__(self, path: Path):
        self.path = Path(path)

    @classmethod
    def create(cls, path: Path, limit: int) -> RunBudget:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps({"limit": limit, "spent": 0, "granted": {}, "wanted": {}}))
        os.replace(tmp, path)
        return cls(path)

    @contextlib.contextmanager
    def _locked(self):
        with open(self.path, "r+", encoding="utf-8") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                state = json.loads(fh.read() or "{}")
                yield state
                fh.seek(0)
                fh.truncate()
                fh.write(json.dumps(state, sort_keys=True))
                fh.flush()
                os.fsync(fh.fileno())
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def reserve(self, doc_id: str, wanted: int) -> tuple[int, int]:
        """Pages granted to ``doc_id`` (at most ``wanted``) and the run's limit."""
        with self._locked() as state:
            limit = int(state["limit"])
            if doc_id in state["granted"]:
                return int(state["granted"][doc_id]), limit
            grant = max(0, min(wanted, limit - int(state["spent"])))
            state["granted"][doc_id] = grant
            state["wanted"][doc_id] = wanted
            state["spent"] = int(state["spent"]) + grant
            return grant, limit

    def state(self) -> dict:
        return json.loads(self.path.read_text(encoding="utf-8"))


def run_context(router: RouterOptions, out: Path, run_id: str) -> RunContext:
    """The run's context: with a fresh VLM page ledger when the run is capped."""
    limit = router.max_vlm_pages_per_run
    if limit is None:
        return RunContext(run_id=run_id)
    ledger = RunBudget.create(Path(out) / "_budget" / f"{run_id}.json", limit)
    return RunContext(run_id=run_id, budget_file=ledger.path.resolve())


def apply_budgets(pages: list[PageResult], t: RouterOptions, doc_id: str,
                  budget_file: Path | None = None) -> list[PageResult]:
    """The document budget, then the run budget (``budget_file``: the run's ledger), on one document."""
    decisions = route.apply_budget([p.decision for p in pages], t.max_vlm_pages_per_document, "document")
    if budget_file is not None:
        wanted = len(route.rank(decisions))
        if wanted:
            granted, limit = RunBudget(budget_file).reserve(doc_id, wanted)
            decisions = route.apply_budget(decisions, granted, "run", note=f"run budget of {limit} VLM page(s): "
                                                                          f"{granted} left for this document")
    return [p if p.decision is d else p.model_copy(update={"decision": d}) for p, d in zip(pages, decisions, strict=True)]
