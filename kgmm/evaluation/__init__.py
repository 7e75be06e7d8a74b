"""Batch evaluation runs: run folders (manifest, resumable predictions, reports, plots) and
the evaluators that fill them (``kgmm eval vqa``).

Importing this package loads neither torch nor matplotlib; the evaluators import them when
they run.
"""

from __future__ import annotations

from .run_folder import PredictionLog, RunConflictError, RunFolder, fingerprint, write_json
from .vqa import EvaluationError, VQAEvalConfig, VQARunResult, run_vqa_eval

__all__ = ["EvaluationError", "PredictionLog", "RunConflictError", "RunFolder", "VQAEvalConfig",
           "VQARunResult", "fingerprint", "run_vqa_eval", "write_json"]
