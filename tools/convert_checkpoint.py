#!/usr/bin/env python
"""Convert model weights between a sharded (DCP) checkpoint directory and a single file.

A sharded directory (``SOLVER.CHECKPOINT_FORMAT dcp``) becomes a weights-only ``.pth`` file
``{"model": state_dict}`` (to share, or to load where torch.distributed is not wanted); a
``.pth`` checkpoint becomes a DCP directory holding its ``"model"`` weights. Both load as
``MODEL.WEIGHTS``. The optimizer and trainer state are not converted: resume from the
original checkpoint, which resumes on any number of processes.

torch's ``format_utils.dcp_to_torch_save`` would also write the optimizer state, and its
``torch_save_to_dcp`` unpickles with ``weights_only=False``; this tool reads only the
``model.*`` entries and loads ``.pth`` files with ``weights_only=True``.

Examples:
    python tools/convert_checkpoint.py output/model_final output/model_final_weights.pth
    python tools/convert_checkpoint.py output/model_final.pth output/model_final_dcp
"""

import argparse
import logging
import os
import sys
from typing import Optional, Sequence

import torch

from engine_lib.checkpoint import read_checkpoint
from engine_lib.checkpoint.sharded import is_sharded_checkpoint, read_sharded_weights
from engine_lib.utils.errors import UserError
from engine_lib.utils.file_io import atomic_write

__all__ = ["dcp_to_weights_file", "main", "weights_file_to_dcp"]

logger = logging.getLogger(__name__)


def dcp_to_weights_file(directory: str, path: str) -> None:
    """Write the full model weights of a sharded checkpoint as ``{"model": ...}`` to ``path``.

    Args:
        directory (str): a sharded checkpoint directory.
        path (str): the ``.pth`` file to write (atomically).
    """
    weights = read_sharded_weights(directory)
    with atomic_write(path, "wb") as f:
        torch.save({"model": weights}, f)


def weights_file_to_dcp(path: str, directory: str) -> None:
    """Write the ``"model"`` weights of a ``.pth`` checkpoint as a DCP directory.

    Args:
        path (str): a checkpoint file (read with ``weights_only=True``).
        directory (str): the directory to write; it must not exist yet.

    Raises:
        UserError: ``directory`` exists.
    """
    if os.path.exists(directory):
        raise UserError(f"{directory} exists; give a new directory for the DCP checkpoint.")
    weights = read_checkpoint(path)["model"]
    weights = {k: torch.as_tensor(v) for k, v in weights.items()}
    # Here, not at the top: it takes ~0.7 s to import, which --help need not wait for.
    import torch.distributed.checkpoint as dcp

    dcp.save({"model": weights}, checkpoint_id=directory, no_dist=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Command line: ``convert_checkpoint.py SOURCE DEST``; the direction follows SOURCE."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("source", help="a sharded checkpoint directory or a .pth file")
    parser.add_argument("dest", help="the .pth file or the directory to write")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    try:
        if os.path.isdir(args.source):
            if not is_sharded_checkpoint(args.source):
                raise UserError(f"{args.source} is a directory without DCP .metadata.")
            dcp_to_weights_file(args.source, args.dest)
        else:
            weights_file_to_dcp(args.source, args.dest)
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    logger.info("Wrote %s", args.dest)
    return 0


if __name__ == "__main__":
    sys.exit(main())
