"""Typed configuration helpers: dataclasses <-> plain JSON-able dicts.

Every model and recipe config in the project is a small dataclass. Checkpoints
and recipe files store them as plain dicts; these helpers convert back with
validation (unknown keys and wrong types are errors naming the key), so that a
config read from a file is never trusted blindly.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import types
import typing
from typing import Any, Iterable, TypeVar

T = TypeVar("T")


class ConfigError(ValueError):
    """A config dict does not match its dataclass."""


def config_to_dict(config: Any) -> dict[str, Any]:
    """A JSON-able dict of a (possibly nested) config dataclass."""

    def convert(value: Any) -> Any:
        if dataclasses.is_dataclass(value):
            return {f.name: convert(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, (list, tuple)):
            return [convert(v) for v in value]
        if isinstance(value, dict):
            return {k: convert(v) for k, v in value.items()}
        return value

    return convert(config)


def changed_fields(before: Any, after: Any) -> list[str]:
    """Dotted names of the fields whose values differ between two configs of one type,
    each as ``name: old -> new`` (for messages such as a refused ``--resume``)."""

    def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
        if isinstance(value, dict):
            flat: dict[str, Any] = {}
            for key, item in value.items():
                flat.update(flatten(item, f"{prefix}{key}."))
            return flat if value else {prefix[:-1]: {}}
        return {prefix[:-1]: value}

    old, new = flatten(config_to_dict(before)), flatten(config_to_dict(after))
    return [f"{key}: {old.get(key)!r} -> {new.get(key)!r}" for key in sorted(old.keys() | new.keys()) if old.get(key) != new.get(key)]


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`` (did you mean X?)`` naming the one of ``known`` closest to a misspelt ``name``
    (or, with none close, the first that contains it: ``blur`` in ``motion-blur``), else ''."""
    known = list(known)
    close = difflib.get_close_matches(name, known, n=1) or [item for item in known if name and name in item][:1]
    return f" (did you mean {close[0]}?)" if close else ""


def _shown(value: Any) -> str:
    """A value as an error message shows it: scalars as written, containers by their type."""
    return type(value).__name__ if isinstance(value, (dict, list, tuple)) else repr(value)


