"""``RetrievalEvaluator``: Rank-k and mAP of query-to-gallery retrieval by cosine distance."""

import logging
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F

from engine_lib.evaluation import EVALUATOR_REGISTRY, DatasetEvaluator
from engine_lib.utils import comm
from engine_lib.utils.logger import create_small_table

__all__ = ["RetrievalEvaluator", "build_retrieval_evaluator", "retrieval_metrics"]

logger = logging.getLogger(__name__)


def retrieval_metrics(
    query: torch.Tensor,
    query_labels: torch.Tensor,
    gallery: torch.Tensor,
    gallery_labels: torch.Tensor,
    topk: Sequence[int] = (1, 5),
) -> Dict[str, float]:
    """Rank the gallery by cosine distance to each query; return Rank-k and mAP in percent.

    Rank-k is the share of queries with a gallery item of their identity among the k
    nearest; AP is the mean of the precisions at the ranks of a query's true matches. Ties
    keep gallery order. Queries with no match in the gallery are left out (as in fastreid).

    Args:
        query (Tensor): ``(Q, D)`` query embeddings.
        query_labels (Tensor): ``(Q,)`` identities.
        gallery (Tensor): ``(G, D)`` gallery embeddings.
        gallery_labels (Tensor): ``(G,)`` identities.
        topk (Sequence[int]): the k of the Rank-k reported (capped at G). Default: (1, 5).

    Returns:
        dict: ``{"Rank-1": ..., "Rank-5": ..., "mAP": ...}``; empty when no query has a match.
    """
    distance = 1.0 - F.normalize(query.double(), dim=1) @ F.normalize(gallery.double(), dim=1).t()
    order = torch.argsort(distance, dim=1, stable=True)
    matches = (gallery_labels[order] == query_labels[:, None]).double()
    valid = matches.sum(dim=1) > 0
    if not valid.all():
        logger.warning("%d queries have no match in the gallery", int((~valid).sum()))
    matches = matches[valid]
    if len(matches) == 0:
        return {}
    metrics: Dict[str, float] = OrderedDict()
    for k in topk:
        metrics[f"Rank-{k}"] = 100.0 * matches[:, :k].amax(dim=1).mean().item()
    ranks = torch.arange(1, matches.shape[1] + 1, dtype=torch.float64)
    precision = matches.cumsum(dim=1) / ranks
    average_precision = (precision * matches).sum(dim=1) / matches.sum(dim=1)
    metrics["mAP"] = 100.0 * average_precision.mean().item()
    return metrics


class RetrievalEvaluator(DatasetEvaluator):
    """Query-to-gallery retrieval metrics (Rank-1, Rank-5, mAP) from cosine distances.

    Each input must carry a bool "query" (query or gallery item) and a "label" (identity);
    each output an "embedding". Embeddings are kept on the CPU; in a distributed job the
    main process gathers every rank's share and computes the metrics.

    Results: ``{"retrieval": {"Rank-1": ..., "Rank-5": ..., "mAP": ...}}`` (percent).
    """

    def __init__(
        self,
        dataset_name: Optional[str] = None,
        *,
        distributed: bool = True,
        topk: Sequence[int] = (1, 5),
    ):
        """
        Args:
            dataset_name (str, optional): used in logs.
            distributed (bool): gather all ranks' embeddings before evaluating. Default: True.
            topk (Sequence[int]): the k of the Rank-k reported. Default: (1, 5).
        """
        self._dataset_name = dataset_name
        self._distributed = distributed
        self._topk = tuple(topk)
        self.reset()

    def reset(self) -> None:
        """Forget the embeddings processed so far."""
        self._embeddings: List[torch.Tensor] = []
        self._labels: List[int] = []
        self._is_query: List[bool] = []

    def process(self, inputs: List[Dict[str, Any]], outputs: List[Dict[str, Any]]) -> None:
        """Keep each sample's embedding (on the CPU), identity and query flag.

        Raises:
            KeyError: an input lacks "query" or "label", or an output lacks "embedding".
        """
        if not outputs:
            return
        for inp in inputs:
            if "query" not in inp or "label" not in inp:
                raise KeyError(
                    "RetrievalEvaluator needs 'query' (bool) and 'label' in every input dict; "
                    f"got keys {sorted(inp)} from {self._dataset_name or 'the data set'}"
                )
            self._labels.append(int(inp["label"]))
            self._is_query.append(bool(inp["query"]))
        self._embeddings.append(torch.stack([o["embedding"] for o in outputs]).float().cpu())

    def evaluate(self) -> Dict[str, Any]:
        """Gather the embeddings and compute the metrics on the main process.

        Returns:
            dict: ``{"retrieval": {...}}`` on the main process, ``{}`` elsewhere or when
            there is no query or gallery item.
        """
        mine = (self._embeddings, self._labels, self._is_query)
        shares = comm.gather(mine, dst=0) if self._distributed else [mine]
        if not shares:
            return {}
        embeddings = torch.cat([e for share in shares for e in share[0]] or [torch.zeros(0)])
        labels = torch.tensor([x for share in shares for x in share[1]], dtype=torch.long)
        is_query = torch.tensor([x for share in shares for x in share[2]], dtype=torch.bool)
        name = self._dataset_name or "the data set"
        if not is_query.any() or is_query.all():
            logger.warning("RetrievalEvaluator: %s needs both query and gallery items", name)
            return {}
        metrics = retrieval_metrics(
            embeddings[is_query],
            labels[is_query],
            embeddings[~is_query],
            labels[~is_query],
            self._topk,
        )
        if not metrics:
            return {}
        logger.info(
            "Retrieval results of %s (%d queries, %d gallery items):\n%s",
            name,
            int(is_query.sum()),
            int((~is_query).sum()),
            create_small_table(metrics),
        )
        return {"retrieval": dict(metrics)}


@EVALUATOR_REGISTRY.register("RetrievalEvaluator")
def build_retrieval_evaluator(cfg: Any, dataset_name: str) -> RetrievalEvaluator:
    """``TEST.EVALUATOR: RetrievalEvaluator``: Rank-1 / Rank-5 / mAP of ``dataset_name``.

    Args:
        cfg (CfgNode): the config.
        dataset_name (str): a query/gallery test set.

    Returns:
        RetrievalEvaluator: the evaluator.
    """
    return RetrievalEvaluator(dataset_name)
