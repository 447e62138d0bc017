"""One dream tick for B dreams at once: the tick the player, agents, evaluation and training all run.

`Dreams` holds B dreams that share one model and one batched KV cache; each row has its own camera, scene memory
and noise generator. A tick (docs/architecture.md, "A dream's tick"), for every row together:

1. pose: the dynamics' pose token against the cache (one batched pass; its keys are context for the frame);
2. camera: each row's fitted camera rules (worldmodel.motion) with collisions against its memory's obstacles
   (`camera="action"`), else the ego-motion head's prediction;
3. memory render at each row's new camera; the renders encoded in one batch into memory images (`memory_latent`);
4. sample the next latent (few-step flow, one batched pass per step), each row's noise from its own generator;
5. decode RGB and depth in one batch; with `memory_first`, the memory where it covers and the model's frame
   elsewhere (`memory_first_frame`);
6. commit the latent the frame shows to the context (one batched pass) at the context noise level;
7. give each row's frame, depth and pose to its memory;
8. with `upsample` and a model that has one, the shown frames at twice the size (worldmodel/upsampler.py): what a
   player sees; everything above, the memory included, stays at the model's size.

Row b draws its noise from `generators[b]` in the order a lone dream draws it (the sample's noise, then the
context noise), so row b of a batch dreams what a batch of one started with the same seed dreams (up to the
rounding of batched matrix products). `DreamWorld` is the B = 1 caller; `DreamVectorEnv`, the evaluation's open
loop and place walks, and training's rollouts call the same code.

Also here, the memory-first helpers training and evaluation share with the dream (`memory_latent`,
`memory_first_frame`, `shown_cells`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from splat.camera import lift_pixels
from splat.memory import DREAMED_OBSTACLE_RANGE_M, MemoryRender, SceneMemoryLike
from worldmodel.autoencoder import DecodedFrame
from worldmodel.checkpoint import LoadedModel
from worldmodel.data import area_resize, fit_K, frames_to_tensor, tensor_to_frames
from worldmodel.device import autocast
from worldmodel.flow import FlowSampler
from worldmodel.motion import CameraMotion, MotionModel
from worldmodel.pose import apply_ego_motion
from worldmodel.settings import check_trust_gate
from worldmodel.upsampler import upsample_frames


# Memory first: the memory's render is the frame where its coverage (alpha) reaches MEMORY_GATE[1], the model's
# frame where it is below MEMORY_GATE[0], a linear blend between (chosen on validation: docs/model_card.md).
MEMORY_GATE = (0.3, 0.7)


# The mean coverage of a latent cell (a memory image's last channel) from which training takes the cell as the memory's
# (`shown_cells`): a linear ramp over SHOWN_COVERAGE, fitted to the dream's own per-cell gate (memory_first_frame) over
# 38,400 cells of a 150-tick shipped-model dream: mean absolute error 0.056 (a cell's mean alpha rarely passes 0.97).
SHOWN_COVERAGE = (0.5, 0.9)


def shown_cells(coverage: torch.Tensor) -> torch.Tensor:
    """The share of each latent cell a memory-first frame takes from the memory, estimated from the cell's mean
    coverage (training has memory images, not their pixels' alpha): coverage [..., 1, h, w] in [0, 1] -> [..., 1, h, w]
    in [0, 1] (see SHOWN_COVERAGE)."""
    lo, hi = SHOWN_COVERAGE
    return ((coverage - lo) / (hi - lo)).clamp(0.0, 1.0)


def memory_latent(model: LoadedModel, renders: Sequence[MemoryRender]) -> torch.Tensor:
    """Memory renders (one per row) -> conditioning [B, C+1, h, w] (latent of the render + coverage at latent size)."""
    ae = model.autoencoder
    C, h, w = model.config.latent_shape
    dev = model.device
    depth = None
    if ae.config.use_depth:
        depth = torch.from_numpy(np.stack([r.depth for r in renders]).astype(np.float32))[:, None].to(dev)
    z = ae.encode(frames_to_tensor(np.stack([r.rgb for r in renders])).to(dev), depth).float()
    alpha = torch.from_numpy(np.stack([r.alpha for r in renders]).astype(np.float32))[:, None].to(dev)
    alpha = torch.nn.functional.adaptive_avg_pool2d(alpha, (h, w))
    return torch.cat([z, alpha], 1)


# With a trust gate, the memory is shown whatever its trust where it draws a surface nearer than NEAR_SHOWN_M[0] (the
# range its dreamed Gaussians block the camera from), not above NEAR_SHOWN_M[1], a ramp between: a wall the camera
# stops at is a wall the player sees.
NEAR_SHOWN_M = (DREAMED_OBSTACLE_RANGE_M, DREAMED_OBSTACLE_RANGE_M + 0.5)


def near_points(depth: np.ndarray, K: np.ndarray, c2w: np.ndarray, stride: int = 2) -> np.ndarray:
    """A shown frame's surfaces within DREAMED_OBSTACLE_RANGE_M (every `stride`-th pixel) as world points [M, 3]."""
    rows, cols = np.mgrid[stride // 2:depth.shape[0]:stride, stride // 2:depth.shape[1]:stride]
    d = depth[rows, cols]
    with np.errstate(invalid="ignore"):
        near = np.isfinite(d) & (d > 0) & (d < DREAMED_OBSTACLE_RANGE_M)
    return lift_pixels(rows[near], cols[near], d[near], K, c2w)


def memory_first_frame(frame: DecodedFrame, latent: torch.Tensor, renders: Sequence[MemoryRender],
                       memory: torch.Tensor, trust_gate: tuple[float, float] | None = None
                       ) -> tuple[DecodedFrame, torch.Tensor]:
    """The memory where it covers, the model's frame elsewhere (GEN3C's cache as the frame, the generator painting the
    holes). frame: the decoded samples [B, 3, H, W] (+ depth); latent: the samples [B, C, h, w]; renders: each row's
    memory at its camera; memory: their conditioning latents [B, C+1, h, w] (memory_latent). Returns the shown frames
    (rgb and depth) and the latents to commit as context: per latent cell the memory's where the whole cell is
    covered. `trust_gate` (lo, hi): the memory is shown only where what it draws is trusted (MemoryRender.trust: 1 from
    real views, halving every trust_half_life ticks of dreaming after one), not at all below lo, fully from hi, or near
    (NEAR_SHOWN_M); elsewhere the model's own frame is shown (the memory still conditions it). None: trust does not
    matter."""
    lo, hi = MEMORY_GATE
    dev = frame.rgb.device
    alpha = torch.from_numpy(np.stack([r.alpha for r in renders]).astype(np.float32)).to(dev)[:, None]
    gate = ((alpha - lo) / (hi - lo)).clamp(0.0, 1.0)
    if trust_gate is not None:
        t = torch.from_numpy(np.stack([r.trust if r.trust is not None else np.ones_like(r.alpha)
                                       for r in renders]).astype(np.float32)).to(dev)[:, None]
        d = torch.from_numpy(np.stack([r.depth for r in renders]).astype(np.float32)).to(dev)[:, None]
        trusted = ((t - trust_gate[0]) / (trust_gate[1] - trust_gate[0])).clamp(0.0, 1.0)
        # what the memory holds within reach of the camera is shown whatever its trust: it is what blocks the camera
        near = ((NEAR_SHOWN_M[1] - d) / (NEAR_SHOWN_M[1] - NEAR_SHOWN_M[0])).clamp(0.0, 1.0)
        gate = gate * torch.maximum(trusted, near)
    rgb = gate * frames_to_tensor(np.stack([r.rgb for r in renders])).to(dev) + (1 - gate) * frame.rgb
    depth = frame.depth
    if depth is not None:
        mem_depth = torch.from_numpy(np.stack([r.depth for r in renders]).astype(np.float32)).to(dev)[:, None]
        depth = gate * mem_depth + (1 - gate) * depth
    h, w = latent.shape[-2:]
    cell = -torch.nn.functional.adaptive_max_pool2d(-gate, (h, w))  # the least covered pixel of each latent cell
    z = cell * memory[:, :-1].to(latent.dtype) + (1 - cell) * latent
    return DecodedFrame(rgb=rgb, depth=depth), z


@dataclass
class StartView:
    """Real frames a dream starts from, at the model's size: rgb [N, H, W, 3] uint8, depth [N, H, W] metres (or
    None), cam_to_world [N, 4, 4], K [3, 3], actions [N, 8] (row i led into frame i)."""

    rgb: np.ndarray
    depth: np.ndarray | None
    cam_to_world: np.ndarray
    K: np.ndarray
    actions: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.rgb)
        if n < 1 or self.rgb.ndim != 4 or len(self.cam_to_world) != n or len(self.actions) != n \
                or (self.depth is not None and len(self.depth) != n):
            raise ValueError(f"a start view needs N >= 1 frames with one camera and one action each (got rgb "
                             f"{list(self.rgb.shape)}, cam_to_world {list(np.shape(self.cam_to_world))}, actions "
                             f"{list(np.shape(self.actions))})")


def scaled_K(K: np.ndarray | None, from_size: tuple[int, int], H: int, W: int) -> np.ndarray:
    """A view's intrinsics at model size H x W (a default pinhole when the world gives none)."""
    if K is None:
        f = 0.5 * W
        return np.array([[f, 0, W / 2], [0, f, H / 2], [0, 0, 1]], np.float64)
    return fit_K(K, from_size, (H, W))


def prompt_view(world, seed: int, H: int, W: int) -> StartView:
    """A prompt world's first view for `seed` as a dream's start: rendered at the world's size, area-resized to the
    model's like the training data."""
    first = world.reset(seed)
    rgb = area_resize(first.rgb[None], (H, W))
    depth = None if first.depth is None else area_resize(first.depth[None, ..., None], (H, W))[..., 0]
    c2w = first.cam_to_world.copy() if first.cam_to_world is not None else np.eye(4)
    return StartView(rgb, depth, c2w[None], scaled_K(first.K, first.rgb.shape[:2], H, W), np.zeros((1, 8), np.float32))


@dataclass
class TickOutput:
    """What a tick (or a start) gives, per row."""

    rgb: np.ndarray | None  # [B, H, W, 3] uint8: the frames shown (None: not asked for, step(pixels=False))
    depth: np.ndarray | None  # [B, H, W] float32 metres: the depth shown (None without depth)
    cam_to_world: np.ndarray  # [B, 4, 4]
    latent: torch.Tensor  # [B, C, h, w] float32: the sample (the prompt's latent for a row that started)
    committed: torch.Tensor  # [B, C, h, w] float32: the latent committed as context (before its context noise)
    memory_image: torch.Tensor | None  # [B, C+1, h, w] float32: what the sample was conditioned on (None: nothing)
    timings: dict[str, float]  # milliseconds for the whole batch, by part
    shown: np.ndarray | None = None  # [B, sH, sW, 3] uint8: the frames upsampled (Dreams.upsample), else None


class Dreams:
    """B dreams advanced together, one tick at a time (the module docstring).

    `memories`: one scene memory per row (None: no memory); `memory_enabled` turns their use off and on for all rows
    together (off: the dream neither reads nor feeds them, and nothing blocks the camera). `rules`: the fitted camera
    rules (camera = "action"), None for the ego-motion head. `amp`: bf16 autocast for the dynamics (CUDA). `upsample`:
    also give the shown frames through the model's upsampler (TickOutput.shown; ignored for a model without one).
    `memory_first_trust`: memory first only where the memory's content is trusted (memory_first_frame).
    """

    def __init__(self, model: LoadedModel, batch: int, sampler: FlowSampler, rules: MotionModel | None = None,
                 memories: Sequence[SceneMemoryLike] | None = None, memory_first: bool = False,
                 amp: bool = False, cache_dtype: torch.dtype | None = None, upsample: bool = False,
                 memory_first_trust: tuple[float, float] | None = None) -> None:
        if batch < 1:
            raise ValueError(f"a batch of dreams needs at least one row, got {batch}")
        if memories is not None and len(memories) != batch:
            raise ValueError(f"one scene memory per row: {batch} rows, {len(memories)} memories")
        self.model, self.B, self.sampler, self.amp = model, batch, sampler, amp
        self.device = model.device
        self.cache_dtype = cache_dtype or (torch.bfloat16 if amp else model.dynamics.dtype)
        self.H, self.W = model.config.frame_size
        self.memories = list(memories) if memories is not None else None
        self.memory_enabled = self.memories is not None
        self.memory_first = memory_first
        self.memory_first_trust = check_trust_gate(memory_first_trust)
        self.upsample = upsample and model.upsampler is not None
        self.cameras = [CameraMotion(rules) for _ in range(batch)] if rules is not None else None
        self.state = None
        self.c2w = np.tile(np.eye(4), (batch, 1, 1))
        self.K = np.tile(np.eye(3), (batch, 1, 1))
        self.tick = np.zeros(batch, np.int64)  # each row's tick (its start view's last frame is tick N - 1)
        self.anchor = np.zeros(batch, np.int64)  # the tick of each row's last real frame
        self.generators = [torch.Generator() for _ in range(batch)]
        # with a trust gate: what each row's last shown frame showed within DREAMED_OBSTACLE_RANGE_M, world points [M, 3]
        # that block its camera beside the memory's (the picture, not the untrusted memory it replaced, is the wall)
        self.shown_obstacles: list[np.ndarray | None] = [None] * batch

    @property
    def started(self) -> bool:
        return self.state is not None

    def using_memory(self) -> bool:
        return self.memories is not None and self.memory_enabled

    # -- starts ---------------------------------------------------------------------------------------------

    def _encode(self, rgb: np.ndarray, depth: np.ndarray | None) -> torch.Tensor:
        d = torch.from_numpy(np.asarray(depth, np.float32))[:, None].to(self.device) if depth is not None else None
        return self.model.autoencoder.encode(frames_to_tensor(rgb).to(self.device), d)

    def _begin_row(self, r: int, view: StartView, seed: int) -> None:
        n = len(view.rgb)
        self.generators[r].manual_seed(int(seed))
        self.tick[r] = self.anchor[r] = n - 1
        self.shown_obstacles[r] = None
        self.c2w[r] = np.asarray(view.cam_to_world[-1], np.float64)
        self.K[r] = np.asarray(view.K, np.float64)
        if self.cameras is not None:
            self.cameras[r].reset(self.c2w[r])

    def _shown_start(self, r: int, view: StartView, frame_rgb: np.ndarray, frame_depth: np.ndarray | None):
        """The frame a start shows (the real view itself when the dream is memory first with a memory, else the
        model's decoding of it) and the row's memory filled with the start's real views."""
        mem = self.memories[r] if self.memories is not None else None
        if self.memory_first and mem is not None:
            frame_rgb = view.rgb[-1]
            if view.depth is not None:
                frame_depth = np.asarray(view.depth[-1], np.float32)
        if mem is not None:
            mem.reset()
            n = len(view.rgb)
            for i in range(n):
                if view.depth is not None:  # a real view, as the world rendered it (its true depth)
                    mem.insert(view.rgb[i], np.asarray(view.depth[i], np.float32), view.cam_to_world[i], self.K[r], i)
                elif i == n - 1 and frame_depth is not None:  # no depth: the model's decoded depth of the last view
                    mem.insert(frame_rgb, frame_depth, self.c2w[r], self.K[r], i)
        return frame_rgb, frame_depth

    @torch.no_grad()
    def start(self, views: Sequence[StartView], seeds: Sequence[int]) -> TickOutput:
        """Start every row from its real frames (all rows the same number N of them): each frame becomes a context
        frame and, with a memory, a real view in it. Returns the last frames; the next `step` dreams the ones after.
        Row b's sampling noise is seeds[b]'s."""
        if len(views) != self.B or len(seeds) != self.B:
            raise ValueError(f"start needs one view and one seed per row ({self.B}), got {len(views)} and {len(seeds)}")
        n = len(views[0].rgb)
        if any(len(v.rgb) != n for v in views):
            raise ValueError("every row starts from the same number of real frames")
        dyn = self.model.dynamics
        self.state = dyn.new_state(self.B, dtype=self.cache_dtype)
        for r, (v, s) in enumerate(zip(views, seeds)):
            self._begin_row(r, v, s)
        has_depth = all(v.depth is not None for v in views)
        z = self._encode(np.concatenate([v.rgb for v in views]),
                         np.concatenate([v.depth for v in views]) if has_depth else None)  # [B * n, ...] row-major
        z = z.view(self.B, n, *z.shape[1:])
        act = torch.as_tensor(np.stack([np.asarray(v.actions, np.float32) for v in views]), device=self.device)
        with autocast(self.device, self.amp):
            for i in range(n):
                dyn.commit_frame(self.state, z[:, i].to(dyn.dtype), act[:, i].to(dyn.dtype))
        last = z[:, -1]
        frame = self.model.autoencoder.decode(last)
        rgb, depth = self._to_host(frame)
        shown = [self._shown_start(r, v, rgb[r], None if depth is None else depth[r]) for r, v in enumerate(views)]
        rgb = np.stack([s[0] for s in shown])
        depth = None if depth is None else np.stack([s[1] for s in shown])
        return TickOutput(rgb, depth, self.c2w.copy(), last.float(), last.float(), None, {},
                          shown=self._upsampled(rgb, depth))

    def _upsampled(self, rgb: np.ndarray | None, depth: np.ndarray | None) -> np.ndarray | None:
        """The shown frames [B, H, W, 3] uint8 (depth [B, H, W] metres, or None) through the model's upsampler:
        [B, sH, sW, 3] uint8; None unless `upsample` (and frames were made)."""
        if not self.upsample or rgb is None:
            return None
        return upsample_frames(self.model, rgb, depth)

    @staticmethod
    def _to_host(frame: DecodedFrame) -> tuple[np.ndarray, np.ndarray | None]:
        rgb = tensor_to_frames(frame.rgb)
        depth = frame.depth[:, 0].float().cpu().numpy().astype(np.float32) if frame.depth is not None else None
        return rgb, depth

    # -- the tick -------------------------------------------------------------------------------------------

    @torch.no_grad()
    def step(self, actions: np.ndarray, restart: dict[int, tuple[StartView, int]] | None = None,
             pixels: bool = True) -> TickOutput:
        """One tick for every row: actions [B, 8] (engine encoding). `restart` {row: (a one-frame StartView, seed)}
        starts those rows' new episodes in this tick instead (their cache emptied, their view committed with no
        action into it): what a lone dream started from that view with that seed does. `pixels=False`: no frames
        are wanted (agents on latents); the decoder is skipped unless the memory needs the frame."""
        if self.state is None:
            raise RuntimeError("Dreams.step() before start()")
        actions = np.asarray(actions, np.float32)
        if actions.shape != (self.B, 8):
            raise ValueError(f"actions must be [{self.B}, 8], got {list(actions.shape)}")
        restart = restart or {}
        if any(len(v.rgb) != 1 for v, _ in restart.values()):
            raise ValueError("a row restarts from one real frame")
        t0 = time.perf_counter()
        dyn, ae, dev = self.model.dynamics, self.model.autoencoder, self.device
        rows = sorted(restart)
        moving = [r for r in range(self.B) if r not in restart]
        use_memory = self.using_memory()
        a = torch.from_numpy(actions).to(dev, dyn.dtype)
        if rows:
            dyn.reset_rows(self.state, rows)
            for r in rows:
                self._begin_row(r, *restart[r])
            a[rows] = 0.0  # a restarted row's first frame has no action into it
        with autocast(dev, self.amp):
            pose = dyn.predict_pose(self.state, a)  # runs with the rules too: the pose token's keys are context
        motion = pose.float().cpu().numpy()  # the ego-motion head's camera moves on the host
        if self.cameras is not None:  # the action-driven camera, blocked by what each row's memory holds
            for r in moving:
                real = dreamed = None
                mem = self.memories[r] if use_memory else None
                if mem is not None:
                    real, dreamed = mem.obstacles(float(np.sqrt(self.K[r][0, 0] * self.K[r][1, 1])))
                    if self.shown_obstacles[r] is not None:
                        dreamed = np.concatenate([dreamed, self.shown_obstacles[r]])
                motion[r] = self.cameras[r].step(self.c2w[r], actions[r], real, dreamed)
        next_c2w = self.c2w.copy()
        if moving:
            next_c2w[moving] = apply_ego_motion(self.c2w[moving], motion[moving])
        t1 = time.perf_counter()
        memory = renders = None
        if use_memory and (dyn.config.use_memory or self.memory_first):
            renders = [self.memories[r].render(next_c2w[r], self.K[r], int(self.tick[r]) + 1) for r in range(self.B)]
            memory = memory_latent(self.model, renders).to(dyn.dtype)
        t2 = time.perf_counter()
        cond = memory if dyn.config.use_memory else None
        shape = (1, *self.model.config.latent_shape)
        # each row's start noise, then its context noise, from its own generator (a lone dream's order)
        noise = torch.cat([torch.randn(shape, generator=self.generators[r]) if r in moving else torch.zeros(shape)
                           for r in range(self.B)])
        cn = self.sampler.context_noise
        ctx_noise = None
        if cn > 0:
            ctx_noise = torch.cat([torch.randn(shape, generator=self.generators[r]) if r in moving else torch.zeros(shape)
                                   for r in range(self.B)])
        with autocast(dev, self.amp):
            sample = self.sampler.sample(dyn, self.state, a, memory=cond, noise=noise.to(dev, dyn.dtype), commit=False)
        latent = sample.latent.float()
        if rows:  # a restarted row's "sample" is its start view's latent
            v = [restart[r][0] for r in rows]
            has_depth = all(x.depth is not None for x in v)
            latent[rows] = self._encode(np.concatenate([x.rgb for x in v]),
                                        np.concatenate([x.depth for x in v]) if has_depth else None).float()
        t3 = time.perf_counter()
        committed = latent
        frame = ae.decode(latent) if pixels or use_memory else None
        if renders is not None and self.memory_first:  # the memory where it covers, the model elsewhere
            shown, composite = memory_first_frame(frame, latent, renders, memory, self.memory_first_trust)
            if moving == list(range(self.B)):
                frame, committed = shown, composite.float()
            else:  # restarted rows show and commit their own start view
                keep = torch.zeros(self.B, dtype=torch.bool, device=dev)
                keep[moving] = True
                sel = keep[:, None, None, None]
                frame = DecodedFrame(rgb=torch.where(sel, shown.rgb, frame.rgb),
                                     depth=None if frame.depth is None else torch.where(sel, shown.depth, frame.depth))
                committed = torch.where(sel, composite.float(), latent)
        rgb, depth = self._to_host(frame) if frame is not None else (None, None)
        t4 = time.perf_counter()
        level = present = None
        if rows:  # a restarted row's start view is committed clean and without a memory image, as a start commits it
            level = torch.full((self.B,), float(cn))
            level[rows] = 0.0
            present = torch.ones(self.B, dtype=torch.bool)
            present[rows] = False
            present = present.to(dev)
        with autocast(dev, self.amp):
            self.sampler.commit(dyn, self.state, committed.to(sample.latent.dtype), a, cond, level=level,
                                noise=None if ctx_noise is None else ctx_noise.to(dev),
                                present=present if cond is not None else None)
        t5 = time.perf_counter()
        self.c2w = next_c2w
        self.tick[moving] += 1
        for r in rows:
            view = restart[r][0]
            shown_rgb, d = self._shown_start(r, view, None if rgb is None else rgb[r], None if depth is None else depth[r])
            if rgb is not None:
                rgb[r] = shown_rgb
            if depth is not None:
                depth[r] = d
        if use_memory and depth is not None:
            for r in moving:  # every frame after a real one is dreamed: its content is `tick - anchor` ticks from one
                self.memories[r].insert(rgb[r], depth[r], self.c2w[r], self.K[r], int(self.tick[r]),
                                        source_age=int(self.tick[r] - self.anchor[r]))
                if self.memory_first_trust is not None:
                    self.shown_obstacles[r] = near_points(depth[r], self.K[r], self.c2w[r])
        t6 = time.perf_counter()
        shown_up = self._upsampled(rgb, depth) if pixels else None
        t7 = time.perf_counter()
        image = None
        if memory is not None and dyn.config.use_memory:
            image = memory.float()
            if rows:
                image[rows] = 0.0
        timings = {"pose_ms": (t1 - t0) * 1e3, "memory_render_ms": (t2 - t1) * 1e3, "sample_ms": (t3 - t2) * 1e3,
                   "decode_ms": (t4 - t3) * 1e3, "commit_ms": (t5 - t4) * 1e3, "memory_insert_ms": (t6 - t5) * 1e3,
                   "upsample_ms": (t7 - t6) * 1e3, "total_ms": (t7 - t0) * 1e3}
        return TickOutput(rgb, depth, self.c2w.copy(), latent, committed, image, timings, shown=shown_up)

