"""B dream environments stepped in one batched forward pass: a gymnasium VectorEnv for agents in imagination.

    from worldmodel.vector import DreamVectorEnv
    envs = DreamVectorEnv(num_envs=16, checkpoint="assets/model")
    obs, info = envs.reset(seed=0)
    obs, rewards, terminated, truncated, info = envs.step(envs.action_space.sample())

Each tick runs one batched pose prediction, one batched sampling pass, one batched commit and one batched
decode for all environments, instead of B sequential DreamWorld steps. Environments reset independently
(gymnasium's next-step autoreset): the model empties that row of its KV cache and starts it from a new
prompt frame, which is exactly a fresh rollout for that row (tested), while the other rows carry on.
Row i with reset seed s draws the same noise as `DreamWorld` reset with s, so the two agree.
The scene memory is not used here (memory off); the camera follows the model's camera rules when it has them
(worldmodel.motion), without collisions.

`device` ("auto": CUDA when present, "cpu", "cuda") is where the model runs, with bf16 autocast on CUDA (`amp`)
as in DreamWorld; the batch is what a GPU is good at (one forward for B environments). Per tick the actions go
to the device and the camera motions and the observations (frames or latents) come back.

`observation="latent"` gives agents the model's own latent frames (float32 [B, C, h, w], what the dynamics
sees) and skips the decoder, as agents trained in imagination on latent features do (DreamerV3's world-model
states); `decode(latents)` turns them into RGB when a person wants to look. Reward / termination hooks and
render_mode="rgb_array" are given decoded frames, so they still work, at the decoder's cost.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np
import torch
from gymnasium import spaces
from gymnasium.vector import AutoresetMode, VectorEnv
from gymnasium.vector.utils import batch_space

from engine.action import Action
from engine.gymenv import action_space
from engine.world import Observation, World, make_world
from worldmodel.checkpoint import load_model
from worldmodel.data import area_resize, frames_to_tensor, tensor_to_frames
from worldmodel.device import autocast, default_amp, resolve_device
from worldmodel.dream import SHIPPED_MODEL, prompt_world_config, prompt_world_name, scaled_K
from worldmodel.flow import FlowSampler
from worldmodel.motion import CameraMotion, MotionModel
from worldmodel.pose import apply_ego_motion

RewardFn = Callable[[Observation, Action, Observation], float]
TerminateFn = Callable[[Observation], bool]


class DreamVectorEnv(VectorEnv):
    """`num_envs` dreams batched through one model."""

    metadata = {"render_modes": ["rgb_array"], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int, checkpoint: str | None = None, steps: int = 1, max_steps: int = 500,
                 reward_fn: RewardFn | None = None, terminate_fn: TerminateFn | None = None,
                 prompt_world: str | None = None, prompt_config: dict[str, Any] | None = None,
                 render_mode: str | None = None, threads: int = 2, observation: str = "rgb",
                 context_noise: float | None = None, device: str = "auto", amp: bool | None = None) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if observation not in ("rgb", "latent"):
            raise ValueError(f"observation must be 'rgb' or 'latent', got {observation!r}")
        torch.set_num_threads(threads)
        checkpoint = str(checkpoint or SHIPPED_MODEL)
        self.device = resolve_device(device)
        self.amp = default_amp(self.device) if amp is None else bool(amp)
        self.model = load_model(checkpoint, device=self.device)
        self.num_envs, self.max_steps, self.render_mode = num_envs, max_steps, render_mode
        self.reward_fn, self.terminate_fn = reward_fn, terminate_fn
        self.H, self.W = self.model.config.frame_size
        self.prompt_name = prompt_world_name(self.model, checkpoint, prompt_world)
        self.prompt_config = prompt_world_config(self.model, self.prompt_name, prompt_world, prompt_config)
        # One prompt world serves every env: it only renders the first frame of an episode.
        self.prompt: World = make_world(self.prompt_name, **self.prompt_config)
        # Each dreamed frame enters the context at this noise level (as in DreamWorld; None: the model's own).
        self.sampler = FlowSampler(steps=steps, context_noise=self.model.context_noise if context_noise is None else context_noise)
        self.observation = observation
        # Pixels are made only when someone looks at them: rgb observations, hooks, or rgb_array renders.
        self._pixels = observation == "rgb" or reward_fn is not None or terminate_fn is not None \
            or render_mode == "rgb_array"
        if observation == "latent":
            self.single_observation_space = spaces.Box(-np.inf, np.inf, tuple(self.model.config.latent_shape), np.float32)
        else:
            self.single_observation_space = spaces.Box(0, 255, (self.H, self.W, 3), np.uint8)
        self.single_action_space = action_space()
        self.observation_space = batch_space(self.single_observation_space, num_envs)
        self.action_space = batch_space(self.single_action_space, num_envs)
        self.state = None
        self.c2w = np.tile(np.eye(4), (num_envs, 1, 1))
        # The camera as DreamWorld moves it: the model's fitted camera rules when it dreams with camera = action
        # (no collisions here: they need the scene memory), else its ego-motion head.
        rules = MotionModel.from_info(self.model.info.get("motion"))
        self.cameras = ([CameraMotion(rules) for _ in range(num_envs)]
                        if rules is not None and self.model.dream_settings.get("camera") == "action" else None)
        self.K = np.tile(np.eye(3), (num_envs, 1, 1))
        self.steps = np.zeros(num_envs, np.int64)
        self.generators = [torch.Generator() for _ in range(num_envs)]
        self._autoreset = np.zeros(num_envs, bool)
        self._frames: list[Observation] = []

    # -- prompts ----------------------------------------------------------------------------------------

    def _prompt(self, seed: int) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray]:
        """(rgb, depth, cam_to_world, K) of the prompt world's first view for `seed`, at model size."""
        obs = self.prompt.reset(seed)
        rgb = area_resize(obs.rgb[None], (self.H, self.W))[0]
        depth = None if obs.depth is None else area_resize(obs.depth[None, ..., None], (self.H, self.W))[0, ..., 0]
        K = scaled_K(obs, self.H, self.W)
        c2w = obs.cam_to_world if obs.cam_to_world is not None else np.eye(4)
        return rgb, depth, c2w, K

    @torch.no_grad()
    def _encode(self, rgbs: list[np.ndarray], depths: list[np.ndarray | None]) -> torch.Tensor:
        ae = self.model.autoencoder
        depth = None
        if ae.config.use_depth:
            depth = torch.from_numpy(np.stack(depths).astype(np.float32))[:, None].to(self.device)
        return ae.encode(frames_to_tensor(np.stack(rgbs)).to(self.device), depth).float()

    def _start_rows(self, rows: list[int], seeds: list[int]) -> torch.Tensor:
        """Prompt frames for `rows` (their latents [len(rows), C, h, w]); sets their pose, K, generator."""
        prompts = [self._prompt(s) for s in seeds]
        for r, s, (_, _, c2w, K) in zip(rows, seeds, prompts):
            self.c2w[r], self.K[r] = c2w, K
            if self.cameras is not None:
                self.cameras[r].reset(c2w)
            self.generators[r].manual_seed(int(s))
            self.steps[r] = 0
        return self._encode([p[0] for p in prompts], [p[1] for p in prompts])

    # -- VectorEnv ---------------------------------------------------------------------------------------

    @torch.no_grad()
    def reset(self, *, seed: int | list[int] | None = None, options: dict[str, Any] | None = None):
        super().reset(seed=seed if isinstance(seed, int) else (int(seed[0]) if seed is not None else None))
        if seed is None:
            seeds = [int(s) for s in self.np_random.integers(0, 2**31 - 1, self.num_envs)]
        elif isinstance(seed, int):
            seeds = [seed + i for i in range(self.num_envs)]
        else:
            seeds = [int(s) for s in seed]
        dyn = self.model.dynamics
        self.state = dyn.new_state(self.num_envs, dtype=torch.bfloat16 if self.amp else dyn.dtype)
        z = self._start_rows(list(range(self.num_envs)), seeds)
        with autocast(self.device, self.amp):
            dyn.commit_frame(self.state, z.to(dyn.dtype), torch.zeros(self.num_envs, 8, dtype=dyn.dtype, device=self.device))
        self._autoreset[:] = False
        return self._output(z), {"seed": np.array(seeds)}

    @torch.no_grad()
    def step(self, actions: np.ndarray):
        if self.state is None:
            raise RuntimeError("DreamVectorEnv.step() before reset()")
        actions = np.asarray(actions, np.float32)
        if actions.shape != (self.num_envs, 8) or not np.all(np.isfinite(actions)):
            raise ValueError(f"actions must be finite float32 [{self.num_envs}, 8] in the engine encoding, got "
                             f"{actions.shape} (non-finite: {int((~np.isfinite(actions)).sum())})")
        actions = np.clip(actions, self.single_action_space.low, self.single_action_space.high)
        dyn = self.model.dynamics
        resetting = np.flatnonzero(self._autoreset)
        a = torch.from_numpy(actions).to(self.device, dyn.dtype)
        if len(resetting):
            dyn.reset_rows(self.state, resetting.tolist())
            seeds = [int(s) for s in self.np_random.integers(0, 2**31 - 1, len(resetting))]
            prompt_z = self._start_rows(resetting.tolist(), seeds)
            a[torch.from_numpy(resetting).to(self.device)] = 0.0  # a reset row's first frame has no action into it
        with autocast(self.device, self.amp):
            motion = dyn.predict_pose(self.state, a).float().cpu().numpy()
        moving = np.setdiff1d(np.arange(self.num_envs), resetting)
        if self.cameras is not None:
            for r in moving:
                motion[r] = self.cameras[r].step(self.c2w[r], actions[r])
        self.c2w[moving] = apply_ego_motion(self.c2w[moving], motion[moving])
        shape = (1, *self.model.config.latent_shape)
        noise = torch.cat([torch.randn(shape, generator=g) for g in self.generators])
        cn = self.sampler.context_noise
        # Each row's context noise comes from its own generator, after its start noise (DreamWorld's order).
        ctx_noise = torch.cat([torch.randn(shape, generator=g) for g in self.generators]) if cn > 0 else None
        if len(resetting):  # reset rows consumed no noise in a fresh rollout: give the draws back
            for r in resetting:
                self.generators[r].manual_seed(int(self.generators[r].initial_seed()))
        with autocast(self.device, self.amp):
            z = self.sampler.sample(dyn, self.state, a, noise=noise.to(self.device, dyn.dtype), commit=False).latent.float()
        if len(resetting):
            z[torch.from_numpy(resetting).to(self.device)] = prompt_z
        level = torch.zeros(self.num_envs)  # moving rows commit at the context level; a reset row's prompt is clean
        level[moving] = cn
        with autocast(self.device, self.amp):
            self.sampler.commit(dyn, self.state, z.to(dyn.dtype), a, level=level.to(dyn.dtype), noise=ctx_noise)
        prev = self._frames
        self.steps[moving] += 1
        out = self._output(z)
        obs = self._frames
        rewards = np.zeros(self.num_envs, np.float32)
        terminated = np.zeros(self.num_envs, bool)
        for i in moving:
            act = Action.from_array(actions[i])
            if self.reward_fn is not None:
                rewards[i] = float(self.reward_fn(prev[i], act, obs[i]))
            if self.terminate_fn is not None:
                terminated[i] = bool(self.terminate_fn(obs[i]))
        truncated = (self.steps >= self.max_steps) & ~terminated
        truncated[resetting] = False
        self._autoreset = terminated | truncated
        return out, rewards, terminated, truncated, {"steps": self.steps.copy()}

    def _output(self, z: torch.Tensor) -> np.ndarray:
        """The batched observation for latents z [B, C, h, w]; decodes (and keeps Observations for hooks
        and render) only when pixels are needed."""
        if self._pixels:
            obs = self._observe(self.model.autoencoder.decode(z))
            if self.observation == "rgb":
                return self._batch(obs)
        else:
            self._frames = []
        return np.ascontiguousarray(z.float().cpu().numpy())

    @torch.no_grad()
    def decode(self, latents: np.ndarray) -> np.ndarray:
        """Latent observations [B, C, h, w] float32 -> RGB frames [B, H, W, 3] uint8."""
        z = torch.from_numpy(np.asarray(latents, np.float32)).to(self.device)
        if z.dim() != 4 or tuple(z.shape[1:]) != tuple(self.model.config.latent_shape):
            raise ValueError(f"latents must be [B, {', '.join(map(str, self.model.config.latent_shape))}], "
                             f"got {list(z.shape)}")
        return tensor_to_frames(self.model.autoencoder.decode(z).rgb)

    def _observe(self, frame) -> list[Observation]:
        rgb = tensor_to_frames(frame.rgb)
        depth = frame.depth[:, 0].float().cpu().numpy() if frame.depth is not None else None
        self._frames = [Observation(rgb=rgb[i], depth=None if depth is None else depth[i].astype(np.float32),
                                    cam_to_world=self.c2w[i].copy(), K=self.K[i].copy(), tick=int(self.steps[i]))
                        for i in range(self.num_envs)]
        return self._frames

    def _batch(self, obs: list[Observation]) -> np.ndarray:
        return np.stack([o.rgb for o in obs])

    def render(self) -> tuple[np.ndarray, ...] | None:
        if self.render_mode == "rgb_array":
            return tuple(o.rgb for o in self._frames)
        return None

    def close_extras(self, **kwargs: Any) -> None:
        self.prompt.close()
