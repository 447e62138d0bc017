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

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from engine.action import Action
from engine.files import brief
from engine.world import Observation, World, check_config_types, check_world_name, make_world, world_factory
from worldmodel.checkpoint import MODEL_YAML, LoadedModel, load_model
from worldmodel.data import fit_K
from worldmodel.device import default_amp, resolve_device
from worldmodel.flow import FlowSampler
from worldmodel.settings import DreamSettings
from splat.memory import SceneMemoryLike
from worldmodel.tick import Dreams, StartView, TickOutput, prompt_view

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_MODEL = ROOT / "assets" / "model"
MAX_THREADS = 256  # torch threads a dream may ask for (libgomp fails far beyond the cores)
MEMORY_DIR = Path("memory")  # where F6 saves the scene memory (.ply), beside screenshots/ and recordings/


def prompt_world_config(model: LoadedModel, prompt_name: str, prompt_world: str | None = None,
                        prompt_config: dict[str, Any] | None = None) -> dict[str, Any]:
    """The config a dream's prompt world is built with (the one place DreamWorld and DreamVectorEnv ask):
    the caller's `prompt_config`, else model.yaml `info.prompt_config` when the prompt is the model's own world
    (exactly the world the data was recorded in), else the data's render size."""
    if prompt_config is not None:
        return _checked_prompt(prompt_name, prompt_config, "prompt_config")
    own = model.settings
    if own.prompt_config is not None and (prompt_world is None or prompt_world == own.prompt_world):
        return _checked_prompt(prompt_name, dict(own.prompt_config), "model.yaml info.prompt_config")
    H, W = model.config.frame_size
    render = own.render_size or (2 * H, 2 * W)
    return {"width": render[1], "height": render[0]}


def _checked_prompt(name: str, config: Any, where: str) -> dict[str, Any]:
    """A prompt world's config, its types checked against the world's constructor now rather than at the first
    reset (engine.world.check_config_types): ValueError naming `where`."""
    if not isinstance(config, dict):
        raise ValueError(f"{where} must be a mapping of world settings, got {brief(config)}")
    try:
        check_config_types(name, world_factory(name), config)
    except TypeError as e:
        raise ValueError(f"{where}: {e}") from None
    return dict(config)


def prompt_world_name(model: LoadedModel, checkpoint: str | Path, prompt_world: str | None = None) -> str:
    """The world a dream starts its episodes from: `prompt_world` when the caller names one, else the model's
    model.yaml `info.prompt_world` (a registered world only: a model someone shares must not run code), else
    the arena. Checked here, before anything is built: WorldNotFoundError / UntrustedWorldError otherwise."""
    if prompt_world is not None:
        world_factory(prompt_world)  # the caller's own name (refused too while a data file's world is being built)
        return prompt_world
    name = model.settings.prompt_world
    source = str(Path(checkpoint) / MODEL_YAML)
    return check_world_name(name, source, hint=f"If you trust this model, name its prompt world yourself: "
                                              f"play.py --set prompt_world={name} (or prompt_world= in Python).")


def scene_memories(settings: dict[str, Any], n: int, device: torch.device, H: int, W: int) -> list:
    """n empty scene memories (splat.SceneMemory) for dreams of H x W frames: gsplat on a CUDA dream once it is built,
    the CPU renderer for a CPU dream even beside a GPU."""
    from splat import SceneMemory

    settings = dict(settings)
    settings.setdefault("backend", "auto" if device.type == "cuda" else "cpu")
    return [SceneMemory(width=W, height=H, **settings) for _ in range(n)]


