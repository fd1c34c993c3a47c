"""Task settings declared once. A task's settings are one dataclass: each field's type and default are its
declaration, `setting(...)` adds its range or choices and its *scope* — which entries may set it — and
everything else is derived: the `task:` section of a fine-tuning YAML, `--task.KEY VALUE` on `finetune`,
`predict`, `serve` and `export`, and the `task` part of a model folder's `bertforge.json`. Every entry goes
through `build`, so a bad value is refused the same way everywhere: one line naming where it came from, the
key, what was expected and what was given (a boolean is `true` or `false`, never the string "false").

Scopes:
- `TRAINING`: a setting of the training run (files, learning-rate multipliers); not kept with the model.
- `MODEL`: chosen for training and fixed in the model (a CRF head, the input columns); kept in bertforge.json.
- `INFERENCE`: kept, and changeable for one `predict`/`serve`/`export` run (window stride, answer length).
- `LEARNED`: found by training (CRF transitions, the tuned no-answer threshold's origin, how text splits into
  words); kept, never set by hand.
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from bertforge.errors import BertforgeError
from bertforge.validation import Rule, unknown_key

TRAINING, MODEL, INFERENCE, LEARNED = "training", "model", "inference", "learned"
SETTABLE = frozenset({TRAINING, MODEL, INFERENCE})  # what a fine-tuning config may set
KEPT = frozenset({MODEL, INFERENCE, LEARNED})  # what a model folder keeps


def setting(default: Any, *, scope: str = TRAINING, **rule: Any) -> Any:
    """A field of a task's settings: its default, scope, and range or choices (`Rule`'s `low`, `high`,
    `choices`, `also`, ...); the type comes from the field's annotation."""
    return dataclasses.field(default=default, metadata={"scope": scope, "rule": rule})


@dataclasses.dataclass(frozen=True)
class Declared:
    """One setting as declared: how its values are checked, and who may set it."""

    rule: Rule
    scope: str
    default: Any


@functools.cache
def declared(cls: type) -> dict[str, Declared]:
    """Every field of a settings dataclass, by name, with the `Rule` derived from its annotation."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        kind, optional = _kind(hints[f.name])
        rule = Rule(kind, optional=optional, **f.metadata.get("rule", {}))
        default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        out[f.name] = Declared(rule, f.metadata.get("scope", TRAINING), default)
    return out


def _kind(hint: Any) -> tuple[type, bool]:
    """An annotation -> (the Rule kind, whether None is allowed): `int | None` -> (int, True)."""
    args = typing.get_args(hint)
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        rest = [a for a in args if a is not type(None)]
        return _kind(rest[0])[0], len(rest) < len(args)
    origin = typing.get_origin(hint) or hint
    if origin not in (bool, int, float, str, list, dict):
        raise TypeError(f"a task setting must be bool, int, float, str, list or dict (optionally | None), not {hint}")
    return origin, False


def build(
    cls: type,
    values: Mapping[str, Any],
    where: str | Callable[[str], str],
    *,
    scopes: Iterable[str] = SETTABLE,
    base: Any = None,
) -> Any:
    """`values` (raw, as YAML or JSON gave them) over `base` (default: the declared defaults) as an instance of
    `cls`, each checked against its declaration. `scopes` are the ones this entry may set; `where` names the
    entry (the file, "command line"), or is a function of the key that does."""
    place = where if callable(where) else (lambda key: where)
    if not isinstance(values, Mapping):
        raise BertforgeError(f"{place('task')}: task must be a mapping of settings, got {values!r}")
    fields, scopes = declared(cls), frozenset(scopes)
    checked = {}
    for key, value in values.items():
        name = f"task.{key}"
        if key not in fields:
            raise BertforgeError(f"{place(name)}: {unknown_key(name, fields)}")
        if fields[key].scope not in scopes:
            raise BertforgeError(f"{place(name)}: {name} {_fixed(fields[key].scope)}; {_settable(fields, scopes)}")
        try:
            checked[key] = fields[key].rule.check(name, value)
        except BertforgeError as exc:
            raise BertforgeError(f"{place(name)}: {exc}") from None
    return dataclasses.replace(base, **checked) if base is not None else cls(**checked)


def _fixed(scope: str) -> str:
    return {
        TRAINING: "is a training setting and is not kept with the model",
        MODEL: "is fixed when the model is trained",
        LEARNED: "is learned in training, not set by hand",
        INFERENCE: "applies when predicting",
    }[scope]


def _settable(fields: dict[str, Declared], scopes: frozenset[str]) -> str:
    names = [name for name, d in fields.items() if d.scope in scopes]
    return f"the settings that can be changed here: {', '.join(names) or 'none'}"


def kept(settings: Any) -> dict[str, Any]:
    """The settings a model folder keeps (its `task` part of bertforge.json); what was not learned is left out."""
    out = {}
    for name, d in declared(type(settings)).items():
        value = getattr(settings, name)
        if d.scope in KEPT and not (d.scope == LEARNED and value is None):
            out[name] = value
    return out
