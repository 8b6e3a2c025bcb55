"""The JSON values of a spec section, checked against each field's declared type before use.

A spec file or a stored spec is JSON written by hand or by another version: a count given as a
string, a list given as one name, NaN or Infinity (which Python's json reads) are refused here, with
the field, the value and what was expected, instead of failing later inside a run.
"""

from __future__ import annotations

import functools
import math
import types
import typing
from dataclasses import fields
from typing import Any

from core.config.checks import ConfigError


def checked_values(cls: type, values: Any, where: str) -> dict[str, Any]:
    """`values` as the keyword arguments of `cls`: known keys only, each of its field's type."""
    if not isinstance(values, dict):
        raise ConfigError(f"{where}: expected an object of settings, got {_shown(values)}")
    hints = _hints(cls)
    known = list(hints)
    unknown = sorted(set(values) - set(known))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; expected some of {', '.join(known)}")
    return {name: _value(hints[name], value, f"{where}.{name}") for name, value in values.items()}


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """Each field's declared type, resolved once per class (resolving the annotations is the slow part)."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in fields(cls)}


def _value(hint: Any, value: Any, where: str) -> Any:
    options = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else ()
    if options:  # X | None
        return None if value is None and type(None) in options else _value(options[0], value, where)
    if typing.get_origin(hint) is tuple:
        item = typing.get_args(hint)[0]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list of {_PLURAL.get(item, 'values')}, e.g. [{_example(item)}], "
                              f"got {_shown(value)}")
        return tuple(_value(item, x, f"{where}[{i}]") for i, x in enumerate(value))
    if hint is bool:
        ok = isinstance(value, bool)
    elif hint is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    else:
        ok = isinstance(value, hint)
    if not ok:
        raise ConfigError(f"{where}: expected {_name(hint)}, got {_shown(value)}")
    return value  # an int stays an int (a float field's hash is that of the value as stored)


def _name(hint: Any) -> str:
    return {bool: "true or false", int: "a whole number", float: "a finite number", str: "a string"}.get(
        hint, getattr(hint, "__name__", str(hint)))


_PLURAL = {int: "whole numbers", str: "strings"}


def _example(hint: Any) -> str:
    return {int: "1, 2", str: '"gate_proj", "up_proj"'}.get(hint, "...")


def _shown(value: Any) -> str:
    """A value as the user wrote it in JSON, kept short."""
    text = {None: "null", True: "true", False: "false"}.get(value, None) if isinstance(value, (bool, type(None))) \
        else repr(value)
    return f"{text[:60]}{'...' if len(text) > 60 else ''} ({type(value).__name__ if value is not None else 'null'})"
