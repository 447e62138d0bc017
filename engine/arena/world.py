"""`ArenaWorld`: the ground-truth world — seeded level, player physics, movers, moderngl rendering.

    world = ArenaWorld(preset="small", width=128, height=128)
    obs = world.reset(seed=3)            # tick 0 at the spawn point
    obs = world.step(Action(forward=True, yaw=2.0))

Observation contract (on top of `engine.Observation`):
    rgb [H, W, 3] uint8; depth [H, W] float32 metres along the camera z, sky = config.far (150 m default);
    cam_to_world [4, 4] OpenCV camera -> world; K [3, 3] with fx = fy and the principal point at the
    image centre (cx = W/2, cy = H/2 in continuous pixel coordinates where pixel (r, c) covers
    [c, c+1] x [r, r+1], the gsplat convention); dynamic_mask [H, W] bool where a mover is drawn.
    info = {"region", "position" (feet, m), "yaw", "pitch" (deg), "on_ground", "collided", "level_seed"}

`ArenaSim` is the same world without rendering (level + physics + clock), used by planners such as the
revisit generator: identical actions give identical poses in both.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np

from engine.action import Action
from engine.arena.config import ArenaConfig, ArenaConfigError, load_preset
from engine.arena.level import Level, generate_level
from engine.arena.physics import PlayerState, camera_to_world, step_player, wrap_deg
from engine.arena.render import ArenaRenderer, Frame
from engine.world import Observation, World

MIN_RESOLUTION = 8


def intrinsics(width: int, height: int, fov_y_deg: float) -> np.ndarray:
    """Pinhole K [3, 3] float64 for a vertical field of view, square pixels, centred principal point."""
    fy = (height / 2.0) / math.tan(math.radians(fov_y_deg) / 2.0)
    return np.array([[fy, 0.0, width / 2.0], [0.0, fy, height / 2.0], [0.0, 0.0, 1.0]])


class ArenaSim:
    """Level + player physics + tick clock, no GL. `step` returns the new `PlayerState`."""

    def __init__(self, config: ArenaConfig, tick_rate: float = 20.0) -> None:
        self.config = config
        self.tick_rate = tick_rate
        self.dt = 1.0 / tick_rate
        self.level: Level | None = None
        self.player: PlayerState | None = None
        self.tick = 0

    def reset(self, seed: int) -> PlayerState:
        """Generate the level for `seed` and put the player at its spawn point (tick 0, level view)."""
        if self.level is None or self.level.seed != int(seed):
            self.level = generate_level(self.config, int(seed))
        self.tick = 0
        self.player = PlayerState(position=self.level.spawn_position.copy(), velocity=np.zeros(3),
                                  yaw=self.level.spawn_yaw, pitch=0.0, on_ground=True, collided=False)
        return self.player

    def obstacles(self, tick: int) -> tuple[np.ndarray, np.ndarray]:
        """Static + solid mover boxes at `tick`: min [M, 3], max [M, 3]."""
        level = self._level()
        dmin, dmax = level.dynamic_solids(tick * self.dt)
        if len(dmin) == 0:
            return level.solid_min, level.solid_max
        return np.concatenate([level.solid_min, dmin]), np.concatenate([level.solid_max, dmax])

    def step(self, action: Action) -> PlayerState:
        """Advance one tick: movers move to tick+1, then the player moves against them."""
        if self.player is None:
            raise RuntimeError("call reset(seed) before step()")
        if not isinstance(action, Action):
            raise TypeError(f"step() takes an engine.Action, got {type(action).__name__}")
        self.tick += 1
        bmin, bmax = self.obstacles(self.tick)
        self.player = step_player(self.player, action, self.dt, self.config, bmin, bmax)
        return self.player

    def teleport(self, position: Any, yaw: float, pitch: float = 0.0) -> PlayerState:
        """Put the player's feet at `position` [3] looking (yaw, pitch) degrees; velocity zeroed."""
        pos = np.asarray(position, np.float64).reshape(3).copy()
        self.player = PlayerState(position=pos, velocity=np.zeros(3), yaw=wrap_deg(float(yaw)),
                                  pitch=float(np.clip(pitch, -85.0, 85.0)), on_ground=bool(pos[1] <= 0.0),
                                  collided=False)
        return self.player

    def cam_to_world(self) -> np.ndarray:
        """The player's OpenCV camera-to-world [4, 4]."""
        p = self._player()
        return camera_to_world(p.position, p.yaw, p.pitch, self.config.eye_height)

    def info(self) -> dict[str, Any]:
        """Small JSON-able facts about the current state."""
        p, level = self._player(), self._level()
        return {
            "region": level.region_at(float(p.position[0]), float(p.position[2])),
            "position": [round(float(v), 6) for v in p.position],
            "yaw": round(p.yaw, 6),
            "pitch": round(p.pitch, 6),
            "on_ground": bool(p.on_ground),
            "collided": bool(p.collided),
            "level_seed": level.seed,
        }

    def _level(self) -> Level:
        if self.level is None:
            raise RuntimeError("call reset(seed) first")
        return self.level

    def _player(self) -> PlayerState:
        if self.player is None:
            raise RuntimeError("call reset(seed) first")
        return self.player


