#!/usr/bin/env python
"""Count a config's model parameters per module and its FLOPs on a dummy batch.

FLOPs are counted with fvcore's ``FlopCountAnalysis`` on one random image of ``INPUT.SIZE_TEST``
in eval mode. As in fvcore (and detectron2), one fused multiply-add
counts as one flop.

Examples:
    python tools/analyze_model.py --config-file configs/Digits/cnn.yaml
    python tools/analyze_model.py --config-file configs/Digits/resnet18.yaml --tasks flop \
        --max-depth 2 MODEL.BACKBONE.DEPTH 34
"""

import argparse
import logging
import warnings
from collections import Counter
from types import ModuleType
from typing import Any, List, Tuple

import torch
from torch import nn

from engine_lib.config import (
    CfgNode,
    add_extra_config_argument,
    build_config,
    load_config_extension,
)
from engine_lib.engine import run_cli
from engine_lib.modeling import build_model

__all__ = ["BatchedInputs", "analyze_flops", "analyze_parameters", "get_parser", "main"]

logger = logging.getLogger("engine_lib.tools.analyze_model")

TASKS = ("parameter", "flop")


def _fvcore_nn() -> ModuleType:
    # Imported when an analysis runs, not for --help (~0.1 s).
    with warnings.catch_warnings():
        # Importing fvcore.nn runs torch.jit.script on an unrelated loss, which torch deprecates.
        warnings.simplefilter("ignore", FutureWarning)
        import fvcore.nn

    return fvcore.nn


class BatchedInputs(nn.Module):
    """Give a model that takes ``list[dict]`` a tensor interface the jit tracer can follow.

    fvcore traces the model with ``torch.jit.trace``, which only passes tensors in and out;
    engine_lib models take one ``{"image": CHW uint8 tensor}`` dict per image and return a
    list of dicts. This wrapper builds the dicts from an ``(N, C, H, W)`` batch and returns
    every output tensor, flattened, in eval mode.

    Args:
        model (nn.Module): the engine_lib model.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> Tuple[torch.Tensor, ...]:
        outputs = self.model([{"image": image} for image in images])
        return tuple(_tensors(outputs))


def _tensors(obj: Any) -> List[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        return [obj]
    if isinstance(obj, dict):
        return [t for key in sorted(obj) for t in _tensors(obj[key])]
    if isinstance(obj, (list, tuple)):
        return [t for item in obj for t in _tensors(item)]
    return []


def dummy_images(cfg: CfgNode, device: torch.device) -> torch.Tensor:
    """A batch of one random uint8 image of ``INPUT.SIZE_TEST``, one channel per PIXEL_MEAN.

    One image: every image of the size costs the same, and a model that checks that the
    images of a batch agree in size cannot do so under the tracer (shapes become tensors).
    """
    height, width = cfg.INPUT.SIZE_TEST
    channels = len(cfg.MODEL.PIXEL_MEAN)
    generator = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (1, channels, height, width), generator=generator)
    return images.to(device=device, dtype=torch.uint8)


def analyze_parameters(model: nn.Module, max_depth: int) -> str:
    """The parameter table and totals of ``model``.

    Args:
        model (nn.Module): the model.
        max_depth (int): the depth of submodules shown.

    Returns:
        str: the report.
    """
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    table = _fvcore_nn().parameter_count_table(model, max_depth=max_depth)
    return f"{table}\nTotal parameters: {total:,} (trainable: {trainable:,})"


def analyze_flops(model: nn.Module, images: torch.Tensor, max_depth: int) -> Tuple[str, float]:
    """FLOPs of ``model`` per image on ``images``, as a per-module table.

    Args:
        model (nn.Module): the model (switched to eval mode).
        images (Tensor): ``(N, C, H, W)`` uint8 images on the model's device.
        max_depth (int): the depth of submodules shown.

    Returns:
        tuple[str, float]: the report, and the FLOPs per image.
    """
    model.eval()
    fvcore_nn = _fvcore_nn()
    analysis = fvcore_nn.FlopCountAnalysis(BatchedInputs(model), (images,))
    # Ops fvcore has no formula for (e.g. elementwise normalisation) are summarised below
    # instead of logged one warning each.
    analysis.unsupported_ops_warnings(False).uncalled_modules_warnings(False)
    with torch.no_grad():
        total = analysis.total() / len(images)
    table = fvcore_nn.flop_count_table(analysis, max_depth=max_depth, show_param_shapes=False)
    lines = [
        f"FLOPs of a batch of {len(images)} image(s) of size {tuple(images.shape[1:])}:",
        table,
        f"Total FLOPs per image: {total:,.0f} ({total / 1e6:.2f} MFLOPs; "
        "a multiply-add counts as one flop)",
    ]
    skipped = Counter(analysis.unsupported_ops())
    if skipped:
        ops = ", ".join(f"{op} ({n}x)" for op, n in sorted(skipped.items()))
        lines.append(f"Ops not counted (no flop formula): {ops}")
    return "\n".join(lines), total


def get_parser() -> argparse.ArgumentParser:
    """Command-line arguments of the tool."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", required=True, metavar="FILE", help="config file")
    add_extra_config_argument(parser)
    parser.add_argument(
        "--tasks",
        action="append",
        choices=TASKS,
        help="what to analyze; repeat for several (default: all)",
    )
    parser.add_argument("--max-depth", type=int, default=3, help="depth of modules in tables")
    parser.add_argument("opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ...")
    return parser


def main(args: argparse.Namespace) -> None:
    """Build the model of the config and print the chosen analyses."""
    extensions = [load_config_extension(spec) for spec in args.extra_config]
    cfg = build_config(args.config_file, args.opts, extensions)
    model = build_model(cfg)
    tasks = args.tasks or TASKS
    if "parameter" in tasks:
        print(analyze_parameters(model, args.max_depth))
    if "flop" in tasks:
        device = next(model.parameters()).device
        report, _ = analyze_flops(model, dummy_images(cfg, device), args.max_depth)
        print(report)


if __name__ == "__main__":
    run_cli(main, get_parser().parse_args())
