"""Typed access to a parsed YAML/JSON mapping that remembers where each value came from.

Every config error names the file, the dotted key path and what was accepted, because users
edit these files by hand and vendor files carry keys we do not know.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable

from deploy.errors import ConfigError
from deploy.io import read_text

_MISSING = object()


class UnknownKeyWarning(UserWarning):
    """A key this tool does not use (often a device-only vendor key); it is ignored."""


def load_document(path: str | Path, what: str, fmt: str, parse: Callable[[str], Any],
                  error: type[Exception]) -> "Node":
    """Read and parse a config file into a Node; a missing file or a syntax error names the file."""
    path = Path(path).resolve()
    if not path.is_file():
        raise ConfigError(f"{path}: {what} not found")
    try:
        data = parse(read_text(path, what, ConfigError))
    except error as e:
        raise ConfigError(f"{path}: not valid {fmt}: {e}") from e
    except RecursionError:
        raise ConfigError(f"{path}: not valid {fmt}: nested too deeply to read") from None
    _refuse_non_finite(data, path, "")
    return Node(data if data is not None else {}, path)


INT_LIMIT = 2**53  # beyond it an integer setting is a typo: no size, count or seed here needs more


def _refuse_non_finite(data: Any, file: Path, where: str) -> None:
    """NaN and infinity parse as numbers in YAML (`.nan`, `.inf`) and in Python's JSON (`NaN`,
    `Infinity`) but are never a meaningful setting: a NaN mean would reach the model description and
    make every output NaN. Integers past 2**53 (YAML and JSON have no limit) would overflow numpy's
    int64 or lose digits as floats deep inside a tool. Both refused wherever they appear, with the key
    path. The walk visits each mapping or list once (a YAML alias is one object however often it is
    used: a "billion laughs" file must not expand) and keeps its own stack (no recursion limit)."""
    stack, seen = [(data, where)], set()
    while stack:
        value, at = stack.pop()
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{file}: {at or '<top level>'}: not a finite number: {value!r}")
        if isinstance(value, int) and not isinstance(value, bool) and abs(value) > INT_LIMIT:
            raise ConfigError(f"{file}: {at or '<top level>'}: {value} is too large (the limit is 2**53 = "
                              f"{INT_LIMIT}); check the value")
        if isinstance(value, (dict, list)) and id(value) not in seen:
            seen.add(id(value))
            items = value.items() if isinstance(value, dict) else enumerate(value)
            stack += [(v, (f"{at}.{k}" if at else str(k)) if isinstance(value, dict) else f"{at}[{k}]")
                      for k, v in reversed(list(items))]


class Node:
    """A mapping plus its file and key path, with typed getters that raise ConfigError."""

    def __init__(self, data: Any, file: Path, path: str = ""):
        self.file, self.path = Path(file), path
        if not isinstance(data, dict):
            raise self.error(f"expected a mapping, got {type(data).__name__}")
        self.data = data

    def key(self, name: str) -> str:
        return f"{self.path}.{name}" if self.path else name

    def error(self, msg: str, key: str | None = None) -> ConfigError:
        where = self.key(key) if key is not None else (self.path or "<top level>")
        return ConfigError(f"{self.file}: {where}: {msg}")

    def has(self, name: str) -> bool:
        return name in self.data

    def child(self, name: str, required: bool = True) -> "Node | None":
        if name not in self.data or self.data[name] is None:
            if required:
                raise self.error("required section is missing", name)
            return None
        return Node(self.data[name], self.file, self.key(name))

    def get(self, name: str, types: type | tuple, default: Any = _MISSING,
            choices: Iterable | None = None) -> Any:
        """Value of `name` checked against `types` (and `choices`); missing → default or error."""
        if name not in self.data or self.data[name] is None:
            if default is _MISSING:
                raise self.error("required key is missing", name)
            return default
        value = self.data[name]
        types = types if isinstance(types, tuple) else (types,)
        if isinstance(value, bool) and bool not in types:
            raise self.error(f"expected {_names(types)}, got a boolean {value!r}", name)
        if float in types and int not in types and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, types):
            raise self.error(f"expected {_names(types)}, got {type(value).__name__} {value!r}", name)
        if choices is not None:
            choices = list(choices)
            if value not in choices:
                raise self.error(f"unsupported value {value!r}; accepted: {', '.join(map(str, choices))}", name)
        return value

    def ints(self, name: str, length: int | None = None, default: Any = _MISSING) -> tuple[int, ...]:
        """A list of integers, e.g. a shape or a resize size; a bare int is one element."""
        value = self.get(name, (list, tuple, int), default)
        if value is default and default is not _MISSING:
            return value
        value = [value] if isinstance(value, int) else value
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise self.error(f"expected a list of integers, got {value!r}", name)
        if length is not None and len(value) != length:
            raise self.error(f"expected {length} integers, got {len(value)}: {value!r}", name)
        return tuple(value)

    def floats(self, name: str, length: int | None = None, default: Any = _MISSING) -> tuple[float, ...] | Any:
        value = self.get(name, (list, tuple, int, float), default)
        if value is default and default is not _MISSING:
            return value
        value = [value] * (length or 1) if isinstance(value, (int, float)) else value
        if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            raise self.error(f"expected a list of numbers, got {value!r}", name)
        if length is not None and len(value) != length:
            raise self.error(f"expected {length} numbers, got {len(value)}: {value!r}", name)
        return tuple(float(v) for v in value)

    def path_value(self, name: str, default: Any = _MISSING) -> Path | Any:
        """A path; relative paths resolve against the config file's folder (vendor convention)."""
        value = self.get(name, str, default)
        if value is default and default is not _MISSING:
            return value
        p = Path(value).expanduser()
        return p if p.is_absolute() else (self.file.parent / p).resolve()

    def warn_unknown(self, known: Iterable[str]) -> None:
        for name in self.data:
            if name not in set(known):
                warnings.warn(f"{self.file}: {self.key(name)}: unknown key, ignored", UnknownKeyWarning,
                              stacklevel=3)


def _names(types: tuple) -> str:
    return " or ".join({int: "an integer", float: "a number", str: "a string", bool: "a boolean",
                        list: "a list", tuple: "a list", dict: "a mapping"}.get(t, t.__name__) for t in types)
