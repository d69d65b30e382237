"""Tell the user, by parameter name and shape, how a checkpoint does not fit the model."""

import logging
from typing import List, Tuple

import torch
from tabulate import tabulate

__all__ = ["check_optimizer_state", "format_shape", "load_summary", "shape_table"]

logger = logging.getLogger(__name__)

#: ``(parameter name, shape in the checkpoint, shape in the model)``, as fvcore reports them.
ShapeMismatch = Tuple[str, Tuple[int, ...], Tuple[int, ...]]


def shape_table(incorrect_shapes: List[ShapeMismatch]) -> str:
    """A table of the parameters whose shapes differ: name, checkpoint shape, model shape."""
    rows = [
        (key, format_shape(in_file), format_shape(in_model))
        for key, in_file, in_model in incorrect_shapes
    ]
    return tabulate(rows, headers=["parameter", "checkpoint", "model"], tablefmt="pipe")


def load_summary(total: int, not_loaded: int, unexpected: int, path: str) -> Tuple[int, str]:
    """The log level and line that say how much of a model a weights file filled.

    Under half loaded is a warning starting ``ONLY``: the file is likely another model's.

    Args:
        total (int): entries of the model's state dict (parameters and buffers).
        not_loaded (int): of these, missing in the file or of another shape there.
        unexpected (int): entries of the file the model does not have.
        path (str): the file, for the message.

    Returns:
        tuple[int, str]: ``logging.WARNING`` or ``logging.INFO``, and the message.
    """
    loaded = total - not_loaded
    counts = (
        f"{loaded} of the model's {total} parameters and buffers loaded from {path} "
        f"({not_loaded} missing or of another shape, {unexpected} in the file but not in "
        "the model)"
    )
    if total and loaded * 2 < total:
        return logging.WARNING, (
            f"ONLY {counts}. Is this the checkpoint of another model? The rest keep their "
            "initial values; check MODEL.WEIGHTS and the MODEL keys of the config."
        )
    return logging.INFO, f"{counts}."


def check_optimizer_state(optimizer: torch.optim.Optimizer) -> None:
    """Raise ValueError if a restored per-parameter state does not fit its parameter.

    ``Optimizer.load_state_dict`` pairs saved states with parameters by position and only
    checks the group sizes, so a changed model or param grouping surfaces as a shape error
    deep inside the first ``step()``; this names the parameter instead.

    Args:
        optimizer (torch.optim.Optimizer): an optimizer whose state was just loaded.

    Raises:
        ValueError: naming the state, the group and both shapes.
    """
    for index, group in enumerate(optimizer.param_groups):
        for param in group["params"]:
            for name, value in optimizer.state.get(param, {}).items():
                if torch.is_tensor(value) and value.dim() > 0 and value.shape != param.shape:
                    raise ValueError(
                        f"the optimizer state {name!r} of a parameter of group {index} has "
                        f"shape {format_shape(tuple(value.shape))}, the parameter "
                        f"{format_shape(tuple(param.shape))}"
                    )


def format_shape(shape: Tuple[int, ...]) -> str:
    """``(3, 4)`` for a shape, also for one dimension (``(3)``, not ``(3,)``)."""
    return "(" + ", ".join(map(str, shape)) + ")"
