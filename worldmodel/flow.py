"""Rectified flow for latent frames: the training objective and the few-step sampler, as two objects.

Path (rectified flow, Liu et al. 2023; flow matching, Lipman et al. 2023):

    x_t = (1 - t) * x0 + t * noise,   t in [0, 1],   velocity v = dx_t/dt = noise - x0

t = 0 is the clean frame, t = 1 pure noise. Each frame of a clip gets its own t (Diffusion Forcing,
Chen et al. 2024), so the same network denoises the newest frame while the context is clean or
slightly noised (context-noise augmentation against rollout drift, as in GameNGen / DIAMOND).

The network predicts x0 or v (`DynamicsConfig.prediction`); `FlowMatching` regresses whichever it
predicts, and `FlowSampler` converts either to (x0, v) for its Euler steps. Neither knows the network's
insides: the objective calls `model(...)`, the sampler only `denoise_step` and `commit_frame`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from worldmodel.dynamics import DynamicsState, DynamicsTransformer

T_MIN = 1e-3  # below this a velocity -> x0 conversion divides by ~0


def _draw(fn, shape: tuple[int, ...], generator: torch.Generator | None, device: torch.device | str,
          dtype: torch.dtype | None = None) -> Tensor:
    """torch.randn / torch.rand of `shape` on `device`, drawn from `generator` on the generator's own device: a CPU
    generator gives the same numbers whatever device the model runs on (a dream on CUDA draws what it draws on the
    CPU, so the two agree for a seed), at the cost of one small host-to-device copy."""
    if generator is None or generator.device == torch.device(device):
        return fn(shape, generator=generator, device=device, dtype=dtype)
    return fn(shape, generator=generator, device=generator.device, dtype=dtype).to(device)


def to_x0_and_velocity(pred: Tensor, x_t: Tensor, t: Tensor, prediction: str) -> tuple[Tensor, Tensor]:
    """Network output -> (x0, v). pred, x_t [B, ..]; t broadcastable to them ([B, 1, 1, 1] etc.)."""
    if prediction == "x0":
        # v = (x_t - x0) / t; at t ~ 0 the frame is already clean and v is irrelevant.
        return pred, (x_t - pred) / t.clamp_min(T_MIN)
    # x_t = x0 + t * v  =>  x0 = x_t - t * v
    return x_t - t * pred, pred


@dataclass
class FlowLoss:
    """Loss terms of one batch (scalars; `total` is what to backpropagate)."""

    total: Tensor
    flow: Tensor  # MSE on the network's prediction target (x0 or v)
    pose: Tensor  # Huber on the ego-motion, in pose_scale units (0 when no targets)
    x0: Tensor | None = None  # [B, F, C, h, w] the network's clean frames (its x0, or x0 from its velocity)


@dataclass
class FlowMatching:
    """The training objective with Diffusion-Forcing per-frame noise levels.

    t per frame: with probability `context_prob` a "context" level U(0, context_noise_max) (the regime
    of committed frames at inference); with probability `pure_noise_prob` exactly 1, the level every
    sample starts from (and the only one a 1-step sampler ever asks for: logit-normal draws t > 0.95
    with probability 0.002, so without this the first step is barely trained); otherwise
    logit-normal(logit_mean, logit_std) (SD3-style, most mass on mid noise levels) or uniform.
    """

    t_sampling: str = "logit_normal"  # or "uniform"
    logit_mean: float = 0.0
    logit_std: float = 1.0
    context_prob: float = 0.25
    pure_noise_prob: float = 0.25
    context_noise_max: float = 0.1
    pose_weight: float = 0.1
    huber_delta: float = 1.0

    def __post_init__(self) -> None:
        if self.t_sampling not in ("logit_normal", "uniform"):
            raise ValueError(f"t_sampling must be 'logit_normal' or 'uniform', got {self.t_sampling!r}")
        if min(self.context_prob, self.pure_noise_prob) < 0 or self.context_prob + self.pure_noise_prob > 1:
            raise ValueError(f"context_prob ({self.context_prob}) and pure_noise_prob ({self.pure_noise_prob}) "
                             "must be >= 0 and sum to at most 1")

    def sample_t(self, batch: int, frames: int, device: torch.device | str = "cpu", generator: torch.Generator | None = None) -> Tensor:
        """Independent noise level per frame: [B, F] in [0, 1]."""
        shape = (batch, frames)
        if self.t_sampling == "logit_normal":
            z = _draw(torch.randn, shape, generator, device) * self.logit_std + self.logit_mean
            t = torch.sigmoid(z)
        else:
            t = _draw(torch.rand, shape, generator, device)
        u = _draw(torch.rand, shape, generator, device)
        t_ctx = _draw(torch.rand, shape, generator, device) * self.context_noise_max
        t = torch.where(u < self.context_prob + self.pure_noise_prob, torch.ones_like(t), t)
        return torch.where(u < self.context_prob, t_ctx, t)

    def loss(
        self,
        model: DynamicsTransformer,
        x0: Tensor,
        actions: Tensor,
        memory: Tensor | None = None,
        memory_present: Tensor | None = None,
        pose_target: Tensor | None = None,
        pose_valid: Tensor | None = None,
        t: Tensor | None = None,
        generator: torch.Generator | None = None,
        x_in: Tensor | None = None,
        frame_weights: Tensor | None = None,
    ) -> FlowLoss:
        """One training loss on a clip.

        x0 [B, F, C, h, w] clean (normalised) latents; actions [B, F, 8]; memory [B, F, C+1, h, w] or
        None; pose_target [B, F, 5] (dx, dy, dz m; dyaw, dpitch deg) and pose_valid [B, F] bool (e.g.
        False for a clip's first frame, whose previous frame is unknown); t [B, F] overrides sampling.
        x_in [B, F, C, h, w]: the frames the network's inputs are noised from when they are not x0 (student
        forcing: the model's own frames in, the true frames as targets; x0-prediction only); frame_weights [F]: the
        flow loss's weight per frame position (mean 1; default equal).
        """
        if x_in is not None and model.config.prediction != "x0":
            # the velocity toward x0 from inputs made of x_in is (x_in - x0) / t off the path: unbounded as t -> 0
            raise ValueError("student forcing (x_in) needs an x0-predicting network (dynamics.prediction: x0)")
        B, Fr = x0.shape[:2]
        if t is None:
            t = self.sample_t(B, Fr, x0.device, generator)
        noise = _draw(torch.randn, x0.shape, generator, x0.device, x0.dtype)
        tb = t[:, :, None, None, None]
        x_t = (1 - tb) * (x0 if x_in is None else x_in) + tb * noise
        out = model(x_t, t, actions, memory=memory, memory_present=memory_present)
        target = x0 if model.config.prediction == "x0" else noise - x0
        if frame_weights is None:
            flow = F.mse_loss(out.pred, target)
        else:
            flow = ((out.pred - target).square().mean((0, 2, 3, 4)) * frame_weights).mean()

        pose = torch.zeros((), device=x0.device)
        if pose_target is not None:
            # Compare in pose_scale units so metres and degrees weigh alike.
            err = F.huber_loss(out.pose / model.pose_scale, pose_target / model.pose_scale, reduction="none", delta=self.huber_delta)
            valid = torch.ones(B, Fr, dtype=torch.bool, device=x0.device) if pose_valid is None else pose_valid
            w = valid[:, :, None].float()
            pose = (err * w).sum() / (w.sum() * err.shape[-1]).clamp_min(1.0)
        x0_pred = to_x0_and_velocity(out.pred, x_t, tb, model.config.prediction)[0]
        return FlowLoss(total=flow + self.pose_weight * pose, flow=flow, pose=pose, x0=x0_pred)


@dataclass
class SampledFrame:
    """One generated frame."""

    latent: Tensor  # [B, C, h, w] the sampled clean latent x0
    pose: Tensor  # [B, 5] the camera motion into this frame (from the pose token)


@dataclass
class FlowSampler:
    """Euler integration of the flow from t = 1 (noise) to t = 0 in `steps` uniform steps, then commit.

    `context_noise` is the level committed frames are stored at (match the training `context_noise_max`
    regime; 0 stores them clean). Deterministic given a `torch.Generator`.
    """

    steps: int = 1
    context_noise: float = 0.0

    def __post_init__(self) -> None:
        if not 1 <= self.steps <= 64:
            raise ValueError(f"steps must be in 1..64, got {self.steps}")

    @torch.no_grad()
    def sample(
        self,
        model: DynamicsTransformer,
        state: DynamicsState,
        action: Tensor,
        memory: Tensor | None = None,
        generator: torch.Generator | None = None,
        commit: bool = True,
        noise: Tensor | None = None,
    ) -> SampledFrame:
        """Generate the next frame for action [B, 8] (memory [B, C+1, h, w] or None) and, by default,
        commit it to `state`. Call `model.predict_pose(state, action)` first when the pose is needed
        to render the memory; it is reused here, not recomputed."""
        B = action.shape[0]
        device = state.kv.device
        # `noise` [B, C, h, w]: the starting noise, when each batch row draws from its own generator.
        x = noise.to(device) if noise is not None else _draw(torch.randn, (B, *model.latent_shape), generator, device)
        ts = torch.linspace(1.0, 0.0, self.steps + 1).tolist()
        for t_now, t_next in zip(ts[:-1], ts[1:]):
            t = torch.full((B,), t_now, device=device)
            pred = model.denoise_step(state, x, t, action, memory)
            x0, v = to_x0_and_velocity(pred, x, t[:, None, None, None], model.config.prediction)
            # Euler step along the straight path; the last step lands on x0 exactly for x0-prediction.
            x = x0 if t_next == 0.0 and model.config.prediction == "x0" else x + (t_next - t_now) * v
        pose = state.pending_pose
        if commit:
            self.commit(model, state, x, action, memory, generator=generator)
        return SampledFrame(latent=x, pose=pose)

    def commit(
        self,
        model: DynamicsTransformer,
        state: DynamicsState,
        x: Tensor,
        action: Tensor,
        memory: Tensor | None = None,
        level: float | Tensor | None = None,
        noise: Tensor | None = None,
        generator: torch.Generator | None = None,
        present: Tensor | None = None,
    ) -> None:
        """Append the clean frame x [B, C, h, w] to the context at noise level `level` (default
        `context_noise`; a [B] tensor gives each row its own), noised with `noise` (drawn from `generator`
        when not given; nothing is drawn when every level is 0). `present` [B] bool: the rows whose `memory`
        image counts (the others commit as with no memory)."""
        level = self.context_noise if level is None else level
        # decided on the host when it can be (a number, or a CPU tensor): no device sync per tick
        noisy = level > 0 if isinstance(level, (int, float)) else bool((level > 0).any())
        w = torch.as_tensor(level, dtype=x.dtype, device=x.device)
        if noisy:
            if noise is None:
                noise = _draw(torch.randn, x.shape, generator, x.device)
            w = w[:, None, None, None] if w.dim() else w
            x = (1 - w) * x + w * noise.to(x.device, x.dtype)
        model.commit_frame(state, x, action, memory, t_ctx=level, present=present)
