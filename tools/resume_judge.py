"""How ``tools/resume_check.py`` judges a resumed run: checkpoints bit for bit, metrics lines.

Two questions decide whether a resume was exact:

- :func:`compare_checkpoints`: are the final checkpoints the same bits? Floating-point
  tensors are compared as the integers of the same width their bits spell, so ``-0.0`` differs
  from ``0.0``, a NaN equals only a NaN with the same bits and ``+inf`` differs from the
  largest finite float (a comparison after ``nan_to_num`` would let all of those pass).
- :func:`metrics_problems`: does ``metrics.json`` hold every line of the uninterrupted run,
  with the same metrics, each iteration once? A preempted run may add a line at the iteration
  it stopped at (it writes its metrics before it exits): that line is no fault.
"""

import json
import os
import struct
from typing import Any, Dict, List, Optional, Sequence, Set

import numpy as np
import torch

__all__ = ["compare_checkpoints", "metrics_problems", "same_bits"]

# The integer dtype whose bits a floating dtype's value is viewed as, by element size.
_INT_OF_SIZE = {1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}


def _as_bits(tensor: torch.Tensor) -> torch.Tensor:
    """The tensor's elements as integers of the same width (complex: real and imaginary)."""
    if tensor.is_complex():
        tensor = torch.view_as_real(tensor.resolve_conj())
    return tensor.contiguous().view(_INT_OF_SIZE[tensor.element_size()])


def same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Whether two tensors of one dtype and shape hold the same bits in every element.

    Args:
        a, b (torch.Tensor): dense tensors, on the CPU.

    Returns:
        bool: True when identical bit for bit (``-0.0 != 0.0``; NaNs equal when their bits do).
    """
    if a.is_floating_point() or a.is_complex():
        return torch.equal(_as_bits(a), _as_bits(b))
    return torch.equal(a, b)


def _tensor_diff(a: torch.Tensor, b: torch.Tensor) -> Optional[str]:
    if a.dtype != b.dtype or a.shape != b.shape:
        return f"{a.dtype}{list(a.shape)} vs {b.dtype}{list(b.shape)}"
    if same_bits(a, b):
        return None
    if a.is_floating_point() or a.is_complex():
        differ = (_as_bits(a) != _as_bits(b)).sum().item()
        finite = torch.isfinite(a).all() and torch.isfinite(b).all()
        delta = (a.double() - b.double()).abs().max().item() if finite else float("nan")
        return f"bits differ in {differ} element(s) (max abs difference {delta:.3g})"
    delta = (a.double() - b.double()).abs().max().item() if a.numel() else 0.0
    return f"values differ (max abs difference {delta:.3g})"


def _scalar_diff(a: Any, b: Any) -> Optional[str]:
    # 1 and 1.0 (or True) are different values in a checkpoint; so are -0.0 and 0.0.
    if type(a) is not type(b):
        return f"{a!r} ({type(a).__name__}) vs {b!r} ({type(b).__name__})"
    if isinstance(a, float):
        same = struct.pack("<d", a) == struct.pack("<d", b)
    elif isinstance(a, np.ndarray):
        same = a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()
    else:
        same = a == b
    return None if same else f"{a!r} vs {b!r}"


def compare_checkpoints(expected: Any, got: Any, prefix: str = "", limit: int = 20) -> List[str]:
    """Compare two checkpoints (or parts of them) bit for bit.

    Args:
        expected, got: the loaded checkpoints (nested dicts, lists, tensors, numbers).
        prefix (str): key path of this part, for the messages.
        limit (int): stop after this many differences.

    Returns:
        list[str]: one line per difference, naming its key path; empty when identical.

    Example:
        >>> compare_checkpoints({"w": torch.tensor([0.0])}, {"w": torch.tensor([-0.0])})
        ['/w: bits differ in 1 element(s) (max abs difference 0)']
    """
    diffs: List[str] = []

    def walk(a: Any, b: Any, path: str) -> None:
        if len(diffs) >= limit:
            return
        if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
            if not (isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor)):
                diffs.append(f"{path}: a tensor on one side only")
            elif (diff := _tensor_diff(a, b)) is not None:
                diffs.append(f"{path}: {diff}")
        elif isinstance(a, dict) and isinstance(b, dict):
            for key in sorted(set(a) | set(b), key=str):
                if key not in a or key not in b:
                    diffs.append(f"{path}/{key}: missing on one side")
                else:
                    walk(a[key], b[key], f"{path}/{key}")
        elif isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
            if len(a) != len(b):
                diffs.append(f"{path}: length {len(a)} vs {len(b)}")
            else:
                for i, (x, y) in enumerate(zip(a, b)):
                    walk(x, y, f"{path}[{i}]")
        elif (diff := _scalar_diff(a, b)) is not None:
            diffs.append(f"{path}: {diff}")

    walk(expected, got, prefix)
    return diffs


# The iteration timer measures no iteration right after a (re)start, so whether a line holds
# these depends on where the run was resumed, not on whether the resume was exact.
_TIMING_KEYS = frozenset({"time", "data_time", "eta_seconds"})


def _read_lines(directory: str) -> List[Dict[str, Any]]:
    with open(os.path.join(directory, "metrics.json")) as f:
        return [json.loads(line) for line in f if line.strip()]


def _keys_by_iteration(lines: Sequence[Dict[str, Any]]) -> Dict[int, Set[str]]:
    keys: Dict[int, Set[str]] = {}
    for line in lines:
        names = set(line) - _TIMING_KEYS - {"iteration"}
        keys.setdefault(line["iteration"], set()).update(names)
    return keys


def metrics_problems(
    output_dir: str, expected_dir: Optional[str] = None, stop_iterations: Sequence[int] = ()
) -> List[str]:
    """Check ``metrics.json``: each iteration at most once, every expected line and metric.

    Judged against the uninterrupted run, line by line: each of its iterations must have a
    line with the same metric names (an evaluation's results included, which a resume that
    lost pending writes would miss), and there must be no other line, except at an iteration
    a preempted run stopped at, which may also carry more metrics than the uninterrupted line.
    Values are not compared: timings differ between runs, and the weights are compared exactly.

    Args:
        output_dir (str): the interrupted run's directory.
        expected_dir (str, optional): the uninterrupted run's directory.
        stop_iterations (Sequence[int]): iterations a preempted run stopped at.

    Returns:
        list[str]: the problems found; empty if none.
    """
    got_lines = _read_lines(output_dir)
    got = [line["iteration"] for line in got_lines]
    problems = []
    repeated = sorted({i for i in got if got.count(i) > 1})
    if repeated:
        problems.append(f"metrics.json repeats iterations {repeated}")
    if got != sorted(got):
        problems.append("metrics.json iterations are not in increasing order")
    if expected_dir is None:
        return problems
    want_keys = _keys_by_iteration(_read_lines(expected_dir))
    got_keys = _keys_by_iteration(got_lines)
    stops = set(stop_iterations)
    missing = sorted(set(want_keys) - set(got_keys))
    extra = sorted(set(got_keys) - set(want_keys) - stops)
    if missing:
        problems.append(f"metrics.json lacks the lines of iterations {missing}")
    if extra:
        problems.append(f"metrics.json has lines the uninterrupted run has not: {extra}")
    for iteration in sorted(set(want_keys) & set(got_keys)):
        want, have = want_keys[iteration], got_keys[iteration]
        if have != want and not (iteration in stops and have >= want):
            lost, added = sorted(want - have), sorted(have - want)
            problems.append(
                f"metrics.json line of iteration {iteration}: missing {lost}, unexpected {added}"
            )
    return problems
