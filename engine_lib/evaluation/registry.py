"""The evaluators ``TEST.EVALUATOR`` can name: ``EVALUATOR_REGISTRY`` and ``build_evaluator``.

A registered evaluator is a callable ``(cfg, dataset_name) -> DatasetEvaluator``: a function,
or a :class:`DatasetEvaluator` class whose constructor takes those two arguments. A project
adds one with no engine edit:

Example:
    >>> from engine_lib.evaluation import EVALUATOR_REGISTRY
    >>> @EVALUATOR_REGISTRY.register("RetrievalEvaluator")
    ... def build_retrieval_evaluator(cfg, dataset_name):
    ...     return RetrievalEvaluator(dataset_name)

and selects it with ``TEST.EVALUATOR: RetrievalEvaluator``.
"""

import logging
import os
from typing import Any

from engine_lib.utils.registry import Registry

from .classification import ClassificationEvaluator
from .evaluator import DatasetEvaluator

__all__ = ["EVALUATOR_REGISTRY", "build_evaluator"]

logger = logging.getLogger(__name__)

# name -> (cfg, dataset_name) -> DatasetEvaluator
EVALUATOR_REGISTRY = Registry("EVALUATOR")


@EVALUATOR_REGISTRY.register("ClassificationEvaluator")
def _build_classification_evaluator(cfg: Any, dataset_name: str) -> DatasetEvaluator:
    """Top-k accuracy; predictions go to ``OUTPUT_DIR/inference``."""
    return ClassificationEvaluator(
        dataset_name, output_dir=os.path.join(cfg.OUTPUT_DIR, "inference")
    )


def build_evaluator(cfg: Any, dataset_name: str) -> DatasetEvaluator:
    """Build the evaluator ``TEST.EVALUATOR`` names for the test set ``dataset_name``.

    Args:
        cfg (CfgNode): the config; reads ``TEST.EVALUATOR`` and what the evaluator reads.
        dataset_name (str): the test set, a name in ``DatasetCatalog``.

    Returns:
        DatasetEvaluator: the evaluator.

    Raises:
        ConfigError: for a name not in ``EVALUATOR_REGISTRY`` (naming the closest ones).
        TypeError: if the registered callable returns something else than a
            :class:`DatasetEvaluator`.
    """
    name = cfg.TEST.EVALUATOR
    build = EVALUATOR_REGISTRY.get_for_key("TEST.EVALUATOR", name)
    evaluator = build(cfg, dataset_name)
    if not isinstance(evaluator, DatasetEvaluator):
        raise TypeError(
            f"TEST.EVALUATOR={name!r} built {type(evaluator).__name__}, not a DatasetEvaluator; "
            "the registered callable must take (cfg, dataset_name) and return one."
        )
    return evaluator
