"""A checked config.toml table as a frozen dataclass, without pydantic.

rssd/models/config_check.py checks config.toml with pydantic; what the daemon holds is
built from the same TOML tables by ``from_table``. TOML has real types, so the only
conversions are the ones a field's declared type asks for (an integer where a float is
declared, a list where a tuple is, text where a Path is), read off the dataclass itself:
a field added to a class converts without a second list to update. Conversions that mean
something (a URL's surrounding spaces, a category's folders, a secret) are the caller's.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import fields
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


def _floats(values: list[float]) -> tuple[float, ...]:
    return tuple(float(value) for value in values)


#: A declared type (as written: the modules use ``from __future__ import annotations``)
#: -> what turns the TOML value into it. Other types take the TOML value as it is.
_BY_TYPE: dict[str, Callable[[Any], object]] = {
    "float": float,
    "float | None": float,
    "Path": Path,
    "Path | None": Path,
    "tuple[str, ...]": tuple,
    "tuple[float, ...]": _floats,
}


_COERCIONS: dict[type, tuple[tuple[str, Callable[[Any], object]], ...]] = {}


def _coercions(cls: type) -> tuple[tuple[str, Callable[[Any], object]], ...]:
    """The fields of ``cls`` whose type converts, each with its conversion (once a class)."""
    found = _COERCIONS.get(cls)
    if found is None:
        found = tuple(
            (item.name, _BY_TYPE[str(item.type)])
            for item in fields(cls)
            if str(item.type) in _BY_TYPE
        )
        _COERCIONS[cls] = found
    return found


def from_table(cls: type[T], table: Mapping[str, Any], **converters: Callable[[Any], object]) -> T:
    """``cls`` from a table config_check has accepted: each value converted to its
    field's type, or by the converter given for its key. A key ``cls`` has no field for
    is a TypeError (a table that was never checked)."""
    values = dict(table)
    for name, coerce in _coercions(cls):
        if name in values and name not in converters:
            values[name] = coerce(values[name])
    for name, convert in converters.items():
        if name in values:
            values[name] = convert(values[name])
    return cls(**values)
