"""Arena level parameters: the typed dataclass that YAML presets in `assets/arena/` load into.

A preset is a flat YAML mapping whose keys are the fields of `ArenaConfig`. Loading is strict: an
unknown key, a value of the wrong type or an impossible value raises `ArenaConfigError` naming the
key and where it came from (the file, or "override" for keyword arguments), because a typo silently
falling back to a default would produce a different dataset without anyone noticing.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Mapping

from engine.files import SharedFileError, brief, load_yaml

# assets/arena/ lives at the repository root, two levels above this package.
PRESET_DIR: Path = Path(__file__).resolve().parents[2] / "assets" / "arena"

# The renderer keeps one region table row per room/corridor; the shader's table texture is this wide.
MAX_REGIONS: int = 256


class ArenaConfigError(ValueError):
    """A preset or override that cannot build a level; the message names the key and its source."""


@dataclass(frozen=True)
class ArenaConfig:
    """Everything that shapes a level and the player; the seed given to `reset` picks the layout.

    Lengths are metres, speeds metres/second, times seconds, counts are per level.
    """

    # -- layout: a grid of square cells, solid or open ---------------------------------------------
    grid_width: int = 28  # cells along x
    grid_depth: int = 28  # cells along z
    cell_size: float = 2.0
    wall_height: float = 3.0
    rooms: int = 9  # rectangular rooms (each its own texture region)
    room_min: int = 3  # room side, cells
    room_max: int = 6
    open_areas: int = 1  # large rooms with arches and more objects
    open_area_size: int = 9
    extra_corridors: int = 3  # corridors beyond the spanning tree: loops make revisits interesting
    # -- landmarks (static) ------------------------------------------------------------------------
    pillars_per_room: int = 2
    crates_per_room: int = 1
    obelisks: int = 4
    arches: int = 3
    # -- dynamic objects (functions of the tick) ---------------------------------------------------
    bobbers: int = 5  # floating cubes that bob and spin above pedestals
    patrollers: int = 2  # boxes that slide back and forth across a room (solid)
    doors: int = 3  # corridor doors that slide open and shut (solid when shut)
    door_period_s: float = 8.0
    patrol_period_s: float = 6.0
    # -- rendering ---------------------------------------------------------------------------------
    near: float = 0.05
    far: float = 150.0  # also the depth reported for sky pixels
    fog_density: float = 0.012
    # -- player ------------------------------------------------------------------------------------
    eye_height: float = 1.6
    player_radius: float = 0.3  # half-width of the player's square footprint
    player_height: float = 1.8
    walk_speed: float = 3.0
    sprint_speed: float = 6.0
    jump_speed: float = 4.5  # about 1 m high under default gravity
    gravity: float = 9.81
    air_control: float = 0.1  # fraction of the wish velocity adopted per tick while airborne

    def replace(self, source: str = "override", **changes: Any) -> "ArenaConfig":
        """A validated copy with `changes` applied; errors name `source`."""
        return build_config({**dataclasses.asdict(self), **changes}, source)


_FIELD_TYPES: dict[str, type] = {f.name: type(f.default) for f in fields(ArenaConfig)}


def _check_type(key: str, value: Any, source: str) -> Any:
    """Coerce ints to floats where a float is expected; reject everything else of the wrong type."""
    want = _FIELD_TYPES[key]
    # bool is an int in Python; `rooms: true` is a mistake, not 1.
    if isinstance(value, bool) or value is None:
        raise ArenaConfigError(f"{source}: '{key}' must be {want.__name__}, got {value!r}")
    if want is float and isinstance(value, (int, float)):
        if not math.isfinite(value):  # a NaN passes every `> 0` check; an inf speed or cell size breaks physics
            raise ArenaConfigError(f"{source}: '{key}' = {value!r} must be a finite number")
        return float(value)
    if want is int and isinstance(value, int):
        return value
    raise ArenaConfigError(
        f"{source}: '{key}' must be {want.__name__}, got {type(value).__name__} {value!r}"
    )


def _check_values(c: ArenaConfig, source: str) -> None:
    """Reject values that cannot build a playable level, each message naming the key."""

    def bad(key: str, why: str) -> ArenaConfigError:
        return ArenaConfigError(f"{source}: '{key}' = {getattr(c, key)!r} {why}")

    for key in ("cell_size", "wall_height", "near", "far", "eye_height", "player_radius",
                "player_height", "walk_speed", "sprint_speed", "gravity", "door_period_s",
                "patrol_period_s"):
        if not getattr(c, key) > 0:
            raise bad(key, "must be positive")
    for key in ("rooms", "room_min", "room_max", "open_areas", "open_area_size", "extra_corridors",
                "pillars_per_room", "crates_per_room", "obelisks", "arches", "bobbers",
                "patrollers", "doors"):
        if getattr(c, key) < 0:
            raise bad(key, "must not be negative")
    for key in ("fog_density", "jump_speed"):
        if getattr(c, key) < 0:
            raise bad(key, "must not be negative")
    if not 0.0 <= c.air_control <= 1.0:
        raise bad("air_control", "must be in [0, 1]")
    if c.rooms + c.open_areas < 1:
        raise bad("rooms", "leaves no room to spawn in: need rooms + open_areas >= 1")
    if c.room_min < 2:
        raise bad("room_min", "must be at least 2 cells so a room has space to spawn in")
    if c.room_max < c.room_min:
        raise bad("room_max", f"must be >= room_min ({c.room_min})")
    if c.open_areas and c.open_area_size < 3:
        raise bad("open_area_size", "must be at least 3 cells")
    # A room plus the solid border ring must fit; otherwise there is nowhere to spawn.
    smallest_room = c.room_min if c.rooms else c.open_area_size
    for key in ("grid_width", "grid_depth"):
        if getattr(c, key) < smallest_room + 2:
            raise bad(key, f"is too small to hold a {smallest_room}-cell room plus the outer wall "
                           f"(need >= {smallest_room + 2})")
        if getattr(c, key) > 512:
            raise bad(key, "is above 512 cells; the level texture and collision lists would be huge")
    # One region per room, one per corridor (a spanning tree plus the extra loops).
    if 2 * (c.rooms + c.open_areas) + c.extra_corridors > MAX_REGIONS:
        raise bad("rooms", f"with corridors gives more than {MAX_REGIONS - 2} texture regions")
    if c.player_radius * 2 >= c.cell_size * 0.8:
        raise bad("player_radius", f"does not fit through a one-cell corridor of cell_size {c.cell_size}")
    if c.player_height >= c.wall_height:
        raise bad("player_height", f"must be below wall_height ({c.wall_height})")
    if not c.player_height > c.eye_height:
        raise bad("eye_height", f"must be below player_height ({c.player_height})")
    if c.near >= c.far:
        raise bad("near", f"must be below far ({c.far})")
    if c.sprint_speed < c.walk_speed:
        raise bad("sprint_speed", f"must be >= walk_speed ({c.walk_speed})")


def build_config(values: Mapping[str, Any], source: str) -> ArenaConfig:
    """Validate a mapping of preset keys into an `ArenaConfig`; `source` names it in errors."""
    if not isinstance(values, Mapping):
        raise ArenaConfigError(f"{source}: a preset is a mapping of keys to values, got {type(values).__name__}")
    unknown = sorted(set(values) - set(_FIELD_TYPES))
    if unknown:
        raise ArenaConfigError(
            f"{source}: unknown key(s) {brief(sorted(unknown, key=str))}; valid keys are {sorted(_FIELD_TYPES)}"
        )
    typed = {k: _check_type(k, v, source) for k, v in values.items()}
    config = ArenaConfig(**typed)
    _check_values(config, source)
    return config


def preset_path(preset: str) -> Path:
    """The YAML file for a preset name (`assets/arena/NAME.yaml`) or an explicit path to one."""
    p = Path(preset)
    if p.suffix in (".yaml", ".yml"):
        if not p.is_file():
            raise ArenaConfigError(f"arena preset file {str(p)!r} does not exist")
        return p
    candidate = PRESET_DIR / f"{preset}.yaml"
    if not candidate.is_file():
        known = sorted(q.stem for q in PRESET_DIR.glob("*.yaml"))
        raise ArenaConfigError(f"no arena preset named {preset!r} in {PRESET_DIR}; known presets: {known}")
    return candidate


def load_preset(preset: str = "default", **overrides: Any) -> ArenaConfig:
    """Load a preset by name or path, then apply keyword overrides with the same validation."""
    path = preset_path(preset)
    try:
        values = load_yaml(path) or {}
    except SharedFileError as e:
        raise ArenaConfigError(str(e)) from None
    config = build_config(values, str(path))
    if overrides:
        config = config.replace(source=f"override of preset {preset!r} ({path})", **overrides)
    return config
