"""Any World as a gymnasium environment.

    import gymnasium, engine
    env = gymnasium.make("dreamwalk/Arena-v0", render_mode="rgb_array")
    env = gymnasium.make("dreamwalk/World-v0", world="plane", world_config={"width": 32, "height": 32})
    obs, info = env.reset(seed=0)
    obs, reward, terminated, truncated, info = env.step(env.action_space.sample())

Action space: Box(8,) float32 in the engine's one encoding — forward, back, left, right, jump, sprint
(held when > 0.5), then yaw and pitch in degrees for the tick (± `max_look_deg`).
Observation: the RGB frame (Box uint8 [H, W, 3]), or with `observation="dict"` a Dict of rgb, depth
(metres), cam_to_world [4, 4] and K [3, 3] for worlds that give them.
Reward and termination are hooks the user passes: `reward_fn(prev_obs, action, obs) -> float` and
`terminate_fn(obs) -> bool` (default: zero reward, no termination, truncation after `max_steps`).
"""

from __future__ import annotations

from typing import Any, Callable

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from engine.action import ACTION_DIM, KEYS, Action, ActionError
from engine.world import Observation, World, make_world, validate_observation

RewardFn = Callable[[Observation, Action, Observation], float]
TerminateFn = Callable[[Observation], bool]


def action_space(max_look_deg: float = 30.0) -> spaces.Box:
    """The engine's action encoding as a Box: keys in [0, 1], look deltas in ±max_look_deg."""
    low = np.array([0.0] * len(KEYS) + [-max_look_deg] * 2, np.float32)
    high = np.array([1.0] * len(KEYS) + [max_look_deg] * 2, np.float32)
    return spaces.Box(low, high, (ACTION_DIM,), np.float32)


def observation_space(probe: Observation, kind: str) -> spaces.Space:
    h, w = probe.size
    rgb = spaces.Box(0, 255, (h, w, 3), np.uint8)
    if kind == "rgb":
        return rgb
    parts: dict[str, spaces.Space] = {"rgb": rgb}
    if probe.depth is not None:
        parts["depth"] = spaces.Box(0.0, np.inf, (h, w), np.float32)
    if probe.cam_to_world is not None:
        parts["cam_to_world"] = spaces.Box(-np.inf, np.inf, (4, 4), np.float64)
    if probe.K is not None:
        parts["K"] = spaces.Box(-np.inf, np.inf, (3, 3), np.float64)
    return spaces.Dict(parts)


def to_gym(obs: Observation, kind: str, space: spaces.Space) -> Any:
    if kind == "rgb":
        return obs.rgb
    out = {"rgb": obs.rgb}
    for key in space.spaces:
        if key != "rgb":
            out[key] = getattr(obs, key).astype(space[key].dtype)
    return out


class WorldEnv(gym.Env):
    """A gymnasium Env over any engine World (arena, dream, a replay, your own)."""

    metadata = {"render_modes": ["rgb_array", "human"], "render_fps": 20}

    def __init__(self, world: str | World = "arena", world_config: dict[str, Any] | None = None,
                 observation: str = "rgb", max_steps: int = 500, reward_fn: RewardFn | None = None,
                 terminate_fn: TerminateFn | None = None, render_mode: str | None = None,
                 max_look_deg: float = 30.0) -> None:
        if observation not in ("rgb", "dict"):
            raise ValueError(f"observation must be 'rgb' or 'dict', got {observation!r}")
        if render_mode not in (None, *self.metadata["render_modes"]):
            raise ValueError(f"render_mode must be one of {self.metadata['render_modes']} or None, got {render_mode!r}")
        self.world = make_world(world, **(world_config or {})) if isinstance(world, str) else world
        self.world_name = world if isinstance(world, str) else world.name
        self.kind, self.max_steps, self.render_mode = observation, max_steps, render_mode
        self.reward_fn, self.terminate_fn = reward_fn, terminate_fn
        self.metadata = dict(self.metadata, render_fps=20)
        # The spaces need the frame size and which fields the world gives: look at one reset.
        probe = validate_observation(self.world.reset(0), self.world_name, 0)
        self.observation_space = observation_space(probe, observation)
        self.action_space = action_space(max_look_deg)
        self._obs: Observation = probe
        self._steps = 0
        self._window = None

    def reset(self, *, seed: int | None = None, options: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
        super().reset(seed=seed)
        world_seed = int(self.np_random.integers(0, 2**31 - 1)) if seed is None else int(seed)
        self._obs = validate_observation(self.world.reset(world_seed), self.world_name, 0)
        self._steps = 0
        return to_gym(self._obs, self.kind, self.observation_space), {"world_seed": world_seed, **self._obs.info}

    def step(self, action: Any) -> tuple[Any, float, bool, bool, dict[str, Any]]:
        arr = np.asarray(action, dtype=np.float32)
        if arr.shape != (ACTION_DIM,) or not self.action_space.contains(arr):
            raise ActionError(
                f"action {np.round(arr, 3).tolist()} for world {self.world_name!r} at step {self._steps + 1} is outside "
                f"the action space (8 values: keys in [0, 1], look in ±{self.action_space.high[-1]:g} degrees)"
            )
        act = Action.from_array(arr)
        prev = self._obs
        self._obs = validate_observation(self.world.step(act), self.world_name, self._steps + 1)
        self._steps += 1
        reward = float(self.reward_fn(prev, act, self._obs)) if self.reward_fn else 0.0
        terminated = bool(self.terminate_fn(self._obs)) if self.terminate_fn else False
        truncated = self._steps >= self.max_steps
        if self.render_mode == "human":
            self.render()
        return to_gym(self._obs, self.kind, self.observation_space), reward, terminated, truncated, dict(self._obs.info)

    def render(self) -> np.ndarray | None:
        if self.render_mode == "rgb_array":
            return self._obs.rgb.copy()
        if self.render_mode == "human":
            if self._window is None:
                from engine.input import Keymap
                from engine.window import DisplayError, WindowFrontend

                try:
                    self._window = WindowFrontend(Keymap.load(), title=f"dreamwalk gym - {self.world_name}",
                                                  capture_mouse=False)
                except DisplayError as e:
                    # Headless machines still run human-mode envs (e.g. env checkers): say so once, show nothing.
                    gym.logger.warn(f"render_mode='human' cannot open a window here ({e}); frames are not shown")
                    self._window = False
            if not self._window:
                return None
            from engine.game import Hud, LoopStats

            self._window.poll(_NullInput(), 0.0)
            self._window.present(self._obs, Hud(self.world_name, LoopStats(ticks=self._steps), False, False))
        return None

    def close(self) -> None:
        if self._window:
            self._window.close()
            self._window = None
        self.world.close()


class _NullInput:
    """Swallows the window's input events (the agent drives the env, not the keyboard)."""

    def press(self, *a: Any) -> None: ...

    def release(self, *a: Any) -> None: ...

    def mouse(self, *a: Any) -> None: ...

    def release_all(self) -> None: ...


def register_envs() -> None:
    """gymnasium ids for the project's worlds; `dreamwalk/World-v0` takes any world by name."""
    ids = {"dreamwalk/World-v0": {}, "dreamwalk/Arena-v0": {"world": "arena"}, "dreamwalk/Plane-v0": {"world": "plane"},
           "dreamwalk/Dream-v0": {"world": "dream"}}
    for env_id, kwargs in ids.items():
        if env_id not in gym.registry:
            gym.register(id=env_id, entry_point="engine.gymenv:WorldEnv", kwargs=kwargs)
