"""Evaluation: the evaluator API, the inference loop and the classification evaluator."""

from .classification import ClassificationEvaluator
from .evaluator import (
    DatasetEvaluator,
    DatasetEvaluators,
    inference_context,
    inference_on_dataset,
)
from .testing import flatten_results_dict, print_csv_format, verify_results

__all__ = [
    "ClassificationEvaluator",
    "DatasetEvaluator",
    "DatasetEvaluators",
    "flatten_results_dict",
    "inference_context",
    "inference_on_dataset",
    "print_csv_format",
    "verify_results",
]
