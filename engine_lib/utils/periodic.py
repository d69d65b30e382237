"""The one "every N iterations" rule of the engine, shared by hooks, trainers and writers.

Iterations are 0-based and a periodic action runs *after* iteration ``i`` when ``i + 1`` is a
multiple of the period, so that with period 20 it runs after 20, 40, ... completed
iterations (iterations 19, 39, ...), as in detectron2. Writing the rule once keeps the
trainer's metric gathers, the writers and the checkpoints on the same iterations.
"""

import logging

__all__ = ["every_n_iters", "every_n_iters_or_last"]

logger = logging.getLogger(__name__)


def every_n_iters(iteration: int, n: int) -> bool:
    """Return True after every ``n``-th completed iteration; never when ``n <= 0``.

    Args:
        iteration (int): the 0-based iteration that just ran (or is running).
        n (int): the period in iterations.

    Example:
        >>> [i for i in range(10) if every_n_iters(i, 4)]
        [3, 7]
    """
    return n > 0 and (iteration + 1) % n == 0


def every_n_iters_or_last(iteration: int, n: int, max_iter: int) -> bool:
    """Return True after every ``n``-th iteration and at the last one (``max_iter - 1``).

    Args:
        iteration (int): the 0-based iteration.
        n (int): the period in iterations (<= 0: only the last iteration).
        max_iter (int): the iteration training stops before.
    """
    return iteration == max_iter - 1 or every_n_iters(iteration, n)
