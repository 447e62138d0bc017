"""Small pieces the command-line tools share: the one `--set KEY=VALUE` parser and number checks.

`integer(lo, hi)` and `number(lo, hi)` are argparse types: a flag outside its range (or NaN, inf, 8.5 for a count)
is refused by argparse before any work, in one line naming the flag, e.g. `--episodes must be an integer in
[1, 1000000], got '1e12'`.

`parse_set` is used by play.py, engine.rollout, worldmodel.train (`--set`) and worldmodel.evaluate
(`--memory`): each value is read as a YAML scalar (`3` int, `0.5` float, `true` bool, `[1, 2]` list,
anything else a string); a later item overrides an earlier one, and a malformed item is one clear error.
"""

from __future__ import annotations

import argparse
import math
import types
import typing
from typing import Any, Callable, Iterable

from engine.files import SharedFileError, brief, parse_yaml


class SetError(ValueError):
    """A malformed `--set KEY=VALUE` item (the message names the item and the option)."""


def parse_set(items: Iterable[str], option: str = "--set", example: str = "width=256") -> dict[str, Any]:
    """`KEY=VALUE` items -> {key: YAML value}. SetError names the bad item, e.g. `--set 'width'`."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        key = key.strip()
        if not sep or not key:
            raise SetError(f"{option} takes KEY=VALUE, e.g. {option} {example}; got {item!r}")
        try:  # 1e-4 is a number here (YAML 1.1 wants 1.0e-4; people write 1e-4): engine.files.SafeYamlLoader
            out[key] = parse_yaml(value, f"{option} {brief(item)}")
        except SharedFileError as e:
            raise SetError(f"{e}; quote a string, e.g. {option} {key}='\"...\"'") from None
    return out


def check_positive(value: Any, name: str, allow_zero: bool = False) -> float:
    """A finite number > 0 (>= 0 with `allow_zero`), else ValueError naming `name` and the value."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value >= 0 if allow_zero else value > 0)
    if not ok:
        raise ValueError(f"{name} must be a finite number {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return value


class Parser(argparse.ArgumentParser):
    """argparse.ArgumentParser whose errors are one line (no usage block): `error: ... (see PROG --help)`, exit 2.
    The project's command-line tools all use it."""

    def error(self, message: str) -> typing.NoReturn:
        self.exit(2, f"error: {message} (see {self.prog} --help)\n")


def integer(lo: int, hi: int) -> Callable[[str], int]:
    """An argparse type: an integer in [lo, hi]."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be an integer in [{lo}, {hi}], got {brief(text)}")
        return value
    parse.__name__ = "integer"  # argparse names the type in its messages
    return parse


def number(lo: float, hi: float, lo_open: bool = False, hi_open: bool = False) -> Callable[[str], float]:
    """An argparse type: a number in [lo, hi] (open at either end when asked), finite unless hi is inf."""
    left, right = "(" if lo_open else "[", ")" if hi_open else "]"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        above = value > lo if lo_open else value >= lo
        below = value < hi if hi_open else value <= hi
        ok = (math.isfinite(value) or value == hi == math.inf) and above and below
        if not ok:
            raise argparse.ArgumentTypeError(f"must be a number in {left}{lo:g}, {hi:g}{right}, got {brief(text)}")
        return value
    parse.__name__ = "number"
    return parse


MAX_TICK_RATE = 1000.0  # ticks per second a world may be asked for (a recording's video is written at this rate)


def _simple_type(hint: Any) -> tuple[type, ...] | None:
    """(types,) a config value annotated `hint` may hold, None allowed as type(None); None when the hint is not one of
    the plain kinds checked here (bool, int, float, str, dict, list and their Optional forms)."""
    plain = (bool, int, float, str, dict, list)
    if hint in plain:
        return (hint,)
    origin = typing.get_origin(hint)
    if origin in plain:
        return (origin,)
    if origin in (typing.Union, types.UnionType):
        out: list[type] = []
        for arg in typing.get_args(hint):
            kinds = (type(None),) if arg is type(None) else _simple_type(arg)
            if kinds is None:
                return None
            out.extend(kinds)
        return tuple(out)
    return None


_KIND_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string", dict: "a mapping",
               list: "a list", type(None): "null"}


def type_problem(value: Any, hint: Any) -> str | None:
    """What is wrong with `value` for a field annotated `hint` ("must be an integer, got 8.5"), None when it fits or
    the hint is not a plain kind. Strict: a bool is not a number, 8.5 not an integer, NaN not a number, 'no' not false."""
    kinds = _simple_type(hint)
    if kinds is None:
        return None
    ok = any(kind is type(None) and value is None
             or kind is bool and isinstance(value, bool)
             or kind is int and isinstance(value, int) and not isinstance(value, bool)
             or kind is float and isinstance(value, (int, float)) and not isinstance(value, bool)
             and math.isfinite(value)
             or kind in (str, dict, list) and isinstance(value, kind) for kind in kinds)
    if ok:
        return None
    want = " or ".join(dict.fromkeys(_KIND_NAMES[k] for k in kinds))
    extra = " (finite)" if float in kinds and isinstance(value, float) else ""
    return f"must be {want}{extra}, got {brief(value)}"
