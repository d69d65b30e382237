#!/usr/bin/env python
"""Classify images with a trained model and print the top-k classes.

Examples:
    python tools/predict.py --config-file configs/Digits/cnn.yaml \
        --input configs/Digits/sample_digit.png MODEL.WEIGHTS output/digits_cnn/model_final.pth
    python tools/predict.py --config-file configs/Digits/cnn.yaml --input "images/*.png" \
        --output predictions.json MODEL.WEIGHTS output/digits_cnn/model_final.pth
"""

import argparse
import glob
import json
import os
import re
from typing import Any, Dict, List, Optional

import torch

from engine_lib.config import (
    CfgNode,
    add_extra_config_argument,
    build_config,
    load_config_extension,
)
from engine_lib.data import MetadataCatalog
from engine_lib.engine import DefaultPredictor, run_cli
from engine_lib.utils.errors import ConfigError
from engine_lib.utils.file_io import atomic_write
from engine_lib.utils.logger import setup_logger

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


def get_parser() -> argparse.ArgumentParser:
    """Command-line arguments of the predictor."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config-file", required=True, metavar="FILE", help="config file")
    add_extra_config_argument(parser)
    parser.add_argument(
        "--input", nargs="+", required=True, help="image files, directories or glob patterns"
    )
    parser.add_argument("--topk", type=int, default=3, help="number of classes to print")
    parser.add_argument("--output", default="", help="write predictions to this JSON file")
    parser.add_argument(
        "--opts",
        dest="legacy_opts",
        nargs=argparse.REMAINDER,
        default=[],
        help="config overrides: KEY VALUE ... (the same as trailing KEY VALUE pairs)",
    )
    parser.add_argument(
        "opts", nargs=argparse.REMAINDER, help="config overrides: KEY VALUE ..., as in train_net.py"
    )
    return parser


_CONFIG_KEY = re.compile(r"^[A-Z][A-Z0-9_]*(\.[A-Z][A-Z0-9_]*)*$")


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Parse the command line; overrides may trail it (as in train_net.py) or follow --opts."""
    args = get_parser().parse_args(argv)
    # --input takes several values, so trailing overrides land in it: they start at the
    # first value that is a config key (e.g. MODEL.WEIGHTS) and not an existing path.
    for i, value in enumerate(args.input):
        if _CONFIG_KEY.match(value) and not os.path.exists(value):
            args.input, trailing = args.input[:i], args.input[i:]
            args.opts = trailing + list(args.opts or [])
            break
    args.opts = list(args.opts or []) + list(args.legacy_opts or [])
    if not args.input:
        get_parser().error("--input: expected at least one image before the KEY VALUE overrides")
    return args


def expand_inputs(inputs: List[str]) -> List[str]:
    """Turn files, directories and glob patterns into a sorted list of image files."""
    files: List[str] = []
    for item in inputs:
        if os.path.isdir(item):
            files.extend(
                os.path.join(item, name)
                for name in sorted(os.listdir(item))
                if name.lower().endswith(IMAGE_EXTENSIONS)
            )
        elif os.path.isfile(item):
            files.append(item)
        else:
            matches = sorted(glob.glob(item))
            if not matches:
                raise ConfigError(f"--input '{item}' is not a file, a directory or a matching glob")
            files.extend(matches)
    if not files:
        raise ConfigError(f"--input {inputs} contains no image files")
    return files


def class_names(cfg: CfgNode) -> List[str]:
    """Class names of the first test set, or the class indices as strings."""
    names: List[str] = []
    if cfg.DATASETS.TEST:
        names = list(MetadataCatalog.get(cfg.DATASETS.TEST[0]).get("thing_classes", []))
    return names or [str(i) for i in range(cfg.MODEL.HEADS.NUM_CLASSES)]


def main(args: argparse.Namespace) -> None:
    """Predict every input image and print (and optionally save) the top-k classes."""
    setup_logger(name="engine_lib")
    extensions = [load_config_extension(spec) for spec in args.extra_config]
    cfg = build_config(args.config_file, args.opts, extensions)
    predictor = DefaultPredictor(cfg)
    names = class_names(cfg)
    results: Dict[str, Any] = {}
    for path in expand_inputs(args.input):
        scores = predictor(path)["scores"].float().cpu()
        top = torch.topk(scores, min(args.topk, scores.numel()))
        ranked = [
            {"class": names[int(i)], "index": int(i), "score": round(float(s), 6)}
            for s, i in zip(top.values, top.indices)
        ]
        results[path] = ranked
        summary = ", ".join(f"{r['class']} ({r['score']:.3f})" for r in ranked)
        print(f"{path}: {summary}")
    if args.output:
        with atomic_write(args.output, "w") as f:
            json.dump(results, f, indent=2)
        print(f"Predictions written to {args.output}")


if __name__ == "__main__":
    run_cli(main, parse_args())
