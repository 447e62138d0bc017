"""Memory images: per frame, what a scene memory shows at that frame's camera, encoded with the autoencoder plus
a coverage channel. Four generators (train.memory_mode): "reproject" (earlier ground-truth frames reprojected),
"splat" (the episode streamed through splat.SceneMemory as the dream does), "splat_predicted" (the same with
the init_from model's one-step predictions) and "rollout" (the init_from model's own dreams, with their context
latents: training/rollouts.py); `memory_batch` is how training sees them."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import torch

from worldmodel.data import FrameStore, frames_to_tensor, memory_sources, reproject
from worldmodel.training.common import TrainConfig
from worldmodel.training.rollouts import Rollouts, dream_rollouts, rollout_context

if TYPE_CHECKING:
    from worldmodel.training.context import TrainContext


_FORK_STORE: tuple[FrameStore, tuple[int, int]] | None = None  # the data, for forked memory-image workers


def _reproject_row(s: FrameStore, size: tuple[int, int], row: int, src: np.ndarray):
    return reproject(s.rgb[src], s.depth[src].astype(np.float32), s.c2w[src], s.K[src], s.c2w[row], s.K[row], size)


def _reproject_job(job: tuple[int, np.ndarray]):
    row, src = job
    s, size = _FORK_STORE
    return row, _reproject_row(s, size, row, src)


def memory_batch(memory_rows: torch.Tensor, cfg: "TrainConfig",
                 rng: np.random.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Memory images of a batch of clips [B, T, C+1, h, w] as training sees them: latent noise on top (the splat
    memory is imperfect), and each frame's image kept with probability memory_prob where one exists (its
    coverage channel is not all zero). Returns (images, present [B, T] bool)."""
    mem = memory_rows.clone()
    mem[:, :, :-1] += cfg.memory_latent_noise * torch.randn_like(mem[:, :, :-1])
    present = torch.from_numpy(rng.random(mem.shape[:2]) < cfg.memory_prob).to(mem.device)
    present &= mem[:, :, -1].flatten(2).amax(-1) > 0
    return mem * present[:, :, None, None, None], present


# The memory-image generators of the trainer (a function of training.context.TrainContext).


@torch.no_grad()
def memory_latents(ctx: TrainContext, lat: torch.Tensor) -> torch.Tensor:
    """Per frame: earlier frames of its episode reprojected into its camera, encoded, + coverage alpha."""
    from tqdm import tqdm

    s, cfg = ctx.store, ctx.cfg
    H, W = ctx.mcfg.frame_size
    C, h, w = ctx.mcfg.latent_shape
    rng = np.random.default_rng(cfg.seed + 7)
    out = torch.zeros((s.frames, C + 1, h, w))
    batch_rows: list[int] = []
    batch_rgb: list[np.ndarray] = []
    batch_depth: list[np.ndarray] = []
    batch_alpha: list[np.ndarray] = []

    def flush() -> None:
        if not batch_rows:
            return
        rgb = frames_to_tensor(np.stack(batch_rgb)).to(ctx.device)
        depth = torch.from_numpy(np.stack(batch_depth))[:, None].to(ctx.device) if ctx.use_depth else None
        z = ctx.ae.encode(rgb, depth).float()
        alpha = torch.from_numpy(np.stack(batch_alpha))[:, None].to(ctx.device)
        alpha = torch.nn.functional.adaptive_avg_pool2d(alpha, (h, w))
        out[batch_rows] = torch.cat([z, alpha], 1).cpu()
        batch_rows.clear(); batch_rgb.clear(); batch_depth.clear(); batch_alpha.clear()

    if cfg.memory_mode == "splat":
        renders = splat_memory_renders(ctx, ctx.store.rgb, ctx.store.depth)
    elif cfg.memory_mode == "splat_predicted":
        renders = splat_memory_renders(ctx, *predicted_frames(ctx, lat), predicted=True)
    else:
        renders = reprojected_memory(ctx, rng)
    for row, r in tqdm(renders, total=s.frames, desc=f"memory images ({cfg.memory_mode})",
                       disable=not ctx.progress, mininterval=2):
        batch_rows.append(row)
        batch_rgb.append(r.rgb)
        batch_depth.append(r.depth)
        batch_alpha.append(r.alpha)
        if len(batch_rows) == 256:
            flush()
    flush()
    return out

