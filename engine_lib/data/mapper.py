"""Turn one dataset dict into one model input: read the image, augment it, fix its format.

Augmentations use ``torchvision.transforms.v2`` on CHW uint8 tensors in RGB order; the image
is converted to ``INPUT.FORMAT`` only after them, so colour jitter always sees RGB. Sizes are
``(height, width)`` and resizing is exact (no aspect ratio kept): classification inputs of
one size batch trivially. Normalization is the model's job (``MODEL.PIXEL_MEAN/STD``).

The mapper's random draws come from torch's global generator; it is meant to be called
through :class:`~engine_lib.data.common.MapDataset`, which seeds that generator per sample
(see :mod:`engine_lib.data.seeding` and the seeding contract in ``docs/data.md``).
"""

import logging
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Sequence, Tuple, Union

import numpy as np
import torch

from engine_lib.config import CfgNode, configurable
from engine_lib.utils.errors import ConfigError

if TYPE_CHECKING:  # torchvision is imported where it is used: it adds ~1 s to start-up
    from torchvision.transforms import v2

__all__ = ["DatasetMapper", "build_augmentations", "read_image", "IMAGE_FORMATS"]

logger = logging.getLogger(__name__)

IMAGE_FORMATS = ("RGB", "BGR", "L")


def read_image(dataset_dict: Dict[str, Any]) -> torch.Tensor:
    """Return the image of a dataset dict as an RGB CHW uint8 tensor.

    Args:
        dataset_dict (dict): with ``"image"`` (HxWxC or HxW uint8 array, RGB) or
            ``"file_name"`` (any image file PIL reads).

    Raises:
        ConfigError: the file cannot be read as an image (names the file).
        KeyError: the dict has neither key.
    """
    if "image" in dataset_dict:
        array = np.asarray(dataset_dict["image"])
        if array.dtype != np.uint8 or array.ndim not in (2, 3):
            raise ValueError(
                f"Dataset dict 'image' must be an HxWxC or HxW uint8 array, got {array.dtype} "
                f"with shape {array.shape}"
            )
        tensor = torch.from_numpy(np.ascontiguousarray(array))
        tensor = tensor.unsqueeze(0) if array.ndim == 2 else tensor.permute(2, 0, 1)
    elif "file_name" in dataset_dict:
        from PIL import Image
        from torchvision.transforms import v2

        file_name = dataset_dict["file_name"]
        try:
            with Image.open(file_name) as image:
                tensor = v2.functional.pil_to_tensor(image.convert("RGB"))
        # PIL's UnidentifiedImageError is an OSError too; a header claiming more pixels than
        # Image.MAX_IMAGE_PIXELS allows (twice over) raises DecompressionBombError.
        except (OSError, Image.DecompressionBombError) as e:
            raise ConfigError(
                f"Cannot read image file {file_name!r}: {str(e).rstrip('.')}. Expected an "
                "image PIL can open (PNG, JPEG, ...)"
            ) from e
    else:
        keys = sorted(dataset_dict)
        raise KeyError(f"A dataset dict needs 'image' or 'file_name'; got keys {keys}")
    if tensor.shape[0] == 1:
        tensor = tensor.expand(3, -1, -1)
    if tensor.shape[0] != 3:
        raise ValueError(f"Expected a gray or RGB image, got {tensor.shape[0]} channels")
    return tensor