class ArenaWorld(World):
    """The procedural ground-truth arena (see module docstring for the observation contract).

    preset:    name of a YAML file in assets/arena/ ("default", "small", ...) or a path to one
    width, height: image size in pixels, 8 .. GL_MAX_RENDERBUFFER_SIZE
    fov_deg:   vertical field of view in degrees (0, 170)
    tick_rate: ticks per second (dt = 1 / tick_rate)
    overrides: any `ArenaConfig` field, validated like the preset's own keys
    """

    name: ClassVar[str] = "arena"
    deterministic: ClassVar[bool] = True

    def __init__(self, preset: str = "default", width: int = 128, height: int = 128, fov_deg: float = 90.0,
                 tick_rate: float = 20.0, **overrides: Any) -> None:
        where = f"ArenaWorld(preset={preset!r})"
        for key, value in (("width", width), ("height", height)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise ArenaConfigError(f"{where}: '{key}' must be an int number of pixels, got {value!r}")
            if value < MIN_RESOLUTION:
                raise ArenaConfigError(f"{where}: '{key}' = {value} is below the renderer's minimum of "
                                       f"{MIN_RESOLUTION} pixels")
        for key, value, lo, hi in (("fov_deg", fov_deg, 0.0, 170.0), ("tick_rate", tick_rate, 0.0, 1000.0)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not lo < float(value) <= hi:
                raise ArenaConfigError(f"{where}: '{key}' = {value!r} must be a number in ({lo:g}, {hi:g}]")
        self.arena_config = load_preset(preset, **overrides)
        self._config = {"preset": preset, "width": int(width), "height": int(height), "fov_deg": float(fov_deg),
                        "tick_rate": float(tick_rate), **overrides}
        self.width, self.height, self.fov_deg = int(width), int(height), float(fov_deg)
        self.K = intrinsics(self.width, self.height, self.fov_deg)
        self.sim = ArenaSim(self.arena_config, float(tick_rate))
        try:
            self.renderer = ArenaRenderer(self.width, self.height, self.fov_deg, self.arena_config.near,
                                          self.arena_config.far)
        except ValueError as e:  # resolution beyond what this GL can render
            raise ArenaConfigError(f"{where}: 'width'/'height' {width}x{height}: {e}") from e
        self.last_frame: Frame | None = None  # the latest render, with its object-id image (tests, tools)

    @property
    def config(self) -> dict[str, Any]:
        """Constructor kwargs that rebuild this world."""
        return dict(self._config)

    @property
    def level(self) -> Level:
        """The current level (after `reset`)."""
        return self.sim._level()

    @property
    def tick(self) -> int:
        return self.sim.tick

    def reset(self, seed: int) -> Observation:
        """Generate the level for `seed` (re-uploaded only when the seed changes) and spawn the player."""
        previous = self.sim.level
        self.sim.reset(int(seed))
        if self.sim.level is not previous:
            self.renderer.set_level(self.sim.level)
        return self.render()

    def step(self, action: Action) -> Observation:
        """One tick of physics and movers, then a render."""
        self.sim.step(action)
        return self.render()

    def teleport(self, position: Any, yaw: float, pitch: float = 0.0) -> Observation:
        """Test hook: put the player's feet at `position` [3] looking (yaw, pitch) deg; render, same tick."""
        self.sim.teleport(position, yaw, pitch)
        return self.render()

    def render(self) -> Observation:
        """Render the current state without advancing time."""
        if self.sim.level is None:
            raise RuntimeError("call reset(seed) before rendering the arena")
        c2w = self.sim.cam_to_world()
        frame = self.renderer.render(c2w, self.sim.tick * self.sim.dt)
        self.last_frame = frame
        return Observation(rgb=frame.rgb, depth=frame.depth, cam_to_world=c2w, K=self.K.copy(),
                           tick=self.sim.tick, info=self.sim.info(), dynamic_mask=frame.dynamic_mask)

    def close(self) -> None:
        """Release the GL context. Safe to call twice."""
        self.renderer.close()
