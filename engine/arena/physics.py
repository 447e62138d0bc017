"""Player physics: walking, strafing, sprinting, jumping under gravity, mouse look, box collisions.

The player is an axis-aligned box: a square footprint of half-width r and a height h above the feet.
Every obstacle is an axis-aligned box too (walls, landmarks, doors, patrollers). Movement is resolved
one axis at a time (x, then z, then y), which is what makes the player slide along a wall when walking
into it at an angle: the blocked axis is clamped to the wall face and the other axis keeps moving.

A box the player already overlaps before a move is ignored for that move: a door sliding shut or a
patroller sliding into the player would otherwise trap them; ignoring it lets them walk out.

Pure numpy float64 and no clock: the same state, action and obstacles always give the same result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from engine.action import Action
from engine.arena.config import ArenaConfig

PITCH_LIMIT_DEG = 85.0
_EPS = 1e-6  # gap left between the player and a face it was clamped to
_MAX_SUBSTEP_M = 0.25  # longest move per sub-step: below the player's width, so nothing is tunnelled


@dataclass(frozen=True)
class PlayerState:
    """Where the player is. position: [3] feet (x, y, z) metres; velocity: [3] m/s; yaw/pitch degrees.

    yaw 0 looks along -z, +90 along +x (turning right); pitch + looks up.
    """

    position: np.ndarray
    velocity: np.ndarray
    yaw: float
    pitch: float
    on_ground: bool = True
    collided: bool = False  # a move was blocked during the last step

    def forward(self) -> np.ndarray:
        """Unit view direction [3] (includes pitch)."""
        return view_forward(self.yaw, self.pitch)


def wrap_deg(angle: float) -> float:
    """Wrap degrees into [-180, 180)."""
    return (angle + 180.0) % 360.0 - 180.0


def view_forward(yaw: float, pitch: float) -> np.ndarray:
    """Unit view direction [3] for yaw/pitch in degrees (yaw 0 = -z, yaw 90 = +x, pitch + = up)."""
    y, p = math.radians(yaw), math.radians(pitch)
    return np.array([math.sin(y) * math.cos(p), math.sin(p), -math.cos(y) * math.cos(p)])


def camera_to_world(position: np.ndarray, yaw: float, pitch: float, eye_height: float) -> np.ndarray:
    """OpenCV camera-to-world [4, 4] float64 (x right, y down, z forward) for a player at `position` (feet)."""
    f = view_forward(yaw, pitch)
    y = math.radians(yaw)
    right = np.array([math.cos(y), 0.0, math.sin(y)])
    down = np.cross(f, right)  # z x x = y for a right-handed camera frame
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2] = right, down, f
    m[:3, 3] = position + np.array([0.0, eye_height, 0.0])
    return m


def _overlaps(pmin: np.ndarray, pmax: np.ndarray, bmin: np.ndarray, bmax: np.ndarray) -> np.ndarray:
    """[M] bool: the player box (pmin, pmax [3]) strictly overlaps each box (bmin, bmax [M, 3])."""
    return np.all((pmin < bmax - _EPS) & (pmax > bmin + _EPS), axis=1)


def _move_axis(pos: np.ndarray, axis: int, delta: float, half: np.ndarray, height: float,
               bmin: np.ndarray, bmax: np.ndarray) -> tuple[np.ndarray, bool]:
    """Move `pos` (feet [3]) by `delta` along `axis`, stopping at the first box face. Returns (pos, blocked)."""
    lo = np.array([-half[0], 0.0, -half[2]])
    hi = np.array([half[0], height, half[2]])
    before = _overlaps(pos + lo, pos + hi, bmin, bmax)
    new = pos.copy()
    new[axis] += delta
    hits = _overlaps(new + lo, new + hi, bmin, bmax) & ~before
    if not hits.any():
        return new, False
    if delta > 0:  # stop with the player's max face just short of the nearest box's min face
        new[axis] = max(pos[axis], float(bmin[hits, axis].min()) - hi[axis] - _EPS)
    else:
        new[axis] = min(pos[axis], float(bmax[hits, axis].max()) - lo[axis] + _EPS)
    return new, True


def step_player(state: PlayerState, action: Action, dt: float, config: ArenaConfig,
                box_min: np.ndarray, box_max: np.ndarray) -> PlayerState:
    """Advance the player one tick of `dt` seconds against obstacles box_min/box_max [M, 3].

    Look first (the mouse moved during the tick), then the wish velocity from the held keys in the new
    heading, then gravity, then collision-resolved motion along x, z, y.
    """
    c = config
    yaw = wrap_deg(state.yaw + action.yaw)
    pitch = float(np.clip(state.pitch + action.pitch, -PITCH_LIMIT_DEG, PITCH_LIMIT_DEG))

    y = math.radians(yaw)
    fwd = np.array([math.sin(y), 0.0, -math.cos(y)])
    right = np.array([math.cos(y), 0.0, math.sin(y)])
    wish = fwd * (float(action.forward) - float(action.back)) + right * (float(action.right) - float(action.left))
    norm = float(np.linalg.norm(wish))
    speed = c.sprint_speed if action.sprint else c.walk_speed
    # Diagonals are normalised so strafing forward is not faster than walking.
    wish = wish / norm * speed if norm > 0 else np.zeros(3)

    vel = state.velocity.copy()
    on_ground = state.on_ground
    if on_ground:
        vel[0], vel[2] = wish[0], wish[2]  # ground movement is immediate, as in most FPS games
        if action.jump and c.jump_speed > 0:
            vel[1] = c.jump_speed
            on_ground = False
    else:
        vel[[0, 2]] += (wish[[0, 2]] - vel[[0, 2]]) * c.air_control
    vel[1] -= c.gravity * dt

    half = np.array([c.player_radius, 0.0, c.player_radius])
    pos = state.position.copy()
    collided = False
    disp = vel * dt
    n_sub = max(1, int(math.ceil(float(np.abs(disp).max()) / _MAX_SUBSTEP_M)))
    landed = False
    for _ in range(n_sub):
        for axis in (0, 2):
            pos, hit = _move_axis(pos, axis, disp[axis] / n_sub, half, c.player_height, box_min, box_max)
            if hit:
                collided = True
        pos, hit = _move_axis(pos, 1, disp[1] / n_sub, half, c.player_height, box_min, box_max)
        if pos[1] <= 0.0:  # the floor is the plane y = 0
            pos[1] = 0.0
            hit = True
        if hit:
            if disp[1] < 0:
                landed = True
            vel[1] = 0.0  # landed, or bumped the head
            disp[1] = 0.0
    # Standing on something: velocity was zeroed by the landing; keep the player grounded.
    on_ground = landed
    return replace(state, position=pos, velocity=vel, yaw=yaw, pitch=pitch, on_ground=on_ground,
                   collided=collided)
