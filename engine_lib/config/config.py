"""``CfgNode``: fvcore's config node with validation that names the culprit.

yacs and fvcore already merge YAML files (with ``_BASE_``) and ``KEY VALUE`` lists, but their
errors are bare (``Non-existent config key: X``, an ``AssertionError`` for an odd list, a raw
PyYAML traceback) and say nothing about where the bad value came from. Here every merge is
first checked against the tree, and each mistake raises a :class:`ConfigError` or
:class:`ConfigKeyError` naming the key, the closest existing keys, the expected type and the
file (or the command line) it came from. Only then is the merge handed to yacs.
"""

from __future__ import annotations

import contextlib
import difflib
import logging
import os
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import yaml
from fvcore.common.config import BASE_KEY
from fvcore.common.config import CfgNode as _FvcoreCfgNode

from engine_lib.utils.errors import ConfigError, ConfigKeyError

from .validators import coerce_like_default, get_value_check, run_validators, value_checked_keys
from .yaml_loading import NoAliasSafeLoader, check_symlink_loop

__all__ = ["CfgNode", "COMMAND_LINE"]

logger = logging.getLogger(__name__)

#: The source name used in messages for values given as ``KEY VALUE`` pairs.
COMMAND_LINE = "the command line"

# Maps a dotted key to the file (or COMMAND_LINE) that set it, for error messages.
_Sources = Dict[str, str]


