"""Evaluation: the evaluator API, the inference loop, the classification evaluator, and
``EVALUATOR_REGISTRY`` / ``build_evaluator`` (the evaluator ``TEST.EVALUATOR`` names)."""

from .classification import ClassificationEvaluator
from .evaluator import (
    DatasetEvaluator,
    DatasetEvaluators,
    inference_context,
    inference_on_dataset,
)
from .registry import EVALUATOR_REGISTRY, build_evaluator
from .testing import (
    ResultsVerificationError,
    check_results,
    flatten_results_dict,
    print_csv_format,
    verify_results,
)

__all__ = [
    "EVALUATOR_REGISTRY",
    "ClassificationEvaluator",
    "DatasetEvaluator",
    "DatasetEvaluators",
    "ResultsVerificationError",
    "build_evaluator",
    "check_results",
    "flatten_results_dict",
    "inference_context",
    "inference_on_dataset",
    "print_csv_format",
    "verify_results",
]
