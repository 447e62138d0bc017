"""The dream as a World: a trained model steps the world instead of a renderer.

Each tick (docs/architecture.md, "A dream's tick"): move the camera (by the model's fitted camera rules and the
scene memory's obstacles when it has them, `camera="action"`; else the ego-motion head's prediction); render the
scene memory there, if there is one; sample the next latent frame (few-step flow) with the memory image as
conditioning; decode RGB and depth; with `memory_first`, show the memory where it covers and the model's frame
elsewhere (`memory_first_frame`); give the frame, depth and pose to the memory.

The first frame of an episode comes from a "prompt" world (by default the world the model was trained
on), rendered at the seed's start and encoded as the first context frame: the dream continues from a
real view, like every interactive world model.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from engine.action import Action
from engine.world import Observation, World, check_world_name, make_world, world_factory
from worldmodel.autoencoder import DecodedFrame
from worldmodel.checkpoint import MODEL_YAML, LoadedModel, check_memory_settings, load_model
from worldmodel.data import area_resize, fit_K, frames_to_tensor, tensor_to_frames
from worldmodel.device import autocast, default_amp, resolve_device
from worldmodel.flow import FlowSampler
from worldmodel.motion import CameraMotion, MotionModel, obstacle_points
from worldmodel.pose import apply_ego_motion

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_MODEL = ROOT / "assets" / "model"
MEMORY_DIR = Path("memory")  # where F6 saves the scene memory (.ply), beside screenshots/ and recordings/


class MemoryRender(Protocol):
    rgb: np.ndarray  # [H, W, 3] uint8
    depth: np.ndarray  # [H, W] float32 metres
    alpha: np.ndarray  # [H, W] float32 coverage in [0, 1]


class SceneMemoryLike(Protocol):
    """What the dream needs from a scene memory (splat.SceneMemory implements it)."""

    def insert(self, rgb: np.ndarray, depth: np.ndarray, cam_to_world: np.ndarray, K: np.ndarray, tick: int,
               dynamic_mask: np.ndarray | None = None, source_age: int = 0) -> None: ...

    def render(self, cam_to_world: np.ndarray, K: np.ndarray, tick: int) -> MemoryRender: ...

    def reset(self) -> None: ...


def prompt_world_config(model: LoadedModel, prompt_name: str, prompt_world: str | None = None,
                        prompt_config: dict[str, Any] | None = None) -> dict[str, Any]:
    """The config a dream's prompt world is built with (the one place DreamWorld and DreamVectorEnv ask):
    the caller's `prompt_config`, else model.yaml `info.prompt_config` when the prompt is the model's own world
    (exactly the world the data was recorded in), else the data's render size."""
    if prompt_config is not None:
        return dict(prompt_config)
    info = model.info
    if "prompt_config" in info and prompt_world in (None, prompt_name):
        return dict(info["prompt_config"])
    H, W = model.config.frame_size
    render = info.get("render_size", [2 * H, 2 * W])
    return {"width": render[1], "height": render[0]}


def scaled_K(obs: Observation, H: int, W: int) -> np.ndarray:
    """The prompt view's intrinsics at model size H x W (a default pinhole when the world gives none)."""
    if obs.K is None:
        f = 0.5 * W
        return np.array([[f, 0, W / 2], [0, f, H / 2], [0, 0, 1]], np.float64)
    return fit_K(obs.K, obs.rgb.shape[:2], (H, W))


def prompt_world_name(model: LoadedModel, checkpoint: str | Path, prompt_world: str | None = None) -> str:
    """The world a dream starts its episodes from: `prompt_world` when the caller names one, else the model's
    model.yaml `info.prompt_world` (a registered world only: a model someone shares must not run code), else
    the arena. Checked here, before anything is built: WorldNotFoundError / UntrustedWorldError otherwise."""
    if prompt_world is not None:
        world_factory(prompt_world)  # the caller's own name (refused too while a data file's world is being built)
        return prompt_world
    name = model.info.get("prompt_world", "arena")
    source = str(Path(checkpoint) / MODEL_YAML)
    return check_world_name(name, source, hint=f"If you trust this model, name its prompt world yourself: "
                                              f"play.py --set prompt_world={name} (or prompt_world= in Python).")


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


