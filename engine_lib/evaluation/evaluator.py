"""The evaluator interface and the inference loop that feeds it."""

import datetime
import logging
import time
from collections import OrderedDict
from contextlib import ExitStack, contextmanager
from typing import Any, Callable, Dict, Iterable, Iterator, List, Mapping, Optional, Union

import torch
from torch import nn
from tqdm import tqdm

from engine_lib.utils import comm

__all__ = ["DatasetEvaluator", "DatasetEvaluators", "inference_context", "inference_on_dataset"]

logger = logging.getLogger(__name__)

# Iterations left out of the time per sample: the first ones pay for lazy initialisation
# (allocator, cuDNN autotuning, data-loader workers starting).
_NUM_WARMUP = 5
_CALLBACK_NAMES = ("on_start", "before_inference", "after_inference", "on_end")


class DatasetEvaluator:
    """Accumulate a model's outputs over a data set and compute metrics from them.

    ``inference_on_dataset`` calls :meth:`reset` once, :meth:`process` once per batch, and
    :meth:`evaluate` once at the end. In a distributed job every rank runs the same calls on
    its share of the data; :meth:`evaluate` gathers what it needs from all ranks.
    """

    def reset(self) -> None:
        """Forget everything processed so far, ready for a new evaluation."""

    def process(self, inputs: List[Dict[str, Any]], outputs: List[Dict[str, Any]]) -> None:
        """Take one batch of inputs and the model's outputs for them.

        Args:
            inputs (list[dict]): the batch given to the model.
            outputs (list[dict]): what the model returned for it in eval mode.
        """

    def evaluate(self) -> Optional[Dict[str, Any]]:
        """Compute the metrics of everything processed since :meth:`reset`.

        Returns:
            dict | None: ``{task: {metric: value}}`` on the main process; ``None`` or ``{}``
            on other ranks.
        """
        return None


class DatasetEvaluators(DatasetEvaluator):
    """Run several evaluators on the same outputs and merge their results.

    Example:
        >>> evaluator = DatasetEvaluators([ClassificationEvaluator(), MyEvaluator()])
    """

    def __init__(self, evaluators: Iterable[DatasetEvaluator]):
        """
        Args:
            evaluators (Iterable[DatasetEvaluator]): the evaluators, run in this order.
        """
        super().__init__()
        self._evaluators = list(evaluators)

    def reset(self) -> None:
        """Reset every evaluator."""
        for evaluator in self._evaluators:
            evaluator.reset()

    def process(self, inputs: List[Dict[str, Any]], outputs: List[Dict[str, Any]]) -> None:
        """Pass the batch to every evaluator."""
        for evaluator in self._evaluators:
            evaluator.process(inputs, outputs)

    def evaluate(self) -> Dict[str, Any]:
        """Merge the results of every evaluator.

        Returns:
            dict: the union of the evaluators' results (empty on non-main ranks).

        Raises:
            ValueError: two evaluators return the same task key.
        """
        results: Dict[str, Any] = OrderedDict()
        for evaluator in self._evaluators:
            # Every rank must call evaluate(): evaluators gather from all ranks inside it.
            result = evaluator.evaluate()
            if not comm.is_main_process() or not result:
                continue
            for task, value in result.items():
                if task in results:
                    raise ValueError(
                        f"Two evaluators return results under the same key {task!r} "
                        f"({type(evaluator).__name__} and an earlier one); rename one task"
                    )
                results[task] = value
        return results


@contextmanager
def inference_context(model: nn.Module) -> Iterator[None]:
    """Put ``model`` in eval mode for the block, then restore its previous mode.

    Args:
        model (nn.Module): the model.
    """
    training = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(training)


def _noop() -> None:
    pass


