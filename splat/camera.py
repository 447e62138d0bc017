"""Pinhole cameras in the project's (and gsplat's) conventions: checks, world<->camera, lifting and projecting.

Camera axes are OpenCV's (x right, y down, z forward). A pose is camera-to-world [4, 4]; gsplat's `viewmats` are
its inverse (world-to-camera). K [3, 3] is in pixels with gsplat's pixel convention: pixel (row r, col c) covers
[c, c+1] x [r, r+1], so its centre is (c + 0.5, r + 0.5) and a point at camera (x, y, z) lands at
u = fx x / z + cx, v = fy y / z + cy in those continuous coordinates.
"""

from __future__ import annotations

import numpy as np


def check_intrinsics(K: np.ndarray, name: str = "K") -> np.ndarray:
    """Validate a pinhole K [3, 3] (finite, fx > 0, fy > 0); returns it as float64. Raises ValueError naming `name`."""
    K = np.asarray(K)
    if K.shape != (3, 3):
        raise ValueError(f"{name} must be a [3, 3] pinhole intrinsics matrix, got shape {K.shape}")
    K = K.astype(np.float64)
    if not np.all(np.isfinite(K)):
        raise ValueError(f"{name} has non-finite entries: {K.tolist()}")
    if K[0, 0] <= 0 or K[1, 1] <= 0:
        raise ValueError(f"{name} is degenerate: focal lengths fx={K[0, 0]}, fy={K[1, 1]} must be > 0 (pixels)")
    return K


def check_pose(cam_to_world: np.ndarray, name: str = "cam_to_world") -> np.ndarray:
    """Validate a rigid camera-to-world [4, 4] (finite, rotation block orthonormal); returns float64."""
    T = np.asarray(cam_to_world)
    if T.shape != (4, 4):
        raise ValueError(f"{name} must be a [4, 4] camera-to-world matrix, got shape {T.shape}")
    T = T.astype(np.float64)
    if not np.all(np.isfinite(T)):
        raise ValueError(f"{name} has non-finite entries")
    R = T[:3, :3]
    # A loose check: poses pass through float32 recordings and integrators, but a scaled or sheared matrix
    # would silently distort every lifted point.
    if not np.allclose(R @ R.T, np.eye(3), atol=1e-3):
        raise ValueError(f"{name}'s rotation block is not orthonormal (R R^T != I); expected a rigid pose")
    return T


def world_to_camera(cam_to_world: np.ndarray) -> np.ndarray:
    """Rigid inverse: camera-to-world [4, 4] -> gsplat viewmat (world-to-camera) [4, 4] float64."""
    T = np.asarray(cam_to_world, np.float64)
    R, t = T[:3, :3], T[:3, 3]
    out = np.eye(4)
    out[:3, :3] = R.T
    out[:3, 3] = -R.T @ t
    return out


def project_points(points: np.ndarray, viewmat: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World points [N, 3] -> (uv [N, 2] continuous pixel coords (x right, y down), z [N] camera depth).

    uv is meaningless where z <= 0; callers mask by z first.
    """
    R = viewmat[:3, :3].astype(np.float32)
    t = viewmat[:3, 3].astype(np.float32)
    p = points @ R.T + t  # [N, 3] in camera axes
    z = p[:, 2]
    safe = np.where(np.abs(z) > 1e-9, z, 1e-9)
    u = K[0, 0] * p[:, 0] / safe + K[0, 2]
    v = K[1, 1] * p[:, 1] / safe + K[1, 2]
    return np.stack([u, v], 1).astype(np.float32), z.astype(np.float32)


def lift_pixels(rows: np.ndarray, cols: np.ndarray, depth: np.ndarray, K: np.ndarray,
                cam_to_world: np.ndarray) -> np.ndarray:
    """Pixels (rows [M], cols [M] ints) with z-depth [M] (metres along the camera axis) -> world points [M, 3].

    The ray goes through the pixel centre (c + 0.5, r + 0.5), gsplat's convention.
    """
    x = (cols + 0.5 - K[0, 2]) / K[0, 0] * depth
    y = (rows + 0.5 - K[1, 2]) / K[1, 1] * depth
    p_cam = np.stack([x, y, depth], 1)  # [M, 3]
    return (p_cam @ cam_to_world[:3, :3].T + cam_to_world[:3, 3]).astype(np.float32)