def _coerce(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(arg, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if errors else f"{where}: invalid value {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table/object, got {type(value).__name__}")
        return config_from_dict(tp, value, where)
    if origin in (tuple, list):
        fixed = origin is tuple and bool(args) and args[-1] is not Ellipsis  # tuple[float, float]: that many items
        if not isinstance(value, (list, tuple)):
            scalar = isinstance(value, (str, int, float)) and not isinstance(value, bool)
            one = f" (a list of one: {json.dumps([value])})" if scalar and not fixed else ""
            raise ConfigError(f"{where}: expected a list, got {_shown(value)}{one}")
        if fixed:
            if len(value) != len(args):
                raise ConfigError(f"{where}: expected a list of {len(args)} values, got {list(value)}")
            return tuple(_coerce(item_type, v, f"{where}[{i}]") for i, (item_type, v) in enumerate(zip(args, value)))
        item_type = args[0] if args else Any
        items = [_coerce(item_type, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table/object, got {type(value).__name__}")
        return dict(value)
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):  # Python's JSON reads NaN and Infinity
            raise ConfigError(f"{where}: expected a finite number, got {value!r}")
        return float(value)
    if tp in (int, str, bool):
        if type(value) is not tp:
            raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
        return value
    if typing.get_origin(tp) is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: expected one of {args}, got {value!r}")
        return value
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def require_at_least(config: Any, minimum: int, *names: str) -> None:
    """Raise ValueError naming the first of the integer fields ``names`` (a tuple field:
    any of its items) below ``minimum``. Called from a config's ``__post_init__``, so a
    negative width read from a checkpoint or a ``--set`` is one line naming the field
    (:func:`config_from_dict` adds where it sits), not torch's error from deep inside a
    layer's constructor."""
    for name in names:
        value = getattr(config, name)
        if any(item < minimum for item in (value if isinstance(value, tuple) else (value,))):
            raise ValueError(f"{name} must be >= {minimum}, got {value}")


# The most layers, blocks, levels or stages a config may repeat. The deepest preset uses a
# few dozen (infoflow-paper's 15 dense layers); a file asking for a million took minutes to
# build, even on the meta device, before its first tensor's shape refused it.
MAX_REPEATS = 1024


def require_at_most(config: Any, maximum: int, *names: str) -> None:
    """As :func:`require_at_least`, for an upper bound (:data:`MAX_REPEATS` for counts)."""
    for name in names:
        value = getattr(config, name)
        if any(item > maximum for item in (value if isinstance(value, tuple) else (value,))):
            shown = value if not isinstance(value, tuple) or len(value) <= 8 else f"{len(value)} entries up to {max(value)}"
            raise ValueError(f"{name} must be <= {maximum}, got {shown}")


def config_from_dict(cls: type[T], data: dict[str, Any], where: str = "config") -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys and bad types raise ConfigError."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a table/object, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        close = {key: difflib.get_close_matches(key, names, n=1) for key in unknown}
        meant = [match[0] if len(unknown) == 1 else f"{match[0]} for {key}" for key, match in close.items() if match]
        guess = f" (did you mean {', '.join(meant)}?)" if meant else ""
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}{guess}; known: {', '.join(sorted(names))}")
    required = [f.name for f in dataclasses.fields(cls)
                if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING and f.init]
    missing = [name for name in required if name not in data]
    if missing:
        raise ConfigError(f"{where}: missing key(s) {', '.join(missing)}")
    kwargs = {name: _coerce(hints[name], value, f"{where}.{name}") for name, value in data.items()}
    try:
        return cls(**kwargs)
    except ConfigError:
        raise  # the dataclass's own check: its message names the field already
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from exc


def override(config: T, dotted_key: str, raw_value: str) -> T:
    """Return ``config`` with ``a.b.c=value`` replaced; the value is parsed as JSON
    when it parses, else taken as a string, then type-checked."""
    return override_many(config, [(dotted_key, raw_value)])


def override_many(config: T, settings: list[tuple[str, str]]) -> T:
    """Apply several ``a.b.c=value`` settings, then type-check and validate once, so
    settings that must change together (``steps`` and ``stages``) can be given together."""
    data = config_to_dict(config)
    for dotted_key, raw_value in settings:
        try:
            value: Any = json.loads(raw_value)
        except json.JSONDecodeError:
            value = raw_value
        node = data
        parts = dotted_key.split(".")
        for part in parts[:-1]:
            if not isinstance(node, dict) or part not in node:
                raise ConfigError(_unknown_setting(dotted_key, data))
            node = node[part]
        if not isinstance(node, dict) or (parts[-1] not in node and not _is_free_dict(config, parts)):
            raise ConfigError(_unknown_setting(dotted_key, data))
        node[parts[-1]] = value
    return config_from_dict(type(config), data)


def _unknown_setting(dotted_key: str, data: dict[str, Any]) -> str:
    """The error for a setting the config lacks, with the closest dotted keys it has."""
    known = list(_dotted_keys(data))
    close = difflib.get_close_matches(dotted_key, known, n=1, cutoff=0.6)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return f"unknown setting {dotted_key!r}{hint} (every setting: --print-recipe)"


def _dotted_keys(data: dict[str, Any], prefix: str = "") -> typing.Iterator[str]:
    for key, value in data.items():
        yield prefix + key
        if isinstance(value, dict):
            yield from _dotted_keys(value, f"{prefix}{key}.")


def _is_free_dict(config: Any, parts: list[str]) -> bool:
    """True when the parent of the last key is a plain dict field (free-form keys)."""
    node = config
    for part in parts[:-1]:
        node = getattr(node, part, None) if dataclasses.is_dataclass(node) else (node or {}).get(part)
    return isinstance(node, dict)