def memory_latent(model: LoadedModel, render: MemoryRender) -> torch.Tensor:
    """A memory render -> conditioning [1, C+1, h, w] (latent of the render + coverage at latent size)."""
    ae = model.autoencoder
    C, h, w = model.config.latent_shape
    dev = model.device
    depth = torch.from_numpy(render.depth.astype(np.float32))[None, None].to(dev) if ae.config.use_depth else None
    z = ae.encode(frames_to_tensor(render.rgb)[None].to(dev), depth).float()
    alpha = torch.from_numpy(render.alpha.astype(np.float32))[None, None].to(dev)
    alpha = torch.nn.functional.adaptive_avg_pool2d(alpha, (h, w))
    return torch.cat([z, alpha], 1)


def memory_first_frame(frame: DecodedFrame, latent: torch.Tensor, render: MemoryRender,
                       memory: torch.Tensor) -> tuple[DecodedFrame, torch.Tensor]:
    """The memory where it covers, the model's frame elsewhere (GEN3C's cache as the frame, the generator painting the
    holes). frame: the decoded sample [1, 3, H, W] (+ depth); latent: the sample [1, C, h, w]; render: the memory at
    this camera; memory: its conditioning latent [1, C+1, h, w] (memory_latent). Returns the shown frame (rgb and
    depth) and the latent to commit as context: per latent cell the memory's where the whole cell is covered."""
    lo, hi = MEMORY_GATE
    dev = frame.rgb.device
    alpha = torch.from_numpy(render.alpha.astype(np.float32)).to(dev)[None, None]
    gate = ((alpha - lo) / (hi - lo)).clamp(0.0, 1.0)
    rgb = gate * frames_to_tensor(render.rgb).to(dev)[None] + (1 - gate) * frame.rgb
    depth = frame.depth
    if depth is not None:
        mem_depth = torch.from_numpy(render.depth.astype(np.float32)).to(dev)[None, None]
        depth = gate * mem_depth + (1 - gate) * depth
    h, w = latent.shape[-2:]
    cell = -torch.nn.functional.adaptive_max_pool2d(-gate, (h, w))  # the least covered pixel of each latent cell
    z = cell * memory[:, :-1].to(latent.dtype) + (1 - cell) * latent
    return DecodedFrame(rgb=rgb, depth=depth), z


