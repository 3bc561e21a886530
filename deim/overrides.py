"""Typed ``key=value`` override values: one grammar for ``--set`` and for the model builder.

A value from the command line is parsed as YAML first (``100``, ``0.5``, ``true``, ``[1, 2]``,
``null``), then converted to the type of the field it replaces. YAML 1.1 reads ``4e-4`` (no dot)
as a string; :func:`coerce_value` turns it into the float the field needs. A value that cannot
be converted raises ``ValueError`` naming the key, the expected type and the value.
"""
from __future__ import annotations

import types
import typing
from typing import Any

import yaml


def parse_value(raw: str) -> Any:
    """The YAML reading of a command-line value (``"4e-4"`` stays a string here)."""
    try:
        return yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw


def field_types(cls: type) -> dict[str, Any]:
    """The resolved type hints of a dataclass's fields."""
    return typing.get_type_hints(cls)


def coerce_value(key: str, value: Any, hint: Any) -> Any:
    """``value`` converted to the type ``hint`` (``int``, ``float``, ``bool``, ``str``, ``X | None``,
    ``tuple[...]``); ``Any`` and unknown hints pass the value through."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None and len(options) < len(typing.get_args(hint)):
            return None
        errors = []
        for option in options:
            try:
                return coerce_value(key, value, option)
            except ValueError as exc:
                errors.append(exc)
        raise errors[0] if errors else ValueError(f"override {key}: no type accepts {value!r}")
    if origin is tuple:
        return _coerce_tuple(key, value, typing.get_args(hint))
    if hint is bool:
        return _coerce_bool(key, value)
    if hint is int:
        return _coerce_int(key, value)
    if hint is float:
        return _coerce_float(key, value)
    if hint is str:
        if isinstance(value, (dict, list)) or value is None:
            raise _wrong(key, "a string", value)
        return value if isinstance(value, str) else str(value)
    return value


def coerce_like(key: str, value: Any, old: Any) -> Any:
    """``value`` converted to the type of the value ``old`` it replaces (for untyped settings such
    as the model presets' sections, where the current value is the best type information)."""
    if old is None or value is None:
        return value
    if isinstance(old, bool):
        return _coerce_bool(key, value)
    if isinstance(old, int):
        return _coerce_int(key, value)
    if isinstance(old, float):
        return _coerce_float(key, value)
    if isinstance(old, str):
        return coerce_value(key, value, str)
    if isinstance(old, tuple) and isinstance(value, (list, tuple)):
        return tuple(value)
    return value


def _wrong(key: str, expected: str, value: Any) -> ValueError:
    return ValueError(f"override {key}={value!r}: expected {expected}")


def _coerce_bool(key: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "on", "off", "1", "0"):
        return value.lower() in ("true", "yes", "on", "1")
    raise _wrong(key, "true or false", value)


def _coerce_int(key: str, value: Any) -> int:
    if isinstance(value, bool):
        raise _wrong(key, "an integer", value)
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            raise _wrong(key, "an integer", value) from None
        if number.is_integer():
            return int(number)
    raise _wrong(key, "an integer", value)


def _coerce_float(key: str, value: Any) -> float:
    if isinstance(value, bool):
        raise _wrong(key, "a number", value)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            raise _wrong(key, "a number", value) from None
    raise _wrong(key, "a number", value)


def _coerce_tuple(key: str, value: Any, args: tuple[Any, ...]) -> tuple:
    if not isinstance(value, (list, tuple)):
        raise _wrong(key, "a list such as [1, 2]", value)
    if len(args) == 2 and args[1] is Ellipsis:
        return tuple(coerce_value(key, v, args[0]) for v in value)
    if args and len(args) != len(value):
        raise _wrong(key, f"a list of {len(args)} values", value)
    return tuple(coerce_value(key, v, a) for v, a in zip(value, args)) if args else tuple(value)
