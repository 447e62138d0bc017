"""Where actions come from when no person is at the keys: YAML action scripts and Python policies.

A script is a YAML file of timed steps, compiled to one `Action` per tick:

    steps:
      - {hold: [forward], seconds: 2}             # hold keys for a duration
      - {turn: {yaw: 90}, ticks: 10}              # turn by an angle, spread evenly over the duration
      - {hold: [forward, sprint], turn: {yaw: -30}, ticks: 20}   # both at once
      - {wait: 15}                                # nothing held for 15 ticks
      - repeat: 3                                 # a block, several times
        steps:
          - {hold: [left], ticks: 5}
          - {hold: [right], ticks: 5}

A duration is `ticks: N` or `seconds: S` (converted with the run's tick rate).

A policy is any callable `policy(obs: Observation) -> Action`, optionally with `reset(seed)`; load one
as 'module:callable' (a class is instantiated with no arguments) or by a registered name.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Protocol, runtime_checkable

import numpy as np

from engine.action import KEYS, Action, ActionError
from engine.files import SharedFileError, brief, load_yaml
from engine.world import Observation

STEP_FIELDS = ("hold", "turn", "ticks", "seconds", "wait", "repeat", "steps", "note")
MAX_SCRIPT_TICKS = 10_000_000  # a guard against `repeat: 1e9` typos filling memory


class ScriptError(ValueError):
    """A malformed action script; the message names the file and the step."""


class PolicyError(RuntimeError):
    """A policy that cannot be loaded, or that raised or returned something other than an Action."""


def load_script(path: str | Path, tick_rate: float = 20.0) -> list[Action]:
    """Compile a YAML action script into one Action per tick."""
    path = Path(path)
    try:
        data = load_yaml(path)
    except FileNotFoundError:
        raise ScriptError(f"action script {path} does not exist") from None
    except SharedFileError as e:
        raise ScriptError(f"action script {e}") from None
    return compile_script(data, tick_rate, source=str(path))


def compile_script(data: Any, tick_rate: float = 20.0, source: str = "<script>") -> list[Action]:
    """Compile parsed script data (a mapping with `steps`, or a bare list of steps)."""
    if isinstance(data, dict):
        extra = set(data) - {"steps", "name", "description"}
        if extra:
            raise ScriptError(f"{source}: unknown top-level key(s) {brief(sorted(extra, key=str))}; expected steps, name, description")
        data = data.get("steps")
    if not isinstance(data, list) or not data:
        raise ScriptError(f"{source}: a script needs a non-empty list of steps (see engine/script.py for the format)")
    out: list[Action] = []
    _compile_steps(data, tick_rate, source, "steps", out)
    return out


def _compile_steps(steps: list, tick_rate: float, source: str, where: str, out: list[Action]) -> None:
    for i, step in enumerate(steps):
        at = f"{source}: {where}[{i}]"
        if not isinstance(step, dict):
            raise ScriptError(f"{at}: each step is a mapping like {{hold: [forward], ticks: 10}}, got {step!r}")
        unknown = set(step) - set(STEP_FIELDS)
        if unknown:
            raise ScriptError(f"{at}: unknown field(s) {brief(sorted(unknown, key=str))}; valid fields: {list(STEP_FIELDS)}")
        if "repeat" in step:
            n, body = step["repeat"], step.get("steps")
            if not isinstance(n, int) or isinstance(n, bool) or n < 1:
                raise ScriptError(f"{at}: repeat must be a positive whole number, got {n!r}")
            if not isinstance(body, list) or not body:
                raise ScriptError(f"{at}: repeat needs a non-empty 'steps' list")
            if set(step) - {"repeat", "steps", "note"}:
                raise ScriptError(f"{at}: a repeat step takes only 'repeat' and 'steps'")
            block: list[Action] = []
            _compile_steps(body, tick_rate, source, f"{where}[{i}].steps", block)
            if len(out) + n * len(block) > MAX_SCRIPT_TICKS:
                raise ScriptError(f"{at}: the script would exceed {MAX_SCRIPT_TICKS} ticks")
            out.extend(block * n)
            continue
        if "steps" in step:
            raise ScriptError(f"{at}: 'steps' only goes with 'repeat'")
        ticks = _duration(step, tick_rate, at)
        keys = step.get("hold", [])
        keys = [keys] if isinstance(keys, str) else keys
        if not isinstance(keys, list) or any(k not in KEYS for k in keys):
            raise ScriptError(f"{at}: hold must list keys from {list(KEYS)}, got {step.get('hold')!r}")
        if "wait" in step and keys:
            raise ScriptError(f"{at}: a wait step holds no keys")
        turn = step.get("turn", {}) or {}
        if not isinstance(turn, dict) or set(turn) - {"yaw", "pitch"}:
            raise ScriptError(f"{at}: turn is a mapping with yaw and/or pitch in degrees, got {turn!r}")
        yaw, pitch = (_number(turn.get(k, 0.0), f"{at}: turn.{k}") for k in ("yaw", "pitch"))
        try:
            action = Action.from_keys(keys, yaw=yaw / ticks, pitch=pitch / ticks)
        except ActionError as e:
            raise ScriptError(f"{at}: {e}") from None
        if len(out) + ticks > MAX_SCRIPT_TICKS:
            raise ScriptError(f"{at}: the script would exceed {MAX_SCRIPT_TICKS} ticks")
        out.extend([action] * ticks)


def _number(value: Any, at: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise ScriptError(f"{at} must be a finite number, got {value!r}")
    return float(value)


def _duration(step: dict, tick_rate: float, at: str) -> int:
    given = [k for k in ("ticks", "seconds", "wait") if k in step]
    if len(given) != 1:
        raise ScriptError(f"{at}: give exactly one duration — ticks: N, seconds: S, or wait: N — got {given or 'none'}")
    key = given[0]
    value = _number(step[key], f"{at}: {key}")
    ticks = value * tick_rate if key == "seconds" else value
    if key != "seconds" and not float(value).is_integer():
        raise ScriptError(f"{at}: {key} must be a whole number of ticks, got {value}")
    ticks = int(round(ticks))
    if ticks < 1:
        raise ScriptError(f"{at}: the duration must be at least one tick, got {key}: {step[key]}")
    return ticks


# -- policies ----------------------------------------------------------------------------------------


@runtime_checkable
class Policy(Protocol):
    """Anything that maps an observation to an action. `reset(seed)` is optional."""

    def __call__(self, obs: Observation) -> Action: ...


class IdlePolicy:
    """Holds nothing, looks nowhere."""

    def __call__(self, obs: Observation) -> Action:
        return Action()


class RandomPolicy:
    """Uniformly random keys and small look deltas, seeded by `reset(seed)`."""

    def __init__(self, max_look_deg: float = 8.0) -> None:
        self.max_look_deg = max_look_deg
        self.rng = np.random.default_rng(0)

    def reset(self, seed: int) -> None:
        self.rng = np.random.default_rng(seed)

    def __call__(self, obs: Observation) -> Action:
        keys = self.rng.random(len(KEYS)) < 0.3
        yaw, pitch = self.rng.uniform(-self.max_look_deg, self.max_look_deg, 2)
        return Action(*map(bool, keys), yaw=float(yaw), pitch=float(pitch) * 0.25)


_POLICIES: dict[str, Callable[[], Policy] | str] = {"idle": IdlePolicy, "random": RandomPolicy}


def register_policy(name: str, factory: Callable[[], Policy] | str) -> None:
    """Register a policy class/factory (or a lazy 'module:attr') under a name for `--policy NAME`."""
    _POLICIES[name] = factory


def available_policies() -> list[str]:
    return sorted(_POLICIES)


def load_policy(spec: str) -> Policy:
    """A policy by registered name or 'module:callable' (classes are instantiated with no arguments)."""
    target: Any = _POLICIES.get(spec, spec)
    if isinstance(target, str):
        module_name, _, attr = target.partition(":")
        if not attr:
            raise PolicyError(f"no policy named {spec!r}; known: {available_policies()} (or pass 'module:callable')")
        try:
            target = getattr(importlib.import_module(module_name), attr)
        except ImportError as e:
            raise PolicyError(f"cannot import {module_name!r} for policy {spec!r}: {e}") from e
        except AttributeError:
            raise PolicyError(f"module {module_name!r} has no attribute {attr!r} (policy {spec!r})") from None
    policy = target() if isinstance(target, type) else target
    if not callable(policy):
        raise PolicyError(f"policy {spec!r} is not callable (it should map an Observation to an Action)")
    return policy


# -- action sources for the game loop ------------------------------------------------------------------


class ActionSource(Protocol):
    """What drives a run when no person is at the keys. `next` returns None when the source is done."""

    name: str

    def reset(self, seed: int) -> None: ...

    def next(self, obs: Observation) -> Action | None: ...


@dataclass
class ScriptSource:
    """Plays a compiled script once; done when it runs out."""

    actions: list[Action]
    name: str = "script"
    position: int = 0

    def reset(self, seed: int) -> None:
        self.position = 0

    def next(self, obs: Observation) -> Action | None:
        if self.position >= len(self.actions):
            return None
        self.position += 1
        return self.actions[self.position - 1]


@dataclass
class PolicySource:
    """Asks a policy each tick; its errors are reported with the policy's name and the tick."""

    policy: Policy
    name: str = "policy"

    def reset(self, seed: int) -> None:
        reset = getattr(self.policy, "reset", None)
        if callable(reset):
            try:
                reset(seed)
            except Exception as e:
                raise PolicyError(f"policy {self.name!r} raised in reset(seed={seed}): {type(e).__name__}: {e}") from e

    def next(self, obs: Observation) -> Action | None:
        try:
            action = self.policy(obs.policy_view if obs.policy_view is not None else obs)
        except Exception as e:
            raise PolicyError(f"policy {self.name!r} raised at tick {obs.tick}: {type(e).__name__}: {e}") from e
        if not isinstance(action, Action):
            raise PolicyError(f"policy {self.name!r} returned {type(action).__name__} at tick {obs.tick}, expected engine.Action")
        return action
