"""A tiny synthetic world with real depth and pose and no GL: a checkered plane under a sky.

It exists so the engine (loop, recording, replay, window) can be tested and benchmarked without the
arena, and as the smallest example of a user's own `World`. The image is ray-cast in numpy: each
pixel's ray meets the ground plane y = 0 (depth along the camera's z axis) or the sky.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from engine.action import Action
from engine.world import Observation, World

SKY_DEPTH = 100.0  # metres reported for sky pixels (rays that never meet the ground)


def yaw_pitch_to_cam_to_world(position: np.ndarray, yaw_deg: float, pitch_deg: float) -> np.ndarray:
    """[4, 4] OpenCV camera-to-world for a first-person view.

    Yaw 0 looks along world -z, positive yaw turns right (towards +x); positive pitch looks up.
    Columns of the rotation are the camera's x (right), y (down) and z (forward) axes in world space.
    """
    yaw, pitch = math.radians(yaw_deg), math.radians(pitch_deg)
    forward = np.array([math.sin(yaw) * math.cos(pitch), math.sin(pitch), -math.cos(yaw) * math.cos(pitch)])
    right = np.array([math.cos(yaw), 0.0, math.sin(yaw)])
    down = np.cross(forward, right)  # z × x = y for a right-handed camera frame
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, down, forward, position
    return m


def intrinsics(width: int, height: int, fov_deg: float) -> np.ndarray:
    """[3, 3] pinhole K with horizontal field of view `fov_deg`, principal point at the centre."""
    f = 0.5 * width / math.tan(math.radians(fov_deg) / 2)
    return np.array([[f, 0, width / 2], [0, f, height / 2], [0, 0, 1]], np.float64)


class PlaneWorld(World):
    """A flat, endless checkerboard. Deterministic; the seed picks the board's colours."""

    name = "plane"
    deterministic = True

    def __init__(self, width: int = 64, height: int = 64, fov_deg: float = 90.0, tick_rate: float = 20.0,
                 speed: float = 3.0, eye_height: float = 1.6) -> None:
        if width < 2 or height < 2:
            raise ValueError(f"PlaneWorld width/height must be >= 2, got {width}x{height}")
        if not 1.0 <= fov_deg <= 170.0:
            raise ValueError(f"PlaneWorld fov_deg must be in [1, 170], got {fov_deg}")
        for key, value in (("tick_rate", tick_rate), ("speed", speed), ("eye_height", eye_height)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (math.isfinite(value) and value > 0):
                raise ValueError(f"PlaneWorld {key} must be a finite number > 0, got {value!r}")
        self._config = dict(width=width, height=height, fov_deg=fov_deg, tick_rate=tick_rate, speed=speed,
                            eye_height=eye_height)
        self.width, self.height, self.dt, self.speed = width, height, 1.0 / tick_rate, speed
        self.K = intrinsics(width, height, fov_deg)
        # Camera-space ray directions [H, W, 3] through pixel centres, z = 1.
        u, v = np.meshgrid(np.arange(width) + 0.5, np.arange(height) + 0.5)
        self._rays = np.stack([(u - self.K[0, 2]) / self.K[0, 0], (v - self.K[1, 2]) / self.K[1, 1], np.ones_like(u)], -1)
        self.eye_height = eye_height
        self.pos = np.zeros(3)
        self.yaw = self.pitch = 0.0
        self.tick = 0
        self.colors = np.zeros((2, 3))

    @property
    def config(self) -> dict[str, Any]:
        return dict(self._config)

    def reset(self, seed: int) -> Observation:
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"PlaneWorld: the seed must be a non-negative integer, got {seed!r}")
        rng = np.random.default_rng(seed)
        self.colors = rng.uniform(40, 230, size=(2, 3))
        self.pos = np.array([0.0, self.eye_height, 0.0])
        self.yaw = float(rng.uniform(-180, 180))
        self.pitch = 0.0
        self.tick = 0
        return self._observe()

    def step(self, action: Action) -> Observation:
        self.yaw = (self.yaw + action.yaw + 180.0) % 360.0 - 180.0
        self.pitch = float(np.clip(self.pitch + action.pitch, -80.0, 80.0))
        move = np.array([float(action.right) - float(action.left), float(action.forward) - float(action.back)])
        if np.any(move):
            move /= np.linalg.norm(move)
        speed = self.speed * (2.0 if action.sprint else 1.0) * self.dt
        yaw = math.radians(self.yaw)
        fwd, right = np.array([math.sin(yaw), 0, -math.cos(yaw)]), np.array([math.cos(yaw), 0, math.sin(yaw)])
        self.pos = self.pos + speed * (move[1] * fwd + move[0] * right)
        self.tick += 1
        return self._observe()

    def _observe(self) -> Observation:
        c2w = yaw_pitch_to_cam_to_world(self.pos, self.yaw, self.pitch)
        dirs = self._rays @ c2w[:3, :3].T  # [H, W, 3] world-space, camera z component = 1
        dy = dirs[..., 1]
        hits = dy < -1e-6
        t = np.where(hits, -self.pos[1] / np.where(hits, dy, -1.0), SKY_DEPTH)  # t is z-depth since ray z = 1
        t = np.minimum(t, SKY_DEPTH)
        hits &= t < SKY_DEPTH
        px = self.pos[0] + t * dirs[..., 0]
        pz = self.pos[2] + t * dirs[..., 2]
        checker = ((np.floor(px) + np.floor(pz)) % 2).astype(np.int64)
        ground = self.colors[checker] * (0.55 + 0.45 * np.exp(-t / 30.0))[..., None]  # fog darkens distance
        sky = np.array([120.0, 170.0, 235.0]) + (np.clip(-dirs[..., 1:2], -1, 1) * 40)
        rgb = np.where(hits[..., None], ground, sky)
        return Observation(
            rgb=np.clip(rgb, 0, 255).astype(np.uint8),
            depth=np.where(hits, t, SKY_DEPTH).astype(np.float32),
            cam_to_world=c2w,
            K=self.K.copy(),
            tick=self.tick,
            info={"position": [round(float(x), 6) for x in self.pos], "yaw": round(self.yaw, 6), "pitch": self.pitch},
        )