class CfgNode(_FvcoreCfgNode):
    """A yacs/fvcore config node whose merges fail with messages a user can act on.

    Example:
        >>> cfg = get_cfg()
        >>> cfg.merge_from_file("configs/Digits/cnn.yaml")
        >>> cfg.merge_from_list(["SOLVER.BASE_LR", "0.1"])
        >>> cfg.freeze()
    """

    @contextlib.contextmanager
    def edited_copy(self) -> Iterator[CfgNode]:
        """A modifiable deep copy for the ``with`` block, frozen at its end if this one is.

        The way to derive a config from a frozen one (resolved epochs, a drawn seed, a
        rescaled batch) without changing the original.

        Example:
            >>> with cfg.edited_copy() as resolved:
            ...     resolved.SEED = 42
        """
        edited = self.clone()
        edited.defrost()
        yield edited
        if self.is_frozen():
            edited.freeze()

    # ------------------------------------------------------------------ loading YAML
    @classmethod
    def load_yaml_with_base(cls, filename: str, allow_unsafe: bool = False) -> Dict[str, Any]:
        """Load a YAML file and the ``_BASE_`` files it includes, safely.

        Args:
            filename (str): the config file.
            allow_unsafe (bool): must be False; kept for signature compatibility with fvcore.
                Config files are data, so python-object YAML tags are never executed.

        Returns:
            dict: the merged content, bases first, the including file last.

        Raises:
            ConfigError: missing file, malformed YAML, a non-mapping document, a bad
                ``_BASE_`` value or a ``_BASE_`` cycle.
        """
        if allow_unsafe:
            raise ConfigError("engine_lib loads config files with yaml.safe_load only")
        loaded, _ = cls._load_with_sources(filename, chain=())
        return loaded

    @classmethod
    def _load_with_sources(
        cls, filename: str, chain: Tuple[str, ...]
    ) -> Tuple[Dict[str, Any], _Sources]:
        """Load ``filename`` recursively, recording which file set each dotted key."""
        path = os.path.abspath(os.path.expanduser(filename))
        # realpath: a symlink to a file of the chain closes a cycle as the file itself does.
        if os.path.realpath(path) in {os.path.realpath(p) for p in chain}:
            cycle = " -> ".join(os.path.relpath(p) for p in chain + (path,))
            raise ConfigError(f"_BASE_ cycle in config files: {cycle}")
        check_symlink_loop(path, chain)
        if not os.path.isfile(path):
            if chain:
                raise ConfigError(
                    f"_BASE_ config file '{filename}' not found (looked for '{path}'); "
                    f"it is included from '{chain[-1]}'"
                )
            raise ConfigError(f"Config file not found: '{filename}' (looked for '{path}')")
        content = _read_yaml_mapping(path)

        bases = content.pop(BASE_KEY, None)
        merged: Dict[str, Any] = {}
        sources: _Sources = {}
        for base in _base_list(bases, path):
            if not os.path.isabs(os.path.expanduser(base)):
                base = os.path.join(os.path.dirname(path), base)
            base_content, base_sources = cls._load_with_sources(base, chain + (path,))
            # Each file of the chain is a source of its own for the validators (a later
            # file may replace what an earlier one set, e.g. MAX_ITER by MAX_EPOCH).
            run_validators(base_content, merged, _describer(base_sources))
            _merge_dicts(base_content, merged)
            sources.update(base_sources)
        own_sources = {key: path for key in _dotted_keys(content)}
        run_validators(content, merged, _describer(own_sources))
        _merge_dicts(content, merged)
        sources.update(own_sources)
        return merged, sources

    # ------------------------------------------------------------------ merging
    def merge_from_file(self, cfg_filename: str, allow_unsafe: bool = False) -> None:
        """Merge a YAML config file (and its ``_BASE_`` chain) into this node.

        Args:
            cfg_filename (str): path of the YAML file.
            allow_unsafe (bool): must be False (see :meth:`load_yaml_with_base`).

        Raises:
            ConfigError: bad file, bad YAML or a value of the wrong type.
            ConfigKeyError: a key that does not exist, with suggestions and the file it is in.
        """
        if allow_unsafe:
            raise ConfigError("engine_lib loads config files with yaml.safe_load only")
        loaded, sources = self._load_with_sources(cfg_filename, chain=())
        checked = self._check_and_coerce(loaded, prefix="", sources=sources)
        self._checked_merge(type(self)(checked), sources)

    def merge_from_list(self, cfg_list: Sequence[str]) -> None:
        """Merge ``KEY VALUE`` pairs, e.g. from the command line.

        Args:
            cfg_list (list[str]): ``[key1, value1, key2, value2, ...]``; values are parsed as
                Python literals when possible (``"0.1"`` -> 0.1, ``"(1, 2)"`` -> tuple).

        Raises:
            ConfigError: an odd number of items, or a value of the wrong type.
            ConfigKeyError: a key that does not exist, with suggestions.
        """
        cfg_list = list(cfg_list)
        if len(cfg_list) % 2 != 0:
            raise ConfigError(
                f"Config overrides must be KEY VALUE pairs, but got an odd number "
                f"({len(cfg_list)}) of items from {COMMAND_LINE}: {cfg_list}. "
                f"The key '{cfg_list[-1]}' has no value."
            )
        nested: Dict[str, Any] = {}
        sources: _Sources = {}
        for key, value in zip(cfg_list[0::2], cfg_list[1::2]):
            if key == BASE_KEY:
                raise ConfigError(
                    f"{BASE_KEY} can only be used in config files, not on the command line"
                )
            node = nested
            parts = key.split(".")
            for part in parts[:-1]:
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    raise ConfigError(f"Config key '{key}' is given both as a value and as a group")
            node[parts[-1]] = value
            sources[key] = COMMAND_LINE
        checked = self._check_and_coerce(nested, prefix="", sources=sources)
        self._checked_merge(type(self)(checked), sources)

    def merge_from_other_cfg(self, cfg_other: CfgNode) -> None:
        """Merge another config node into this one, with the same checks as files.

        Args:
            cfg_other (CfgNode): the node to merge from.
        """
        sources = {key: "another config node" for key in _dotted_keys(cfg_other)}
        checked = self._check_and_coerce(_to_dict(cfg_other), prefix="", sources=sources)
        self._checked_merge(type(self)(checked), sources)

    def _checked_merge(self, other: CfgNode, sources: _Sources) -> None:
        if self.is_frozen():
            raise ConfigError(
                "This config is frozen and cannot be changed; call cfg.defrost() first "
                "(configs are frozen after setup so a run cannot change them midway)"
            )
        run_validators(other, self, _describer(sources))
        # A key with a value check may change type (a period: an int or an "Nep" string),
        # which yacs' type check rejects; it was checked above, so it bypasses yacs.
        checked = []
        for key in value_checked_keys():
            *path, leaf = key.split(".")
            new, old = _node_at(other, path), _node_at(self, path)
            if new is not None and old is not None and leaf in new and leaf in old:
                checked.append((old, leaf, new.pop(leaf)))
        # Everything else has been validated and coerced above, so yacs' own checks pass.
        _FvcoreCfgNode.merge_from_other_cfg(self, other)
        for node, leaf, value in checked:
            node[leaf] = value

    # ------------------------------------------------------------------ validation
    def _check_and_coerce(
        self,
        loaded: Dict[str, Any],
        prefix: str,
        sources: _Sources,
        root: Optional[CfgNode] = None,
    ) -> Dict[str, Any]:
        """Return ``loaded`` with values coerced to the types of this node's defaults.

        Raises on the first unknown key, group/value confusion or type mismatch. ``root`` is
        the top of the tree, whose keys are offered as suggestions for an unknown key.
        """
        root = self if root is None else root
        result: Dict[str, Any] = {}
        for key, value in loaded.items():
            full_key = prefix + key
            if key not in self:
                if self.is_new_allowed():
                    result[key] = value
                    continue
                raise ConfigKeyError(
                    _unknown_key_message(_leaf_key(full_key, value), sources, root)
                )
            current = self[key]
            source = _describe_source(sources, full_key)
            if isinstance(current, CfgNode):
                if not isinstance(value, dict):
                    raise ConfigError(
                        f"Config key '{full_key}' ({source}) is a group of keys "
                        f"({', '.join(sorted(current.keys())[:5])}, ...), "
                        f"but it was given the value {value!r}"
                    )
                result[key] = current._check_and_coerce(value, full_key + ".", sources, root)
            elif isinstance(value, dict):
                raise ConfigError(
                    f"Config key '{full_key}' ({source}) takes a value of type "
                    f"{type(current).__name__} (default {current!r}), not a group of keys"
                )
            else:
                check = get_value_check(full_key) or coerce_like_default
                result[key] = check(self._decode_cfg_value(value), current, full_key, source)
        return result


