"""Small pieces the command-line tools share: the one `--set KEY=VALUE` parser and number checks.

`parse_set` is used by play.py, engine.rollout, worldmodel.train (`--set`) and worldmodel.evaluate
(`--memory`): each value is read as a YAML scalar (`3` int, `0.5` float, `true` bool, `[1, 2]` list,
anything else a string); a later item overrides an earlier one, and a malformed item is one clear error.
"""

from __future__ import annotations

import math
import re
from typing import Any, Iterable

import yaml


class SetError(ValueError):
    """A malformed `--set KEY=VALUE` item (the message names the item and the option)."""


_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def parse_set(items: Iterable[str], option: str = "--set", example: str = "width=256") -> dict[str, Any]:
    """`KEY=VALUE` items -> {key: YAML value}. SetError names the bad item, e.g. `--set 'width'`."""
    out: dict[str, Any] = {}
    for item in items:
        key, sep, value = str(item).partition("=")
        key = key.strip()
        if not sep or not key:
            raise SetError(f"{option} takes KEY=VALUE, e.g. {option} {example}; got {item!r}")
        try:
            out[key] = yaml.safe_load(value)
            if isinstance(out[key], str) and _FLOAT.fullmatch(out[key].strip()):
                out[key] = float(out[key])  # 1e-4: YAML 1.1 wants 1.0e-4 for a float, people write 1e-4
        except yaml.YAMLError as e:
            raise SetError(f"{option} {item!r}: the value is not a YAML scalar or list ({e.__class__.__name__}); "
                           f"quote it, e.g. {option} {key}='\"...\"'") from None
    return out


def check_positive(value: Any, name: str, allow_zero: bool = False) -> float:
    """A finite number > 0 (>= 0 with `allow_zero`), else ValueError naming `name` and the value."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    ok = ok and (value >= 0 if allow_zero else value > 0)
    if not ok:
        raise ValueError(f"{name} must be a finite number {'>= 0' if allow_zero else '> 0'}, got {value!r}")
    return value
