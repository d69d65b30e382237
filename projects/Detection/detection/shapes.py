"""A procedurally generated detection data set: coloured shapes on a noisy background.

Each image holds 1-3 non-overlapping shapes (rectangle, circle, triangle), each in its own
colour, on grey noise. Everything is a pure function of ``(seed, index)``, so the data set
needs no download and is identical on every machine and rank.

Boxes are ``(x0, y0, x1, y1)`` in pixels with an exclusive end: a shape covers the pixel
columns ``x0 .. x1 - 1``. With that convention a horizontal flip of an image of width ``W``
maps a box exactly to ``(W - x1, y0, W - x0, y1)``.

Dataset dicts carry the shape list, not the pixels (``render_shapes`` draws them), so a
catalog of thousands of images costs almost no memory.
"""

import logging
from typing import Any, Dict, List

import numpy as np
from PIL import Image, ImageDraw

from engine_lib.data import DatasetCatalog, MetadataCatalog

__all__ = ["SHAPE_CLASSES", "load_shapes_dicts", "render_shapes", "register_shapes"]

logger = logging.getLogger(__name__)

SHAPE_CLASSES = ("rectangle", "circle", "triangle")
# Saturated colours: each has a channel far outside the background's range, so no noise
# pixel can take a shape's colour.
_PALETTE = (
    (220, 20, 20),
    (20, 180, 20),
    (30, 30, 220),
    (230, 200, 0),
    (200, 0, 200),
    (0, 200, 200),
)
_BACKGROUND = (70, 180)  # range of the grey noise, per channel
_MIN_SIDE_FRACTION, _MAX_SIDE_FRACTION = 0.25, 0.5
_MAX_TRIES = 50


def _overlaps(box: List[int], others: List[List[int]]) -> bool:
    # Keep a 1-pixel gap so the shapes never touch: each box is then exactly its own shape.
    return any(
        box[0] <= o[2] and o[0] <= box[2] and box[1] <= o[3] and o[1] <= box[3] for o in others
    )


def _make_record(seed: int, index: int, image_size: int) -> Dict[str, Any]:
    rng = np.random.default_rng([seed, index])
    num_shapes = int(rng.integers(1, 4))
    colors = rng.choice(len(_PALETTE), size=num_shapes, replace=False)
    boxes: List[List[int]] = []
    labels: List[int] = []
    for _ in range(num_shapes):
        for _ in range(_MAX_TRIES):
            low, high = int(image_size * _MIN_SIDE_FRACTION), int(image_size * _MAX_SIDE_FRACTION)
            w, h = (int(v) for v in rng.integers(low, high + 1, size=2))
            x0, y0 = (
                int(rng.integers(0, image_size - w + 1)),
                int(rng.integers(0, image_size - h + 1)),
            )
            box = [x0, y0, x0 + w, y0 + h]
            if not _overlaps(box, boxes):
                boxes.append(box)
                labels.append(int(rng.integers(len(SHAPE_CLASSES))))
                break
    return {
        "image_id": index,
        "height": image_size,
        "width": image_size,
        "boxes": boxes,
        "labels": labels,
        "colors": [_PALETTE[c] for c in colors[: len(boxes)]],
        "noise_seed": [seed, index],
    }


def load_shapes_dicts(num_images: int, seed: int, image_size: int = 64) -> List[Dict[str, Any]]:
    """Return the dataset dicts of ``num_images`` shape images.

    Args:
        num_images (int): how many images.
        seed (int): the data set's seed; image ``i`` depends only on ``(seed, i)``.
        image_size (int): side of the square images, in pixels. Default: 64.

    Returns:
        list[dict]: with "image_id", "height", "width", "boxes" (xyxy, exclusive end),
        "labels" (indices into :data:`SHAPE_CLASSES`), "colors" and "noise_seed".
    """
    return [_make_record(seed, i, image_size) for i in range(num_images)]


def render_shapes(record: Dict[str, Any]) -> np.ndarray:
    """Draw the image of a dataset dict from :func:`load_shapes_dicts`.

    Returns:
        np.ndarray: ``(height, width, 3)`` uint8 RGB.
    """
    rng = np.random.default_rng(record["noise_seed"])
    shape = (record["height"], record["width"], 3)
    noise = rng.integers(_BACKGROUND[0], _BACKGROUND[1] + 1, size=shape, dtype=np.uint8)
    image = Image.fromarray(noise)
    draw = ImageDraw.Draw(image)
    for (x0, y0, x1, y1), label, color in zip(record["boxes"], record["labels"], record["colors"]):
        # PIL's coordinates include the last pixel; boxes exclude it.
        corners = [x0, y0, x1 - 1, y1 - 1]
        kind = SHAPE_CLASSES[label]
        if kind == "rectangle":
            draw.rectangle(corners, fill=tuple(color))
        elif kind == "circle":
            draw.ellipse(corners, fill=tuple(color))
        else:
            apex = ((x0 + x1 - 1) / 2, y0)
            draw.polygon([(x0, y1 - 1), (x1 - 1, y1 - 1), apex], fill=tuple(color))
    return np.array(image)  # a writable copy: torch warns about read-only arrays


# name -> (number of images, seed). "shapes_mini" is for smoke tests.
_SPLITS = {"shapes_train": (1000, 0), "shapes_test": (200, 1), "shapes_mini": (16, 2)}


def register_shapes(image_size: int = 64) -> None:
    """Register ``shapes_train``, ``shapes_test`` and ``shapes_mini`` (idempotent).

    Args:
        image_size (int): side of the images. Default: 64.
    """
    for name, (num_images, seed) in _SPLITS.items():
        if name in DatasetCatalog.list():
            continue
        DatasetCatalog.register(
            name, lambda n=num_images, s=seed: load_shapes_dicts(n, s, image_size)
        )
        MetadataCatalog.get(name).set(thing_classes=list(SHAPE_CLASSES))
