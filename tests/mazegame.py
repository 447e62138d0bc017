"""A small first-person 3D maze, ray cast per pixel in numpy: an example of "your own 3D game" with depth and pose.

    python -m engine.rollout --world tests.mazegame:MazeGame --policy explore --episodes 1 --ticks 100 --out /tmp/m

World: +y up, floor y = 0, ceiling y = 2.5 m. The seed makes an 8x8 grid maze of 2 m cells covering x, z in
[0, 16] (a recursive-backtracker maze with some extra walls knocked out, so it has loops). Walls are thin (zero
thickness) on cell edges; a wall's two faces take the colour of the cell they face, with bricks drawn from the hit
point, so places are recognisable and edges are sharp. Floor: checker tinted by the cell; ceiling: a grid.
Player (as the arena): feet at `position`, eye 1.5 m above; yaw 0 looks along -z, + turns right (towards +x);
pitch + looks up, clamped to ±60°. Look is applied first, then the move in the new heading: 2 m/s walking
(0.1 m/tick at 20 Hz), 4 m/s sprinting, diagonals normalised. The body is a circle of radius 0.25 m pushed out of
walls (so it slides along them). Jump is ignored: there is nothing to jump onto (info "on_ground" is always True).
Camera: K has a 90° horizontal FOV, fx = fy, principal point (W/2, H/2), pixel (r, c) covering [c, c+1] x [r, r+1];
cam_to_world is OpenCV (x right, y down, z forward). Pixel (r, c) looks along d = R @ K^-1 [c + .5, r + .5, 1];
since d has camera z = 1, the ray parameter t of the nearest hit (floor, ceiling, or a wall found by a 2D DDA
over all rays at once) is the z-depth in metres.
"""

from __future__ import annotations

import math

import numpy as np

from engine import Action, Observation, World

N, CELL, WALL_H, EYE, RADIUS, WALK, SPRINT, PITCH_MAX = 8, 2.0, 2.5, 1.5, 0.25, 2.0, 4.0, 60.0


def camera_to_world(position: np.ndarray, yaw: float, pitch: float) -> np.ndarray:
    """OpenCV camera-to-world [4, 4] for feet `position` [3] and yaw/pitch degrees (the arena's convention)."""
    y, p = math.radians(yaw), math.radians(pitch)
    f = np.array([math.sin(y) * math.cos(p), math.sin(p), -math.cos(y) * math.cos(p)])
    right = np.array([math.cos(y), 0.0, math.sin(y)])
    m = np.eye(4)
    m[:3, 0], m[:3, 1], m[:3, 2], m[:3, 3] = right, np.cross(f, right), f, position + [0.0, EYE, 0.0]
    return m


