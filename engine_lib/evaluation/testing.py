"""Report and check evaluation results: csv lines, flattening, expected-value checks."""

import logging
import math
from collections import OrderedDict
from typing import Any, Dict, List, Mapping

from engine_lib.config import CfgNode
from engine_lib.utils.errors import ConfigError, UserError

__all__ = [
    "ResultsVerificationError",
    "check_results",
    "flatten_results_dict",
    "print_csv_format",
    "verify_results",
]

logger = logging.getLogger(__name__)


def print_csv_format(results: Mapping[str, Any]) -> None:
    """Log each task's metrics as a header line and a value line, ready to paste into a sheet.

    Args:
        results (Mapping): ``{task: {metric: value}}`` as returned by an evaluator; a task
            whose value is not a mapping is logged as ``task=value``.

    Example:
        ``copypaste: Task: classification``, ``copypaste: top1,top5`` and
        ``copypaste: 97.5000,99.8000`` are logged for
        ``{"classification": {"top1": 97.5, "top5": 99.8}}``.
    """
    for task, metrics in results.items():
        if not isinstance(metrics, Mapping):
            logger.info("copypaste: %s=%s", task, metrics)
            continue
        flat = flatten_results_dict(metrics)
        logger.info("copypaste: Task: %s", task)
        logger.info("copypaste: %s", ",".join(flat))
        logger.info("copypaste: %s", ",".join(_format_value(v) for v in flat.values()))


def _format_value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4f}"
    return str(value)


def flatten_results_dict(results: Mapping[str, Any]) -> Dict[str, Any]:
    """Flatten nested results into one level, joining keys with "/".

    Args:
        results (Mapping): e.g. ``{"classification": {"top1": 97.5}}``.

    Returns:
        dict: e.g. ``{"classification/top1": 97.5}``, in the original order.
    """
    flat: Dict[str, Any] = OrderedDict()
    for key, value in results.items():
        if isinstance(value, Mapping):
            for sub_key, sub_value in flatten_results_dict(value).items():
                flat[f"{key}/{sub_key}"] = sub_value
        else:
            flat[key] = value
    return flat


def _parse_expected(entry: Any) -> tuple:
    """Validate one ``TEST.EXPECTED_RESULTS`` entry and return (task, metric, value, tol)."""
    if not isinstance(entry, (list, tuple)) or len(entry) != 4:
        raise ConfigError(
            f"TEST.EXPECTED_RESULTS entry {entry!r} must be [task, metric, value, tolerance]"
        )
    task, metric, expected, tolerance = entry
    try:
        expected, tolerance = float(expected), float(tolerance)
    except (TypeError, ValueError) as e:
        raise ConfigError(
            f"TEST.EXPECTED_RESULTS entry {entry!r}: value and tolerance must be numbers"
        ) from e
    if tolerance < 0:
        raise ConfigError(f"TEST.EXPECTED_RESULTS entry {entry!r}: tolerance must be >= 0")
    return str(task), str(metric), expected, tolerance


class ResultsVerificationError(UserError):
    """The results missed a value of ``TEST.EXPECTED_RESULTS``: the run failed.

    A :class:`~engine_lib.utils.errors.UserError`, so ``tools/train_net.py`` ends with one
    line and exit code 2 instead of a traceback.
    """


def verify_results(cfg: CfgNode, results: Mapping[str, Any]) -> bool:
    """Check ``results`` against ``cfg.TEST.EXPECTED_RESULTS``; log an error for each miss.

    Each entry is ``[task, metric, expected, tolerance]`` and passes when
    ``results[task][metric]`` is finite and within ``tolerance`` of ``expected``. ``task``
    may be a "/"-joined path for nested results (e.g. "digits_test/classification"). This
    function only reports: deciding to exit is the caller's business.

    Args:
        cfg (CfgNode): the config.
        results (Mapping): results as returned by an evaluator or ``DefaultTrainer.test``.

    Returns:
        bool: True when every entry passes (or there is none).

    Raises:
        ConfigError: an entry of ``TEST.EXPECTED_RESULTS`` is malformed.
    """
    return not _misses(cfg, results)


def check_results(cfg: CfgNode, results: Mapping[str, Any]) -> None:
    """Fail the run when ``results`` miss ``cfg.TEST.EXPECTED_RESULTS`` (:func:`verify_results`).

    ``DefaultTrainer.train`` and ``--eval-only`` call it on the main process after the final
    evaluation, so a regression caught by an expected value ends the job with a non-zero
    exit code rather than a log line nobody reads.

    Args:
        cfg (CfgNode): the config.
        results (Mapping): results as returned by an evaluator or ``DefaultTrainer.test``.

    Raises:
        ResultsVerificationError: a value is missing, not a number, or out of tolerance; the
            message lists each miss.
        ConfigError: an entry of ``TEST.EXPECTED_RESULTS`` is malformed.
    """
    misses = _misses(cfg, results)
    if misses:
        raise ResultsVerificationError(
            f"TEST.EXPECTED_RESULTS not met ({len(misses)} miss(es)): " + "; ".join(misses)
        )


def _misses(cfg: CfgNode, results: Mapping[str, Any]) -> List[str]:
    """Check the results, log the verdict and return one line per miss."""
    expected_results = [_parse_expected(entry) for entry in cfg.TEST.EXPECTED_RESULTS]
    if not expected_results:
        return []
    flat = flatten_results_dict(results)
    failures = []
    for task, metric, expected, tolerance in expected_results:
        key = f"{task}/{metric}"
        if key not in flat:
            failures.append(f"{key}: missing from the results (have: {', '.join(flat) or 'none'})")
            continue
        actual = flat[key]
        try:
            actual = float(actual)
        except (TypeError, ValueError):
            failures.append(f"{key}: {actual!r} is not a number")
            continue
        if not math.isfinite(actual) or abs(actual - expected) > tolerance:
            failures.append(f"{key}: got {actual:.4f}, expected {expected:.4f} ± {tolerance:g}")
    if failures:
        logger.error("Results verification FAILED:\n  %s", "\n  ".join(failures))
        return failures
    logger.info("Results verification passed (%d expected values).", len(expected_results))
    return []
