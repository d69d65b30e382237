"""DefaultPredictor gives the model the original image size next to the resized image."""

import numpy as np
import torch
from PIL import Image
from torch import nn

from engine_lib.config import get_cfg
from engine_lib.engine import DefaultPredictor
from engine_lib.modeling import META_ARCH_REGISTRY


@META_ARCH_REGISTRY.register()
class _EchoSizeModel(nn.Module):
    """Returns what it was given: the image shape and the original size."""

    def __init__(self, cfg):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, batched_inputs):
        return [
            {"shape": tuple(x["image"].shape), "height": x["height"], "width": x["width"]}
            for x in batched_inputs
        ]


def test_predictor_passes_original_height_and_width(tmp_path):
    cfg = get_cfg()
    cfg.MODEL.META_ARCHITECTURE = "_EchoSizeModel"
    cfg.INPUT.SIZE_TEST = [8, 8]
    cfg.OUTPUT_DIR = str(tmp_path)
    predictor = DefaultPredictor(cfg)
    image = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    Image.fromarray(image).save(tmp_path / "image.png")
    for given in (image, image[:, :, 0], str(tmp_path / "image.png")):
        out = predictor(given, format="L" if getattr(given, "ndim", 3) == 2 else "RGB")
        assert out == {"shape": (3, 8, 8), "height": 20, "width": 30}
