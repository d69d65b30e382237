"""Global catalogs: data set name -> loading function (cached), and name -> metadata."""

import difflib
import logging
import threading
from typing import Any, Callable, Dict, List, Protocol, Union

from torch.utils.data import Dataset

from engine_lib.utils.errors import UnknownNameError

__all__ = ["DatasetCatalog", "MetadataCatalog", "Metadata"]

logger = logging.getLogger(__name__)


class SizedDataset(Protocol):
    """What engine_lib needs of a data set: a length and integer indexing (a list, or a
    map-style ``torch.utils.data.Dataset`` that defines ``__len__``)."""

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> Any: ...


DatasetDicts = Union[List[Dict[str, Any]], SizedDataset]


def _closest(name: str, names: List[str]) -> List[str]:
    by_lower = {n.lower(): n for n in names}
    return [by_lower[m] for m in difflib.get_close_matches(name.lower(), list(by_lower), n=3)]


class _DatasetCatalog:
    """Map data set names to functions returning their dataset dicts; load each name once.

    A function returns a list of dicts (each with ``"label"`` and ``"file_name"`` or
    ``"image"``) or a map-style ``Dataset`` of such dicts. The result is cached: every caller
    of :meth:`get` shares it and must not modify it (the mapper works on copies).
    """

    def __init__(self) -> None:
        self._functions: Dict[str, Callable[[], DatasetDicts]] = {}
        self._cache: Dict[str, DatasetDicts] = {}
        # Re-entrant: a loader may itself call get() (e.g. a union of other data sets).
        self._lock = threading.RLock()

    def register(self, name: str, func: Callable[[], DatasetDicts]) -> None:
        """Register ``func`` as the loader of data set ``name``.

        Args:
            name (str): the data set name used in ``DATASETS.TRAIN`` / ``DATASETS.TEST``.
            func (callable): takes no argument; returns the dataset dicts.

        Raises:
            ValueError: ``name`` is already registered, or ``func`` is not callable.
        """
        if not callable(func):
            raise ValueError(f"DatasetCatalog.register({name!r}, ...) needs a callable")
        with self._lock:
            if name in self._functions:
                raise ValueError(
                    f"Data set {name!r} is already registered; remove it first or use another name"
                )
            self._functions[name] = func

    def get(self, name: str) -> DatasetDicts:
        """Return the dataset dicts of ``name``, loading them on first use.

        Raises:
            UnknownNameError: ``name`` is not registered; the message lists the closest and
                all registered names.
        """
        with self._lock:
            if name not in self._functions:
                raise UnknownNameError(self._unknown_message(name))
            if name not in self._cache:
                result = self._functions[name]()
                if not isinstance(result, (list, Dataset)):
                    raise TypeError(
                        f"The loader of data set {name!r} returned {type(result).__name__}; "
                        "expected a list of dicts or a map-style torch Dataset"
                    )
                self._cache[name] = result
                logger.info("Loaded data set %r: %d samples", name, len(result))
            return self._cache[name]

    def _unknown_message(self, name: str) -> str:
        names = sorted(self._functions)
        message = f"Data set {name!r} is not registered in DatasetCatalog."
        close = _closest(str(name), names)
        if close:
            message += " Did you mean " + " or ".join(repr(c) for c in close) + "?"
        return message + (
            f" Registered data sets: {', '.join(names) or '(none)'}. Register your own with "
            "DatasetCatalog.register(name, func), register_image_folder or register_cifar10."
        )

    def list(self) -> List[str]:
        """Return the registered names, sorted."""
        return sorted(self._functions)

    def remove(self, name: str) -> None:
        """Unregister ``name`` and drop its cached data.

        Raises:
            UnknownNameError: ``name`` is not registered.
        """
        with self._lock:
            if name not in self._functions:
                raise UnknownNameError(self._unknown_message(name))
            del self._functions[name]
            self._cache.pop(name, None)

    def clear(self) -> None:
        """Unregister every data set (built-ins included)."""
        with self._lock:
            self._functions.clear()
            self._cache.clear()

    def __contains__(self, name: str) -> bool:
        return name in self._functions


class Metadata:
    """Facts about a data set shared by its users (e.g. ``thing_classes``), set once.

    Values are read as attributes and set with :meth:`set`; changing a value that is already
    set is an error, since two parts of a program disagreeing on, say, the class names is
    always a bug.

    Args:
        name (str): the data set name.
    """

    def __init__(self, name: str):
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "_values", {})

    def __getattr__(self, key: str) -> Any:
        values = object.__getattribute__(self, "_values")
        if key in values:
            return values[key]
        raise AttributeError(
            f"Metadata of data set {self.name!r} has no {key!r}; it has: "
            f"{', '.join(sorted(values)) or '(nothing)'}"
        )

    def __setattr__(self, key: str, value: Any) -> None:
        self.set(**{key: value})

    def set(self, **kwargs: Any) -> "Metadata":
        """Set values; returns ``self`` to allow chaining.

        Raises:
            ValueError: a key already has a different value.
        """
        for key, value in kwargs.items():
            if key == "name":
                raise ValueError("Metadata 'name' is the data set name and cannot be set")
            if key in self._values and self._values[key] != value:
                raise ValueError(
                    f"Metadata {key!r} of data set {self.name!r} is already "
                    f"{self._values[key]!r}; refusing to change it to {value!r}"
                )
            self._values[key] = value
        return self

    def get(self, key: str, default: Any = None) -> Any:
        """Return the value of ``key``, or ``default`` when unset."""
        return self._values.get(key, default)

    def as_dict(self) -> Dict[str, Any]:
        """Return a copy of all values, with ``"name"``."""
        return {"name": self.name, **self._values}

    def __repr__(self) -> str:
        items = ", ".join(f"{k}={v!r}" for k, v in sorted(self._values.items()))
        return f"Metadata(name={self.name!r}{', ' if items else ''}{items})"


class _MetadataCatalog:
    """Map data set names to :class:`Metadata`, created on first access."""

    def __init__(self) -> None:
        self._metadata: Dict[str, Metadata] = {}

    def get(self, name: str) -> Metadata:
        """Return the metadata of ``name`` (an empty one the first time)."""
        if name not in self._metadata:
            self._metadata[name] = Metadata(name)
        return self._metadata[name]

    def list(self) -> List[str]:
        """Return the names that have metadata, sorted."""
        return sorted(self._metadata)

    def remove(self, name: str) -> None:
        """Forget the metadata of ``name`` (no error if there is none)."""
        self._metadata.pop(name, None)

    def clear(self) -> None:
        """Forget all metadata."""
        self._metadata.clear()


DatasetCatalog = _DatasetCatalog()
MetadataCatalog = _MetadataCatalog()
