"""Triplet loss with batch-hard mining (Hermans et al., "In Defense of the Triplet Loss")."""

import logging

import torch
import torch.nn.functional as F

__all__ = ["pairwise_euclidean", "triplet_loss_hard_mining"]

logger = logging.getLogger(__name__)


def pairwise_euclidean(x: torch.Tensor) -> torch.Tensor:
    """Return the ``(N, N)`` Euclidean distances between the rows of ``x``.

    Squared distances are clamped before the square root: at 0 the root's gradient is
    infinite, and rounding can make a squared distance slightly negative.
    """
    squared = x.pow(2).sum(dim=1)
    d2 = squared[:, None] + squared[None, :] - 2.0 * x @ x.t()
    return d2.clamp(min=1e-12).sqrt()


def triplet_loss_hard_mining(
    embeddings: torch.Tensor,
    labels: torch.Tensor,
    margin: float = 0.3,
    normalize: bool = False,
) -> torch.Tensor:
    """Triplet loss where each sample is an anchor with its hardest positive and negative.

    The hardest positive is the farthest sample of the same label (the anchor itself when it
    has no other), the hardest negative the closest sample of another label; an anchor with
    no negative contributes 0. The loss is the mean over anchors of
    ``max(0, d_pos - d_neg + margin)``, or ``log(1 + exp(d_pos - d_neg))`` when
    ``margin == 0`` (soft margin). Nothing here waits for the device.

    Args:
        embeddings (Tensor): ``(N, D)`` embeddings.
        labels (Tensor): ``(N,)`` integer identities.
        margin (float): the margin; 0 for the soft margin. Default: 0.3.
        normalize (bool): L2-normalize the embeddings first. Default: False.

    Returns:
        Tensor: the scalar loss.

    Example:
        >>> x = torch.tensor([[0.0], [1.0], [3.0]])
        >>> triplet_loss_hard_mining(x, torch.tensor([0, 0, 1]), margin=1.5)
        tensor(0.1667)
    """
    if margin < 0:
        raise ValueError(f"The triplet margin must be >= 0 (0 = soft margin), got {margin}")
    x = embeddings.float()
    if normalize:
        x = F.normalize(x, dim=1)
    dist = pairwise_euclidean(x)
    same = labels[:, None] == labels[None, :]
    hardest_pos = dist.masked_fill(~same, 0.0).amax(dim=1)
    hardest_neg = dist.masked_fill(same, float("inf")).amin(dim=1)
    gap = hardest_pos - hardest_neg
    if margin > 0:
        return F.relu(gap + margin).mean()
    return F.softplus(gap).mean()
