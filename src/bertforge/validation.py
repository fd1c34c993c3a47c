"""Declarative checks of values read from files and the command line: one `Rule` per key (its type, and a
range or a set of choices), so that every error names the key and says what was expected."""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from bertforge.errors import BertforgeError

_NAMES = {bool: "a boolean", int: "an integer", float: "a number", str: "a string", dict: "a mapping", list: "a list"}


@dataclass(frozen=True)
class Rule:
    """What one value must be: of `kind` (a boolean is not an integer; an integer is a valid float), within
    [low, high] (either end open on request) or one of `choices`. `also` lists values allowed outside the
    range (sentinels such as -1); `optional` allows None."""

    kind: type
    low: float = -math.inf
    high: float = math.inf
    low_open: bool = False
    high_open: bool = False
    choices: tuple = ()
    also: tuple = ()
    optional: bool = False

    def check(self, key: str, value: Any) -> Any:
        """`value` as it is to be stored (numbers as Python int/float); raises naming `key` otherwise."""
        if value is None and self.optional:
            return None
        if not _is_kind(value, self.kind):
            raise BertforgeError(f"{key} must be {self}, got {value!r} ({_kind_name(value)})")
        if self.kind in (int, float):
            number = self.kind(value)
            if number not in self.also and not self._in_range(number):
                raise BertforgeError(f"{key} must be {self}, got {value!r}")
            return number
        if self.choices and value not in self.choices:
            raise BertforgeError(f"{key} must be {self}, got {value!r}")
        return value

    def _in_range(self, value: float) -> bool:
        above = value > self.low if self.low_open else value >= self.low
        below = value < self.high if self.high_open else value <= self.high
        return above and below

    def __str__(self) -> str:
        if self.choices:
            text = f"one of {', '.join(map(str, self.choices))}"
        else:
            text = "true or false" if self.kind is bool else _NAMES[self.kind]
            if self.kind in (int, float):
                text = "".join(f"{v} or " for v in self.also) + text + self._range_text()
        return text + (" or null" if self.optional else "")

    def _range_text(self) -> str:
        if math.isinf(self.low) and math.isinf(self.high):
            return ""
        if math.isinf(self.high):
            return f" {'>' if self.low_open else '>='} {self.low}"
        if math.isinf(self.low):
            return f" {'<' if self.high_open else '<='} {self.high}"
        return f" in {'(' if self.low_open else '['}{self.low}, {self.high}{')' if self.high_open else ']'}"


def check_mapping(values: Any, rules: dict[str, Rule], where: str, prefix: str = "") -> None:
    """Every key of `rules` is in `values` (a mapping) with a valid value; errors start with `where` (the file)
    and name keys as `prefix` + key. Other keys are left alone."""
    if not isinstance(values, dict):
        raise BertforgeError(f"{where}: {prefix.rstrip('.') or 'the file'} must be a mapping, got {_kind_name(values)}")
    for key, rule in rules.items():
        if key not in values:
            raise BertforgeError(f"{where}: {prefix}{key} is missing ({rule} expected)")
        try:
            rule.check(prefix + key, values[key])
        except BertforgeError as exc:
            raise BertforgeError(f"{where}: {exc}") from None


def unknown_key(key: str, valid: Iterable[str]) -> str:
    """The message for an unknown config key, suggesting the closest valid one (if one is close)."""
    parent, _, name = key.rpartition(".")
    close = difflib.get_close_matches(name, sorted(valid), n=1)
    hint = f"; did you mean '{parent + '.' if parent else ''}{close[0]}'?" if close else ""
    return f"unknown config key '{key}'{hint}"


def _is_kind(value: Any, kind: type) -> bool:
    if isinstance(value, bool) or kind is bool:
        return isinstance(value, bool) and kind is bool
    if kind is int:
        return isinstance(value, numbers.Integral)
    if kind is float:
        return isinstance(value, numbers.Real) and math.isfinite(value)
    return isinstance(value, kind)


def _kind_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, float) and not math.isfinite(value):
        return "not a finite number"
    return next((name for kind, name in _NAMES.items() if _is_kind(value, kind)), type(value).__name__)
