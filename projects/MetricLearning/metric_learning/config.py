"""``add_metric_learning_config``: the project's config keys."""

import logging

from engine_lib.config import CfgNode

__all__ = ["add_metric_learning_config"]

logger = logging.getLogger(__name__)


def add_metric_learning_config(cfg: CfgNode) -> None:
    """Add the ``METRIC_LEARNING`` keys to ``cfg`` (call before merging a config file).

    Args:
        cfg (CfgNode): a config from ``get_cfg()``, not frozen.
    """
    cfg.METRIC_LEARNING = CfgNode()
    # Margin of the triplet loss; 0 selects the soft margin log(1 + exp(d_pos - d_neg)).
    cfg.METRIC_LEARNING.TRIPLET_MARGIN = 0.3
    # L2-normalize the embeddings before the triplet loss computes distances.
    cfg.METRIC_LEARNING.TRIPLET_NORM_FEAT = False
    # Weight of the cross-entropy loss on the BNNeck classifier's identity logits.
    cfg.METRIC_LEARNING.CE_WEIGHT = 1.0
    # Weight of the triplet loss with hard mining.
    cfg.METRIC_LEARNING.TRIPLET_WEIGHT = 1.0
    # Test samples of each identity put in the query split (the first ones, in data set order);
    # the other test samples form the gallery.
    cfg.METRIC_LEARNING.NUM_QUERY_PER_ID = 6
