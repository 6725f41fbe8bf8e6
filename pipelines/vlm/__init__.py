"""The VLM stage (:mod:`.stage`) and its processors, one module per routed region kind (:mod:`.table`,
:mod:`.chart`, :mod:`.handwriting`) plus the document's own schema (:mod:`.document`)."""

from docroute.pipelines.vlm.stage import PROCESSORS, VlmStageResult, plan, run_vlm_stage

__all__ = ["PROCESSORS", "VlmStageResult", "plan", "run_vlm_stage"]
