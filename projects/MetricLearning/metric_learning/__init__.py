"""Metric learning (fastreid flavour): BNNeck embeddings, CE + batch-hard triplet, Rank-k / mAP.

Importing this package registers ``EmbeddingHead`` (heads registry), ``EmbeddingModel``
(meta-architecture registry), ``RetrievalEvaluator`` (evaluator registry, ``TEST.EVALUATOR``),
and the ``RMSprop`` optimizer and ``WarmupLinearLR`` schedule (solver registries).
"""

from .config import add_metric_learning_config
from .data import DIGITS_REID_NAMES, load_digits_query_gallery, register_digits_query_gallery
from .evaluator import RetrievalEvaluator, build_retrieval_evaluator, retrieval_metrics
from .losses import pairwise_euclidean, triplet_loss_hard_mining
from .model import EmbeddingHead, EmbeddingModel
from .solver import build_rmsprop, build_warmup_linear

__all__ = [
    "DIGITS_REID_NAMES",
    "EmbeddingHead",
    "EmbeddingModel",
    "RetrievalEvaluator",
    "add_metric_learning_config",
    "build_retrieval_evaluator",
    "build_rmsprop",
    "build_warmup_linear",
    "load_digits_query_gallery",
    "pairwise_euclidean",
    "register_digits_query_gallery",
    "retrieval_metrics",
    "triplet_loss_hard_mining",
]