class MazeGame(World):
    name = "maze"
    deterministic = True

    def __init__(self, width: int = 96, height: int = 72, tick_rate: float = 20) -> None:
        self.width, self.height, self.tick_rate = int(width), int(height), float(tick_rate)
        f = self.width / 2.0  # 90° horizontal field of view
        self.K = np.array([[f, 0.0, self.width / 2.0], [0.0, f, self.height / 2.0], [0.0, 0.0, 1.0]])
        v, u = np.mgrid[0:self.height, 0:self.width].astype(np.float64)
        rays = np.stack([(u + 0.5 - self.K[0, 2]) / f, (v + 0.5 - self.K[1, 2]) / f, np.ones_like(u)], -1)
        self.rays = rays.reshape(-1, 3)  # K^-1 [u + .5, v + .5, 1] per pixel, camera z = 1
        self.seed, self.tick, self.position, self.yaw, self.pitch, self.collided = None, 0, np.zeros(3), 0.0, 0.0, False

    @property
    def config(self) -> dict:
        return {"width": self.width, "height": self.height, "tick_rate": self.tick_rate}

    def reset(self, seed: int) -> Observation:
        rng = np.random.default_rng([int(seed) & 0xFFFFFFFF, 0x3A2E])
        # vwall[k, j]: wall on the line x = k*CELL beside cell row j; hwall[i, k]: on z = k*CELL beside column i.
        self.vwall, self.hwall = np.ones((N + 1, N), bool), np.ones((N, N + 1), bool)
        seen, stack = np.zeros((N, N), bool), [(int(rng.integers(N)), int(rng.integers(N)))]
        seen[stack[0]] = True
        while stack:  # recursive backtracker
            i, j = stack[-1]
            nbrs = [(a, b) for a, b in ((1, 0), (-1, 0), (0, 1), (0, -1))
                    if 0 <= i + a < N and 0 <= j + b < N and not seen[i + a, j + b]]
            if not nbrs:
                stack.pop()
                continue
            a, b = nbrs[int(rng.integers(len(nbrs)))]
            if a:
                self.vwall[max(i, i + a), j] = False
            else:
                self.hwall[i, max(j, j + b)] = False
            seen[i + a, j + b] = True
            stack.append((i + a, j + b))
        self.vwall[1:N][rng.random((N - 1, N)) < 0.15] = False  # loops: knock out some inner walls
        self.hwall[:, 1:N][rng.random((N, N - 1)) < 0.15] = False
        self.colours = rng.uniform(50, 235, (N, N, 3))
        k, j = np.nonzero(self.vwall)
        i, l = np.nonzero(self.hwall)
        self.seg_a = np.concatenate([np.stack([k, j], 1), np.stack([i, l], 1)]) * CELL  # wall segments in (x, z)
        self.seg_b = self.seg_a + np.concatenate([np.tile([0.0, CELL], (len(k), 1)), np.tile([CELL, 0.0], (len(i), 1))])
        cx, cz = rng.integers(N, size=2)
        self.seed, self.tick, self.collided = int(seed), 0, False
        self.position, self.yaw, self.pitch = np.array([cx + 0.5, 0, cz + 0.5]) * CELL, float(rng.uniform(-180, 180)), 0.0
        return self._observe()

    def teleport(self, position, yaw: float, pitch: float = 0.0) -> Observation:
        """Test hook: put the feet at `position` [3] looking (yaw, pitch) degrees; same tick."""
        self.position, self.yaw = np.array(position, np.float64), float(yaw)
        self.pitch = float(np.clip(pitch, -PITCH_MAX, PITCH_MAX))
        return self._observe()

    def step(self, action: Action) -> Observation:
        if self.seed is None:
            raise RuntimeError("call reset(seed) before step()")
        self.yaw = (self.yaw + action.yaw + 180.0) % 360.0 - 180.0
        self.pitch = float(np.clip(self.pitch + action.pitch, -PITCH_MAX, PITCH_MAX))
        y = math.radians(self.yaw)
        wish = (np.array([math.sin(y), -math.cos(y)]) * (action.forward - action.back)
                + np.array([math.cos(y), math.sin(y)]) * (action.right - action.left))
        norm = float(np.hypot(*wish))
        move = wish / norm * (SPRINT if action.sprint else WALK) / self.tick_rate if norm > 0 else wish
        n_sub = max(1, math.ceil(float(np.hypot(*move)) / 0.1))  # short sub-steps: no tunnelling
        p, self.collided = self.position[[0, 2]], False
        for _ in range(n_sub):
            p = self._push_out(p + move / n_sub)
        self.position = np.array([p[0], 0.0, p[1]])
        self.tick += 1
        return self._observe()

    def _push_out(self, p: np.ndarray) -> np.ndarray:
        """Move the point `p` (x, z) out of every wall segment closer than RADIUS, nearest first (slides)."""
        ab = self.seg_b - self.seg_a
        for _ in range(4):
            t = np.clip(np.einsum("ij,ij->i", p - self.seg_a, ab) / np.einsum("ij,ij->i", ab, ab), 0.0, 1.0)
            diff = p - (self.seg_a + t[:, None] * ab)
            dist = np.hypot(diff[:, 0], diff[:, 1])
            m = int(np.argmin(dist))
            if dist[m] >= RADIUS:
                break
            p, self.collided = p + diff[m] / max(dist[m], 1e-9) * (RADIUS + 1e-6 - dist[m]), True
        return p

    def _observe(self) -> Observation:
        c2w = camera_to_world(self.position, self.yaw, self.pitch)
        rgb, depth = self.render(c2w)
        info = {"position": [round(float(v), 6) for v in self.position], "yaw": round(self.yaw, 6),
                "pitch": round(self.pitch, 6),
                "cell": [int(self.position[0] // CELL), int(self.position[2] // CELL)], "on_ground": True,
                "collided": self.collided, "level_seed": self.seed}
        return Observation(rgb=rgb, depth=depth, cam_to_world=c2w, K=self.K.copy(), tick=self.tick, info=info)

    def render(self, c2w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(rgb [H, W, 3] uint8, z-depth [H, W] float32) seen by the OpenCV camera `c2w`."""
        o, d = c2w[:3, 3], self.rays @ c2w[:3, :3].T
        with np.errstate(divide="ignore"):
            t_plane = np.where(d[:, 1] < 0, -o[1] / d[:, 1], (WALL_H - o[1]) / d[:, 1])  # floor or ceiling
        t_wall, axis, cell = np.full(len(d), np.inf), np.zeros(len(d), np.int8), np.zeros((len(d), 2), np.int64)
        dx, dz = (np.where(np.abs(d[:, a]) < 1e-12, 1e-12, d[:, a]) for a in (0, 2))
        sx, sz = np.where(dx > 0, 1, -1), np.where(dz > 0, 1, -1)
        ix, iz = np.full(len(d), int(o[0] // CELL)), np.full(len(d), int(o[2] // CELL))
        tx, tz = ((ix + (sx > 0)) * CELL - o[0]) / dx, ((iz + (sz > 0)) * CELL - o[2]) / dz
        tdx, tdz, idx, tp = CELL / np.abs(dx), CELL / np.abs(dz), np.arange(len(d)), t_plane
        while len(idx):  # 2D DDA over the cell grid, all live rays at once; the closed boundary stops every ray
            use_x = tx < tz
            t = np.where(use_x, tx, tz)
            wall = np.where(use_x, self.vwall[ix + (sx > 0), iz], self.hwall[ix, iz + (sz > 0)]) & (t < tp)
            t_wall[idx[wall]], axis[idx[wall]], cell[idx[wall]] = t[wall], ~use_x[wall], np.stack([ix, iz], 1)[wall]
            ix, iz = ix + np.where(use_x, sx, 0), iz + np.where(use_x, 0, sz)
            tx, tz = tx + np.where(use_x, tdx, 0), tz + np.where(use_x, 0, tdz)
            keep = ~wall & (t < tp)
            ix, iz, tx, tz, sx, sz, tdx, tdz, idx, tp = (a[keep] for a in (ix, iz, tx, tz, sx, sz, tdx, tdz, idx, tp))
        hit_wall = t_wall < t_plane
        t = np.where(hit_wall, t_wall, t_plane)
        p = o + t[:, None] * d
        here = np.clip((p[:, [0, 2]] // CELL).astype(np.int64), 0, N - 1)
        cell = np.where(hit_wall[:, None], cell, here)
        base = self.colours[cell[:, 0], cell[:, 1]]
        # walls: bricks 0.5 x 0.25 m in running bond, dark mortar, faces along z a little darker
        s = np.where(axis == 0, p[:, 2], p[:, 0])
        row = np.floor(p[:, 1] / 0.25)
        s2 = s / 0.5 + 0.5 * (row % 2)
        mortar = (p[:, 1] / 0.25 - row < 0.12) | (s2 - np.floor(s2) < 0.06)
        brick = (row.astype(np.int64) * 7 + np.floor(s2).astype(np.int64) * 13) % 5  # per-brick brightness
        shade = (0.8 + 0.05 * brick) * np.where(axis == 0, 1.0, 0.8)
        wall_rgb = np.where(mortar[:, None], 0.35 * base, base * shade[:, None])
        checker = (np.floor(p[:, 0] / 0.5) + np.floor(p[:, 2] / 0.5)) % 2
        floor_rgb = 0.35 * base + (40 + 60 * checker)[:, None]
        grid = (np.abs(p[:, [0, 2]] - np.round(p[:, [0, 2]])) < 0.03).any(1)
        ceil_rgb = np.where(grid[:, None], 90.0, np.array([200.0, 200.0, 185.0]))
        rgb = np.where(hit_wall[:, None], wall_rgb, np.where((d[:, 1] < 0)[:, None], floor_rgb, ceil_rgb))
        h, w = self.height, self.width
        return np.clip(rgb, 0, 255).astype(np.uint8).reshape(h, w, 3), t.astype(np.float32).reshape(h, w)
