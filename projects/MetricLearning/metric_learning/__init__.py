"""Metric learning (fastreid flavour): BNNeck embeddings, CE + batch-hard triplet, Rank-k / mAP.

Importing this package registers ``EmbeddingHead`` (heads registry) and ``EmbeddingModel``
(meta-architecture registry).
"""

from .config import add_metric_learning_config
from .data import DIGITS_REID_NAMES, load_digits_query_gallery, register_digits_query_gallery
from .evaluator import RetrievalEvaluator, retrieval_metrics
from .losses import pairwise_euclidean, triplet_loss_hard_mining
from .model import EmbeddingHead, EmbeddingModel

__all__ = [
    "DIGITS_REID_NAMES",
    "EmbeddingHead",
    "EmbeddingModel",
    "RetrievalEvaluator",
    "add_metric_learning_config",
    "load_digits_query_gallery",
    "pairwise_euclidean",
    "register_digits_query_gallery",
    "retrieval_metrics",
    "triplet_loss_hard_mining",
]
