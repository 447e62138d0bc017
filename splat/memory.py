"""The scene memory: Gaussians lifted from dreamed RGB-D frames, rendered at the next camera (GEN3C's 3D cache).

Per tick the dream calls `render(next_pose)` (the conditioning image) and then `insert(frame, depth, pose)`.

insert (SplaTAM-style densification from RGB-D with a known pose, plus a 4D twist):
1. Render the memory at the frame's camera (reused from `render` when the dream just rendered that pose).
2. Confirm / contradict what the memory holds, by projecting every Gaussian's mean into the frame:
   - the observed depth at its pixel agrees (within a margin): confirmed_tick = tick, and its colour takes one
     damped step along the residual observed - rendered (so colours track the observations, and neighbouring
     Gaussians' overlapping tails are compensated instead of blurring); at most `max_per_cell` confirmed
     Gaussians per subsample cell are kept (newest first), so passing a place again does not pile up layers;
   - the observed surface is farther than the Gaussian (free space where the memory had something: an object
     moved, a door opened; sky, i.e. finite depth beyond max_depth, counts as infinitely far): its opacity
     fades by `fade`, and it is removed below `min_opacity`. The test uses the 3x3-minimum of the observed
     depth, so a Gaussian at a silhouette whose centre lands on a background pixel is not wrongly faded.
3. Add one Gaussian per sub-sampled pixel where the memory does not already explain it (SplaTAM's rule):
   rendered alpha < `add_alpha`, or the observed depth is in front of the rendered depth by more than the margin.
   When many are added at once (a reset, a big reveal), their colours get `fit_iters` full residual steps
   against a render of the frame's own view.
4. Dynamic content (`dynamic_mask`) becomes dynamic Gaussians that expire `dynamic_lifetime` ticks after they were
   last confirmed: a moving object leaves no trail, a still one is re-confirmed and lives on.
5. Hard budget: when full, evict in this order: low opacity, dreamed before real (with trust on), oldest
   confirmation, most redundant (crowded voxel).
6. Trust: a frame comes with its `source_age`, the ticks since its content was last anchored in a real
   observation (0: a real frame; the dream's k-th frame after its real first view: k). Its trust is
   0.5 ** (source_age / trust_half_life) (trust_half_life 0: everything trusted alike), and each Gaussian keeps
   the trust of the frame that made it. A less trusted frame neither recolours nor fades a more trusted Gaussian
   (a dream's blurred or wrongly deep view of a place a real view showed leaves it as it was seen; the
   out-and-back returns on validation lost a near pillar to repeated trust-weighted fading), and within a cell
   the most trusted Gaussians survive
   deduplication: a dream's frames blur and drift with their horizon (the open-loop PSNR falls from ~23 dB one
   tick out to ~14 dB at 32), so what the memory learnt from the early, sharp ones is not overwritten by later,
   worse views of the same place (the confidence idea of GEN3C's cache, here per source frame).

render skips Gaussians hidden behind nearer ones with a coarse z-buffer of the means (see `_visible`): back-to-front
blending cannot stop early, so hidden Gaussians would otherwise cost as much as visible ones.

Gaussians are isotropic spheres with sigma = `scale_factor` * subsample * depth / focal, i.e. a fraction of the
sample spacing projected to the surface at the frame's own resolution (SplaTAM uses the same depth / focal rule).
Spheres need no normal, which predicted depth gives only noisily, and keep their footprint from any viewing angle,
so a moved camera sees few cracks; at sigma = half the spacing (the default) neighbours overlap enough to give
alpha ~1 on surfaces.

Defaults (bench/bench_splat.py, 2-core CPU): subsample 2 / scale 0.5 costs ~5 ms per tick (render + insert) and
holds a 1,000-tick explore episode in ~5k Gaussians; subsample 1 / scale 0.3 is ~2.5-3 dB closer to the next
frame and reaches ~29 dB at the inserted pose, but costs ~9 ms per tick and fills a 20k budget in ~150 ticks.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Protocol

import numpy as np

from splat.camera import check_intrinsics, check_pose, lift_pixels, project_points, world_to_camera
from splat.gaussians import Gaussians, largest_scale
from splat.render import RenderResult, rasterize


@dataclass
class MemoryConfig:
    """Scene memory settings (hyperparameters only; the running state lives in SceneMemory)."""

    width: int = 64  # render size (pixels)
    height: int = 64
    budget: int = 20000  # hard cap on the number of Gaussians
    subsample: int = 2  # one candidate Gaussian per subsample x subsample block of an inserted frame
    dynamic_lifetime: int = 20  # ticks a dynamic Gaussian survives after its last confirmation
    max_depth: float = 40.0  # farther (and the sky) is not inserted, but still counts as free space ...
    dreamed_max_depth: float = 0.0  # > 0: the same limit for dreamed frames (source_age > 0) alone (see insert)
    sky_depth: float = 0.0  # ... unless this is > 0: then it is a far layer at this depth (no parallax on a walk)
    opacity: float = 0.9  # initial opacity of new Gaussians
    scale_factor: float = 0.5  # sigma = scale_factor * subsample * depth / focal (x the sample spacing)
    add_alpha: float = 0.5  # SplaTAM: add where the rendered silhouette is below this
    depth_margin_abs: float = 0.05  # metres: depths agree within abs + rel * depth
    depth_margin_rel: float = 0.1
    color_blend: float = 0.5  # damped photometric step for confirmed Gaussians (fraction of the residual)
    max_per_cell: int = 2  # confirmed Gaussians kept per subsample x subsample cell of a view (see _dedup)
    fit_iters: int = 1  # full photometric steps for new Gaussians when many are added at once
    fit_min_fraction: float = 0.1  # ... "many": at least this fraction of the frame's candidate pixels
    fade: float = 0.5  # opacity factor for Gaussians observed to be in free space
    min_opacity: float = 0.05  # removed below this
    low_opacity: float = 0.25  # evicted first when the budget is full
    prune_to: float = 0.9  # when full, evict down to this fraction of the budget (amortises the sort)
    near_plane: float = 0.05
    far_plane: float = 100.0
    occlusion_cull: bool = True  # skip Gaussians hidden behind nearer ones (see SceneMemory._visible)
    unpremultiply: bool = True  # render rgb as colour / alpha (full colour where covered, black where empty)
    backend: str = "auto"  # rasterize backend: "auto", "cpu" or "gsplat"
    trust_half_life: float = 0.0  # ticks of source_age that halve a frame's trust (0: no trust weighting)
    carve_dreamed: bool = False  # a dreamed view fades the dreamed Gaussians its depth shows to be free space,
    # whatever their trust (the geometry follows what is shown; colours still only from views trusted as much)

    def __post_init__(self) -> None:
        if self.width < 1 or self.height < 1:
            raise ValueError(f"memory size must be >= 1x1 (got width={self.width}, height={self.height})")
        if self.budget < 1:
            raise ValueError(f"budget must be >= 1 (got {self.budget})")
        if self.subsample < 1:
            raise ValueError(f"subsample must be >= 1 (got {self.subsample})")
        if not 0 < self.prune_to <= 1:
            raise ValueError(f"prune_to must be in (0, 1] (got {self.prune_to})")
        if not self.trust_half_life >= 0:
            raise ValueError(f"trust_half_life must be >= 0 ticks (got {self.trust_half_life}); 0 turns trust off")
        if self.sky_depth and not self.max_depth < self.sky_depth < self.far_plane:
            raise ValueError(f"sky_depth ({self.sky_depth}) must lie between max_depth ({self.max_depth}) and far_plane "
                             f"({self.far_plane}), or be 0 (no far layer)")
        if not self.dreamed_max_depth >= 0:
            raise ValueError(f"dreamed_max_depth must be >= 0 metres (got {self.dreamed_max_depth}); 0 uses max_depth")
        if self.far_plane <= self.max_depth:
            raise ValueError(f"far_plane ({self.far_plane}) must exceed max_depth ({self.max_depth})")


@dataclass
class MemoryRender:
    """What the memory shows from a camera, at the memory's (height, width).

    rgb:   [H, W, 3] uint8 (black where empty; colour / alpha where covered when `unpremultiply`)
    depth: [H, W] float32 expected depth in metres, 0 where empty
    alpha: [H, W] float32 coverage in [0, 1]
    trust: [H, W] float32 the expected trust of what is drawn (item 6 of the module docstring: 1 from real views,
           less the further a dreamed view was from one), 0 where empty; None: a memory of real views alone
    """

    rgb: np.ndarray
    depth: np.ndarray
    alpha: np.ndarray
    trust: np.ndarray | None = None


class SceneMemoryLike(Protocol):
    """What a dream needs of a scene memory (worldmodel.tick): SceneMemory implements it, and so does the
    evaluation's ground-truth memory (worldmodel.evaluation.baselines.GroundTruthMemory)."""

    def insert(self, rgb: np.ndarray, depth: np.ndarray, cam_to_world: np.ndarray, K: np.ndarray, tick: int,
               dynamic_mask: np.ndarray | None = None, source_age: int = 0) -> None: ...

    def render(self, cam_to_world: np.ndarray, K: np.ndarray, tick: int) -> MemoryRender: ...

    def obstacles(self, focal: float) -> tuple[np.ndarray, np.ndarray]:
        """(points that block the camera [N, 3], points that block until they have held it a while [M, 3])."""
        ...

    def reset(self) -> None: ...

    def save_ply(self, path: str | Path) -> int: ...

    def __len__(self) -> int: ...