def build_dreams(model: LoadedModel, checkpoint: str, batch: int, sampler: FlowSampler, amp: bool,
                 camera: str | None = None, memory: bool | None = None, memory_first: bool | None = None,
                 memory_settings: dict[str, Any] | None = None, upsample: bool = False,
                 memory_first_trust: Any = None) -> tuple[Dreams, DreamSettings]:
    """`batch` dreams of one model (worldmodel.tick) dreaming as the model chose (model.settings, the caller's
    choices over them: DreamSettings.choose, one clear error for a bad one before anything is built), each with its
    own scene memory when it dreams with one; the KV cache in bf16 under autocast (`amp`), else the dynamics' dtype;
    `upsample`: the shown frames through the model's upsampler too (TickOutput.shown)."""
    chosen = model.settings.choose(camera=camera, memory=memory, memory_first=memory_first,
                                   memory_settings=memory_settings, memory_first_trust=memory_first_trust,
                                   where=str(checkpoint))
    H, W = model.config.frame_size
    memories = scene_memories(chosen.memory_settings, batch, model.device, H, W) if chosen.memory else None
    dtype = torch.bfloat16 if amp else model.dynamics.dtype
    return Dreams(model, batch, sampler, chosen.rules, memories, chosen.memory_first, amp, dtype, upsample,
                  chosen.memory_first_trust), chosen


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
    `info.dream`; the shipped model: memory on, camera from the actions, memory first). `memory_first_trust` [lo, hi]:
    memory first only where the memory's content is trusted (worldmodel.tick.memory_first_frame); None: the model's.

    `upsample`: show the frames through the model's upsampler (worldmodel/upsampler.py) at twice the model's size,
    with the depth (nearest) and intrinsics to match; None: when the model has one. The dream itself, its memory
    included, stays at the model's size.
    """

    name = "dream"
    deterministic = True
    commands = {"memory": ("m", "scene memory on/off"), "save_memory": ("f6", "save the scene memory as .ply")}

    def __init__(self, checkpoint: str | None = None, steps: int = 1, context_noise: float | None = None,
                 prompt_world: str | None = None, prompt_config: dict[str, Any] | None = None,
                 memory: bool | None = None, bf16: bool = False, threads: int | None = None,
                 memory_settings: dict[str, Any] | None = None, device: str = "auto", amp: bool | None = None,
                 camera: str | None = None, memory_first: bool | None = None, upsample: bool | None = None,
                 memory_first_trust: list[float] | None = None) -> None:
        self.checkpoint = str(checkpoint or SHIPPED_MODEL)
        if threads is not None:  # only when asked: torch's thread count is the whole process's
            if not 1 <= threads <= MAX_THREADS:
                raise ValueError(f"threads must be in [1, {MAX_THREADS}] (this machine has {os.cpu_count()} cores), "
                                 f"got {threads}")
            torch.set_num_threads(threads)
        threads = torch.get_num_threads()
        self.device = resolve_device(device)
        self.amp = default_amp(self.device) if amp is None else bool(amp)
        self.model: LoadedModel = load_model(self.checkpoint, device=self.device)
        cfg = self.model.config
        if upsample and self.model.upsampler is None:
            raise ValueError(f"upsample=true: {self.checkpoint} has no upsampler (model.yaml model.upsampler); train "
                             f"one with python -m worldmodel.training.upsampler, or leave upsample unset")
        upsample = self.model.upsampler is not None if upsample is None else bool(upsample)
        self.H, self.W = cfg.frame_size
        # the level chosen for this model on validation data (model.yaml), else clean; the caller's checked the same way
        context_noise = self.model.settings.choose(context_noise=context_noise).context_noise
        self.sampler = FlowSampler(steps=steps, context_noise=context_noise)
        self.bf16 = bf16
        if bf16:
            self.model.dynamics.to(torch.bfloat16)
        # the one dream tick (worldmodel.tick), for a batch of one
        self.dreams, chosen = build_dreams(self.model, self.checkpoint, 1, self.sampler, self.amp, camera, memory,
                                           memory_first, memory_settings, upsample, memory_first_trust)
        camera, memory, memory_settings = chosen.camera, chosen.memory, chosen.memory_settings
        self.memory_first = chosen.memory_first
        self.prompt_name = prompt_world_name(self.model, self.checkpoint, prompt_world)
        # The prompt renders at the data's resolution, then is area-resized like the training data.
        self.prompt_config = prompt_world_config(self.model, self.prompt_name, prompt_world, prompt_config)
        # The device that ran is recorded (not "auto"): a recording replays exactly only where it was made.
        self._config = dict(checkpoint=self.checkpoint, steps=steps, context_noise=context_noise, prompt_world=self.prompt_name,
                            prompt_config=self.prompt_config, memory=memory, bf16=bf16, threads=threads,
                            memory_settings=dict(memory_settings), device=str(self.device), amp=self.amp,
                            camera=camera, memory_first=self.memory_first, upsample=upsample,
                            **({"memory_first_trust": list(chosen.memory_first_trust)}
                               if chosen.memory_first_trust is not None else {}))
        self.prompt: World | None = None
        self.committed: torch.Tensor | None = None  # [1, C, h, w] the last tick's context latent (see step)
        self.memory_image: torch.Tensor | None = None  # [1, C+1, h, w] the memory image it was conditioned on
        self.timings: dict[str, float] = {}

    @property
    def config(self) -> dict[str, Any]:
        return dict(self._config)

    @property
    def model_hash(self) -> str:
        return self.model.hash

    @property
    def model_settings_hash(self) -> str:
        """model.yaml's settings hash (worldmodel.checkpoint.settings_hash): recordings note it beside model_hash."""
        return self.model.settings_hash

    @property
    def memory(self) -> SceneMemoryLike | None:
        """The scene memory (rendered before, and fed after, each generated frame), None without one."""
        return self.dreams.memories[0] if self.dreams.memories is not None else None

    @property
    def memory_enabled(self) -> bool:
        return self.dreams.memory_enabled

    @property
    def tick(self) -> int:
        return int(self.dreams.tick[0])

    @property
    def c2w(self) -> np.ndarray:
        return self.dreams.c2w[0].copy()

    @property
    def K(self) -> np.ndarray:
        return self.dreams.K[0].copy()

    def attach_memory(self, memory: SceneMemoryLike | None) -> None:
        """Give the dream a scene memory (rendered before, and fed after, each generated frame)."""
        self.dreams.memories = [memory] if memory is not None else None
        self.dreams.memory_enabled = memory is not None

    # -- World ---------------------------------------------------------------------------------------

    def reset(self, seed: int) -> Observation:
        if self.prompt is None:
            self.prompt = make_world(self.prompt_name, **self.prompt_config)
        view = prompt_view(self.prompt, seed, self.H, self.W)
        return self.start(view.rgb, view.depth, view.cam_to_world, view.K, view.actions, seed=seed)

    @torch.no_grad()
    def start(self, rgb: np.ndarray, depth: np.ndarray | None, cam_to_world: np.ndarray, K: np.ndarray,
              actions: np.ndarray, seed: int = 0) -> Observation:
        """Dream on from real frames: rgb [N, H, W, 3] uint8 at the model's size, depth [N, H, W] metres (or None),
        cam_to_world [N, 4, 4], K [3, 3] at the model's size, actions [N, 8] (row i led into frame i). Each frame
        becomes a context frame and, with a memory, a real view in it. `reset` starts from the prompt world's first
        view this way; the evaluation's open loop from the true frames before its start tick. Returns the last
        frame as the model decodes it (the real view itself when memory first); the next `step` dreams the frame
        after it. The sampling noise is `seed`'s."""
        out = self.dreams.start([StartView(rgb, depth, cam_to_world, K, actions)], [seed])
        return self._observe(out)

    @torch.no_grad()
    def step(self, action: Action) -> Observation:
        if not self.dreams.started:
            raise RuntimeError("DreamWorld.step() before reset(seed)")
        out = self.dreams.step(action.to_array()[None])
        # What this tick gave the model (the rollout training data reads them: worldmodel/training/rollouts.py):
        # the latent committed as context (before its context noise) and the memory image it was conditioned on
        self.committed = out.committed
        self.memory_image = out.memory_image
        self.timings = out.timings
        return self._observe(out)

    def _observe(self, out: TickOutput) -> Observation:
        # Timings stay out of the observation (world.timings has them): observations must be a function
        # of the seed and the actions alone.
        hud = f"DREAM  model {self.model.hash[:8]}  {self.sampler.steps}-step"
        if self.memory is not None:
            hud += "  memory " + (f"on: {len(self.memory)} Gaussians" if self.memory_enabled else "off")
        rgb, depth, K = out.rgb[0], None if out.depth is None else out.depth[0], self.dreams.K[0].copy()
        if out.shown is not None:  # the upsampled frame, its depth (nearest) and intrinsics at its size
            s = out.shown.shape[1] // rgb.shape[0]
            K = fit_K(K, rgb.shape[:2], out.shown.shape[1:3])
            rgb = out.shown[0]
            if depth is not None:
                depth = np.repeat(np.repeat(depth, s, axis=0), s, axis=1)
        return Observation(rgb=rgb, depth=depth, cam_to_world=out.cam_to_world[0].copy(), K=K, tick=self.tick,
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
            self.dreams.memory_enabled = not self.dreams.memory_enabled
            if self.memory_enabled:
                return "memory on"
            return "memory off: the dream neither reads nor feeds it, and nothing it holds blocks the camera"
        if name == "save_memory":
            if not hasattr(self.memory, "save_ply"):
                return "this dream's memory has no Gaussians to save"
            path = MEMORY_DIR / f"dream-tick{self.tick:06d}-{time.strftime('%Y%m%d-%H%M%S')}.ply"
            n = self.memory.save_ply(path)
            return f"saved {n} Gaussians to {path} (3DGS .ply)"
        return None

    def close(self) -> None:
        if self.prompt is not None:
            self.prompt.close()
            self.prompt = None
