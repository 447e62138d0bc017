"""Frames between ticks: the latest frame reprojected to the camera the player's input gives now.

A world ticks at its tick rate (20 Hz), but the window refreshes faster, and a mouse movement should move the picture
on the next refresh, not after the next tick and its compute. VR runtimes have done this for a decade (asynchronous
timewarp / spacewarp): the last frame, drawn with its depth as a surface, seen from the newest head pose. Here, per
displayed frame, `view_pose` gives that pose from the frame's camera and the input gathered since its tick: the look
turned by every degree of mouse and turn-key input not yet in the frame, and the position carried on by the last
tick's step while a move key stays held (dead reckoning, at most `AHEAD_TICKS` ahead: a wall the tick stops at is
then a step of overshoot, taken back by the next tick). The window draws the frame's pixels as a mesh at their depth
from that pose (engine/window.py, `WarpMesh`); a ring of pixels past the frame's edge takes the edge's colour and
depth, so turning shows the edge stretched, never black.

Only what the player sees changes: the world, its ticks, recordings and replays are the same with or without it.
"""

from __future__ import annotations

import math

import numpy as np

from engine.arena.policies import pose_from_cam_to_world
from engine.plane import yaw_pitch_to_cam_to_world
from engine.world import Observation

AHEAD_TICKS = 1.5  # the position is carried on by at most this many ticks' steps
PITCH_LIMIT_DEG = 89.0
FAR_M = 1000.0  # sky, and depth a world does not give (NaN, inf, <= 0), is drawn this far away
NEAR_M = 0.05


def can_warp(obs: Observation) -> bool:
    """Whether a frame can be reprojected: it has depth, a camera pose and intrinsics."""
    return obs.depth is not None and obs.cam_to_world is not None and obs.K is not None


def turned(cam_to_world: np.ndarray, yaw_deg: float, pitch_deg: float) -> np.ndarray:
    """A first-person camera (OpenCV axes, world +y up, no roll) turned by `yaw_deg` (right +) and `pitch_deg`
    (up +), the pitch kept within +-PITCH_LIMIT_DEG, its position unchanged."""
    pos, yaw, pitch = pose_from_cam_to_world(np.asarray(cam_to_world, np.float64))
    pitch = float(np.clip(pitch + pitch_deg, -PITCH_LIMIT_DEG, PITCH_LIMIT_DEG))
    return yaw_pitch_to_cam_to_world(pos, yaw + yaw_deg, pitch)


def view_pose(frame_c2w: np.ndarray, look_deg: tuple[float, float], step_m: np.ndarray | None = None,
              ahead_ticks: float = 0.0) -> np.ndarray:
    """The camera to draw the frame from: the frame's camera `frame_c2w` turned by the look input not yet in it
    (`look_deg` = (yaw, pitch) degrees), moved by `step_m` [3] (the last tick's step, world metres) times
    `ahead_ticks` (clipped to [0, AHEAD_TICKS]; 0 when no move key is held)."""
    view = turned(frame_c2w, *look_deg)
    if step_m is not None and ahead_ticks > 0:
        view[:3, 3] += np.asarray(step_m, np.float64) * min(float(ahead_ticks), AHEAD_TICKS)
    return view


def relative(frame_c2w: np.ndarray, view_c2w: np.ndarray) -> np.ndarray:
    """[4, 4] float32: points in the frame's camera coordinates -> the view camera's."""
    return (np.linalg.inv(np.asarray(view_c2w, np.float64)) @ np.asarray(frame_c2w, np.float64)).astype(np.float32)


def is_identity(rel: np.ndarray, tol: float = 1e-6) -> bool:
    return bool(np.abs(rel - np.eye(4)).max() <= tol)


def clean_depth(depth: np.ndarray) -> np.ndarray:
    """float32 depth with sky and unknowns (NaN, inf, <= 0, beyond FAR_M) at FAR_M."""
    d = np.asarray(depth, np.float32)
    return np.where(np.isfinite(d) & (d > 0), np.minimum(d, FAR_M), FAR_M).astype(np.float32)


def border(width: int, height: int) -> int:
    """Pixels of stretched edge drawn past each side of a frame: half its larger side, so a turn of up to about half
    the field of view between the frame's tick and the view (a slow tick, a fast mouse) shows no black."""
    return max(4, int(math.ceil(max(width, height) / 2)))


MESH_SIDE = 64  # vertices along the mesh's longer side at most (a software GL rasterizes ~8k triangles in ~3 ms)


def mesh_stride(width: int, height: int) -> int:
    """Pixels between two mesh vertices: 1, or more where the frame and its border would pass MESH_SIDE."""
    return max(1, math.ceil((max(width, height) + 2 * border(width, height)) / MESH_SIDE))


def grid(width: int, height: int, stride: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """The mesh: vertices at every `stride`-th pixel centre from `border` pixels before the frame to as many past
    it, [N, 2] float32 (x, y in pixels), and two triangles per cell, [M, 3] int32."""
    e = border(width, height)
    xs = np.arange(-e, width + e, stride, dtype=np.float32) + 0.5
    ys = np.arange(-e, height + e, stride, dtype=np.float32) + 0.5
    gx, gy = np.meshgrid(xs, ys)
    verts = np.stack([gx.ravel(), gy.ravel()], 1).astype(np.float32)
    nx, ny = len(xs), len(ys)
    i = np.arange((ny - 1) * nx).reshape(ny - 1, nx)[:, :-1].ravel()
    tris = np.concatenate([np.stack([i, i + 1, i + nx], 1), np.stack([i + 1, i + nx + 1, i + nx], 1)])
    return verts, tris.astype(np.int32)


def project(points_px: np.ndarray, depth: np.ndarray, K: np.ndarray, rel: np.ndarray) -> np.ndarray:
    """Where pixels `points_px` [N, 2] (x, y) of a frame with `depth` [H, W] (clamped at its edge for points past it)
    land in the view `rel` gives, in that view's pixels [N, 2] (what WarpMesh's vertex shader computes, for tests
    and for the window's own check)."""
    H, W = depth.shape
    d = clean_depth(depth)
    xi = np.clip(np.floor(points_px[:, 0]).astype(int), 0, W - 1)
    yi = np.clip(np.floor(points_px[:, 1]).astype(int), 0, H - 1)
    z = d[yi, xi].astype(np.float64)
    fx, fy, cx, cy = K[0, 0], K[1, 1], K[0, 2], K[1, 2]
    p = np.stack([(points_px[:, 0] - cx) / fx * z, (points_px[:, 1] - cy) / fy * z, z, np.ones_like(z)], 1)
    q = p @ np.asarray(rel, np.float64).T
    return np.stack([fx * q[:, 0] / q[:, 2] + cx, fy * q[:, 1] / q[:, 2] + cy], 1)
