"""SLURM's compressed host lists and task counts (``node[01-03,07]``, ``2(x3),1``).

SLURM's own ``scontrol show hostnames`` expands host lists, but it is not installed on
every machine that sees SLURM's variables (a container, a login node image).
"""

import logging
import re
from typing import List

from engine_lib.utils.errors import ConfigError

__all__ = ["parse_slurm_nodelist", "parse_slurm_tasks_per_node"]

logger = logging.getLogger(__name__)


def parse_slurm_tasks_per_node(value: str) -> List[int]:
    """Expand SLURM's compressed task counts, e.g. ``"2(x3),1"`` -> ``[2, 2, 2, 1]``.

    Args:
        value (str): ``SLURM_TASKS_PER_NODE`` or ``SLURM_STEP_TASKS_PER_NODE``.

    Returns:
        list[int]: the number of tasks of each machine, in node-list order.

    Raises:
        ConfigError: if ``value`` is malformed.
    """
    counts: List[int] = []
    for part in value.split(","):
        match = re.fullmatch(r"(\d+)(?:\(x(\d+)\))?", part.strip())
        if match is None:
            raise ConfigError(
                f"Malformed SLURM task count {value!r}: expected e.g. '4' or '2(x3),1'."
            )
        counts.extend([int(match.group(1))] * int(match.group(2) or 1))
    return counts


def parse_slurm_nodelist(nodelist: str) -> List[str]:
    """Expand a SLURM host list, e.g. ``"node[01-03,07],gpu5"``.

    Supports ranges with zero padding (``[08-10]`` -> ``08, 09, 10``), several bracket groups
    in one name (``rack[1-2]-n[1-2]``) and text after a bracket (``n[1-2]-ib``).

    Args:
        nodelist (str): ``SLURM_STEP_NODELIST``, ``SLURM_JOB_NODELIST`` or ``SLURM_NODELIST``.

    Returns:
        list[str]: the host names, in order.

    Raises:
        ValueError: for unbalanced brackets, empty names or malformed ranges.

    Example:
        >>> parse_slurm_nodelist("node[01-03,07],gpu5")
        ['node01', 'node02', 'node03', 'node07', 'gpu5']
    """
    hosts: List[str] = []
    for pattern in _split_top_level(nodelist):
        hosts.extend(_expand_pattern(pattern))
    return hosts


def _split_top_level(nodelist: str) -> List[str]:
    """Split at the commas that are outside brackets."""
    parts, depth, start = [], 0, 0
    for i, char in enumerate(nodelist):
        if char == "[":
            depth += 1
            if depth > 1:
                raise ValueError("nested brackets")
        elif char == "]":
            depth -= 1
            if depth < 0:
                raise ValueError("']' without '['")
        elif char == "," and depth == 0:
            parts.append(nodelist[start:i])
            start = i + 1
    if depth != 0:
        raise ValueError("'[' without ']'")
    parts.append(nodelist[start:])
    if any(not part.strip() for part in parts):
        raise ValueError("empty host name")
    return [part.strip() for part in parts]


def _expand_pattern(pattern: str) -> List[str]:
    """Expand the first bracket group of ``pattern``, then the rest recursively."""
    match = re.search(r"\[([^\[\]]*)\]", pattern)
    if match is None:
        return [pattern]
    prefix, suffix = pattern[: match.start()], pattern[match.end() :]
    hosts: List[str] = []
    for index in _expand_ranges(match.group(1)):
        hosts.extend(_expand_pattern(prefix + index + suffix))
    return hosts


def _expand_ranges(ranges: str) -> List[str]:
    """``"01-03,7"`` -> ``["01", "02", "03", "7"]`` (the width of a range's start is kept)."""
    indices: List[str] = []
    for part in ranges.split(","):
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", part.strip())
        if match is None:
            raise ValueError(f"malformed range {part!r}")
        low, high = match.group(1), match.group(2) or match.group(1)
        if int(high) < int(low):
            raise ValueError(f"decreasing range {part!r}")
        indices.extend(str(i).zfill(len(low)) for i in range(int(low), int(high) + 1))
    return indices
