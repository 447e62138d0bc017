"""First-person camera poses <-> the ego-motion the model predicts each tick.

A first-person camera has no roll, so a camera-to-world matrix is fully described by the eye position,
yaw and pitch (yaw 0 looks along world -z, positive yaw turns right towards +x; positive pitch looks
up; OpenCV camera axes). The model's ego-motion for a tick is 5 numbers:

    [dx, dy, dz, dyaw, dpitch]

with (dx, dy, dz) the eye's displacement in metres expressed in the *previous* camera's yaw-aligned
frame (x right, y up, z forward, ignoring pitch: walking does not depend on where you look up or
down), and dyaw, dpitch in degrees. Integrating these from a known start pose gives every later pose.
"""

from __future__ import annotations

import numpy as np

EGO_DIM = 5


def wrap_deg(angle: np.ndarray | float) -> np.ndarray:
    """Wrap degrees into [-180, 180)."""
    return (np.asarray(angle, np.float64) + 180.0) % 360.0 - 180.0


def decompose(cam_to_world: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """[..., 4, 4] camera-to-world -> (eye position [..., 3], yaw [...] deg, pitch [...] deg)."""
    forward = cam_to_world[..., :3, 2]
    yaw = np.degrees(np.arctan2(forward[..., 0], -forward[..., 2]))
    pitch = np.degrees(np.arcsin(np.clip(forward[..., 1], -1.0, 1.0)))
    return cam_to_world[..., :3, 3].copy(), yaw, pitch


def compose(position: np.ndarray, yaw: np.ndarray | float, pitch: np.ndarray | float) -> np.ndarray:
    """(eye [..., 3], yaw [...], pitch [...]) -> camera-to-world [..., 4, 4] (OpenCV axes)."""
    position = np.asarray(position, np.float64)
    y, p = np.radians(np.asarray(yaw, np.float64)), np.radians(np.asarray(pitch, np.float64))
    forward = np.stack([np.sin(y) * np.cos(p), np.sin(p), -np.cos(y) * np.cos(p)], -1)
    right = np.stack([np.cos(y), np.zeros_like(y), np.sin(y)], -1)
    down = np.cross(forward, right)
    m = np.zeros(position.shape[:-1] + (4, 4))
    m[..., :3, 0], m[..., :3, 1], m[..., :3, 2], m[..., :3, 3] = right, down, forward, position
    m[..., 3, 3] = 1.0
    return m


def _yaw_axes(yaw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.radians(yaw)
    right = np.stack([np.cos(y), np.zeros_like(y), np.sin(y)], -1)
    forward = np.stack([np.sin(y), np.zeros_like(y), -np.cos(y)], -1)
    return right, forward


def ego_motion(prev: np.ndarray, nxt: np.ndarray) -> np.ndarray:
    """Camera-to-world [..., 4, 4] at two consecutive ticks -> ego-motion [..., 5] (float32)."""
    p0, yaw0, pitch0 = decompose(prev)
    p1, yaw1, pitch1 = decompose(nxt)
    right, forward = _yaw_axes(yaw0)
    d = p1 - p0
    out = np.stack([(d * right).sum(-1), d[..., 1], (d * forward).sum(-1), wrap_deg(yaw1 - yaw0), pitch1 - pitch0], -1)
    return out.astype(np.float32)


def apply_ego_motion(cam_to_world: np.ndarray, motion: np.ndarray, pitch_limit: float = 89.0) -> np.ndarray:
    """Integrate one tick: camera-to-world [..., 4, 4] + ego-motion [..., 5] -> the next camera-to-world."""
    p0, yaw0, pitch0 = decompose(cam_to_world)
    motion = np.asarray(motion, np.float64)
    right, forward = _yaw_axes(yaw0)
    up = np.zeros_like(right)
    up[..., 1] = 1.0
    p1 = p0 + motion[..., 0:1] * right + motion[..., 1:2] * up + motion[..., 2:3] * forward
    yaw1 = wrap_deg(yaw0 + motion[..., 3])
    pitch1 = np.clip(pitch0 + motion[..., 4], -pitch_limit, pitch_limit)
    return compose(p1, yaw1, pitch1)
