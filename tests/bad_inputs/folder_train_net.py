#!/usr/bin/env python
"""A project-style training script: tools/train_net.py plus data sets from image folders.

``--image-folder NAME=ROOT`` registers ``ROOT`` (``ROOT/<class>/<image>``) as data set NAME
before the run, for ``DATASETS.TRAIN`` / ``DATASETS.TEST``. Single process only.
"""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "tools"))

import train_net  # noqa: E402

from engine_lib.data.datasets import register_image_folder  # noqa: E402
from engine_lib.engine import default_argument_parser, run_cli  # noqa: E402


def main(args):
    for spec in args.image_folder:
        name, root = spec.split("=", 1)
        register_image_folder(name, root)
    return train_net.main(args)


if __name__ == "__main__":
    parser = default_argument_parser()
    parser.add_argument("--image-folder", action="append", default=[], metavar="NAME=ROOT")
    run_cli(main, parser.parse_args())
