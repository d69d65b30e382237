"""Tell the user, by parameter name and shape, how a checkpoint does not fit the model."""

import logging
from typing import List, Tuple

import torch
from tabulate import tabulate

__all__ = ["check_optimizer_state", "format_shape", "shape_table"]

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
