"""Exploration policies that drive a world to collect training data: `policy(obs) -> Action`.

Both are deterministic given the seed passed to `reset(seed)` (a numpy Generator, no clock):

- `ExplorePolicy` makes good world-model data: walks and sprints with smoothly varying turns, strafes,
  stops, looks around, jumps, sometimes keeps pushing into a wall (sliding along it), and regularly
  retraces its own breadcrumb trail back to a place it saw 60-250 ticks earlier and looks the way it
  looked then — revisits, which is what the scene memory has to get right. It reads only the camera
  pose and depth of the observation, so it works in any `World` that provides them.
- `RandomPolicy` holds uniformly random key combinations and look deltas for short random spans.

`POLICIES` maps names to classes (constructible with no arguments) for the dataset CLI.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from engine.action import NOOP, Action
from engine.world import Observation


def pose_from_cam_to_world(cam_to_world: np.ndarray) -> tuple[np.ndarray, float, float]:
    """(camera position [3], yaw deg, pitch deg) of an OpenCV camera-to-world [4, 4] (yaw 0 = -z, + = right)."""
    f = cam_to_world[:3, 2]
    yaw = math.degrees(math.atan2(f[0], -f[2]))
    pitch = math.degrees(math.asin(float(np.clip(f[1], -1.0, 1.0))))
    return cam_to_world[:3, 3].copy(), yaw, pitch


def angle_diff(a: float, b: float) -> float:
    """a - b wrapped into [-180, 180) degrees."""
    return (a - b + 180.0) % 360.0 - 180.0


def heading_to(position: np.ndarray, target: np.ndarray) -> float:
    """Yaw (deg) that faces from position [3] to target [3] in the xz plane."""
    d = target - position
    return math.degrees(math.atan2(d[0], -d[2]))


@dataclass(frozen=True)
class Steer:
    """One tick of steering towards a point: the action and whether the point was already reached."""

    action: Action
    arrived: bool


def steer_to(position: np.ndarray, yaw: float, target: np.ndarray, arrive_m: float = 0.35,
             max_turn_deg: float = 15.0, sprint: bool = False, pitch_delta: float = 0.0,
             walk_cone_deg: float = 20.0) -> Steer:
    """Turn towards `target` [3] (xz only) at most `max_turn_deg` per tick; walk once roughly facing it.

    Turning in place when the heading is off by more than `walk_cone_deg` avoids orbiting a close
    target: the physics applies the turn before moving, so the walk uses the corrected heading.
    """
    d = target - position
    dist = math.hypot(d[0], d[2])
    if dist < arrive_m:
        return Steer(Action(pitch=pitch_delta), True)
    err = angle_diff(heading_to(position, target), yaw)
    turn = float(np.clip(err, -max_turn_deg, max_turn_deg))
    walk = abs(err - turn) < walk_cone_deg
    return Steer(Action(forward=walk, sprint=walk and sprint, yaw=turn, pitch=pitch_delta), False)


def turn_towards(yaw: float, pitch: float, target_yaw: float, target_pitch: float,
                 max_turn_deg: float = 15.0) -> tuple[Action, bool]:
    """Look rotation (no movement) towards a view direction; True once exactly there after this action."""
    dy = angle_diff(target_yaw, yaw)
    dp = target_pitch - pitch
    ay = float(np.clip(dy, -max_turn_deg, max_turn_deg))
    ap = float(np.clip(dp, -max_turn_deg, max_turn_deg))
    return Action(yaw=ay, pitch=ap), ay == dy and ap == dp


def _clearances(depth: np.ndarray) -> tuple[float, float, float]:
    """(left, centre, right) free distance in metres from a depth image [H, W] (a band around the horizon)."""
    h, w = depth.shape
    band = depth[int(h * 0.35):int(h * 0.65) + 1]
    third = max(1, w // 3)
    left = float(np.median(band[:, :third]))
    right = float(np.median(band[:, w - third:]))
    centre = float(np.percentile(band[:, int(w * 0.35):int(w * 0.65) + 1], 10))
    return left, centre, right


class ExplorePolicy:
    """Varied exploration with wall bumps, stops, look-arounds and revisits (see module docstring)."""

    TRAIL_EVERY = 3  # ticks between breadcrumbs
    WALL_M = 1.3  # turn away when the free distance ahead is below this

    def __init__(self) -> None:
        self.reset(0)

    def reset(self, seed: int) -> None:
        """Restart the policy's random stream and memory."""
        self.rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0xE4B1])
        self.tick = 0
        self.mode = "cruise"
        self.mode_left = int(self.rng.integers(20, 60))
        self.yaw_rate = 0.0
        self.pitch_target = 0.0
        self.sprint = False
        self.strafe = 0  # -1 left, 0 none, +1 right
        self.trail: list[tuple[np.ndarray, float, float]] = []  # (position, yaw, pitch)
        self.plan: list[float] = []  # scripted yaw deltas for look-arounds
        self.return_index = -1
        self.turn_sign = 1.0
        self.progress: list[np.ndarray] = []

    # -- mode switching ---------------------------------------------------------------------------

    def _next_mode(self) -> None:
        r = self.rng.random()
        can_return = len(self.trail) * self.TRAIL_EVERY > 80
        if r < 0.15 and can_return:
            self.mode = "return"
            # Go back 60..250 ticks along the trail: a place seen recently enough to be remembered.
            back = int(self.rng.integers(60, 250)) // self.TRAIL_EVERY
            self.return_index = max(0, len(self.trail) - 1 - back)
            self.mode_left = 400  # give up if it takes longer (a door may have shut)
            self.progress = []
        elif r < 0.32:
            self.mode, self.mode_left = "stop", int(self.rng.integers(4, 25))
        elif r < 0.47:
            self.mode = "look"
            # Sweep to one side and back, sometimes all the way round.
            span = float(self.rng.choice([60.0, 90.0, 180.0, 360.0]))
            speed = float(self.rng.uniform(6.0, 15.0))
            n = max(2, int(span / speed))
            sign = float(self.rng.choice([-1.0, 1.0]))
            out = [sign * span / n] * n
            self.plan = out + ([-v for v in out] if span < 360 else [])
            self.mode_left = len(self.plan)
            self.pitch_target = float(self.rng.uniform(-30.0, 25.0))
        else:
            self.mode = "cruise"
            self.mode_left = int(self.rng.integers(20, 90))
            self.sprint = bool(self.rng.random() < 0.3)
            self.strafe = int(self.rng.choice([-1, 0, 0, 0, 1]))
            self.pitch_target = float(self.rng.uniform(-20.0, 15.0))

    # -- the policy -------------------------------------------------------------------------------

    def __call__(self, obs: Observation) -> Action:
        """Choose the action for the next tick from the camera pose and depth of `obs`."""
        self.tick += 1
        if obs.cam_to_world is None:  # no pose: nothing to navigate by, act randomly
            return Action(forward=bool(self.rng.random() < 0.6), yaw=float(self.rng.normal(0, 5)))
        pos, yaw, pitch = pose_from_cam_to_world(obs.cam_to_world)
        if self.mode != "return" and self.tick % self.TRAIL_EVERY == 0:
            self.trail.append((pos, yaw, pitch))
        pitch_step = float(np.clip(self.pitch_target - pitch, -3.0, 3.0))

        self.mode_left -= 1
        if self.mode_left <= 0 and self.mode not in ("avoid", "bump"):
            self._next_mode()

        if self.mode == "return":
            return self._return_step(pos, yaw, pitch)
        if self.mode == "stop":
            return Action(pitch=pitch_step * 0.5)
        if self.mode == "look":
            yaw_step = self.plan.pop(0) if self.plan else 0.0
            if not self.plan:
                self.mode_left = 0
            return Action(yaw=yaw_step, pitch=pitch_step)

        left, centre, right = _clearances(obs.depth) if obs.depth is not None else (9.0, 9.0, 9.0)
        if self.mode == "bump":
            if self.mode_left <= 0:
                self.mode, self.mode_left = "avoid", 30
            # Keep walking into the wall at a slight angle: the physics slides along it.
            return Action(forward=True, yaw=self.turn_sign * 2.0, pitch=pitch_step)
        if self.mode == "avoid":
            if centre > 2.5 or self.mode_left <= 0:
                self.mode, self.mode_left = "cruise", int(self.rng.integers(15, 60))
            else:
                return Action(yaw=self.turn_sign * 12.0, pitch=pitch_step)
        if centre < self.WALL_M:
            self.turn_sign = 1.0 if right >= left else -1.0
            if self.rng.random() < 0.2:
                self.mode, self.mode_left = "bump", int(self.rng.integers(5, 20))
            else:
                self.mode, self.mode_left = "avoid", 30
            return Action(yaw=self.turn_sign * 12.0, pitch=pitch_step)

        # Cruise: an Ornstein-Uhlenbeck turn rate gives smooth, varied curves.
        self.yaw_rate = 0.85 * self.yaw_rate + float(self.rng.normal(0.0, 1.5))
        self.yaw_rate = float(np.clip(self.yaw_rate, -10.0, 10.0))
        if self.rng.random() < 0.02:
            self.pitch_target = float(self.rng.uniform(-20.0, 15.0))
        return Action(forward=True, sprint=self.sprint, left=self.strafe < 0, right=self.strafe > 0,
                      jump=bool(self.rng.random() < 0.01), yaw=self.yaw_rate, pitch=pitch_step)

    def _return_step(self, pos: np.ndarray, yaw: float, pitch: float) -> Action:
        """Follow the breadcrumb trail backwards, then look the way it looked there."""
        self.progress.append(pos)
        # Stuck (a shut door, a patroller): give up on this revisit and explore on.
        if len(self.progress) > 40 and np.linalg.norm(self.progress[-1] - self.progress[-40]) < 0.3:
            self._abandon_return()
            return NOOP
        if len(self.trail) - 1 > self.return_index:
            target = self.trail[-1][0]
            s = steer_to(pos, yaw, target, arrive_m=0.4)
            if s.arrived:
                self.trail.pop()
                return Action(pitch=float(np.clip(-pitch, -3.0, 3.0)))
            return s.action
        target_pos, target_yaw, target_pitch = self.trail[-1]
        s = steer_to(pos, yaw, target_pos, arrive_m=0.25)
        if not s.arrived:
            return s.action
        action, done = turn_towards(yaw, pitch, target_yaw, target_pitch, max_turn_deg=10.0)
        if done:
            # Revisit complete: pause there briefly, then explore on from this place.
            self.mode, self.mode_left = "stop", int(self.rng.integers(5, 15))
        return action

    def _abandon_return(self) -> None:
        self.mode, self.mode_left = "avoid", 30
        self.turn_sign = float(self.rng.choice([-1.0, 1.0]))


class RandomPolicy:
    """Random held key combinations and look deltas, each held for 1-8 ticks."""

    def __init__(self) -> None:
        self.reset(0)

    def reset(self, seed: int) -> None:
        """Restart the random stream."""
        self.rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x8A4D])
        self.current = NOOP
        self.left = 0

    def __call__(self, obs: Observation) -> Action:
        """A random action (the observation is ignored)."""
        if self.left <= 0:
            keys = self.rng.random(6) < np.array([0.5, 0.15, 0.2, 0.2, 0.05, 0.2])
            self.current = Action(*(bool(k) for k in keys), yaw=float(np.clip(self.rng.normal(0, 8), -45, 45)),
                                  pitch=float(np.clip(self.rng.normal(0, 3), -20, 20)))
            self.left = int(self.rng.integers(1, 9))
        self.left -= 1
        return self.current


POLICIES: dict[str, type] = {"explore": ExplorePolicy, "random": RandomPolicy}
