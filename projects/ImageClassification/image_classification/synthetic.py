"""Write a synthetic ImageFolder data set of striped patterns (no download needed).

Each class is a pattern (horizontal stripes, vertical stripes, a checkerboard, diagonal
stripes) drawn with two random colours, a random period and phase, and pixel noise. Colour
says nothing about the class, so a model has to learn the shapes.

Example:
    python projects/ImageClassification/image_classification/synthetic.py datasets/stripes
"""

import argparse
import os

import numpy as np
from PIL import Image

__all__ = ["PATTERNS", "make_synthetic_image_folder"]

PATTERNS = ("horizontal", "vertical", "checker", "diagonal")


def _pattern(kind: str, size: int, period: int, phase: int) -> np.ndarray:
    """A (size, size) boolean mask of one pattern."""
    y, x = np.mgrid[:size, :size]
    stripe = {
        "horizontal": (y + phase) // period,
        "vertical": (x + phase) // period,
        "checker": (x + phase) // period + (y + phase) // period,
        "diagonal": (x + y + phase) // period,
    }[kind]
    return stripe % 2 == 0


def make_synthetic_image_folder(
    root: str,
    num_classes: int = 4,
    train_per_class: int = 100,
    val_per_class: int = 25,
    size: int = 32,
    seed: int = 0,
) -> None:
    """Write ``root/{train,val}/<pattern>/<index>.png``.

    Args:
        root (str): output folder (created; existing files with the same names are replaced).
        num_classes (int): how many of :data:`PATTERNS` to use, 1 to 4. Default: 4.
        train_per_class (int): training images per class. Default: 100.
        val_per_class (int): validation images per class. Default: 25.
        size (int): image height and width in pixels. Default: 32.
        seed (int): seed of the random colours, periods, phases and noise. Default: 0.

    Raises:
        ValueError: ``num_classes`` is not between 1 and 4.
    """
    if not 1 <= num_classes <= len(PATTERNS):
        raise ValueError(f"num_classes={num_classes}; expected 1 to {len(PATTERNS)}")
    rng = np.random.default_rng(seed)
    for split, count in (("train", train_per_class), ("val", val_per_class)):
        for kind in PATTERNS[:num_classes]:
            folder = os.path.join(root, split, kind)
            os.makedirs(folder, exist_ok=True)
            for i in range(count):
                period = int(rng.integers(3, 9))
                mask = _pattern(kind, size, period, int(rng.integers(0, 2 * period)))
                # The second colour differs by at least 64 in every channel: stripes stay visible.
                first = rng.integers(0, 256, size=3)
                second = (first + rng.integers(64, 193, size=3)) % 256
                image = np.where(mask[..., None], first, second)
                image = image + rng.normal(0.0, 20.0, size=image.shape)
                pixels = np.clip(image, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(os.path.join(folder, f"{i:04d}.png"))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="output folder")
    parser.add_argument("--num-classes", type=int, default=4)
    parser.add_argument("--train-per-class", type=int, default=100)
    parser.add_argument("--val-per-class", type=int, default=25)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    make_synthetic_image_folder(
        args.root, args.num_classes, args.train_per_class, args.val_per_class, args.size, args.seed
    )
