"""``VOCDetectionEvaluator``: PASCAL VOC mAP at IoU 0.5, gathered across ranks."""

import itertools
import logging
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from torchvision.ops import box_iou

from engine_lib.data import MetadataCatalog
from engine_lib.evaluation import DatasetEvaluator
from engine_lib.utils import comm
from engine_lib.utils.logger import create_small_table

__all__ = ["VOCDetectionEvaluator", "average_precision"]

logger = logging.getLogger(__name__)


def average_precision(recall: np.ndarray, precision: np.ndarray) -> float:
    """All-point interpolated AP (PASCAL VOC 2010 and later).

    The area under the precision-recall curve after replacing each precision by the
    highest precision at any higher recall (the monotone envelope). The 11-point variant of
    VOC 2007 is not used: it is coarser and needs no less work.

    Args:
        recall (np.ndarray): recall after each detection, in decreasing-score order.
        precision (np.ndarray): precision after each detection, same order.
    """
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    steps = np.nonzero(r[1:] != r[:-1])[0]
    return float(np.sum((r[steps + 1] - r[steps]) * p[steps + 1]))


class VOCDetectionEvaluator(DatasetEvaluator):
    """Per-class AP at IoU >= 0.5 and their mean, in percent.

    Ground truth comes from the inputs ("boxes", "labels"), predictions from the outputs
    ("boxes", "scores", "labels"), all in the same pixel frame. Each rank keeps its images on
    the CPU; :meth:`evaluate` gathers them on the main process. A detection is a true positive
    when its IoU with a not-yet-matched ground-truth box of its class is the highest and at
    least 0.5; detections are matched in decreasing-score order over the whole data set.

    Results: ``{"bbox": {"AP50": mAP, "AP50-<class>": AP, ...}}``; mAP is the mean over the
    classes that have ground truth.

    Args:
        dataset_name (str, optional): to read the class names (``thing_classes``).
        class_names (Sequence[str], optional): the class names; overrides the metadata.
        iou_threshold (float): the matching threshold. Default: 0.5.
    """

    def __init__(
        self,
        dataset_name: Optional[str] = None,
        *,
        class_names: Optional[Sequence[str]] = None,
        iou_threshold: float = 0.5,
    ):
        if class_names is None and dataset_name is not None:
            class_names = MetadataCatalog.get(dataset_name).get("thing_classes")
        self._class_names = list(class_names) if class_names else None
        self._iou_threshold = iou_threshold
        self._images: List[Dict[str, np.ndarray]] = []

    def reset(self) -> None:
        """Forget the images processed so far."""
        self._images = []

    def process(self, inputs: List[Dict[str, Any]], outputs: List[Dict[str, Any]]) -> None:
        """Keep the ground truth and the detections of each image, on the CPU."""
        for inp, out in zip(inputs, outputs):
            self._images.append(
                {
                    "gt_boxes": torch.as_tensor(inp["boxes"]).reshape(-1, 4).float().numpy(),
                    "gt_labels": torch.as_tensor(inp["labels"]).long().numpy(),
                    "boxes": out["boxes"].detach().cpu().float().numpy(),
                    "scores": out["scores"].detach().cpu().float().numpy(),
                    "labels": out["labels"].detach().cpu().long().numpy(),
                }
            )

    def evaluate(self) -> Dict[str, Any]:
        """Compute AP per class on the main process; ``{}`` on the others."""
        images = list(itertools.chain.from_iterable(comm.gather(self._images, dst=0)))
        if not comm.is_main_process():
            return {}
        if not images:
            logger.warning("VOCDetectionEvaluator received no images")
            return {}
        classes = sorted(set(np.concatenate([im["gt_labels"] for im in images]).tolist()))
        per_class = OrderedDict((c, self._class_ap(images, c)) for c in classes)
        results: Dict[str, float] = OrderedDict(
            AP50=100.0 * float(np.mean(list(per_class.values())))
        )
        for c, ap in per_class.items():
            name = self._class_names[c] if self._class_names and c < len(self._class_names) else c
            results[f"AP50-{name}"] = 100.0 * ap
        logger.info("VOC mAP@0.5 on %d images:\n%s", len(images), create_small_table(results))
        return {"bbox": dict(results)}

    def _class_ap(self, images: List[Dict[str, np.ndarray]], cls: int) -> float:
        num_gt = 0
        detections = []  # (score, image index, box)
        for i, im in enumerate(images):
            num_gt += int((im["gt_labels"] == cls).sum())
            keep = im["labels"] == cls
            detections += [(s, i, b) for s, b in zip(im["scores"][keep], im["boxes"][keep])]
        # Stable sort: ties keep the order of the images, so the result is deterministic.
        detections.sort(key=lambda d: -d[0])
        matched = {
            i: np.zeros(int((im["gt_labels"] == cls).sum()), bool) for i, im in enumerate(images)
        }
        tp = np.zeros(len(detections))
        for k, (_, i, box) in enumerate(detections):
            gt = images[i]["gt_boxes"][images[i]["gt_labels"] == cls]
            if len(gt) == 0:
                continue
            ious = box_iou(torch.from_numpy(box[None]), torch.from_numpy(gt))[0].numpy()
            j = int(ious.argmax())
            if ious[j] >= self._iou_threshold and not matched[i][j]:
                matched[i][j] = True
                tp[k] = 1
        tp_cum = np.cumsum(tp)
        recall = tp_cum / max(num_gt, 1)
        precision = tp_cum / np.arange(1, len(detections) + 1)
        return average_precision(recall, precision)
