"""Rename tables shared by the checkpoint-name modules (`google_names`, `model_zoo_names`): pairs of name
templates in which `{n}` stands for a layer number, each matched against a whole name."""

from __future__ import annotations

import re
from collections.abc import Iterable

Table = list[tuple[re.Pattern[str], str]]


def _template_regex(template: str) -> re.Pattern[str]:
    return re.compile(re.escape(template).replace(re.escape("{n}"), r"(?P<n>\d+)") + "$")


def name_table(pairs: Iterable[tuple[str, str]], reverse: bool = False) -> Table:
    """(source template, target template) pairs as a table from source names to target names; `reverse`
    maps the other way."""
    return [(_template_regex(b), a) if reverse else (_template_regex(a), b) for a, b in pairs]


def rename(name: str, table: Table) -> str | None:
    """`name` under the first template that matches it whole, or None."""
    for pattern, template in table:
        m = pattern.match(name)
        if m:
            return template.format(**m.groupdict())
    return None