@dataclass
class InsertStats:
    """What the last insert did (for logs and tests)."""

    added: int = 0
    confirmed: int = 0
    faded: int = 0
    deduped: int = 0
    removed_free_space: int = 0
    expired: int = 0
    evicted: int = 0


# A dreamed view's depth is trusted for collisions only when it was lifted from nearer than this (metres): the dream's
# depth of far surfaces is off by up to ~0.8 m in height (validation walls); a real view's depth is trusted at any range.
DREAMED_OBSTACLE_RANGE_M = 2.0


class SceneMemory:
    """A budgeted, tick-stamped Gaussian-splat memory of what was dreamed (see the module docstring).

    `SceneMemory(width=64, height=64, budget=20000, ...)` takes MemoryConfig's fields as keywords, or `config=`.
    Implements SceneMemoryLike: insert / render / obstacles / reset / save_ply.
    """

    def __init__(self, config: MemoryConfig | None = None, **overrides: object) -> None:
        if config is not None and overrides:
            raise ValueError("give either config= or keyword settings, not both")
        known = {f.name for f in fields(MemoryConfig)}
        unknown = sorted(set(overrides) - known)
        if unknown:
            raise ValueError(f"unknown SceneMemory setting(s) {unknown}; known: {sorted(known)}")
        self.config = config or MemoryConfig(**overrides)  # type: ignore[arg-type]
        self.gaussians = Gaussians.empty(self.config.budget)
        self.last_render_ms = 0.0
        self.last_insert_ms = 0.0
        self.last_insert = InsertStats()
        self.last_drawn = 0  # Gaussians submitted to the rasterizer by the last render
        self._version = 0  # bumped on every change, so a cached render knows it is stale
        self._cache: tuple[bytes, int, RenderResult] | None = None
        self._projection: tuple[bytes, int, tuple[np.ndarray, np.ndarray]] | None = None  # see _project

    def __len__(self) -> int:
        return len(self.gaussians)

    def reset(self) -> None:
        """Forget everything (a new episode)."""
        self.gaussians.clear()
        self._version += 1
        self._cache = None

    def obstacles(self, focal: float) -> tuple[np.ndarray, np.ndarray]:
        """The Gaussian centres that block a player (worldmodel.motion): (from real views (trust 1) [N, 3], dreamed
        ones lifted from within DREAMED_OBSTACLE_RANGE_M [M, 3]: a Gaussian's sigma says from how far it was lifted,
        sigma = scale_factor * subsample * depth / focal). `focal`: the focal length in pixels of the frames inserted."""
        g, cfg = self.gaussians, self.config
        lifted_from = g.live("scales")[:, 0] * focal / (cfg.scale_factor * cfg.subsample)
        real = g.live("trust") >= 1.0
        means = g.live("means")
        return means[real], means[~real & (lifted_from < DREAMED_OBSTACLE_RANGE_M)]

    def save_ply(self, path: str | Path) -> int:
        """Write the live Gaussians as a 3DGS .ply (whole or not at all); returns how many."""
        from splat.ply import write_ply

        return write_ply(path, self.gaussians)

    # -- render -------------------------------------------------------------------------------------------------

    def _raw_render(self, cam_to_world: np.ndarray, K: np.ndarray, width: int, height: int) -> RenderResult:
        """Premultiplied render at one camera (cached per pose, K, size and memory version)."""
        key = cam_to_world.tobytes() + K.tobytes() + bytes(f"{width}x{height}", "ascii")
        if self._cache is not None and self._cache[0] == key and self._cache[1] == self._version:
            return self._cache[2]
        g, cfg = self.gaussians, self.config
        viewmat = world_to_camera(cam_to_world)
        sel = self._visible(viewmat, K, width, height) if len(g) else np.zeros(0, np.int64)
        self.last_drawn = int(sel.size)
        if sel.size == 0:
            zero = np.zeros((1, height, width), np.float32)
            res = RenderResult(np.zeros((1, height, width, 3), np.float32), zero, zero.copy(), zero.copy())
        else:
            res = rasterize(g.means[sel], g.quats[sel], g.scales[sel], g.opacities[sel], g.colors[sel],
                            viewmat[None], K[None], width, height,
                            near_plane=cfg.near_plane, far_plane=cfg.far_plane, backend=cfg.backend,
                            extras=g.trust[sel])
        self._cache = (key, self._version, res)
        return res

    def _project(self, viewmat: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Every Gaussian's mean in a camera: (uv [N, 2], z [N]) as splat.camera.project_points gives them, cached per
        viewmat, K and memory version (a dream inserts its frame at the camera it has just rendered)."""
        key = viewmat.tobytes() + K.tobytes() + len(self.gaussians).to_bytes(8, "little")  # the count: in case
        if self._projection is not None and self._projection[:2] == (key, self._version):  # of a direct edit
            return self._projection[2]
        uv, z = project_points(self.gaussians.live("means"), viewmat, K)
        self._projection = (key, self._version, (uv, z))
        return uv, z

    def _visible(self, viewmat: np.ndarray, K: np.ndarray, width: int, height: int) -> np.ndarray:
        """Indices of the Gaussians worth drawing from this camera [M] int64 (in memory order).

        Back-to-front blending cannot stop early, so every Gaussian in the frustum costs a point and its
        fragments even when a wall hides it; with a budget of tens of thousands spread over a level, most of
        those in the frustum are hidden. A coarse z-buffer of the means skips them: per 4x4-pixel cell, the
        nearest opaque (opacity >= 0.5) mean; a Gaussian whose mean lies behind the farthest of those nearest
        depths in its 3x3 cells (by more than the depth margin, doubled) is hidden. Means outside the image are
        kept (their tails may reach in); the rasterizer's frustum cull handles them.
        """
        g, cfg = self.gaussians, self.config
        uv, z = self._project(viewmat, K)
        front_ok = (z > cfg.near_plane) & (z < cfg.far_plane)
        # frustum: a conservative screen radius (3.33 sigma, sigma bounded by the Jacobian's row norm)
        zs = np.where(front_ok, z, 1.0)
        lim = 1.3 * max(K[0, 2], width - K[0, 2]) / K[0, 0] + 1.3 * max(K[1, 2], height - K[1, 2]) / K[1, 1]
        sig = largest_scale(g.live("scales")) * max(K[0, 0], K[1, 1]) / zs * np.sqrt(1.0 + lim * lim)
        rad = 3.33 * np.sqrt(sig * sig + 0.3) + 1.0
        u, v = uv[:, 0], uv[:, 1]
        front_ok &= (u + rad > 0) & (u - rad < width) & (v + rad > 0) & (v - rad < height)
        col = np.floor(u).astype(np.int64)
        row = np.floor(v).astype(np.int64)
        inimg = front_ok & (col >= 0) & (col < width) & (row >= 0) & (row < height)
        if not cfg.occlusion_cull or not inimg.any():
            return np.flatnonzero(front_ok)
        cs = 4
        gw, gh = (width + cs - 1) // cs, (height + cs - 1) // cs
        cell = np.where(inimg, (row // cs) * gw + col // cs, 0)
        opaque = inimg & (g.live("opacities") >= 0.5)
        front = np.full(gh * gw, np.inf, np.float32)
        np.minimum.at(front, cell[opaque], z[opaque])
        farthest = _filter3x3(front.reshape(gh, gw), np.maximum).ravel()
        limit = farthest[cell] * (1 + 2 * cfg.depth_margin_rel) + 2 * cfg.depth_margin_abs
        hidden = inimg & (z > limit)
        return np.flatnonzero(front_ok & ~hidden)

    def render(self, cam_to_world: np.ndarray, K: np.ndarray, tick: int) -> MemoryRender:
        """The memory seen from camera-to-world [4, 4] with intrinsics K [3, 3] at (height, width).

        `tick` is the time of the view: dynamic Gaussians already past their lifetime at that tick are left out.
        """
        t0 = time.perf_counter()
        c2w = check_pose(cam_to_world)
        K = check_intrinsics(K)
        cfg = self.config
        self._expire(tick)  # dynamic Gaussians too old for this tick are gone
        res = self._raw_render(c2w, K, cfg.width, cfg.height)
        alpha = res.alpha[0]
        rgb = res.rgb[0]
        if cfg.unpremultiply:
            covered = alpha >= 1.0 / 255.0
            rgb = np.where(covered[..., None], rgb / np.maximum(alpha, 1e-6)[..., None], 0.0)
        out = MemoryRender(rgb=(np.clip(rgb, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8),
                           depth=res.depth[0].astype(np.float32), alpha=alpha.astype(np.float32),
                           trust=np.clip(res.extra[0], 0.0, 1.0).astype(np.float32))
        self.last_render_ms = (time.perf_counter() - t0) * 1e3
        return out

    # -- insert -------------------------------------------------------------------------------------------------

    def _check_frame(self, rgb: np.ndarray, depth: np.ndarray, cam_to_world: np.ndarray, K: np.ndarray,
                     dynamic_mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray,
                                                             np.ndarray | None]:
        """Validate an inserted frame before anything changes; raise ValueError naming the bad argument."""
        rgb = np.asarray(rgb)
        if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
            raise ValueError(f"rgb must be [H, W, 3] uint8, got shape {rgb.shape} dtype {rgb.dtype}")
        h, w = rgb.shape[:2]
        depth = np.asarray(depth)
        if depth.shape != (h, w):
            raise ValueError(f"depth must be [H, W] = {(h, w)} like rgb, got shape {depth.shape}")
        if not np.issubdtype(depth.dtype, np.floating):
            raise ValueError(f"depth must be float metres, got dtype {depth.dtype}")
        depth = depth.astype(np.float32, copy=False)
        with np.errstate(invalid="ignore"):
            if not np.any(np.isfinite(depth) & (depth > 0)):
                raise ValueError("depth has no valid pixel (all NaN, inf or <= 0); nothing can be inserted. "
                                 "Pass metres along the camera z axis.")
        c2w = check_pose(cam_to_world)
        K = check_intrinsics(K)
        if dynamic_mask is not None:
            dynamic_mask = np.asarray(dynamic_mask)
            if dynamic_mask.shape != (h, w):
                raise ValueError(f"dynamic_mask must be [H, W] = {(h, w)} like rgb, got shape {dynamic_mask.shape}")
            dynamic_mask = dynamic_mask.astype(bool, copy=False)
        return rgb, depth, c2w, K, dynamic_mask

    def _margin(self, d: np.ndarray) -> np.ndarray:
        return self.config.depth_margin_abs + self.config.depth_margin_rel * d

    def trust(self, source_age: int) -> float:
        """The trust (0, 1] of a frame whose content is `source_age` ticks from a real observation (item 6)."""
        if not (np.isfinite(source_age) and source_age >= 0):
            raise ValueError(f"source_age must be a finite number of ticks >= 0 (got {source_age})")
        h = self.config.trust_half_life
        return 1.0 if h == 0 else max(float(0.5 ** (source_age / h)), 1e-6)

    def insert(self, rgb: np.ndarray, depth: np.ndarray, cam_to_world: np.ndarray, K: np.ndarray, tick: int,
               dynamic_mask: np.ndarray | None = None, source_age: int = 0) -> None:
        """Fold one frame into the memory.

        rgb [H, W, 3] uint8; depth [H, W] float32 metres along the camera z axis (NaN / inf / <= 0 ignored; finite
        beyond max_depth is sky: not inserted, but free space in front of it); cam_to_world [4, 4]; K [3, 3] for
        this frame's size; dynamic_mask [H, W] bool or None; source_age: ticks since the frame's content was last
        anchored in a real observation (0: real; see the module docstring, item 6). With `dreamed_max_depth` > 0, a
        dreamed frame's depth is trusted only up to it (when lower than max_depth): farther is sky, i.e. free space,
        like a real frame's beyond max_depth. A depth decoder tops out at its own range (the shipped one at 50 m,
        where the truth's sky is 150 m), so without this a dream lifts its sky as a curtain at that range, which is
        seen from elsewhere in front of the scene. Raises ValueError (memory unchanged) on wrong shapes, a
        degenerate K or pose, a depth map with no valid pixel, or a bad source_age.
        """
        t0 = time.perf_counter()
        rgb, depth, c2w, K, dynamic_mask = self._check_frame(rgb, depth, cam_to_world, K, dynamic_mask)
        trust = self.trust(source_age)
        cfg = self.config
        max_depth = cfg.max_depth
        if source_age > 0 and cfg.dreamed_max_depth > 0:
            max_depth = min(max_depth, cfg.dreamed_max_depth)
        h, w = depth.shape
        stats = InsertStats()
        with np.errstate(invalid="ignore"):
            known = np.isfinite(depth) & (depth > 0)  # NaN / inf / <= 0: no information at that pixel
        # Free-space depth: sky and beyond-max_depth count as infinitely far; unknown pixels never contradict.
        sky = np.inf if cfg.sky_depth <= 0 else cfg.sky_depth  # with a far layer the sky is there, not at infinity
        far = np.where(known, np.where(depth > max_depth, sky, depth), np.nan).astype(np.float32)
        rendered = self._raw_render(c2w, K, w, h)  # usually the dream's render of this very pose, cached

        # 2. confirm / contradict (before adding, so new Gaussians are not judged against their own frame)
        g = self.gaussians
        n = len(g)
        if n:
            uv, z = self._project(world_to_camera(c2w), K)  # usually the render's own projection, cached
            col = np.floor(uv[:, 0]).astype(np.int64)
            row = np.floor(uv[:, 1]).astype(np.int64)
            inview = np.flatnonzero((z > cfg.near_plane) & (col >= 0) & (col < w) & (row >= 0) & (row < h))
            if inview.size:
                r, c, zi = row[inview], col[inview], z[inview]
                d_obs = far[r, c]
                # the nearest known surface around the pixel: robust at silhouettes (see the module docstring)
                d_min = _filter3x3(np.where(np.isnan(far), np.inf, far), np.minimum)[r, c]
                with np.errstate(invalid="ignore"):
                    agree = np.isfinite(d_obs) & (np.abs(zi - d_obs) <= self._margin(d_obs))
                    free = ~np.isnan(d_obs) & (zi < d_min - self._margin(np.where(np.isfinite(d_min), d_min, 0.0)))
                conf = inview[agree]
                g.confirmed_tick[conf] = tick
                # One damped photometric step (the cheap cousin of SplaTAM's / 3DGS's colour optimisation): move
                # each confirmed colour by the residual observed - rendered at its pixel. Easing toward the raw
                # observation instead would converge to a blurred copy, since neighbours' tails overlap.
                rc, cc_ = r[agree], c[agree]
                obs_col = rgb[rc, cc_].astype(np.float32) / 255.0
                a_px = np.maximum(rendered.alpha[0, rc, cc_], 1e-6)[:, None]
                resid = obs_col - rendered.rgb[0, rc, cc_] / a_px
                faded = inview[free & ~agree]
                step, fade = cfg.color_blend, cfg.fade
                if trust < 1.0:  # a less trusted view neither recolours nor fades a more trusted Gaussian
                    step = cfg.color_blend * (trust >= g.trust[conf])[:, None]
                    carves = trust >= g.trust[faded]
                    if cfg.carve_dreamed:  # ... unless both are dreams: then the newer one's free space wins
                        carves |= g.trust[faded] < 1.0
                    fade = np.where(carves, cfg.fade, 1.0)
                g.colors[conf] = np.clip(g.colors[conf] + step * resid, 0.0, 1.0)
                stats.deduped = self._dedup(conf, r[agree], c[agree], w, trust)
                g.opacities[faded] *= fade
                stats.confirmed, stats.faded = int(conf.size), int(faded.size)
                gone = g.live("opacities") < cfg.min_opacity  # faded into free space, or dropped by _dedup
                stats.removed_free_space = g.compact(~gone)

        # 3. add where the memory does not explain the observation (SplaTAM's silhouette + depth rule)
        s = cfg.subsample
        rows, cols = np.mgrid[s // 2:h:s, s // 2:w:s]
        rows, cols = rows.ravel(), cols.ravel()
        d = depth[rows, cols]
        with np.errstate(invalid="ignore"):
            if cfg.sky_depth > 0:  # the far layer: the sky and everything past max_depth, at sky_depth
                d = np.where(np.isfinite(d) & (d > max_depth), np.float32(cfg.sky_depth), d)
            valid = np.isfinite(d) & (d > cfg.near_plane) & (d <= max(max_depth, cfg.sky_depth))
            a_r = rendered.alpha[0, rows, cols]
            d_r = rendered.depth[0, rows, cols]
            unexplained = (a_r < cfg.add_alpha) | (d < d_r - self._margin(d))
        pick = np.flatnonzero(valid & unexplained)
        if pick.size > cfg.budget:
            pick = pick[np.linspace(0, pick.size - 1, cfg.budget).astype(np.int64)]  # an even spread
        m = int(pick.size)
        if m:
            rr, cc, dd = rows[pick], cols[pick], d[pick]
            means = lift_pixels(rr, cc, dd, K, c2w)
            focal = float(np.sqrt(K[0, 0] * K[1, 1]))
            sigma = (cfg.scale_factor * s * dd / focal).astype(np.float32)
            quats = np.zeros((m, 4), np.float32)
            quats[:, 0] = 1.0
            dyn = dynamic_mask[rr, cc] if dynamic_mask is not None else False
            stats.evicted = self._make_room(m, tick)
            first = len(g)
            target = rgb[rr, cc].astype(np.float32) / 255.0
            g.append(means, quats, np.repeat(sigma[:, None], 3, 1), np.full(m, cfg.opacity, np.float32),
                     target, tick, dyn, trust)
            stats.added = m
            self._version += 1
            if cfg.fit_iters and m >= cfg.fit_min_fraction * rows.size:
                # Many new Gaussians (a reset, a big reveal): fit their colours now, with full residual steps
                # against a render of this very view. Small additions are left to the per-tick step above.
                new = np.arange(first, first + m)
                for _ in range(cfg.fit_iters):
                    fit = self._raw_render(c2w, K, w, h)
                    a_px = np.maximum(fit.alpha[0, rr, cc], 1e-6)[:, None]
                    g.colors[new] = np.clip(g.colors[new] + target - fit.rgb[0, rr, cc] / a_px, 0.0, 1.0)
                    self._version += 1
        stats.expired = self._expire(tick, bump=False)
        self._version += 1
        self.last_insert = stats
        self.last_insert_ms = (time.perf_counter() - t0) * 1e3

    def _dedup(self, conf: np.ndarray, rows: np.ndarray, cols: np.ndarray, w: int, trust: float = 1.0) -> int:
        """Bound how many Gaussians explain one surface spot: among the confirmed Gaussians (conf [M], at pixels
        rows/cols [M]), keep at most `max_per_cell` per subsample x subsample cell, the most trusted first and among
        equally trusted the newest (the newest were added where the older ones no longer covered the view, so they
        fit it best). The rest get opacity 0 and are removed with the faded ones. Without this, walking toward a
        surface keeps adding finer Gaussians on top of coarser ones, and the render cost grows with every pass. A view
        drops none more trusted than itself: a dream seeing a real view's Gaussians from afar, many to a pixel, does
        not thin out what the real view made (validation out-and-back returns: 20.5 -> 28.8 dB). Returns how many
        were dropped."""
        cfg, g = self.config, self.gaussians
        if conf.size <= cfg.max_per_cell:
            return 0
        s = cfg.subsample
        eligible = g.trust[conf] <= trust
        cell = (rows // s) * ((w + s - 1) // s) + cols // s
        # by cell; within a cell the most trusted first, then the newest
        order = np.lexsort((-g.created_tick[conf], -g.trust[conf], cell))
        cell_sorted = cell[order]
        starts = np.flatnonzero(np.r_[True, cell_sorted[1:] != cell_sorted[:-1]])
        rank = np.arange(order.size) - np.repeat(starts, np.diff(np.r_[starts, order.size]))
        drop = conf[order[(rank >= cfg.max_per_cell) & eligible[order]]]
        g.opacities[drop] = 0.0
        return int(drop.size)

    # -- lifetime and budget ------------------------------------------------------------------------------------

    def _expire(self, tick: int, bump: bool = True) -> int:
        """Drop dynamic Gaussians not confirmed within `dynamic_lifetime` ticks of `tick`. Returns how many."""
        g = self.gaussians
        if len(g) == 0:
            return 0
        old = g.live("dynamic") & (tick - g.live("confirmed_tick") > self.config.dynamic_lifetime)
        if not old.any():
            return 0
        removed = g.compact(~old)
        if bump:
            self._version += 1
        return removed

    def _make_room(self, m: int, tick: int) -> int:
        """Evict so that m more Gaussians fit; when evicting at all, go down to prune_to * budget (hysteresis).

        Order: low opacity first, then (with trust on) dreamed before real, then the longest since confirmation, then
        the most redundant (the crowded voxel at the Gaussian's own scale). Returns how many were evicted.
        """
        g, cfg = self.gaussians, self.config
        n = len(g)
        if n + m <= cfg.budget:
            return 0
        target = min(int(cfg.prune_to * cfg.budget), cfg.budget - m)
        need = n - max(target, 0)
        low = g.live("opacities") < cfg.low_opacity
        age = tick - g.live("confirmed_tick")
        redundancy = _voxel_crowding(g.live("means"), g.live("scales")[:, 0])
        # np.lexsort sorts by the last key first: low opacity, then a dreamed one before one from a real view (trust 1,
        # when trust is on), then older, then more crowded
        real = g.live("trust") >= 1.0 if cfg.trust_half_life > 0 else np.zeros(n, bool)
        order = np.lexsort((-redundancy, -age, real, ~low))
        keep = np.ones(n, bool)
        keep[order[:need]] = False
        return g.compact(keep)

    # -- export -------------------------------------------------------------------------------------------------

    def state_dict(self) -> dict[str, np.ndarray]:
        """The Gaussians (live rows) as numpy arrays, plus the config as 0-d arrays under 'config.<name>'."""
        state = self.gaussians.state_dict()
        for k, v in asdict(self.config).items():
            state[f"config.{k}"] = np.asarray(v)
        return state

    @classmethod
    def from_state_dict(cls, state: dict[str, np.ndarray]) -> "SceneMemory":
        """Rebuild a memory from `state_dict()` (config entries optional: defaults, budget >= the Gaussians)."""
        cfg = {k.split(".", 1)[1]: np.asarray(v).item() for k, v in state.items() if k.startswith("config.")}
        gauss = {k: v for k, v in state.items() if not k.startswith("config.")}
        n = int(np.asarray(gauss["means"]).shape[0]) if "means" in gauss else 0
        cfg["budget"] = max(int(cfg.get("budget", MemoryConfig.budget)), n, 1)
        mem = cls(MemoryConfig(**cfg))
        mem.gaussians = Gaussians.from_state_dict(gauss, capacity=mem.config.budget)
        return mem


def _filter3x3(x: np.ndarray, op: np.ufunc) -> np.ndarray:
    """op (np.minimum / np.maximum) over each pixel's 3x3 neighbourhood [H, W], edges replicated."""
    p = np.pad(x, 1, mode="edge")
    h, w = x.shape
    out = p[1:h + 1, 1:w + 1].copy()
    for dy in (0, 1, 2):
        for dx in (0, 1, 2):
            op(out, p[dy:dy + h, dx:dx + w], out=out)
    return out


def _voxel_crowding(means: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """How many other Gaussians share each one's voxel [N] int, with voxels 2 sigma wide at the power-of-two
    scale level of its sigma: many same-sized Gaussians in one voxel are redundant."""
    level = np.round(np.log2(np.maximum(sigma, 1e-6))).astype(np.int64)
    cell = np.exp2(level + 1).astype(np.float32)
    ijk = np.floor(means / cell[:, None]).astype(np.int64) & 0x3FFFF  # 18 bits per axis (wraps: a heuristic)
    keys = ((level + 64) << 54) | (ijk[:, 0] << 36) | (ijk[:, 1] << 18) | ijk[:, 2]  # one int64: a fast 1-D unique
    _, inverse, counts = np.unique(keys, return_inverse=True, return_counts=True)
    return counts[inverse.ravel()] - 1