def _leaf_key(full_key: str, value: Any) -> str:
    """``SOLVR.MAX_ITER`` for an unknown group ``SOLVR`` given as ``{MAX_ITER: ...}``.

    The suggestions are leaf keys, so naming the first leaf under a misspelled group lets
    them find the intended key (``SOLVER.MAX_ITER``).
    """
    while isinstance(value, dict) and value:
        key, value = next(iter(value.items()))
        full_key = f"{full_key}.{key}"
    return full_key


def _unknown_key_message(full_key: str, sources: _Sources, root: Dict[str, Any]) -> str:
    suggestions = _closest_keys(full_key, _dotted_keys(root))
    msg = f"Unknown config key '{full_key}' ({_describe_source(sources, full_key)})."
    if suggestions:
        return msg + " Did you mean: " + ", ".join(suggestions) + "?"
    return msg + " No similar key exists; see engine_lib/config/defaults.py for all keys."


def _read_yaml_mapping(path: str) -> Dict[str, Any]:
    """Read one YAML file that must hold a mapping of keys (without aliases)."""
    try:
        with open(path, encoding="utf-8") as f:
            content = yaml.load(f, Loader=NoAliasSafeLoader)  # noqa: S506 (a SafeLoader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "unknown position"
        problem = e.problem or e.context or str(e)
        raise ConfigError(f"Malformed YAML in config file '{path}' at {where}: {problem}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"Malformed YAML in config file '{path}': {e}") from e
    except UnicodeDecodeError as e:
        raise ConfigError(f"Config file '{path}' is not UTF-8 text: {e}") from e
    if content is None:
        raise ConfigError(
            f"Config file '{path}' is empty; expected a mapping of config keys "
            f"such as 'SOLVER: {{BASE_LR: 0.01}}'"
        )
    if not isinstance(content, dict):
        raise ConfigError(
            f"Config file '{path}' must hold a mapping of config keys at the top level, "
            f"but it holds a {type(content).__name__}: {str(content)[:80]!r}"
        )
    return content


def _base_list(bases: Any, path: str) -> List[str]:
    if bases is None:
        return []
    if isinstance(bases, str):
        return [bases]
    if isinstance(bases, list) and all(isinstance(b, str) for b in bases):
        return bases
    raise ConfigError(
        f"{BASE_KEY} in '{path}' must be a file name or a list of file names, got {bases!r}"
    )


def _merge_dicts(src: Dict[str, Any], dst: Dict[str, Any]) -> None:
    """Recursively merge ``src`` into ``dst`` (values in ``src`` win)."""
    for key, value in src.items():
        if isinstance(value, dict) and isinstance(dst.get(key), dict):
            _merge_dicts(value, dst[key])
        else:
            dst[key] = value


def _dotted_keys(tree: Dict[str, Any], prefix: str = "") -> List[str]:
    """All leaf keys of a nested dict as dotted names."""
    keys = []
    for key, value in tree.items():
        if isinstance(value, dict):
            keys.extend(_dotted_keys(value, f"{prefix}{key}."))
        else:
            keys.append(prefix + key)
    return keys


def _to_dict(node: Dict[str, Any]) -> Dict[str, Any]:
    return {k: _to_dict(v) if isinstance(v, dict) else v for k, v in node.items()}


def _describe_source(sources: _Sources, full_key: str) -> str:
    source = sources.get(full_key)
    if source is None:
        # A group key: take the source of any key below it.
        source = next((s for k, s in sources.items() if k.startswith(full_key + ".")), None)
    if source is None or source == COMMAND_LINE:
        return f"from {source or COMMAND_LINE}"
    return f"in config file '{source}'"


def _closest_keys(full_key: str, all_keys: List[str], n: int = 3) -> List[str]:
    """Existing keys closest to ``full_key``, by whole dotted name and by last component."""
    close = difflib.get_close_matches(full_key, all_keys, n=n, cutoff=0.6)
    leaf = full_key.rsplit(".", 1)[-1].upper()
    by_leaf = {k.rsplit(".", 1)[-1]: k for k in all_keys}
    for name in difflib.get_close_matches(leaf, list(by_leaf), n=n, cutoff=0.75):
        matches = [k for k in all_keys if k.rsplit(".", 1)[-1] == name]
        close.extend(m for m in matches if m not in close)
    return close[: n + 2]


def _describer(sources: _Sources) -> Callable[[str], str]:
    return lambda full_key: _describe_source(sources, full_key)


def _node_at(tree: Dict[str, Any], path: List[str]) -> Optional[Dict[str, Any]]:
    node: Any = tree
    for part in path:
        node = node.get(part)
        if not isinstance(node, dict):
            return None
    return node
