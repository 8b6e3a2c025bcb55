"""A spec's JSON form: `to_dict`, `from_dict` (types, then the rules) and the settings hash."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from dataclasses import fields
from typing import Any

from core.config.checks import STAGES, ConfigError, validate
from core.config.spec import SECTIONS, SPEED_ONLY, RunSpec
from core.config.values import checked_values


def to_dict(spec: RunSpec) -> dict[str, Any]:
    """The spec as plain JSON-able data."""
    return dataclasses.asdict(spec)


def from_dict(values: Any) -> RunSpec:
    """Build a spec from JSON data: unknown keys and values of the wrong type are refused by name,
    then every rule is checked (core/config/checks.py)."""
    if not isinstance(values, dict):
        raise ConfigError(f"spec: expected an object with a 'kind' and settings sections, got "
                          f"{type(values).__name__}")
    if "kind" not in values:
        raise ConfigError("spec: missing key 'kind'; expected one of " + ", ".join(STAGES))
    values = _upgraded(values)
    top = {f.name: f for f in fields(RunSpec)}
    unknown = sorted(set(values) - set(top))
    if unknown:
        raise ConfigError(f"spec: unknown key(s) {', '.join(unknown)}; expected some of {', '.join(sorted(top))}")
    sections = {name: cls(**checked_values(cls, values[name], f"spec.{name}"))
                for name, cls in SECTIONS.items() if name in values}
    loose = checked_values(RunSpec, {k: v for k, v in values.items() if k not in SECTIONS}, "spec")
    spec = RunSpec(**loose, **sections)
    validate(spec)
    return spec


@functools.cache
def _speed_only() -> tuple[tuple[str, str, Any], ...]:
    """(section, field, value it is hashed as; None: left out) of every field marked speed_only."""
    return tuple((section, f.name, f.metadata["hashed_as"]) for section, cls in SECTIONS.items()
                 for f in fields(cls) if f.metadata.get(SPEED_ONLY))


def _upgraded(values: dict) -> dict:
    """Specs written by earlier versions, in today's form: train.compile was a bool."""
    train = values.get("train")
    if isinstance(train, dict) and isinstance(train.get("compile"), bool):
        values = {**values, "train": {**train, "compile": "on" if train["compile"] else "off"}}
    return values


def settings_hash(spec: RunSpec) -> str:
    """A short hash of everything that changes a run's result: not the name, not speed-only fields."""
    payload = to_dict(spec)
    payload.pop("name")
    for section, name, hashed_as in _speed_only():
        if hashed_as is None:
            payload[section].pop(name)
        else:
            payload[section][name] = hashed_as
    if spec.kind != "sweep":
        payload.pop("depths")
    if spec.kind != "drop":
        payload.pop("drop")  # only a drop run reads it; other runs keep the hashes they had before it
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:16]