@torch.no_grad()
def predicted_frames(ctx: TrainContext, lat: torch.Tensor, batch: int = 16) -> tuple[np.ndarray, np.ndarray]:
    """Every frame as the model predicts it in one sampling step from the ground-truth frames before it
    (decoded RGB uint8 + depth in metres): blurry and imperfect like the dream's own frames, but anchored
    to the truth, so a memory built from them matches the episode's cameras. An episode's first frame
    stays the real one, as the dream's first view is."""
    from tqdm import tqdm

    from worldmodel.data import tensor_to_frames
    from worldmodel.flow import FlowSampler

    s, dyn, ae = ctx.store, ctx.dyn.eval(), ctx.ae.eval()
    rgb, depth = s.rgb.copy(), s.depth.astype(np.float32)
    sampler = FlowSampler(steps=1)
    gen = torch.Generator().manual_seed(ctx.cfg.seed + 11)
    actions = torch.from_numpy(s.actions).to(ctx.device)
    lat = lat.to(ctx.device)
    by_length: dict[int, list[int]] = {}
    for start, n in zip(s.starts, s.lengths):
        by_length.setdefault(int(n), []).append(int(start))
    bar = tqdm(total=s.frames, desc="one-step predictions", disable=not ctx.progress, mininterval=2)
    for n, starts in by_length.items():
        for i in range(0, len(starts), batch):
            rows = torch.tensor(starts[i:i + batch], device=ctx.device)
            state = dyn.new_state(len(rows))
            dyn.commit_frame(state, lat[rows].to(dyn.dtype), torch.zeros(len(rows), 8, dtype=dyn.dtype, device=ctx.device))
            for t in range(1, n):
                a = actions[rows + t].to(dyn.dtype)
                dyn.predict_pose(state, a)
                z = sampler.sample(dyn, state, a, generator=gen, commit=False).latent
                out = ae.decode(z.float())
                rgb[(rows + t).cpu().numpy()] = tensor_to_frames(out.rgb)
                depth[(rows + t).cpu().numpy()] = out.depth[:, 0].float().cpu().numpy()
                dyn.commit_frame(state, lat[rows + t].to(dyn.dtype), a)  # teacher forcing: the truth goes on
            bar.update(len(rows) * n)
    bar.close()
    return rgb, depth

@torch.no_grad()
def own_rollouts(ctx: TrainContext, lat: torch.Tensor) -> Rollouts:
    """memory_mode "rollout": init_from dreams every episode as play.py dreams it (training/rollouts.py, through
    the one batched tick), with this run's memory settings; its context latents and memory images per frame."""
    from worldmodel.checkpoint import load_model
    from worldmodel.evaluation.dreaming import batch_dreams

    source = load_model(ctx.cfg.init_from, device=ctx.device)
    settings = ctx.memory_settings or None
    if not source.settings.memory_first:
        ctx.say(f"note: {ctx.cfg.init_from} does not dream memory first (model.yaml info.dream): its own "
                  "rollouts are dreamed as it dreams")
    make = lambda B: batch_dreams(ctx.cfg.init_from, source, B, memory=True, memory_settings=settings)  # noqa: E731
    return dream_rollouts(make, ctx.store, lat, ctx.cfg.rollout_ticks, rollout_context(ctx.mcfg.dynamics.window),
                          ctx.cfg.seed + 13, progress=ctx.progress)

def reprojected_memory(ctx: TrainContext, rng: np.random.Generator):
    """(row, render) for every frame that has earlier frames: a few of them reprojected into its camera.
    The sources are drawn in order from `rng` (the same images for any `workers`); with workers > 1 the
    reprojections (numpy, ~2 ms a frame: minutes for 100k frames on one core) run in forked processes."""
    s, cfg = ctx.store, ctx.cfg
    H, W = ctx.mcfg.frame_size
    jobs = ((row, memory_sources(s, row, rng, cfg.memory_sources, 1, cfg.memory_max_gap)) for row in range(s.frames))
    jobs = ((row, src) for row, src in jobs if len(src))  # an episode's first frame has no memory: stays 0 (absent)
    if ctx.workers <= 1:
        for row, src in jobs:
            yield row, _reproject_row(s, (H, W), row, src)
        return
    import multiprocessing

    global _FORK_STORE
    _FORK_STORE = (s, (H, W))  # inherited by the forked workers: the frames are not pickled
    try:
        with multiprocessing.get_context("fork").Pool(ctx.workers) as pool:
            yield from pool.imap(_reproject_job, jobs, chunksize=64)
    finally:
        _FORK_STORE = None

def splat_memory_renders(ctx: TrainContext, rgb: np.ndarray, depth: np.ndarray, predicted: bool = False):
    """(row, render) for every frame but an episode's first: the episode so far, streamed through a
    splat.SceneMemory as the dream feeds it (first frame at tick 0; then per tick: render at the frame's
    camera, insert the frame), rendered at the frame's camera before the frame itself is inserted."""
    from splat import SceneMemory

    s = ctx.store
    H, W = ctx.mcfg.frame_size
    memory = SceneMemory(width=W, height=H, **ctx.memory_settings)
    ends = list(s.starts[1:]) + [s.frames]
    for start, end in zip(s.starts, ends):
        memory.reset()
        for row in range(int(start), int(end)):
            tick = row - int(start)
            if tick > 0:
                yield row, memory.render(s.c2w[row], s.K[row], tick)
            try:
                # splat_predicted frames are one step from the real context (age 1); splat's are real
                age = 1 if predicted and tick > 0 else 0
                memory.insert(rgb[row], depth[row].astype(np.float32), s.c2w[row], s.K[row], tick, source_age=age)
            except ValueError:
                pass  # a frame with no valid depth (all sky, say) adds nothing; the dream skips it too
