"""Key bindings (from YAML) and the per-tick input accumulator.

Input arrives as events at any time between ticks; a tick consumes everything gathered since the last
one. A key pressed and released inside one tick still counts as held for that tick, and mouse motion
is summed over the tick rather than taking the last event.
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from engine.action import KEYS, Action
from engine.files import SharedFileError, brief, load_yaml

ASSETS = Path(__file__).resolve().parent.parent / "assets"
DEFAULT_KEYMAP = ASSETS / "keymap.yaml"

LOOK_KEYS = ("turn_left", "turn_right", "look_up", "look_down")
# Commands the engine itself handles.
ENGINE_COMMANDS = ("release_mouse", "pause", "step", "reset", "help", "screenshot", "record", "filter", "hud", "warp")
# Worlds declare their own commands and default keys (`World.commands`); the window binds them for the running
# world (`Keymap.for_world`). The commands of dreamwalk's own worlds keep their keys in every world, so that where
# they cannot act the key says what would make it work — one wording for every world:
# name -> (default key, what it does, what to run to get a world where it acts).
WORLD_COMMAND_HELP = {
    "memory": ("m", "scene memory on/off", "python play.py --set memory=true"),
    "view": ("tab", "cycle views", "python play.py --world split"),
    "save_memory": ("f6", "save the scene memory as .ply", "python play.py --set memory=true"),
}
# World command names a keymap file may bind before the world is known (others: by the world's default key).
WORLD_COMMANDS = tuple(WORLD_COMMAND_HELP)
SECTIONS = ("actions", "look_keys", "commands", "look")
LOOK_SETTINGS = {"mouse_sensitivity": float, "invert_y": bool, "key_turn_speed": float}


class KeymapError(ValueError):
    """A keymap file with an unknown key name, binding or setting."""


def key_code(name: str) -> int:
    """pygame key code for a pygame key name ('w', 'left shift', 'f1', 'escape', ...)."""
    os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
    import pygame

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "pygame.init() has not been called": names resolve without it
        return pygame.key.key_code(name)


@dataclass
class Keymap:
    """Bindings: pygame key code -> binding name, per section, plus look settings."""

    actions: dict[int, str] = field(default_factory=dict)
    look_keys: dict[int, str] = field(default_factory=dict)
    commands: dict[int, str] = field(default_factory=dict)
    names: dict[str, list[str]] = field(default_factory=dict)  # binding -> key names, for the help overlay
    world: str = ""  # the world whose commands are bound (for_world)
    world_commands: dict[str, str] = field(default_factory=dict)  # its commands -> what they do, for the help overlay
    unchecked: list[str] = field(default_factory=list)  # command names bound that only the world can confirm
    mouse_sensitivity: float = 0.15  # degrees per pixel
    invert_y: bool = False
    key_turn_speed: float = 6.0  # degrees per tick while a look key is held
    source: str = ""

    @classmethod
    def load(cls, path: str | Path | None = None) -> "Keymap":
        """The default bindings from assets/keymap.yaml, overridden entry by entry by `path` if given."""
        data = _read(DEFAULT_KEYMAP)
        sources = [str(DEFAULT_KEYMAP)]
        if path is not None:
            override = _read(Path(path))
            for section, values in override.items():
                data.setdefault(section, {}).update(values)
            sources.append(str(path))
        return cls.from_dict(data, source=" + ".join(sources))

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> "Keymap":
        unknown = set(data) - set(SECTIONS)
        if unknown:
            raise KeymapError(f"{source}: unknown section(s) {brief(sorted(unknown, key=str))}; expected {list(SECTIONS)}")
        km = cls(source=source)
        valid = {"actions": KEYS, "look_keys": LOOK_KEYS, "commands": ENGINE_COMMANDS + WORLD_COMMANDS}
        for section, allowed in valid.items():
            table: dict[int, str] = getattr(km, section)
            for binding, keys in (data.get(section) or {}).items():
                if section == "commands" and binding not in allowed and isinstance(binding, str) \
                        and binding.isidentifier():
                    km.unchecked.append(binding)  # a world's own command, perhaps: checked by for_world
                elif binding not in allowed:
                    raise KeymapError(f"{source}: unknown binding {section}.{binding!r}; valid: {list(allowed)}")
                keys = [keys] if isinstance(keys, str) else keys
                if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
                    raise KeymapError(f"{source}: {section}.{binding} must be a key name or a list of key names")
                km.names[binding] = list(keys)
                for name in keys:
                    try:
                        code = key_code(name)
                    except ValueError:
                        raise KeymapError(
                            f"{source}: {section}.{binding}: unknown key name {name!r}. Use pygame's names, "
                            "e.g. 'w', 'space', 'left shift', 'up', 'f1', 'escape', 'page up'"
                        ) from None
                    for other in ("actions", "look_keys", "commands"):
                        clash = getattr(km, other).get(code)
                        if clash is not None and (other, clash) != (section, binding):
                            raise KeymapError(f"{source}: key {name!r} is bound to both {clash!r} and {binding!r}")
                    table[code] = binding
        for setting, value in (data.get("look") or {}).items():
            if setting not in LOOK_SETTINGS:
                raise KeymapError(f"{source}: unknown look setting {setting!r}; valid: {list(LOOK_SETTINGS)}")
            kind = LOOK_SETTINGS[setting]
            if kind is float and isinstance(value, (int, float)) and not isinstance(value, bool):
                value = float(value)
            if not isinstance(value, kind):
                raise KeymapError(f"{source}: look.{setting} must be {kind.__name__}, got {value!r}")
            if kind is float and not (value == value and abs(value) != float("inf")):  # NaN or inf: every move a 360
                raise KeymapError(f"{source}: look.{setting} must be a finite number, got {value!r}")
            if setting == "mouse_sensitivity" and not 0.0 < value <= 45.0:
                raise KeymapError(f"{source}: look.mouse_sensitivity is degrees per pixel of mouse motion, in (0, 45] "
                                  f"(default 0.15); got {value!r}")
            if setting == "key_turn_speed" and not 0.0 <= value <= 360.0:
                raise KeymapError(f"{source}: look.key_turn_speed is degrees per tick, in [0, 360] (default 6); got {value!r}")
            setattr(km, setting, value)
        return km

    def for_world(self, world: str, declared: dict[str, tuple[str, str]] | None) -> "Keymap":
        """A copy with the running world's commands bound: each declared command (name -> (default key,
        description)) on its default key unless this keymap binds it already; the known commands of other worlds
        keep their keys (they say what would make them work). A default key already taken is left out, with a
        warning naming the command, so a world never steals an engine key."""
        km = Keymap(actions=dict(self.actions), look_keys=dict(self.look_keys), commands=dict(self.commands),
                    names={k: list(v) for k, v in self.names.items()}, mouse_sensitivity=self.mouse_sensitivity,
                    invert_y=self.invert_y, key_turn_speed=self.key_turn_speed, source=self.source, world=world,
                    unchecked=list(self.unchecked))
        declared = dict(declared or {})
        unknown = [name for name in self.unchecked if name not in declared]
        if unknown:
            raise KeymapError(f"{self.source}: unknown binding commands.{unknown[0]!r}: neither the engine's nor a "
                              f"command of world {world!r}; valid: {list(ENGINE_COMMANDS + WORLD_COMMANDS)}"
                              + (f" and {list(declared)}" if declared else ""))
        wanted = {name: key for name, (key, _does, _how) in WORLD_COMMAND_HELP.items()}
        for name, entry in declared.items():
            if not (isinstance(entry, tuple) and len(entry) == 2 and all(isinstance(x, str) for x in entry)):
                raise KeymapError(f"world {world!r}: commands[{name!r}] must be (default key, description), got {entry!r}")
            if name in ENGINE_COMMANDS:
                raise KeymapError(f"world {world!r}: command {name!r} is one of the engine's own; rename it")
            wanted[name] = entry[0]
            km.world_commands[name] = entry[1]
        for name, key in wanted.items():
            if name in km.names:  # the keymap file binds it
                continue
            try:
                code = key_code(key)
            except ValueError:
                raise KeymapError(f"world {world!r}: command {name!r} has an unknown default key {key!r}") from None
            taken = km.actions.get(code) or km.look_keys.get(code) or km.commands.get(code)
            if taken is not None:
                if name in declared:
                    warnings.warn(f"world {world!r}: key {key!r} of its command {name!r} is bound to {taken!r}; "
                                  f"bind {name} in your keymap file (commands: {name}: [KEY])", stacklevel=2)
                continue
            km.commands[code] = name
            km.names[name] = [key]
        return km

    def help_rows(self) -> list[tuple[str, str]]:
        """(what, keys) rows for the F1 overlay, in the file's order; then the running world's own commands."""
        rows = [(binding.replace("_", " "), ", ".join(keys)) for binding, keys in self.names.items()
                if binding not in WORLD_COMMAND_HELP and binding not in self.world_commands]
        rows.append(("look", f"mouse ({self.mouse_sensitivity:g} deg/px{', inverted' if self.invert_y else ''})"))
        for name, does in self.world_commands.items():
            keys = ", ".join(self.names.get(name, [])) or "(no key)"
            rows.append((f"{self.world}: {does}", keys))
        return rows

    def help_lines(self) -> list[str]:
        """Human-readable bindings, one per line."""
        return [f"{what}: {keys}" for what, keys in self.help_rows()]


def _read(path: Path) -> dict[str, Any]:
    try:
        data = load_yaml(path)
    except FileNotFoundError:
        raise KeymapError(f"keymap file {path} does not exist") from None
    except SharedFileError as e:
        raise KeymapError(f"keymap file {e}") from None
    if data is None:
        return {}
    if not isinstance(data, dict) or not all(isinstance(v, dict) or v is None for v in data.values()):
        raise KeymapError(f"keymap file {path} must map sections {list(SECTIONS)} to mappings")
    return {k: dict(v or {}) for k, v in data.items()}


class InputAccumulator:
    """Gathers input between ticks; `take()` turns it into one `Action` and starts the next tick."""

    def __init__(self, mouse_sensitivity: float = 0.15, invert_y: bool = False, key_turn_speed: float = 6.0) -> None:
        self.mouse_sensitivity = mouse_sensitivity
        self.invert_y = invert_y
        self.key_turn_speed = key_turn_speed
        self.held: set[str] = set()  # bindings down right now
        self._tapped: set[str] = set()  # bindings pressed at any moment during this tick
        self._yaw = 0.0
        self._pitch = 0.0
        self._first_event: float | None = None  # time of the tick's earliest input, for latency
        self._look_event: float | None = None  # time of the earliest look input not yet on screen (frames between ticks)

    @classmethod
    def for_keymap(cls, km: Keymap) -> "InputAccumulator":
        return cls(km.mouse_sensitivity, km.invert_y, km.key_turn_speed)

    def _mark(self, t: float | None) -> None:
        if t is not None and self._first_event is None:
            self._first_event = t

    def press(self, binding: str, t: float | None = None) -> None:
        self.held.add(binding)
        self._tapped.add(binding)
        self._mark(t)
        if binding in LOOK_KEYS:
            self.look_at(t)

    def release(self, binding: str, t: float | None = None) -> None:
        self.held.discard(binding)
        self._mark(t)

    def mouse(self, dx: float, dy: float, t: float | None = None) -> None:
        """Mouse motion in pixels (dx right, dy down)."""
        self._yaw += dx * self.mouse_sensitivity
        self._pitch += (dy if self.invert_y else -dy) * self.mouse_sensitivity
        self._mark(t)
        self.look_at(t)

    def look_at(self, t: float | None) -> None:
        """Note look input at time `t` (the earliest not yet shown is kept)."""
        if t is not None and self._look_event is None:
            self._look_event = t

    def take_look_time(self) -> float | None:
        """The time of the earliest look input since the last call (None if there was none): the frame presented
        now shows it, when frames follow the view between ticks."""
        t, self._look_event = self._look_event, None
        return t

    def pending_look(self) -> tuple[float, float]:
        """(yaw, pitch) degrees of mouse motion (and dropped ticks' key turns) gathered and not yet taken by a tick."""
        return self._yaw, self._pitch

    def carry(self, ticks: int, held: set[str] | None = None) -> None:
        """`ticks` ticks the loop dropped (it fell behind): the key turns held through them (`held`, default the keys
        down now) still turn, carried into the ticks that run next like mouse motion, so a held key turns as far as
        the time it was held."""
        if ticks > 0:
            turn, held = self.key_turn_speed * ticks, self.held if held is None else held
            self._yaw += turn * (("turn_right" in held) - ("turn_left" in held))
            self._pitch += turn * (("look_up" in held) - ("look_down" in held))

    def release_all(self) -> None:
        """Forget held keys (focus lost: the key-up events will never come)."""
        self.held.clear()

    def take(self, share: float = 1.0) -> tuple[Action, float | None]:
        """The action for the tick that is about to run, and the time of its earliest input event.

        `share` is the part of the mouse motion gathered so far that this tick takes; the rest waits for the next
        ticks. When several ticks run before the next displayed frame, the loop gives each 1/(ticks left), so a turn
        made over that time is spread over its ticks instead of arriving in a burst on the first.
        """
        if not 0.0 < share <= 1.0:
            raise ValueError(f"share must be in (0, 1], got {share}")
        active = self.held | self._tapped
        yaw, pitch = self._yaw * share, self._pitch * share
        turn = self.key_turn_speed
        yaw += turn * (("turn_right" in active) - ("turn_left" in active))
        pitch += turn * (("look_up" in active) - ("look_down" in active))
        first = self._first_event
        self._tapped.clear()
        if share >= 1.0:
            self._yaw = self._pitch = 0.0
        else:
            self._yaw -= self._yaw * share
            self._pitch -= self._pitch * share
        self._first_event = None
        # Held keys keep producing input each tick; count that as "input" only for fresh events.
        action = Action(**{k: k in active for k in KEYS}, yaw=max(-360.0, min(360.0, yaw)),
                        pitch=max(-360.0, min(360.0, pitch)))
        return action, first