def _complete_callbacks(
    callbacks: Optional[Mapping[str, Callable[[], None]]],
) -> Dict[str, Callable[[], None]]:
    """Return a callable for each of ``_CALLBACK_NAMES``, a no-op where none was given."""
    callbacks = dict(callbacks or {})
    unknown = sorted(set(callbacks) - set(_CALLBACK_NAMES))
    if unknown:
        raise ValueError(f"Unknown inference callbacks {unknown}; expected {_CALLBACK_NAMES}")
    return {name: callbacks.get(name, _noop) for name in _CALLBACK_NAMES}


def _len_or_none(data_loader: Iterable) -> Optional[int]:
    try:
        return len(data_loader)  # type: ignore[arg-type]
    except TypeError:  # an iterable data set has no length
        return None


def inference_on_dataset(
    model: Union[nn.Module, Callable[[List[Dict[str, Any]]], List[Dict[str, Any]]]],
    data_loader: Iterable[List[Dict[str, Any]]],
    evaluator: Union[DatasetEvaluator, List[DatasetEvaluator], None],
    callbacks: Optional[Mapping[str, Callable[[], None]]] = None,
) -> Dict[str, Any]:
    """Run ``model`` on every batch of ``data_loader`` and evaluate its outputs.

    The model runs in eval mode (its mode is restored afterwards) under ``torch.no_grad``. On
    the main process a tqdm bar shows progress; the total time and the time per sample (the
    first iterations excluded) are logged. Every rank must call this function, each with its
    share of the data (e.g. from an ``InferenceSampler``).

    Args:
        model (nn.Module | callable): takes a batch (``list[dict]``), returns per-sample
            output dicts.
        data_loader (Iterable[list[dict]]): the batches.
        evaluator (DatasetEvaluator | list[DatasetEvaluator] | None): what to compute; a list
            is wrapped in :class:`DatasetEvaluators`, ``None`` only times the inference.
        callbacks (dict[str, callable], optional): functions without arguments called at
            "on_start", "before_inference", "after_inference" (around each model call) and
            "on_end".

    Returns:
        dict: ``evaluator.evaluate()`` (``{}`` when it returns ``None``, as on non-main ranks).

    Raises:
        ValueError: ``callbacks`` has a key other than the four above.
    """
    calls = _complete_callbacks(callbacks)
    if evaluator is None:
        evaluator = DatasetEvaluators([])
    elif isinstance(evaluator, (list, tuple)):
        evaluator = DatasetEvaluators(evaluator)
    total = _len_or_none(data_loader)
    num_warmup = _NUM_WARMUP if total is None else min(_NUM_WARMUP, total - 1)
    logger.info("Start inference on %s batches", "an unknown number of" if total is None else total)
    evaluator.reset()

    num_samples = timed_samples = excluded_batches = 0
    start = timed_start = time.perf_counter()
    with ExitStack() as stack:
        if isinstance(model, nn.Module):
            stack.enter_context(inference_context(model))
        stack.enter_context(torch.no_grad())
        calls["on_start"]()
        batches = tqdm(
            data_loader, total=total, desc="inference", disable=not comm.is_main_process()
        )
        for idx, inputs in enumerate(batches):
            if idx == num_warmup and idx > 0:
                timed_start, timed_samples, excluded_batches = time.perf_counter(), 0, idx
            calls["before_inference"]()
            outputs = model(inputs)
            calls["after_inference"]()
            evaluator.process(inputs, outputs)
            num_samples += len(inputs)
            timed_samples += len(inputs)
        calls["on_end"]()
    end = time.perf_counter()

    world_size = comm.get_world_size()
    total_time = end - start
    logger.info(
        "Total inference time: %s for %d samples on this rank (%d rank(s))",
        datetime.timedelta(seconds=int(total_time)),
        num_samples,
        world_size,
    )
    if timed_samples > 0:
        logger.info(
            "Inference time per sample: %.5f s on each of %d rank(s) (first %d batches excluded)",
            (end - timed_start) / timed_samples,
            world_size,
            excluded_batches,
        )
    results = evaluator.evaluate()
    return results if results is not None else {}
