"""B dream environments stepped in one batched forward pass: a gymnasium VectorEnv for agents in imagination.

    from worldmodel.vector import DreamVectorEnv
    envs = DreamVectorEnv(num_envs=16, checkpoint="assets/model")
    obs, info = envs.reset(seed=0)
    obs, rewards, terminated, truncated, info = envs.step(envs.action_space.sample())

The environments dream the world a player walks through: the same tick (worldmodel.tick, `Dreams`) with one
batched pose prediction, sampling pass, decode and commit for all of them, each with its own scene memory, its
camera rules with collisions against that memory, and memory first, as the model dreams in play.py (`memory`,
`camera`, `memory_first`: None takes the model's own choice; `memory=False` dreams without a memory). Environments
reset independently (gymnasium's next-step autoreset): the model empties that row of its KV cache and starts it
from a new prompt frame, which is exactly a fresh rollout for that row (tested), while the other rows carry on.
Row i with reset seed s draws the same noise as `DreamWorld` reset with s, so the two agree.

`device` ("auto": CUDA when present, "cpu", "cuda") is where the model runs, with bf16 autocast on CUDA (`amp`)
as in DreamWorld; the batch is what a GPU is good at (one forward for B environments). Per tick the actions go
to the device and the camera motions and the observations (frames or latents) come back.

`observation="latent"` gives agents the model's own latent frames (float32 [B, C, h, w]: the latent each dream
committed as context, what the dynamics sees) and, without a memory (whose inserts need the frames), skips the
decoder, as agents trained in imagination on latent features do (DreamerV3's world-model states); `decode(latents)` turns them into RGB when a person wants to look. Reward / termination hooks and
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
from worldmodel.data import tensor_to_frames
from worldmodel.device import default_amp, resolve_device
from worldmodel.dream import SHIPPED_MODEL, build_dreams, prompt_world_config, prompt_world_name
from worldmodel.flow import FlowSampler
from worldmodel.tick import TickOutput, prompt_view

RewardFn = Callable[[Observation, Action, Observation], float]
TerminateFn = Callable[[Observation], bool]


class DreamVectorEnv(VectorEnv):
    """`num_envs` dreams batched through one model."""

    metadata = {"render_modes": ["rgb_array"], "autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, num_envs: int, checkpoint: str | None = None, steps: int = 1, max_steps: int = 500,
                 reward_fn: RewardFn | None = None, terminate_fn: TerminateFn | None = None,
                 prompt_world: str | None = None, prompt_config: dict[str, Any] | None = None,
                 render_mode: str | None = None, threads: int | None = None, observation: str = "rgb",
                 context_noise: float | None = None, device: str = "auto", amp: bool | None = None,
                 memory: bool | None = None, camera: str | None = None, memory_first: bool | None = None,
                 memory_settings: dict[str, Any] | None = None) -> None:
        if num_envs < 1:
            raise ValueError(f"num_envs must be >= 1, got {num_envs}")
        if observation not in ("rgb", "latent"):
            raise ValueError(f"observation must be 'rgb' or 'latent', got {observation!r}")
        if threads is not None:  # only when asked: torch's thread count is the whole process's
            torch.set_num_threads(int(threads))
        threads = torch.get_num_threads()
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
        self.sampler = FlowSampler(steps=steps, context_noise=self.model.settings.choose(context_noise=context_noise).context_noise)
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
        self.dreams, self.choices = build_dreams(self.model, checkpoint, num_envs, self.sampler, self.amp, camera, memory,
                                                 memory_first, memory_settings)
        self.steps = np.zeros(num_envs, np.int64)
        self._autoreset = np.zeros(num_envs, bool)
        self._frames: list[Observation] = []

    @property
    def c2w(self) -> np.ndarray:
        """Each environment's camera-to-world [B, 4, 4]."""
        return self.dreams.c2w

    @property
    def K(self) -> np.ndarray:
        """Each environment's intrinsics at the model's size [B, 3, 3]."""
        return self.dreams.K

    @property
    def memories(self) -> list | None:
        """Each environment's scene memory (None: the dreams have none)."""
        return self.dreams.memories

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
        if len(seeds) != self.num_envs:
            raise ValueError(f"reset needs one seed per environment ({self.num_envs}), got {len(seeds)}")
        out = self.dreams.start([prompt_view(self.prompt, s, self.H, self.W) for s in seeds], seeds)
        self.steps[:] = 0
        self._autoreset[:] = False
        return self._output(out), {"seed": np.array(seeds)}

    @torch.no_grad()
    def step(self, actions: np.ndarray):
        if not self.dreams.started:
            raise RuntimeError("DreamVectorEnv.step() before reset()")
        actions = np.asarray(actions, np.float32)
        if actions.shape != (self.num_envs, 8) or not np.all(np.isfinite(actions)):
            raise ValueError(f"actions must be finite float32 [{self.num_envs}, 8] in the engine encoding, got "
                             f"{actions.shape} (non-finite: {int((~np.isfinite(actions)).sum())})")
        actions = np.clip(actions, self.single_action_space.low, self.single_action_space.high)
        resetting = np.flatnonzero(self._autoreset)
        restart = {}
        if len(resetting):
            seeds = [int(s) for s in self.np_random.integers(0, 2**31 - 1, len(resetting))]
            restart = {int(r): (prompt_view(self.prompt, s, self.H, self.W), s) for r, s in zip(resetting, seeds)}
        prev = self._frames
        out = self.dreams.step(actions, restart, pixels=self._pixels)
        moving = np.setdiff1d(np.arange(self.num_envs), resetting)
        self.steps[moving] += 1
        self.steps[resetting] = 0
        self.timings = out.timings
        obs_out = self._output(out)
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
        return obs_out, rewards, terminated, truncated, {"steps": self.steps.copy()}

    def _output(self, out: TickOutput) -> np.ndarray:
        """The batched observation of a tick: RGB frames [B, H, W, 3], or latents [B, C, h, w] (the latent the
        dream committed as context: what the dynamics sees); keeps Observations for hooks and render when pixels
        are needed."""
        if self._pixels:
            self._frames = [Observation(rgb=out.rgb[i], depth=None if out.depth is None else out.depth[i],
                                        cam_to_world=out.cam_to_world[i].copy(), K=self.dreams.K[i].copy(),
                                        tick=int(self.steps[i])) for i in range(self.num_envs)]
            if self.observation == "rgb":
                return np.stack([o.rgb for o in self._frames])
        else:
            self._frames = []
        return np.ascontiguousarray(out.committed.float().cpu().numpy())

    @torch.no_grad()
    def decode(self, latents: np.ndarray) -> np.ndarray:
        """Latent observations [B, C, h, w] float32 -> RGB frames [B, H, W, 3] uint8."""
        z = torch.from_numpy(np.asarray(latents, np.float32)).to(self.device)
        if z.dim() != 4 or tuple(z.shape[1:]) != tuple(self.model.config.latent_shape):
            raise ValueError(f"latents must be [B, {', '.join(map(str, self.model.config.latent_shape))}], "
                             f"got {list(z.shape)}")
        return tensor_to_frames(self.model.autoencoder.decode(z).rgb)

    def render(self) -> tuple[np.ndarray, ...] | None:
        if self.render_mode == "rgb_array":
            return tuple(o.rgb for o in self._frames)
        return None

    def close_extras(self, **kwargs: Any) -> None:
        self.prompt.close()