class DreamWorld(World):
    """A trained world model as a World. Deterministic for a given seed, actions and device.

    `device`: "auto" (CUDA when torch sees a GPU, else the CPU), "cpu" or "cuda" (worldmodel.device). On CUDA the
    dynamics runs under bf16 autocast (`amp`, default on for CUDA, off on the CPU, which stays fp32) and the scene
    memory rasterizes with gsplat once its CUDA extension is built (splat.render.gsplat_status). Per tick the host
    and the device exchange the action, the camera motion (the pose drives the camera on the host), the memory
    render's image (when the memory is on: it lives on the host) and the new frame (RGB + depth); the sampling
    noise is drawn from the seed's CPU generator and copied, so a seed dreams the same on either device (up to
    bf16 rounding).

    `memory`, `camera` ("model" or "action") and `memory_first`: None takes the model's own choice (model.yaml
    `info.dream`; the shipped model: memory on, camera from the actions, memory first).
    """

    name = "dream"
    deterministic = True
    commands = {"memory": ("m", "scene memory on/off"), "save_memory": ("f6", "save the scene memory as .ply")}

    def __init__(self, checkpoint: str | None = None, steps: int = 1, context_noise: float | None = None,
                 prompt_world: str | None = None, prompt_config: dict[str, Any] | None = None,
                 memory: bool | None = None, bf16: bool = False, threads: int = 2,
                 memory_settings: dict[str, Any] | None = None, device: str = "auto", amp: bool | None = None,
                 camera: str | None = None, memory_first: bool | None = None) -> None:
        self.checkpoint = str(checkpoint or SHIPPED_MODEL)
        torch.set_num_threads(threads)
        self.device = resolve_device(device)
        self.amp = default_amp(self.device) if amp is None else bool(amp)
        self.model: LoadedModel = load_model(self.checkpoint, device=self.device)
        cfg = self.model.config
        self.H, self.W = cfg.frame_size
        if context_noise is None:  # the level chosen for this model on validation data (model.yaml), else clean
            context_noise = self.model.context_noise
        self.sampler = FlowSampler(steps=steps, context_noise=context_noise)
        self.bf16 = bf16
        if bf16:
            self.model.dynamics.to(torch.bfloat16)
        dream_info = self.model.dream_settings
        # The camera: "action" (worldmodel.motion, the model's fitted info.motion) or "model" (the ego-motion head)
        camera = camera or dream_info.get("camera", "model")
        if camera not in ("model", "action"):
            raise ValueError(f"camera must be 'model' or 'action' (got {camera!r})")
        self.motion: CameraMotion | None = None
        if camera == "action":
            rules = MotionModel.from_info(self.model.info.get("motion"))
            if rules is None:
                raise ValueError(f"{self.checkpoint}: camera='action' needs the model's fitted motion (model.yaml info.motion); "
                                 "fit it with python -m worldmodel.motion --checkpoint ... or use camera='model'")
            self.motion = CameraMotion(rules)
        # Memory first: where the memory covers a pixel it is the frame; the model paints the rest (see step)
        self.memory_first = bool(dream_info.get("memory_first", False) if memory_first is None else memory_first)
        if memory is None:  # the model says whether it dreams with its scene memory (model.yaml info.dream.memory)
            memory = bool(dream_info.get("memory", False))
        self.prompt_name = prompt_world_name(self.model, self.checkpoint, prompt_world)
        # The prompt renders at the data's resolution, then is area-resized like the training data.
        self.prompt_config = prompt_world_config(self.model, self.prompt_name, prompt_world, prompt_config)
        if memory_settings is None:  # the scene memory the model was tuned with (model.yaml), else the defaults
            memory_settings = self.model.memory_settings
        else:
            memory_settings = check_memory_settings(memory_settings, "memory_settings")
        # The device that ran is recorded (not "auto"): a recording replays exactly only where it was made.
        self._config = dict(checkpoint=self.checkpoint, steps=steps, context_noise=context_noise, prompt_world=self.prompt_name,
                            prompt_config=self.prompt_config, memory=memory, bf16=bf16, threads=threads,
                            memory_settings=dict(memory_settings), device=str(self.device), amp=self.amp,
                            camera=camera, memory_first=self.memory_first)
        self.prompt: World | None = None
        self.memory: SceneMemoryLike | None = None
        self.memory_enabled = memory
        if memory:
            from splat import SceneMemory

            settings = dict(memory_settings)
            # gsplat on a CUDA dream once it is built; a CPU dream keeps the CPU renderer even beside a GPU
            settings.setdefault("backend", "auto" if self.device.type == "cuda" else "cpu")
            self.memory = SceneMemory(width=self.W, height=self.H, **settings)
        self.state = None
        self.c2w = np.eye(4)
        self.K = np.eye(3)
        self.tick = self.anchor_tick = 0  # anchor: the tick of the last real frame
        self.generator = torch.Generator().manual_seed(0)
        self.committed: torch.Tensor | None = None  # [1, C, h, w] the last tick's context latent (see step)
        self.memory_image: torch.Tensor | None = None  # [1, C+1, h, w] the memory image it was conditioned on
        self.timings: dict[str, float] = {}

    @property
    def config(self) -> dict[str, Any]:
        return dict(self._config)

    def _cache_dtype(self) -> torch.dtype:
        """The KV cache's precision: bf16 under autocast (what the attention's keys and values are), else the
        dynamics' own."""
        return torch.bfloat16 if self.amp else self.model.dynamics.dtype

    @property
    def model_hash(self) -> str:
        return self.model.hash

    def attach_memory(self, memory: SceneMemoryLike | None) -> None:
        """Give the dream a scene memory (rendered before, and fed after, each generated frame)."""
        self.memory = memory

    # -- World ---------------------------------------------------------------------------------------

    def reset(self, seed: int) -> Observation:
        if self.prompt is None:
            self.prompt = make_world(self.prompt_name, **self.prompt_config)
        first = self.prompt.reset(seed)
        rgb = area_resize(first.rgb[None], (self.H, self.W))
        depth = None
        if first.depth is not None:
            depth = area_resize(first.depth[None, ..., None], (self.H, self.W))[..., 0]
        c2w = first.cam_to_world.copy() if first.cam_to_world is not None else np.eye(4)
        return self.start(rgb, depth, c2w[None], self._scaled_K(first), np.zeros((1, 8), np.float32), seed=seed)

    @torch.no_grad()
    def start(self, rgb: np.ndarray, depth: np.ndarray | None, cam_to_world: np.ndarray, K: np.ndarray,
              actions: np.ndarray, seed: int = 0) -> Observation:
        """Dream on from real frames: rgb [N, H, W, 3] uint8 at the model's size, depth [N, H, W] metres (or None),
        cam_to_world [N, 4, 4], K [3, 3] at the model's size, actions [N, 8] (row i led into frame i). Each frame
        becomes a context frame and, with a memory, a real view in it. `reset` starts from the prompt world's first
        view this way; the evaluation's open loop from the true frames before its start tick. Returns the last
        frame as the model decodes it; the next `step` dreams the frame after it. The sampling noise is `seed`'s."""
        n = len(rgb)
        self.generator = torch.Generator().manual_seed(int(seed))
        self.state = self.model.dynamics.new_state(1, dtype=self._cache_dtype())
        self.tick = self.anchor_tick = n - 1
        self.c2w = np.asarray(cam_to_world[-1], np.float64).copy()
        self.K = np.asarray(K, np.float64).copy()
        if self.motion is not None:
            self.motion.reset(self.c2w)
        dev, dyn = self.device, self.model.dynamics
        d = torch.from_numpy(np.asarray(depth, np.float32))[:, None].to(dev) if depth is not None else None
        z = self.model.autoencoder.encode(frames_to_tensor(rgb).to(dev), d)
        act = torch.as_tensor(np.asarray(actions, np.float32), device=dev)
        with autocast(dev, self.amp):
            for i in range(n):
                dyn.commit_frame(self.state, z[i:i + 1].to(dyn.dtype), act[i:i + 1].to(dyn.dtype))
        frame = self.model.autoencoder.decode(z[-1:])
        if self.memory_first and self.memory is not None:  # the frame shown is the real view itself, not its decoding
            frame = DecodedFrame(rgb=frames_to_tensor(rgb[-1:]).to(dev),
                                 depth=d[-1:] if d is not None else frame.depth)
        obs = self._observe(frame, z[-1:])
        if self.memory is not None:
            self.memory.reset()
            for i in range(n):
                if depth is not None:  # a real view, as the world rendered it (its true depth)
                    self.memory.insert(rgb[i], np.asarray(depth[i], np.float32), cam_to_world[i], self.K, i)
                elif i == n - 1 and obs.depth is not None:  # no depth: the model's decoded depth of the last view
                    self.memory.insert(obs.rgb, obs.depth, obs.cam_to_world, obs.K, i)
        return obs

    def _scaled_K(self, obs: Observation) -> np.ndarray:
        return scaled_K(obs, self.H, self.W)

    @torch.no_grad()
    def step(self, action: Action) -> Observation:
        if self.state is None:
            raise RuntimeError("DreamWorld.step() before reset(seed)")
        t0 = time.perf_counter()
        dyn, ae = self.model.dynamics, self.model.autoencoder
        a = torch.from_numpy(action.to_array())[None].to(self.device, dyn.dtype)
        use_memory = self.memory is not None and self.memory_enabled
        with autocast(self.device, self.amp):
            pose = dyn.predict_pose(self.state, a)  # runs with the rules too: the pose token's keys are context
        if self.motion is None:
            motion = pose.float().cpu().numpy()[0]  # the ego-motion head's camera moves on the host
        else:  # the action-driven camera
            real = dreamed = None
            if use_memory and hasattr(self.memory, "gaussians"):
                real, dreamed = obstacle_points(self.memory, float(np.sqrt(self.K[0, 0] * self.K[1, 1])))
            motion = self.motion.step(self.c2w, action.to_array(), real, dreamed)
        next_c2w = apply_ego_motion(self.c2w, motion)
        t1 = time.perf_counter()
        memory = render = None
        if use_memory and (dyn.config.use_memory or self.memory_first):
            render = self.memory.render(next_c2w, self.K, self.tick + 1)
            memory = memory_latent(self.model, render).to(dyn.dtype)
        t2 = time.perf_counter()
        first = self.memory_first and render is not None
        with autocast(self.device, self.amp):
            sample = self.sampler.sample(dyn, self.state, a, memory=memory if dyn.config.use_memory else None,
                                         generator=self.generator, commit=not first)
        t3 = time.perf_counter()
        frame = ae.decode(sample.latent.float())
        latent = sample.latent
        if first:  # the shown frame and the committed context: the memory where it covers, the model elsewhere
            frame, latent = memory_first_frame(frame, sample.latent, render, memory)
            with autocast(self.device, self.amp):
                self.sampler.commit(dyn, self.state, latent.to(sample.latent.dtype), a,
                                    memory if dyn.config.use_memory else None, generator=self.generator)
        # What this tick gave the model (the rollout training data reads them: worldmodel/training/rollouts.py):
        # the latent committed as context (before its context noise) and the memory image it was conditioned on
        self.committed = latent.float()
        self.memory_image = memory.float() if memory is not None and dyn.config.use_memory else None
        t4 = time.perf_counter()
        self.c2w = next_c2w
        self.tick += 1
        obs = self._observe(frame, sample.latent)
        if self.memory is not None and obs.depth is not None:
            # every frame after the real first view is dreamed: its content is `tick` ticks from a real one
            self.memory.insert(obs.rgb, obs.depth, obs.cam_to_world, obs.K, self.tick,
                               source_age=self.tick - self.anchor_tick)
        t5 = time.perf_counter()
        self.timings = {"pose_ms": (t1 - t0) * 1e3, "memory_render_ms": (t2 - t1) * 1e3, "sample_ms": (t3 - t2) * 1e3,
                        "decode_ms": (t4 - t3) * 1e3, "memory_insert_ms": (t5 - t4) * 1e3, "total_ms": (t5 - t0) * 1e3}
        return obs

    def _observe(self, frame, latent: torch.Tensor) -> Observation:
        rgb = tensor_to_frames(frame.rgb)[0]
        depth = frame.depth[0, 0].float().cpu().numpy().astype(np.float32) if frame.depth is not None else None
        # Timings stay out of the observation (world.timings has them): observations must be a function
        # of the seed and the actions alone.
        hud = f"DREAM  model {self.model.hash[:8]}  {self.sampler.steps}-step"
        if self.memory is not None:
            hud += "  memory " + (f"on: {len(self.memory)} Gaussians" if self.memory_enabled else "off")
        return Observation(rgb=rgb, depth=depth, cam_to_world=self.c2w.copy(), K=self.K.copy(), tick=self.tick,
                           info={"hud": hud, "dream": True})

    def hud_extra(self) -> str:
        """Live costs for the HUD: the tick and, with a memory, its render + insert time."""
        t = self.timings
        if not t:
            return ""
        text = f"dream {t['total_ms']:.0f} ms"
        if self.memory is not None and self.memory_enabled:
            text += f" (memory {t['memory_render_ms'] + t['memory_insert_ms']:.1f} ms)"
        return text

    def command(self, name: str) -> str | None:
        """World commands from the window: 'memory' toggles the scene memory, 'save_memory' writes it as a .ply into
        memory/. None (the engine then says what would make the key work: --set memory=true) without a memory."""
        if self.memory is None:
            return None
        if name == "memory":
            self.memory_enabled = not self.memory_enabled
            return f"memory {'on' if self.memory_enabled else 'off'}"
        if name == "save_memory":
            if not hasattr(self.memory, "gaussians"):
                return "this dream's memory has no Gaussians to save"
            from splat import write_ply

            path = MEMORY_DIR / f"dream-tick{self.tick:06d}-{time.strftime('%Y%m%d-%H%M%S')}.ply"
            path.parent.mkdir(parents=True, exist_ok=True)
            n = write_ply(path, self.memory.gaussians)
            return f"saved {n} Gaussians to {path} (3DGS .ply)"
        return None

    def close(self) -> None:
        if self.prompt is not None:
            self.prompt.close()
            self.prompt = None
