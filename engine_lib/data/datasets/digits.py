"""scikit-learn's bundled handwritten digits: real data that needs no download.

1,797 8x8 gray images of the digits 0-9 (values 0..16), scaled to uint8 0..255 and
replicated to 3 channels (RGB). The split is fixed: ``train_test_split`` with
``test_size=360`` (20 %), stratified by class, ``random_state=0``, giving 1,437 training and
360 test images. Images stay 8x8 in the dataset dicts; the mapper upsamples them to
``INPUT.SIZE_TRAIN`` / ``INPUT.SIZE_TEST`` (or pass ``size`` to get pre-resized images).
"""

import functools
import logging
from typing import Any, Dict, List, Optional, Tuple

import numpy as np

__all__ = ["load_digits_dicts", "DIGITS_CLASSES", "DIGITS_TEST_SIZE", "DIGITS_SPLIT_SEED"]

logger = logging.getLogger(__name__)

DIGITS_CLASSES = [str(d) for d in range(10)]
# Number of test images, and the random_state of the split: changing either changes every
# published digits result, so they are constants, not config keys.
DIGITS_TEST_SIZE = 360
DIGITS_SPLIT_SEED = 0


@functools.lru_cache(maxsize=1)
def _split() -> Tuple[np.ndarray, np.ndarray, Dict[str, np.ndarray]]:
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    # 0..16 -> 0..255 with rounding, so 16 maps to full white.
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    labels = digits.target.astype(np.int64)
    train_ids, test_ids = train_test_split(
        np.arange(len(labels)),
        test_size=DIGITS_TEST_SIZE,
        stratify=labels,
        random_state=DIGITS_SPLIT_SEED,
    )
    return images, labels, {"train": np.sort(train_ids), "test": np.sort(test_ids)}


def load_digits_dicts(split: str, size: Optional[int] = None) -> List[Dict[str, Any]]:
    """Return the dataset dicts of the digits ``"train"`` or ``"test"`` split.

    Args:
        split (str): ``"train"`` (1,437 images) or ``"test"`` (360 images).
        size (int, optional): resize the images to ``size x size`` here (bilinear) instead of
            leaving it to the mapper. Default: keep 8x8.

    Returns:
        list[dict]: ``{"image": HxWx3 uint8 RGB, "label": int, "image_id": int (index among
        the 1,797 digits), "index": int (position in this split)}``, ordered by ``image_id``.
    """
    images, labels, ids = _split()
    if split not in ids:
        raise ValueError(f"digits split must be 'train' or 'test', got {split!r}")
    dicts = []
    for index, image_id in enumerate(ids[split].tolist()):
        image = np.repeat(images[image_id][:, :, None], 3, axis=2)
        if size is not None:
            image = _resize(image, size)
        dicts.append(
            {"image": image, "label": int(labels[image_id]), "image_id": image_id, "index": index}
        )
    return dicts


def _resize(image: np.ndarray, size: int) -> np.ndarray:
    from PIL import Image

    # Image.BILINEAR, not Image.Resampling (Pillow 9.1+): setup.py allows Pillow 8, and
    # Pillow's type hints declare the constant only under Resampling.
    resample = Image.BILINEAR  # type: ignore[attr-defined]
    return np.asarray(Image.fromarray(image).resize((size, size), resample))
