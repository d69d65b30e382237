"""``ClassificationEvaluator``: top-k and per-class accuracy of a classifier."""

import itertools
import json
import logging
import os
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from tabulate import tabulate

from engine_lib.utils import comm
from engine_lib.utils.file_io import atomic_write
from engine_lib.utils.logger import create_small_table

from .evaluator import DatasetEvaluator

__all__ = ["ClassificationEvaluator"]

logger = logging.getLogger(__name__)

# Input keys copied into the predictions file so each prediction can be traced to its sample.
_ID_KEYS = ("image_id", "file_name")
# The per-class table shows this many (class, count, accuracy) groups side by side.
_TABLE_GROUPS = 3


def _class_names_from_metadata(dataset_name: Optional[str]) -> Optional[List[str]]:
    if dataset_name is None:
        return None
    # Imported here: evaluation does not otherwise depend on the data package.
    from engine_lib.data import MetadataCatalog

    names = MetadataCatalog.get(dataset_name).get("thing_classes")
    return list(names) if names else None


class ClassificationEvaluator(DatasetEvaluator):
    """Top-k accuracy and per-class top-1 accuracy of a classifier.

    Each input must have a "label" (int or 0-d tensor) and each output "scores" (a
    ``(num_classes,)`` tensor; probabilities or logits, only their order matters). Per sample,
    only the label and the top-k classes and scores are kept, on the CPU. In a distributed
    job each rank processes its share (each sample once over all ranks, as with an
    ``InferenceSampler``) and the main process computes the metrics over all of them.

    Results (percent): ``{"classification": {"top1": ..., "top5": ..., "mean_class_acc": ...}}``
    where "mean_class_acc" is the mean over classes present in the labels of their top-1
    accuracy. A k larger than the number of classes is capped to it (the key keeps k).

    Example:
        >>> evaluator = ClassificationEvaluator("digits_test", output_dir="out/inference")
        >>> results = inference_on_dataset(model, test_loader, evaluator)
        >>> results["classification"]["top1"]
    """

    def __init__(
        self,
        dataset_name: Optional[str] = None,
        *,
        distributed: bool = True,
        output_dir: Optional[str] = None,
        topk: Sequence[int] = (1, 5),
        class_names: Optional[Sequence[str]] = None,
    ):
        """
        Args:
            dataset_name (str, optional): used in logs, in the predictions file name, and to
                read class names (``thing_classes``) from ``MetadataCatalog``.
            distributed (bool): gather the predictions of all ranks before computing metrics;
                with False each rank evaluates only what it processed. Default: True.
            output_dir (str, optional): where to write the predictions as JSON.
            topk (Sequence[int]): the k of the top-k accuracies reported. Default: (1, 5).
            class_names (Sequence[str], optional): names of the classes for the per-class
                table; by default from the metadata, else the class indices.

        Raises:
            ValueError: ``topk`` is empty or has a k < 1.
        """
        if not topk or any(int(k) < 1 for k in topk):
            raise ValueError(f"topk must be a non-empty sequence of positive ints, got {topk}")
        self._dataset_name = dataset_name
        self._distributed = distributed
        self._output_dir = output_dir
        self._topk = tuple(sorted({int(k) for k in topk}))
        self._class_names = list(class_names) if class_names is not None else None
        self._records: List[Dict[str, Any]] = []
        self._num_classes = 0

    def reset(self) -> None:
        """Forget the predictions processed so far."""
        self._records = []
        self._num_classes = 0

    def process(self, inputs: List[Dict[str, Any]], outputs: List[Dict[str, Any]]) -> None:
        """Keep the label and the top-k classes and scores of each sample.

        Raises:
            KeyError: an input has no "label" or an output no "scores".
        """
        if not outputs:
            return
        scores = torch.stack([out["scores"] for out in outputs])
        self._num_classes = max(self._num_classes, scores.shape[1])
        k = min(max(self._topk), scores.shape[1])
        top = scores.topk(k, dim=1)
        # One device-to-host copy per batch: values and indices travel together.
        top_scores, top_classes = torch.stack([top.values.float(), top.indices.float()]).cpu()
        for inp, classes, values in zip(inputs, top_classes.tolist(), top_scores.tolist()):
            if "label" not in inp:
                raise KeyError("ClassificationEvaluator needs a 'label' in every input dict")
            record = {
                "label": int(inp["label"]),
                "topk": [int(c) for c in classes],
                "scores": [round(v, 6) for v in values],
            }
            for key in _ID_KEYS:
                if key in inp:
                    value = inp[key]
                    record[key] = value.item() if isinstance(value, torch.Tensor) else value
            self._records.append(record)

    def _all_records(self) -> Optional[List[Dict[str, Any]]]:
        """Every rank's records on the main process; None on the others."""
        if not self._distributed:
            return self._records
        gathered = comm.gather((self._num_classes, self._records), dst=0)
        if not comm.is_main_process():
            return None
        self._num_classes = max(num_classes for num_classes, _ in gathered)
        return list(itertools.chain.from_iterable(records for _, records in gathered))

    def evaluate(self) -> Dict[str, Any]:
        """Compute the metrics (on the main process) and write the predictions file.

        Returns:
            dict: ``{"classification": {...}}`` on the main process (``{}`` if nothing was
            processed); ``{}`` on other ranks.
        """
        records = self._all_records()
        if records is None:
            return {}
        name = self._dataset_name or "the data set"
        if not records:
            logger.warning("ClassificationEvaluator received no predictions for %s", name)
            return {}
        if self._output_dir and comm.is_main_process():
            file_name = f"{self._dataset_name or 'classification'}_predictions.json"
            os.makedirs(self._output_dir, exist_ok=True)
            with atomic_write(os.path.join(self._output_dir, file_name), "w") as f:
                json.dump(records, f)

        labels = np.array([r["label"] for r in records])
        metrics: Dict[str, float] = OrderedDict()
        for k in self._topk:
            hits = [r["label"] in r["topk"][:k] for r in records]
            metrics[f"top{k}"] = 100.0 * float(np.mean(hits))
        top1_hits = np.array([r["topk"][0] == r["label"] for r in records])
        per_class = OrderedDict(
            (int(c), (int((labels == c).sum()), 100.0 * float(top1_hits[labels == c].mean())))
            for c in np.unique(labels)
        )
        metrics["mean_class_acc"] = float(np.mean([acc for _, acc in per_class.values()]))

        logger.info(
            "Classification results of %s (%d samples, %d classes):\n%s",
            name,
            len(records),
            self._num_classes,
            create_small_table(metrics),
        )
        logger.info("Per-class top-1 accuracy (%%):\n%s", self._per_class_table(per_class))
        return {"classification": dict(metrics)}

    def _per_class_table(self, per_class: Dict[int, tuple]) -> str:
        names = self._class_names or _class_names_from_metadata(self._dataset_name)
        cells = []
        for c, (count, acc) in per_class.items():
            label = names[c] if names is not None and 0 <= c < len(names) else str(c)
            cells.extend([label, count, acc])
        groups = min(_TABLE_GROUPS, len(per_class))
        width = 3 * groups
        cells.extend([""] * (-len(cells) % width))
        rows = [cells[i : i + width] for i in range(0, len(cells), width)]
        headers = ["class", "#samples", "top1"] * groups
        return tabulate(rows, headers=headers, tablefmt="pipe", floatfmt=".2f")
