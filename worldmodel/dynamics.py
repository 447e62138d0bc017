"""The dynamics network: an action-conditioned, block-causal transformer over latent frames.

Each frame f of a clip becomes L = 1 + N tokens:

    [ pose token | N image tokens (patchified latent x_t, plus the memory latent when given) ]

Attention is block-causal across frames and bidirectional inside a frame, with two exceptions that
make the ego-motion head usable *before* the frame exists: a frame's pose token sees every token of
the earlier frames and itself, but none of its own frame's image tokens (the image tokens may see the
pose token). Temporal position is a learned per-head bias on the frame distance (clamped), so only
distances matter and a sliding window works at any absolute tick; spatial position is a learned
embedding per image token. A key frame is visible to a query frame when it is within `window` frames
or is one of the first `sinks` frames (StreamingLLM / LongLive attention sinks).

Conditioning is adaLN-Zero (DiT): per frame, image tokens are modulated by embed(t) + embed(action)
and the pose token by embed(action) only, so the pose never depends on the frame's noise level.
Noise levels are per frame (Diffusion Forcing): context frames can be clean while the last is noisy.

The network predicts, per frame, either the clean latent x0 or the rectified-flow velocity
(noise - x0), per `DynamicsConfig.prediction` (default x0: the 1-step sampler's answer is the output
itself); the objective and sampler in flow.py convert between the two. It also predicts, per frame,
the camera motion from the previous frame: [dx, dy, dz] metres in the previous frame's yaw-aligned
frame (x right, y up, z forward) and [dyaw, dpitch] degrees.

Two ways to run it, tested to agree:
  - `forward`: a whole clip at once (training, reference).
  - streaming: `new_state` -> per tick `predict_pose`, `denoise_step` (1..k times), `commit_frame`,
    against a KV cache of `sinks + window` frame slots plus one scratch slot for the frame being made,
    so the cost per tick is the same at tick 10 and tick 10,000.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch import Tensor

from worldmodel.attention import attention
from worldmodel.config import DynamicsConfig

POSE_DIM = 5  # dx, dy, dz (metres), dyaw, dpitch (degrees)


def _ada_bias_init(layers: int, dim: int) -> Tensor:
    """Bias of the shared adaLN projection: 0 for shifts and gates, 1 for the scales (identity blocks)."""
    per_block = torch.zeros(6, dim)
    per_block[[1, 4]] = 1.0  # scale1, scale2
    return per_block.flatten().repeat(layers)


@dataclass
class DynamicsOutput:
    """What a full forward returns."""

    pred: Tensor  # [B, F, C, h, w] x0 or velocity per `config.prediction`
    pose: Tensor  # [B, F, 5] camera motion from frame f-1 to frame f


@dataclass
class DynamicsState:
    """Running state of one streaming rollout (lives with the world object, not the model).

    Slots 0..S-1 hold the sink frames, S..S+W-1 a ring of the W latest frames, and the last slot is
    scratch space for the frame being generated (its pose token's keys/values, then its image tokens').
    """

    kv: Tensor  # [layers, 2, B, heads, slots * L, head_dim]: keys and values
    # [B, slots] long: per batch row, the frame (counted from that row's episode start) held by each
    # slot, -1 when empty. Rows can start episodes at different ticks (a batched env resetting one env).
    slot_frame: Tensor
    row_start: Tensor  # [B] long: the value of `frame` when each row's episode began
    frame: int = 0  # frames committed so far (all rows step together) = index of the frame being generated
    pending_action: Tensor | None = None  # [B, 8] action whose pose token is in the scratch slot
    pending_pose: Tensor | None = None  # [B, 5] its pose prediction
    # Attention biases for the current frame (pose query, image query), rebuilt once per tick.
    bias_frame: int = -1
    pose_bias: Tensor | None = field(default=None, repr=False)  # [B|1, H, 1, slots*L]
    image_bias: Tensor | None = field(default=None, repr=False)  # [B|1, H, 1, slots*L]


def _upgrade_per_block_adaln(state_dict: dict, prefix: str, *args: object) -> None:
    """Load checkpoints from the first layout (one adaLN Linear per block, `modulate` with 1 + scale):
    stack the per-block projections into the shared one and fold the +1 into the scale biases."""
    if f"{prefix}blocks.0.ada.weight" not in state_dict or f"{prefix}ada.weight" in state_dict:
        return
    weights, biases, i = [], [], 0
    while f"{prefix}blocks.{i}.ada.weight" in state_dict:
        weights.append(state_dict.pop(f"{prefix}blocks.{i}.ada.weight"))
        bias = state_dict.pop(f"{prefix}blocks.{i}.ada.bias").clone().view(6, -1)
        bias[[1, 4]] += 1.0  # scale1, scale2
        biases.append(bias.flatten())
        i += 1
    state_dict[f"{prefix}ada.weight"] = torch.cat(weights)
    state_dict[f"{prefix}ada.bias"] = torch.cat(biases)
    out_bias = state_dict[f"{prefix}out_ada.bias"].clone()
    out_bias[out_bias.numel() // 2 :] += 1.0  # the head's scale half
    state_dict[f"{prefix}out_ada.bias"] = out_bias


# ----------------------------------------------------------------------------------------------
# Small blocks


def norm_modulate(x: Tensor, shift: Tensor, scale: Tensor, eps: float = 1e-6) -> Tensor:
    """adaLN: layer_norm(x) * scale + shift, with scale/shift [B|1, L|1, dim] broadcast over tokens.

    `scale` is stored as (1 + DiT's scale): its bias starts at 1. When one scale/shift serves every
    token (streaming inference, batch 1) they go straight into layer_norm's affine: one op, not three.
    """
    if shift.shape[:-1].numel() == 1:
        return F.layer_norm(x, x.shape[-1:], scale.reshape(-1).to(x.dtype), shift.reshape(-1).to(x.dtype), eps)
    return torch.addcmul(shift, F.layer_norm(x, x.shape[-1:], eps=eps), scale)


class NoiseLevelEmbedding(nn.Module):
    """t in [0, 1] -> [.., dim] via sinusoids (as DiT's timestep embedder) and an MLP."""

    def __init__(self, dim: int, freq_dim: int = 128):
        super().__init__()
        self.freq_dim = freq_dim
        self.mlp = nn.Sequential(nn.Linear(freq_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, t: Tensor) -> Tensor:
        half = self.freq_dim // 2
        freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device, dtype=torch.float32) / half)
        # Scale t to [0, 1000] so the frequencies resolve small noise levels (context noise ~0.02).
        args = (t.float() * 1000.0)[..., None] * freqs
        emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        return self.mlp(emb.to(self.mlp[0].weight.dtype))


class ActionEmbedding(nn.Module):
    """Action [.., 8] (six 0/1 keys, yaw and pitch in degrees) -> [.., dim]."""

    def __init__(self, action_dim: int, dim: int, look_scale_deg: float):
        super().__init__()
        # Keys are already 0/1; look deltas are degrees, so bring them to ~unit scale.
        scale = torch.ones(action_dim)
        scale[-2:] = 1.0 / look_scale_deg
        self.register_buffer("scale", scale, persistent=False)
        self.mlp = nn.Sequential(nn.Linear(action_dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def forward(self, action: Tensor) -> Tensor:
        return self.mlp((action.float() * self.scale).to(self.mlp[0].weight.dtype))


class Block(nn.Module):
    """Pre-norm transformer block, modulated adaLN-Zero style (DiT), with an optional KV cache.

    The modulation vectors come from the model's one shared adaLN projection (one GEMM for all blocks
    instead of one per block: at batch 1 the per-op overhead, not the FLOPs, is what costs).
    """

    def __init__(self, dim: int, heads: int, mlp_ratio: float):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        hidden = int(dim * mlp_ratio)
        # Exact (erf) GELU: the tanh approximation measured 4x slower on this CPU.
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(
        self,
        x: Tensor,
        mod: Tensor,
        mask: Tensor | None,
        cache_kv: Tensor | None = None,
        write: slice | None = None,
        kv_only: bool = False,
    ) -> Tensor:
        """x [B, L, dim], mod [B, L|1, 6*dim], mask [1|B, H, L, Nk] additive -> [B, L, dim].

        With a cache (cache_kv [2, B, H, Nk, hd]: keys, values), this call's keys/values are written at
        `write` along the token axis and the queries attend to the whole cache (the mask hides empty
        slots). kv_only: write the keys/values and return x unchanged (a commit's last block).
        """
        B, L, D = x.shape
        shift1, scale1, gate1, shift2, scale2, gate2 = mod.chunk(6, dim=-1)
        qkv = self.qkv(norm_modulate(x, shift1, scale1)).view(B, L, 3, self.heads, D // self.heads)
        qkv = qkv.permute(2, 0, 3, 1, 4)  # [3, B, H, L, hd]
        if cache_kv is None:
            q, k, v = qkv
        else:
            cache_kv[:, :, :, write] = qkv[1:]  # keys and values in one copy
            if kv_only:
                return x
            q, k, v = qkv[0], cache_kv[0], cache_kv[1]
        a = attention(q, k, v, mask).transpose(1, 2).reshape(B, L, D)
        x = torch.addcmul(x, gate1, self.proj(a))  # x + gate * attn, one op
        return torch.addcmul(x, gate2, self.mlp(norm_modulate(x, shift2, scale2)))


# ----------------------------------------------------------------------------------------------
# The model


class DynamicsTransformer(nn.Module):
    """Block-causal DiT over latent frames with a pose token per frame and a streaming KV cache."""

    def __init__(self, config: DynamicsConfig, latent_shape: tuple[int, int, int]):
        super().__init__()
        self.config = config
        c, h, w = latent_shape
        p = config.patch_size
        if h % p or w % p:
            raise ValueError(f"latent grid {h}x{w} is not divisible by dynamics.patch_size={p}")
        self.latent_shape = latent_shape
        self.grid = (h // p, w // p)
        self.num_image_tokens = self.grid[0] * self.grid[1]
        self.tokens_per_frame = 1 + self.num_image_tokens  # pose token first
        d, H = config.dim, config.heads

        # Image token input: latent patch (+ memory patch with its alpha channel, + a "memory on" flag).
        patch_in = p * p * c
        if config.use_memory:
            patch_in += p * p * (c + 1) + 1
        self.image_in = nn.Linear(patch_in, d)
        self.spatial_pos = nn.Parameter(torch.randn(self.num_image_tokens, d) * 0.02)
        self.pose_token = nn.Parameter(torch.randn(d) * 0.02)  # added to the action embedding
        self.pose_cond = nn.Parameter(torch.zeros(d))  # tells adaLN "this is a pose token"

        self.noise_embed = NoiseLevelEmbedding(d)
        self.action_embed = ActionEmbedding(config.action_dim, d, config.look_scale_deg)
        # One learned bias per head per frame distance 0..max_rel_frames (farther ones share the last).
        self.rel_bias = nn.Parameter(torch.zeros(H, config.max_rel_frames + 1))
        self.blocks = nn.ModuleList([Block(d, H, config.mlp_ratio) for _ in range(config.layers)])
        # adaLN-Zero for all blocks in one projection: per block [shift1, scale1, gate1, shift2, scale2,
        # gate2]. Zero weights; biases 0 except scales at 1, so every block starts as the identity.
        self.ada = nn.Linear(d, config.layers * 6 * d)
        nn.init.zeros_(self.ada.weight)
        self.ada.bias.data.copy_(_ada_bias_init(config.layers, d))

        # Image head: final adaLN (shift, scale) then a zero-init linear, so the first output is 0.
        self.out_ada = nn.Linear(d, 2 * d)
        nn.init.zeros_(self.out_ada.weight)
        self.out_ada.bias.data.copy_(torch.cat([torch.zeros(d), torch.ones(d)]))
        self.out = nn.Linear(d, p * p * c)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        # Ego-motion head; the last layer starts at zero ("no motion") and outputs are in pose_scale units.
        self.pose_head = nn.Sequential(nn.LayerNorm(d), nn.Linear(d, d), nn.SiLU(), nn.Linear(d, POSE_DIM))
        nn.init.zeros_(self.pose_head[-1].weight)
        nn.init.zeros_(self.pose_head[-1].bias)
        self.register_buffer("pose_scale", torch.tensor(config.pose_scale, dtype=torch.float32), persistent=False)
        self._register_load_state_dict_pre_hook(_upgrade_per_block_adaln)

    # -- token plumbing ---------------------------------------------------------------------------

    @property
    def dtype(self) -> torch.dtype:
        return self.image_in.weight.dtype

    def _patchify(self, z: Tensor) -> Tensor:
        """[B, C, h, w] -> [B, N, p*p*C]."""
        B, C, h, w = z.shape
        p = self.config.patch_size
        z = z.reshape(B, C, h // p, p, w // p, p).permute(0, 2, 4, 3, 5, 1)
        return z.reshape(B, (h // p) * (w // p), p * p * C)

    def _unpatchify(self, x: Tensor) -> Tensor:
        """[B, N, p*p*C] -> [B, C, h, w]."""
        B = x.shape[0]
        c, h, w = self.latent_shape
        p = self.config.patch_size
        x = x.reshape(B, h // p, w // p, p, p, c).permute(0, 5, 1, 3, 2, 4)
        return x.reshape(B, c, h, w)

    def _image_tokens(self, x: Tensor, memory: Tensor | None, present: Tensor | None) -> Tensor:
        """Latent x [B, C, h, w] (+ memory [B, C+1, h, w], present [B] bool) -> tokens [B, N, dim]."""
        if tuple(x.shape[1:]) != self.latent_shape:
            raise ValueError(f"latent frames must be [B, {', '.join(map(str, self.latent_shape))}], got {list(x.shape)}")
        parts = [self._patchify(x.to(self.dtype))]
        if self.config.use_memory:
            B, N = x.shape[0], self.num_image_tokens
            c, h, w = self.latent_shape
            if memory is None:
                # The learned "memory off" path: zeros with the flag channel at 0.
                parts.append(torch.zeros(B, N, parts[0].shape[-1] // c * (c + 1) + 1, dtype=self.dtype, device=x.device))
            else:
                if tuple(memory.shape[1:]) != (c + 1, h, w):
                    raise ValueError(
                        f"memory must be [B, {c + 1}, {h}, {w}] (latent + coverage alpha), got {list(memory.shape)}"
                    )
                on = torch.ones(B, dtype=self.dtype, device=x.device) if present is None else present.to(self.dtype)
                mem = self._patchify(memory.to(self.dtype)) * on[:, None, None]
                parts += [mem, on[:, None, None].expand(B, N, 1)]
        elif memory is not None:
            raise ValueError("this model was built with dynamics.use_memory=false; pass memory=None")
        return self.image_in(torch.cat(parts, dim=-1)) + self.spatial_pos

    def _image_output(self, tokens: Tensor, cond: Tensor) -> Tensor:
        """Image tokens [B, N, dim], conditioning [B, dim] -> prediction [B, C, h, w] (float32)."""
        shift, scale = self.out_ada(F.silu(cond)).chunk(2, dim=-1)
        out = self.out(norm_modulate(tokens, shift[:, None], scale[:, None]))
        return self._unpatchify(out.float())

    def _modulations(self, cond: Tensor) -> Tensor:
        """Conditioning [.., d] -> adaLN vectors of every block [.., layers, 6d]."""
        return self.ada(F.silu(cond)).unflatten(-1, (self.config.layers, 6 * self.config.dim))

    def _pose_output(self, tokens: Tensor) -> Tensor:
        """Pose tokens [.., dim] -> [.., 5] in metres / degrees."""
        return self.pose_head(tokens).float() * self.pose_scale

    def attention_bias(
        self, q_frame: Tensor, q_pose: Tensor, k_frame: Tensor, k_pose: Tensor, window: int, sinks: int
    ) -> Tensor:
        """The one attention rule, shared by the full forward and the cache: -> additive [1, H, Nq, Nk].

        q_frame [Nq], k_frame [Nk]: frame index of each token (k_frame -1 = empty cache slot);
        q_pose [Nq], k_pose [Nk]: whether the token is a pose token.
        A key is visible to a query of frame i when it is from an earlier frame j that is recent
        (i - j <= window) or a sink (j < sinks), or from frame i itself — except that a pose query
        sees only its own frame's pose token, never that frame's image tokens.
        """
        qf, kf = q_frame[:, None], k_frame[None, :]
        earlier = (kf >= 0) & (kf < qf) & ((qf - kf <= window) | (kf < sinks))
        same = (kf == qf) & (~q_pose[:, None] | k_pose[None, :])
        dist = (qf - kf).clamp(0, self.config.max_rel_frames)
        bias = self.rel_bias[:, dist]  # [H, Nq, Nk]
        bias = bias.masked_fill(~(earlier | same), float("-inf"))
        return bias[None].to(self.dtype)

    # -- full forward (training and reference) -----------------------------------------------------

    def forward(
        self,
        x: Tensor,
        t: Tensor,
        actions: Tensor,
        memory: Tensor | None = None,
        memory_present: Tensor | None = None,
        window: int | None = None,
        sinks: int | None = None,
    ) -> DynamicsOutput:
        """A whole clip at once.

        x [B, F, C, h, w] latents at per-frame noise levels t [B, F]; actions [B, F, 8] (the action that
        leads into each frame); memory [B, F, C+1, h, w] or None; memory_present [B, F] bool or None
        (all present). window/sinks default to the config, so training sees the inference mask.
        """
        B, Fr = x.shape[:2]
        N, L, d = self.num_image_tokens, self.tokens_per_frame, self.config.dim
        window = self.config.window if window is None else window
        sinks = self.config.sinks if sinks is None else sinks
        img = self._image_tokens(
            x.flatten(0, 1),
            None if memory is None else memory.flatten(0, 1),
            None if memory_present is None else memory_present.flatten(0, 1),
        ).view(B, Fr, N, d)
        a_emb = self.action_embed(actions)  # [B, F, d]
        pose_tok = (a_emb + self.pose_token)[:, :, None]  # [B, F, 1, d]
        tokens = torch.cat([pose_tok, img], dim=2).reshape(B, Fr * L, d)
        c_img = a_emb + self.noise_embed(t)  # [B, F, d]
        c_pose = a_emb + self.pose_cond

        frame = torch.arange(Fr, device=x.device).repeat_interleave(L)
        is_pose = torch.arange(Fr * L, device=x.device) % L == 0
        mask = self.attention_bias(frame, is_pose, frame, is_pose, window, sinks)
        mods_pose, mods_img = self._modulations(c_pose), self._modulations(c_img)  # [B, F, layers, 6d]
        for i, block in enumerate(self.blocks):
            # Per-token modulation: the pose token of each frame gets c_pose, its image tokens c_img.
            m_pose, m_img = mods_pose[:, :, i, None], mods_img[:, :, i, None]
            mod = torch.cat([m_pose, m_img.expand(B, Fr, N, m_img.shape[-1])], dim=2).reshape(B, Fr * L, -1)
            tokens = block(tokens, mod, mask)

        tokens = tokens.view(B, Fr, L, d)
        pred = self._image_output(tokens[:, :, 1:].flatten(0, 1), c_img.flatten(0, 1))
        return DynamicsOutput(pred=pred.view(B, Fr, *self.latent_shape), pose=self._pose_output(tokens[:, :, 0]))

    # -- streaming inference --------------------------------------------------------------------------

    def new_state(self, batch_size: int, device: torch.device | str | None = None, dtype: torch.dtype | None = None) -> DynamicsState:
        """An empty KV cache of `sinks + window + 1` frame slots (fixed size for the whole rollout)."""
        cfg = self.config
        device = self.image_in.weight.device if device is None else device
        dtype = self.dtype if dtype is None else dtype
        slots = cfg.sinks + cfg.window + 1
        shape = (cfg.layers, 2, batch_size, cfg.heads, slots * self.tokens_per_frame, cfg.dim // cfg.heads)
        # Zeros, not empty: masked slots get weight 0, and 0 * NaN from garbage memory would be NaN.
        return DynamicsState(
            kv=torch.zeros(shape, dtype=dtype, device=device),
            slot_frame=torch.full((batch_size, slots), -1, dtype=torch.long, device=device),
            row_start=torch.zeros(batch_size, dtype=torch.long, device=device),
        )

    def reset_rows(self, state: DynamicsState, rows: Tensor | list[int]) -> None:
        """Start new episodes in some batch rows: their cache is emptied and their next committed
        frame becomes their frame 0 (and sink). Other rows are untouched, so a batch of environments
        can reset one environment without disturbing the rest."""
        rows = torch.as_tensor(rows, dtype=torch.long, device=state.kv.device)
        state.kv[:, :, rows] = 0
        state.slot_frame[rows] = -1
        state.row_start[rows] = state.frame
        state.bias_frame = -1  # the masks change: rebuild them
        state.pending_action = state.pending_pose = None

    def _slot_of(self, frame: int) -> int:
        """Cache slot where a committed frame lives: sinks first, then a ring over the window."""
        S, W = self.config.sinks, self.config.window
        return frame if frame < S else S + (frame - S) % W

    def _prepare_tick(self, state: DynamicsState) -> None:
        """Point the scratch slot at the frame being generated and build this tick's two biases."""
        if state.bias_frame == state.frame:
            return
        L = self.tokens_per_frame
        rel = state.frame - state.row_start  # [B] each row's own frame index
        state.slot_frame[:, -1] = rel
        k_pose = torch.arange(state.slot_frame.shape[1] * L, device=rel.device) % L == 0
        args = (self.config.window, self.config.sinks)
        pose_q, image_q = torch.tensor([True], device=rel.device), torch.tensor([False], device=rel.device)
        with torch.no_grad():
            if bool((state.row_start == state.row_start[0]).all()):
                # Every row is at the same point of its episode: one bias serves the whole batch.
                k_frame, q = state.slot_frame[0].repeat_interleave(L), rel[:1]
                state.pose_bias = self.attention_bias(q, pose_q, k_frame, k_pose, *args)
                state.image_bias = self.attention_bias(q, image_q, k_frame, k_pose, *args)
            else:
                biases = [[self.attention_bias(rel[b:b + 1], kind, state.slot_frame[b].repeat_interleave(L), k_pose, *args)
                           for b in range(rel.numel())] for kind in (pose_q, image_q)]
                state.pose_bias, state.image_bias = (torch.cat(b, 0) for b in biases)
        state.bias_frame = state.frame

    def _run_cached(
        self, state: DynamicsState, x: Tensor, cond: Tensor, bias: Tensor, write: slice, kv_only_last: bool = False
    ) -> Tensor:
        """Tokens x [B, L, d] with conditioning [B, d] through all blocks against the cache."""
        mods = self._modulations(cond)[:, None]  # [B, 1, layers, 6d]
        last = len(self.blocks) - 1
        for i, block in enumerate(self.blocks):
            x = block(x, mods[:, :, i], bias, state.kv[i], write, kv_only_last and i == last)
        return x

    @torch.no_grad()
    def predict_pose(self, state: DynamicsState, action: Tensor) -> Tensor:
        """Camera motion into the next frame, before it is generated: action [B, 8] -> pose [B, 5].

        Runs only the pose token against the cache and leaves its keys/values in the scratch slot,
        where `denoise_step` and `commit_frame` reuse them.
        """
        self._prepare_tick(state)
        a_emb = self.action_embed(action)
        start = (state.slot_frame.shape[1] - 1) * self.tokens_per_frame
        x = (a_emb + self.pose_token)[:, None]
        x = self._run_cached(state, x, a_emb + self.pose_cond, state.pose_bias, slice(start, start + 1))
        state.pending_action = action.clone()
        state.pending_pose = self._pose_output(x[:, 0])
        return state.pending_pose

    def _image_pass(
        self, state: DynamicsState, x: Tensor, t: Tensor | float, action: Tensor, memory: Tensor | None, commit: bool = False,
        present: Tensor | None = None,
    ) -> tuple[Tensor, Tensor]:
        """The current frame's image tokens against the cache; returns (tokens [B, N, d], cond [B, d]).
        commit: only the keys/values matter, so the last block stops after writing them."""
        if state.pending_action is None or not torch.equal(state.pending_action, action):
            self.predict_pose(state, action)  # its pose token must be in the scratch slot first
        B = x.shape[0]
        t = torch.as_tensor(t, dtype=torch.float32, device=x.device).expand(B)
        cond = self.action_embed(action) + self.noise_embed(t)
        start = (state.slot_frame.shape[1] - 1) * self.tokens_per_frame
        tokens = self._image_tokens(x, memory, present)
        write = slice(start + 1, start + self.tokens_per_frame)
        return self._run_cached(state, tokens, cond, state.image_bias, write, kv_only_last=commit), cond

    @torch.no_grad()
    def denoise_step(
        self, state: DynamicsState, x_t: Tensor, t: Tensor | float, action: Tensor, memory: Tensor | None = None
    ) -> Tensor:
        """Predict the frame being generated: x_t [B, C, h, w] at level t [B] -> x0 or velocity [B, C, h, w].

        Reads the cache; only the scratch slot is touched, so it can be called once per sampling step.
        """
        tokens, cond = self._image_pass(state, x_t, t, action, memory)
        return self._image_output(tokens, cond)

    @torch.no_grad()
    def commit_frame(
        self, state: DynamicsState, x: Tensor, action: Tensor, memory: Tensor | None = None, t_ctx: float | Tensor = 0.0,
        present: Tensor | None = None,
    ) -> None:
        """Append a frame to the context: x [B, C, h, w] is the latent at noise level t_ctx (the clean
        x0 when t_ctx = 0; the sampler adds context noise itself). Its keys/values go into the slot
        of the sink or ring frame it replaces; the frame counter advances."""
        self._image_pass(state, x, t_ctx, action, memory, commit=True, present=present)
        # Move the scratch slot (pose + image keys/values) into the frame's permanent slot. Done after
        # all layers because the slot being replaced (frame i - window) is still visible to frame i.
        L = self.tokens_per_frame
        slots = state.slot_frame.shape[1]
        src = slice((slots - 1) * L, slots * L)
        rel = (state.frame - state.row_start).tolist()
        for dst_slot in sorted({self._slot_of(r) for r in rel}):  # one group unless rows reset apart
            rows = [b for b, r in enumerate(rel) if self._slot_of(r) == dst_slot]
            dst = slice(dst_slot * L, (dst_slot + 1) * L)
            if len(rows) == len(rel):
                state.kv[..., dst, :] = state.kv[..., src, :]
            else:
                idx = torch.tensor(rows, device=state.kv.device)
                state.kv[:, :, idx, :, dst] = state.kv[:, :, idx, :, src]
            state.slot_frame[rows, dst_slot] = torch.tensor([rel[b] for b in rows], device=state.kv.device)
        state.frame += 1
        state.pending_action = state.pending_pose = None
