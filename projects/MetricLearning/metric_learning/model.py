"""``EmbeddingHead`` (pooling, embedding, BNNeck, classifier) and the ``EmbeddingModel``."""

import logging
from typing import Any, Dict, List, Union

import torch
import torch.nn.functional as F
from torch import nn

from engine_lib.config import CfgNode, configurable
from engine_lib.modeling import HEADS_REGISTRY, META_ARCH_REGISTRY, ImageClassifier
from engine_lib.utils.errors import ConfigError

from .losses import triplet_loss_hard_mining

__all__ = ["EmbeddingHead", "EmbeddingModel"]

logger = logging.getLogger(__name__)

_POOLS = {"avg": nn.AdaptiveAvgPool2d, "max": nn.AdaptiveMaxPool2d}


@HEADS_REGISTRY.register()
class EmbeddingHead(nn.Module):
    """Pool, embed, normalize with a BNNeck, and classify identities (Luo et al., 2019).

    The triplet loss sees the features before the BNNeck, the identity classifier those
    after it: the BatchNorm separates the two losses' geometry. The BNNeck has no learned
    shift (its bias is frozen at 0) and the classifier no bias, as in fastreid.

    Output: ``{"features", "bn_features", "logits"}``, each with N rows.
    """

    @configurable
    def __init__(
        self, *, in_channels: int, num_classes: int, embedding_dim: int = 0, pool: str = "avg"
    ):
        """
        Args:
            in_channels (int): channels of the backbone's feature map.
            num_classes (int): number of training identities.
            embedding_dim (int): size of the embedding; 0 keeps ``in_channels`` (no linear
                layer). Default: 0.
            pool (str): global pooling, "avg" or "max". Default: "avg".
        """
        super().__init__()
        if pool not in _POOLS:
            raise ConfigError(f"MODEL.HEADS.POOL={pool!r}; expected one of {sorted(_POOLS)}")
        if embedding_dim < 0:
            raise ConfigError(f"MODEL.HEADS.EMBEDDING_DIM={embedding_dim}; expected >= 0")
        dim = embedding_dim or in_channels
        self.pool = _POOLS[pool](1)
        self.embedding = nn.Linear(in_channels, dim, bias=False) if embedding_dim else None
        self.bnneck = nn.BatchNorm1d(dim)
        self.bnneck.bias.requires_grad_(False)
        self.classifier = nn.Linear(dim, num_classes, bias=False)
        nn.init.normal_(self.classifier.weight, std=0.001)

    @classmethod
    def from_config(cls, cfg: CfgNode, in_channels: int) -> Dict[str, Any]:
        """Read ``MODEL.HEADS.{NUM_CLASSES, EMBEDDING_DIM, POOL}``."""
        return {
            "in_channels": in_channels,
            "num_classes": cfg.MODEL.HEADS.NUM_CLASSES,
            "embedding_dim": cfg.MODEL.HEADS.EMBEDDING_DIM,
            "pool": cfg.MODEL.HEADS.POOL,
        }

    def forward(self, features: torch.Tensor) -> Dict[str, torch.Tensor]:
        """Map a ``(N, C, H, W)`` feature map to embeddings and identity logits."""
        x = self.pool(features).flatten(1)
        if self.embedding is not None:
            x = self.embedding(x)
        bn = self.bnneck(x)
        return {"features": x, "bn_features": bn, "logits": self.classifier(bn)}


@META_ARCH_REGISTRY.register()
class EmbeddingModel(ImageClassifier):
    """An image embedder trained with cross-entropy plus a batch-hard triplet loss.

    Input as :class:`ImageClassifier` ("image", and "label" = identity in training).
    Output: in training ``{"loss_cls", "loss_triplet"}`` (weighted); in eval one dict per
    image with "embedding", the L2-normalized BNNeck features (compare them with a dot
    product: the cosine similarity).
    """

    @configurable
    def __init__(
        self,
        *,
        triplet_margin: float = 0.3,
        triplet_norm_feat: bool = False,
        ce_weight: float = 1.0,
        triplet_weight: float = 1.0,
        **kwargs: Any,
    ):
        """
        Args:
            triplet_margin (float): margin of the triplet loss (0 = soft margin).
            triplet_norm_feat (bool): L2-normalize the features in the triplet loss.
            ce_weight (float): weight of the cross-entropy loss.
            triplet_weight (float): weight of the triplet loss.
            kwargs: the arguments of :class:`ImageClassifier` (backbone, head, pixel
                statistics, label smoothing); the head must return an
                :class:`EmbeddingHead`-style dict.
        """
        super().__init__(**kwargs)
        if triplet_margin < 0:
            raise ConfigError(
                f"METRIC_LEARNING.TRIPLET_MARGIN={triplet_margin}; expected >= 0 (0 = soft margin)"
            )
        self.triplet_margin = triplet_margin
        self.triplet_norm_feat = triplet_norm_feat
        self.ce_weight = ce_weight
        self.triplet_weight = triplet_weight

    @classmethod
    def from_config(cls, cfg: CfgNode) -> Dict[str, Any]:
        """The classifier's arguments plus the ``METRIC_LEARNING`` loss settings."""
        ml = cfg.METRIC_LEARNING
        return {
            **super().from_config(cfg),
            "triplet_margin": ml.TRIPLET_MARGIN,
            "triplet_norm_feat": ml.TRIPLET_NORM_FEAT,
            "ce_weight": ml.CE_WEIGHT,
            "triplet_weight": ml.TRIPLET_WEIGHT,
        }

    def forward(
        self, batched_inputs: List[Dict[str, Any]]
    ) -> Union[Dict[str, torch.Tensor], List[Dict[str, torch.Tensor]]]:
        """Compute the losses (training) or one normalized embedding per image (eval)."""
        out = self.head(self.backbone(self.preprocess_image(batched_inputs)))
        if not self.training:
            embeddings = F.normalize(out["bn_features"].float(), dim=1)
            return [{"embedding": e} for e in embeddings]
        labels = self._labels(batched_inputs)
        loss_cls = F.cross_entropy(out["logits"], labels, label_smoothing=self.label_smoothing)
        loss_triplet = triplet_loss_hard_mining(
            out["features"], labels, self.triplet_margin, self.triplet_norm_feat
        )
        return {
            "loss_cls": self.ce_weight * loss_cls,
            "loss_triplet": self.triplet_weight * loss_triplet,
        }
