"""Field rules and checks of the typed configs, and the reading of numbers and flags from others' JSON configs.

Every field is checked when a config is built (`check_fields`, first thing in each ``__post_init__``): its type
from the annotation (an ``int`` takes neither 2.5 nor "abc", a ``bool`` only true/false, a ``float`` only finite
numbers) and the values it allows, declared beside it with `rule`. A bad value is one line naming the field, the
value and what is allowed.

The config files of the official 4M releases (a model's, a tokenizer's) are not configs of this package: their
numbers and flags are read one by one with `json_number` and `json_flag`, which word a bad value the same way for
both (`model.checkpoint.config_from_official`, `tokenizers.ml4m.folder.reference_arg`).
"""

from __future__ import annotations

import dataclasses
import math
import numbers
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


class ConfigError(ValueError):
    """A config that cannot be built: unknown or missing fields, values of the wrong type or out of range."""


# ------------------------------------------------------------------------------------------ field rules


@dataclass(frozen=True)
class Rule:
    """The values a field allows besides its annotated type: bounds (numbers, and every item of a list or dict
    of numbers) or a set of choices."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None
    choices: tuple | None = None

    def allows(self, v: Any) -> bool:
        if self.choices is not None:
            return v in self.choices
        return ((self.ge is None or v >= self.ge) and (self.gt is None or v > self.gt)
                and (self.le is None or v <= self.le) and (self.lt is None or v < self.lt))

    def describe(self) -> str:
        if self.choices is not None:
            return "one of " + ", ".join(repr(c) for c in self.choices)
        low = f"[{self.ge}" if self.ge is not None else f"({self.gt}" if self.gt is not None else None
        high = f"{self.le}]" if self.le is not None else f"{self.lt})" if self.lt is not None else None
        if low and high:
            return f"in {low}, {high}"
        if low:
            return (">= " if low[0] == "[" else "> ") + low[1:]
        if high:
            return ("<= " if high[-1] == "]" else "< ") + high[:-1]
        return ""


def rule(default: Any = dataclasses.MISSING, *, factory: Any = dataclasses.MISSING, ge: float | None = None,
         gt: float | None = None, le: float | None = None, lt: float | None = None,
         choices: tuple | None = None) -> Any:
    """A dataclass field with the values it allows (see `Rule`); `check_fields` enforces it."""
    meta = {"rule": Rule(ge, gt, le, lt, tuple(choices) if choices is not None else None)}
    return field(default=default, default_factory=factory, metadata=meta)


_HINTS: dict[type, dict[str, Any]] = {}
_KIND = {bool: ("true or false", "true/false values"), int: ("an integer", "integers"),
         float: ("a finite number", "finite numbers"), str: ("a string", "strings")}


def _kind(tp: Any, r: Rule | None, *, plural: bool = False) -> str:
    """What a value of ``tp`` under ``r`` may be, in words: "an integer >= 1", "one of 'a', 'b'"."""
    if r is not None and r.choices is not None:
        return r.describe()
    words = _KIND.get(tp, (getattr(tp, "__name__", str(tp)),) * 2)[plural]
    return f"{words} {r.describe()}".rstrip() if r is not None else words


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _scalar(tp: Any, value: Any, r: Rule | None) -> tuple[bool, Any]:
    """Whether ``value`` is a ``tp`` allowed by ``r``, and the value normalized (an int for an integral number,
    so that ``train.steps=1e4`` works while 2.5 does not)."""
    if tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        if isinstance(value, float) and value.is_integer():  # 1e4 is a float in JSON
            value = int(value)
        ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
        value = int(value) if ok else value
    elif tp is float:
        ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
        value = float(value) if ok else value
    elif tp is str:
        ok = isinstance(value, str)
    elif dataclasses.is_dataclass(tp):
        ok = isinstance(value, tp)
    else:  # a type the checker does not know (Any): nothing to check
        return True, value
    return ok and (r is None or r.allows(value)), value


def _check(tp: Any, value: Any, r: Rule | None, where: str) -> Any:
    """``value`` checked against the annotation ``tp`` and the rule ``r`` (applied to each item of a list or
    dict); returns it normalized (lists become tuples) or raises one line naming ``where``."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is tuple:
        item = args[0]
        fixed = None if len(args) == 2 and args[1] is Ellipsis else len(args)
        what = f"a list of {f'{fixed} ' if fixed else ''}{_kind(item, r, plural=True)}"
        checked = [_scalar(item, v, r) for v in value] if isinstance(value, (list, tuple)) else [(False, None)]
        if not all(ok for ok, _ in checked) or (fixed and len(checked) != fixed):
            raise ConfigError(f"{where}: got {_shown(value)}, expected {what}")
        return tuple(v for _, v in checked)
    if origin is dict:
        key_tp, item = args
        if not isinstance(value, Mapping) or not all(_scalar(key_tp, k, None)[0] for k in value):
            raise ConfigError(f"{where}: got {_shown(value)}, expected an object mapping names to "
                              f"{_kind(item, r, plural=True)}")
        out = {}
        for k, v in value.items():
            ok, out[k] = _scalar(item, v, r)
            if not ok:
                raise ConfigError(f"{where}[{k!r}]: got {_shown(v)}, expected {_kind(item, r)}")
        return out
    ok, checked = _scalar(tp, value, r)
    if not ok:
        if dataclasses.is_dataclass(tp):
            raise ConfigError(f"{where}: got a {type(value).__name__}, expected a {tp.__name__}")
        raise ConfigError(f"{where}: got {_shown(value)}, expected {_kind(tp, r)}")
    return checked


def check_fields(cfg: Any, section: str) -> None:
    """Check every field of a dataclass against its annotation and `rule`, naming it ``section.field``; lists
    become tuples and integral numbers ints (the dataclass may be frozen). Call it first in ``__post_init__``."""
    cls = type(cfg)
    if cls not in _HINTS:
        _HINTS[cls] = typing.get_type_hints(cls)
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        checked = _check(_HINTS[cls][f.name], value, f.metadata.get("rule"),
                         f"{section}.{f.name}" if section else f.name)
        if checked is not value:
            object.__setattr__(cfg, f.name, checked)


# ------------------------------------------------------------------------------ values of official JSON configs


def json_number(value: Any, kind: type, key: str, where: Any, *, error: type[ValueError] = ConfigError) -> Any:
    """``value``, read from ``key`` of the JSON config ``where``, as ``kind`` (int or float: ``kind(value)``); a
    one-line ``error`` naming ``where`` and ``key`` otherwise ("is not an integer" / "is not a number")."""
    what = "an integer" if kind is int else "a number"
    # int(2.5) is 2 and int(True) is 1: a width or a depth must not be cut or read from a flag without a word
    if isinstance(value, bool) or (kind is int and isinstance(value, float) and not value.is_integer()):
        raise error(f"{where}: {key}={value!r} is not {what}")
    try:
        return kind(value)
    except (TypeError, ValueError):
        raise error(f"{where}: {key}={value!r} is not {what}") from None


def json_flag(value: Any, key: str, where: Any, *, error: type[ValueError] = ConfigError) -> bool:
    """``value``, read from ``key`` of the JSON config ``where``, as a bool; a one-line ``error`` naming ``where``
    and ``key`` unless it is true or false."""
    if value not in (True, False):  # bool("false") is True: a string must not flip a layer choice silently
        raise error(f"{where}: {key}={value!r} is not true or false")
    return bool(value)