class DatasetMapper:
    """Map a dataset dict to ``{"image": CHW uint8 tensor, "label": int, ...}``.

    The image tensor may be a strided view (not contiguous), as torchvision returns it.

    Other keys of the dict (``"image_id"``, ``"index"``, ``"file_name"``, ...) are copied;
    the input dict is never modified (the catalog's cached list is shared).

    Its random draws come from torch's global generator only, so it leaves
    ``seed_numpy_and_python`` false; a subclass whose augmentations call ``numpy.random`` or
    python's ``random`` sets it to ``True`` to have them seeded per sample too.

    Args:
        is_train (bool): whether the mapper is used for training (kept for subclasses and logs;
            the behaviour comes from ``augmentations``).
        image_format (str): channel order of the output, one of ``"RGB"``, ``"BGR"``, ``"L"``.
        augmentations (callable): maps an RGB CHW uint8 ``tv_tensors.Image`` to another one,
            e.g. from :func:`build_augmentations`.

    Example:
        >>> mapper = DatasetMapper(cfg, is_train=True)
        >>> mapper({"image": np.zeros((8, 8, 3), np.uint8), "label": 3})["image"].shape
        torch.Size([3, 32, 32])
    """

    # Read by MapDataset: whether numpy's and python's global generators need a per-sample seed.
    seed_numpy_and_python: bool = False

    @configurable
    def __init__(
        self,
        is_train: bool,
        *,
        image_format: str = "RGB",
        augmentations: Callable[[torch.Tensor], torch.Tensor],
    ):
        if image_format not in IMAGE_FORMATS:
            raise ValueError(f"image_format must be one of {IMAGE_FORMATS}, got {image_format!r}")
        self.is_train = is_train
        self.image_format = image_format
        self.augmentations = augmentations

    @property
    def augmentations(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """callable: the augmentations; setting it also decides how the image is passed."""
        return self._augmentations

    @augmentations.setter
    def augmentations(self, value: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self._augmentations = value
        # torchvision's own v2 transforms treat a lone plain tensor as the image, with the
        # same kernels and draws; it spares the tv_tensors.Image wrapping and unwrapping,
        # about a quarter of the cost of a small image's crop. Other callables get the
        # documented tv_tensors.Image.
        self._plain_tensor_input = _is_torchvision_v2(value)

    @classmethod
    def from_config(cls, cfg: CfgNode, is_train: bool = True) -> Dict[str, Any]:
        """Return the constructor arguments for ``cfg`` (``INPUT.*``)."""
        if cfg.INPUT.FORMAT not in IMAGE_FORMATS:
            raise ConfigError(
                f"INPUT.FORMAT is {cfg.INPUT.FORMAT!r}; expected one of {', '.join(IMAGE_FORMATS)}"
            )
        return {
            "is_train": is_train,
            "image_format": cfg.INPUT.FORMAT,
            "augmentations": build_augmentations(cfg, is_train),
        }

    def __call__(self, dataset_dict: Dict[str, Any]) -> Dict[str, Any]:
        """Return the model input for one dataset dict."""
        image = read_image(dataset_dict)
        if self._plain_tensor_input:
            image = self._augmentations(image)
        else:
            from torchvision import tv_tensors

            image = self._augmentations(tv_tensors.Image(image)).as_subclass(torch.Tensor)
        if self.image_format == "BGR":
            image = image.flip(0)
        elif self.image_format == "L":
            from torchvision.transforms import v2

            image = v2.functional.rgb_to_grayscale(image, num_output_channels=1)
        output = {k: v for k, v in dataset_dict.items() if k != "image"}
        # Not made contiguous: the transforms keep the input's HWC memory layout, the model's
        # torch.stack gives a contiguous batch all the same, and a copy here would cost about
        # 5% of the loading of a small image.
        output["image"] = image
        if "label" in output:
            output["label"] = int(output["label"])
        return output

    def __repr__(self) -> str:
        return (
            f"DatasetMapper(is_train={self.is_train}, image_format={self.image_format!r}, "
            f"augmentations={self.augmentations})"
        )


def _is_torchvision_v2(transform: Any) -> bool:
    """Whether ``transform`` is one of torchvision's v2 transforms, or a Compose of them."""
    from torchvision.transforms import v2

    # v2.Lambda runs the user's function, which may expect the tv_tensors.Image.
    if not isinstance(transform, v2.Transform) or isinstance(transform, v2.Lambda):
        return False
    if not type(transform).__module__.startswith("torchvision.transforms.v2"):
        return False
    children = getattr(transform, "transforms", [])
    return all(_is_torchvision_v2(child) for child in children)


def _size(value: Union[int, Sequence[int]], key: str) -> Tuple[int, int]:
    sizes: List[int] = [value] if isinstance(value, int) else list(value)
    if len(sizes) == 1:
        sizes = sizes * 2
    if len(sizes) != 2 or not all(isinstance(s, int) and s > 0 for s in sizes):
        raise ConfigError(f"{key} is {value!r}; expected [height, width] of positive integers")
    return sizes[0], sizes[1]


def _range(value: Sequence[float], key: str) -> Tuple[float, float]:
    values = list(value)
    if len(values) != 2 or not 0 < values[0] <= values[1]:
        raise ConfigError(f"{key} is {value!r}; expected [low, high] with 0 < low <= high")
    return float(values[0]), float(values[1])


def _probability(value: float, key: str) -> float:
    if not 0.0 <= value <= 1.0:
        raise ConfigError(f"{key} is {value!r}; expected a probability in [0, 1]")
    return float(value)


def build_augmentations(cfg: CfgNode, is_train: bool) -> "v2.Compose":
    """Build the transforms of ``INPUT.*`` for training or for testing.

    Training: random resized crop to ``SIZE_TRAIN`` (``INPUT.CROP``, else a plain resize),
    horizontal flip (``INPUT.FLIP.PROB``), colour jitter (``INPUT.COLOR_JITTER``) and random
    erasing (``INPUT.RANDOM_ERASING``), in that order. Testing: resize to ``SIZE_TEST``.

    Args:
        cfg (CfgNode): the config.
        is_train (bool): which pipeline to build.

    Returns:
        v2.Compose: transforms on RGB CHW uint8 ``tv_tensors.Image``.

    Raises:
        ConfigError: a size or range is malformed (names the key).
    """
    from torchvision.transforms import v2

    if not is_train:
        size = _size(cfg.INPUT.SIZE_TEST, "INPUT.SIZE_TEST")
        return v2.Compose([v2.Resize(size, antialias=True)])
    size = _size(cfg.INPUT.SIZE_TRAIN, "INPUT.SIZE_TRAIN")
    crop = cfg.INPUT.CROP
    if crop.ENABLED:
        scale = _range(crop.SCALE, "INPUT.CROP.SCALE")
        ratio = _range(crop.RATIO, "INPUT.CROP.RATIO")
        transforms = [v2.RandomResizedCrop(size, scale=scale, ratio=ratio, antialias=True)]
    else:
        transforms = [v2.Resize(size, antialias=True)]
    flip_prob = _probability(cfg.INPUT.FLIP.PROB, "INPUT.FLIP.PROB")
    if flip_prob > 0:
        transforms.append(v2.RandomHorizontalFlip(p=flip_prob))
    jitter = cfg.INPUT.COLOR_JITTER
    if jitter.ENABLED:
        try:
            transforms.append(
                v2.ColorJitter(
                    brightness=jitter.BRIGHTNESS,
                    contrast=jitter.CONTRAST,
                    saturation=jitter.SATURATION,
                    hue=jitter.HUE,
                )
            )
        except (TypeError, ValueError) as e:
            raise ConfigError(
                f"INPUT.COLOR_JITTER has an invalid value: {e}. Expected BRIGHTNESS, CONTRAST "
                "and SATURATION >= 0 and 0 <= HUE <= 0.5"
            ) from e
    if cfg.INPUT.RANDOM_ERASING.ENABLED:
        erase_prob = _probability(cfg.INPUT.RANDOM_ERASING.PROB, "INPUT.RANDOM_ERASING.PROB")
        transforms.append(v2.RandomErasing(p=erase_prob, value=0))
    return v2.Compose(transforms)
