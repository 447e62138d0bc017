"""Behaviour of the world-model networks with tiny configs on the CPU: attention backends agree, the
KV-cached stream equals a full forward (with and without a wrapped window), the pose token cannot see
its own frame, the autoencoder runs with and without depth, configs are strict, a tiny model learns,
and the sampler is deterministic."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest
import torch

from worldmodel import attention as attn
from worldmodel.autoencoder import AutoencoderLoss, FrameAutoencoder
from worldmodel.config import AutoencoderConfig, ConfigError, DynamicsConfig, ModelConfig, load_config
from worldmodel.dynamics import DynamicsTransformer
from worldmodel.flow import FlowMatching, FlowSampler

ROOT = Path(__file__).resolve().parents[1]
LATENT = (4, 4, 4)  # C, h, w of the tiny test latents


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny tensors gain nothing from a second thread, and on a shared 2-core machine a 2-thread
    # OpenMP team stalls badly whenever another process holds a core (we measured 10x).
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(before)


def tiny_dynamics(window: int = 8, sinks: int = 1, prediction: str = "x0", perturb: bool = True) -> DynamicsTransformer:
    """A 2-layer model; `perturb` gives the zero-initialised (adaLN-Zero) weights values, so that
    equivalence tests compare a model whose every path actually matters."""
    cfg = DynamicsConfig(dim=64, layers=2, heads=2, mlp_ratio=2.0, window=window, sinks=sinks, max_rel_frames=6, prediction=prediction)
    model = DynamicsTransformer(cfg, LATENT).eval()
    if perturb:
        g = torch.Generator().manual_seed(1)
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn(p.shape, generator=g) * 0.05)
    return model


def clip(B: int = 2, F: int = 6, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(B, F, *LATENT, generator=g)
    t = torch.rand(B, F, generator=g)
    actions = torch.cat([(torch.rand(B, F, 6, generator=g) > 0.5).float(), torch.randn(B, F, 2, generator=g) * 5], dim=-1)
    memory = torch.randn(B, F, LATENT[0] + 1, *LATENT[1:], generator=g)
    return x, t, actions, memory


# -- attention ---------------------------------------------------------------------------------------


def block_causal_bias(frames: int, per_frame: int) -> torch.Tensor:
    f = torch.arange(frames * per_frame) // per_frame
    allowed = f[None, :] <= f[:, None]
    return torch.zeros(allowed.shape).masked_fill(~allowed, float("-inf"))


def test_naive_and_sdpa_agree_with_block_causal_mask():
    q, k, v = (torch.randn(2, 3, 20, 16) for _ in range(3))
    bias = block_causal_bias(4, 5)[None, None] + 0.1 * torch.randn(1, 3, 20, 20)  # plus a position bias
    ref = attn.naive_attention(q, k, v, bias)
    out = attn.attention(q, k, v, bias)
    assert attn.last_backend() == "sdpa"
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=1e-5)
    # A boolean mask means the same thing as its 0/-inf bias.
    allowed = torch.isfinite(block_causal_bias(4, 5))
    torch.testing.assert_close(attn.attention(q, k, v, allowed), attn.naive_attention(q, k, v, allowed), atol=1e-5, rtol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="xformers kernels are CUDA-only and no CUDA device is present")
def test_xformers_and_sdpa_agree_on_cuda():
    if not attn.HAS_XFORMERS:
        pytest.skip("xformers is not installed (pip install xformers after torch)")
    q, k, v = (torch.randn(2, 3, 20, 32, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    bias = block_causal_bias(4, 5).cuda()[None, None].expand(2, 3, 20, 20)
    out = attn.attention(q, k, v, bias)
    if attn.xformers_status() != "usable":  # it imports, but its kernels were built for another torch / CUDA
        pytest.skip(f"xformers cannot run here ({attn.xformers_status()}): SDPA serves on CUDA")
    assert attn.last_backend() == "xformers"
    attn.force_backend("sdpa")
    try:
        ref = attn.attention(q, k, v, bias)
    finally:
        attn.force_backend(None)
    torch.testing.assert_close(out.float(), ref.float(), atol=2e-2, rtol=2e-2)


# -- dynamics: the cached stream equals the full forward ------------------------------------------------


def stream_vs_full(model: DynamicsTransformer, F: int) -> None:
    x, t, actions, memory = clip(F=F)
    with torch.no_grad():
        full = model(x, t, actions, memory=memory)
    state = model.new_state(2)
    size = state.kv.shape
    for f in range(F - 1):
        pose = model.predict_pose(state, actions[:, f])
        torch.testing.assert_close(pose, full.pose[:, f], atol=1e-4, rtol=1e-4)
        # Committed frames run at their own (context) noise level, exactly as in the full forward.
        model.commit_frame(state, x[:, f], actions[:, f], memory[:, f], t_ctx=t[:, f])
        assert state.kv.shape == size  # the cache never grows
    pose = model.predict_pose(state, actions[:, -1])
    pred = model.denoise_step(state, x[:, -1], t[:, -1], actions[:, -1], memory[:, -1])
    torch.testing.assert_close(pose, full.pose[:, -1], atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(pred, full.pred[:, -1], atol=1e-4, rtol=1e-4)
    # denoise_step does not write the cache: a second call gives the same answer.
    torch.testing.assert_close(model.denoise_step(state, x[:, -1], t[:, -1], actions[:, -1], memory[:, -1]), pred)


def test_cached_stream_equals_full_forward_before_window_wraps():
    stream_vs_full(tiny_dynamics(window=8, sinks=1), F=6)


def test_sliding_window_with_sinks_equals_masked_full_forward():
    # 9 frames through a window of 3 + 1 sink: the ring wraps twice; the full forward uses the
    # equivalent sliding-window + sink mask.
    model = tiny_dynamics(window=3, sinks=1)
    stream_vs_full(model, F=9)
    # And the window really matters: with an unbounded window the last frame's prediction differs.
    x, t, actions, memory = clip(F=9)
    with torch.no_grad():
        windowed = model(x, t, actions, memory=memory).pred[:, -1]
        unbounded = model(x, t, actions, memory=memory, window=100).pred[:, -1]
    assert (windowed - unbounded).abs().max() > 1e-3


def test_cache_size_is_constant_over_a_long_rollout():
    model = tiny_dynamics(window=2, sinks=1)
    state = model.new_state(1)
    shape = state.kv.shape
    a = torch.zeros(1, 8)
    for _ in range(12):
        model.predict_pose(state, a)
        model.commit_frame(state, torch.zeros(1, *LATENT), a)
    assert state.kv.shape == shape
    assert state.frame == 12
    # Sink slot 0 keeps frame 0; the ring holds the two most recent frames.
    assert state.slot_frame[0, :3].tolist() == [0, 11, 10]


def test_velocity_prediction_and_no_memory_paths_agree_too():
    model = tiny_dynamics(prediction="velocity")
    x, t, actions, _ = clip(F=4)
    with torch.no_grad():
        full = model(x, t, actions)
    state = model.new_state(2)
    for f in range(3):
        model.commit_frame(state, x[:, f], actions[:, f], t_ctx=t[:, f])
    pred = model.denoise_step(state, x[:, -1], t[:, -1], actions[:, -1])
    torch.testing.assert_close(pred, full.pred[:, -1], atol=1e-4, rtol=1e-4)


def test_pose_token_sees_the_action_but_not_its_own_frame():
    model = tiny_dynamics()
    x, t, actions, memory = clip(F=5)
    i = 3
    with torch.no_grad():
        base = model(x, t, actions, memory=memory).pose
        x2 = x.clone()
        x2[:, i] += 1.0
        m2 = memory.clone()
        m2[:, i] += 1.0
        t2 = t.clone()
        t2[:, i] = 1.0 - t2[:, i]
        changed_image = model(x2, t2, actions, memory=m2).pose
        a2 = actions.clone()
        a2[:, i, 6] += 10.0  # a different yaw into frame i
        changed_action = model(x, t, a2, memory=memory).pose
    torch.testing.assert_close(changed_image[:, : i + 1], base[:, : i + 1], atol=1e-6, rtol=0)
    assert (changed_image[:, i + 1 :] - base[:, i + 1 :]).abs().max() > 1e-4  # later frames do see it
    assert (changed_action[:, i] - base[:, i]).abs().max() > 1e-4
    torch.testing.assert_close(changed_action[:, :i], base[:, :i], atol=1e-6, rtol=0)  # causality


def test_checkpoints_of_the_per_block_adaln_layout_still_load():
    model = tiny_dynamics()
    legacy = dict(model.state_dict())
    # Rebuild the first layout: one adaLN Linear per block, scales stored without the +1.
    d, layers = model.config.dim, model.config.layers
    w, b = legacy.pop("ada.weight"), legacy.pop("ada.bias").clone().view(layers, 6, d)
    b[:, [1, 4]] -= 1.0
    for i in range(layers):
        legacy[f"blocks.{i}.ada.weight"] = w[i * 6 * d : (i + 1) * 6 * d]
        legacy[f"blocks.{i}.ada.bias"] = b[i].flatten()
    legacy["out_ada.bias"] = legacy["out_ada.bias"].clone()
    legacy["out_ada.bias"][d:] -= 1.0
    fresh = tiny_dynamics(perturb=False)
    fresh.load_state_dict(legacy)
    x, t, actions, memory = clip(F=3)
    with torch.no_grad():
        torch.testing.assert_close(fresh(x, t, actions, memory).pred, model(x, t, actions, memory).pred)


# -- autoencoder -----------------------------------------------------------------------------------


@pytest.mark.parametrize("use_depth", [True, False])
def test_autoencoder_shapes_and_round_trip(use_depth: bool):
    cfg = AutoencoderConfig(latent_channels=8, downsample=8, encoder_channels=(8, 16, 16), decoder_channels=(16, 16, 8), use_depth=use_depth, max_depth=20.0)
    ae = FrameAutoencoder(cfg)
    # Smooth synthetic frames (random noise cannot be compressed 12x, so it would not show learning).
    yy, xx = torch.meshgrid(torch.linspace(0, 3, 32), torch.linspace(0, 3, 32), indexing="ij")
    phase = torch.tensor([0.0, 1.0, 2.0, 3.0, 4.0, 5.0]).view(2, 3, 1, 1)
    rgb = torch.sin(xx + 2 * yy + phase) * 0.8
    depth = (1 + yy + xx).expand(2, 1, 32, 32) * torch.tensor([2.0, 5.0]).view(2, 1, 1, 1)  # up to 35 m: clamped at 20
    z = ae.encode(rgb, depth if use_depth else None)
    assert z.shape == (2, 8, 4, 4)
    dec = ae.decode(z)
    assert dec.rgb.shape == (2, 3, 32, 32) and dec.rgb.abs().max() <= 1.0
    if use_depth:
        assert dec.depth.shape == (2, 1, 32, 32)
        assert 0.0 <= dec.depth.min() and dec.depth.max() <= 20.0 + 1e-3
        # The depth normalisation is invertible inside [0, max_depth].
        d = torch.linspace(0, 20, 50).view(1, 1, 5, 10)
        torch.testing.assert_close(ae.denormalize_depth(ae.normalize_depth(d)), d, atol=1e-4, rtol=1e-4)
    else:
        assert dec.depth is None
    # A few optimisation steps reduce the loss (the loss object wires up end to end).
    loss_fn = AutoencoderLoss()
    opt = torch.optim.Adam(ae.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        out = ae(rgb, depth if use_depth else None, latent_noise=0.01)
        loss = loss_fn(ae, out, rgb, depth if use_depth else None)
        opt.zero_grad()
        loss.total.backward()
        opt.step()
        losses.append(loss.total.item())
    assert min(losses[-3:]) < 0.7 * losses[0], losses
    # Latent normalisation makes latents ~unit variance and decode undoes it.
    with torch.no_grad():
        raw = ae.encode(rgb, depth if use_depth else None)
        before = ae.decode(raw).rgb
        ae.fit_latent_normalization(raw)
        z = ae.encode(rgb, depth if use_depth else None)
        torch.testing.assert_close(z.transpose(0, 1).reshape(8, -1).std(dim=1), torch.ones(8), atol=1e-3, rtol=1e-3)
        torch.testing.assert_close(ae.decode(z).rgb, before, atol=1e-4, rtol=1e-4)


def test_autoencoder_without_depth_input_when_depth_is_expected_is_an_error():
    ae = FrameAutoencoder(AutoencoderConfig(latent_channels=4, downsample=2, encoder_channels=(8,), decoder_channels=(8,)))
    with pytest.raises(ValueError, match="depth"):
        ae.encode(torch.zeros(1, 3, 8, 8))


# -- config ----------------------------------------------------------------------------------------


def test_config_presets_load_and_round_trip():
    for name in ("model_default.yaml", "model_tiny.yaml"):
        cfg = load_config(ROOT / "assets/configs" / name)
        assert ModelConfig.from_dict(cfg.to_dict()) == cfg
    assert load_config(ROOT / "assets/configs/model_default.yaml").latent_shape == (16, 8, 8)


def test_config_unknown_key_and_wrong_type_name_the_key_and_file(tmp_path: Path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  dynamics:\n    dimm: 64\ntrain:\n  lr: 1.0\n")
    with pytest.raises(ConfigError, match=r"model\.dynamics\.dimm.*bad\.yaml.*valid keys.*'dim'"):
        load_config(bad)
    bad.write_text("model:\n  autoencoder:\n    use_depth: 3\n")
    with pytest.raises(ConfigError, match=r"model\.autoencoder\.use_depth.*bool"):
        load_config(bad)
    bad.write_text("model: {}\nmodle: {}\n")
    with pytest.raises(ConfigError, match="modle"):
        load_config(bad)
    with pytest.raises(ConfigError, match="frame_size"):
        ModelConfig.from_dict({"frame_size": [64, "x"]})
    # The train section is left alone; an int where a float belongs is fine.
    ok = tmp_path / "ok.yaml"
    ok.write_text("model:\n  dynamics:\n    look_scale_deg: 10\ntrain:\n  anything: 1\n")
    assert load_config(ok).dynamics.look_scale_deg == 10.0


# -- objective and sampler ---------------------------------------------------------------------------


def test_tiny_dynamics_overfits_a_fixed_sequence():
    torch.manual_seed(0)
    model = tiny_dynamics(perturb=False).train()
    x0, _, actions, memory = clip(B=2, F=4, seed=3)
    pose = torch.randn(2, 4, 5) * model.pose_scale
    objective = FlowMatching()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    # Fixed evaluation noise levels so the before/after comparison is not noise in t.
    t_eval = torch.full((2, 4), 0.5)
    with torch.no_grad():
        start = objective.loss(model, x0, actions, memory, pose_target=pose, t=t_eval, generator=torch.Generator().manual_seed(9)).total.item()
    for _ in range(30):
        loss = objective.loss(model, x0, actions, memory, pose_target=pose, generator=g)
        opt.zero_grad()
        loss.total.backward()
        opt.step()
    with torch.no_grad():
        end = objective.loss(model, x0, actions, memory, pose_target=pose, t=t_eval, generator=torch.Generator().manual_seed(9))
    assert end.total.item() < 0.6 * start, (start, end)
    assert end.pose.item() > 0  # the pose term is wired in


def test_noise_levels_mix_context_pure_noise_and_logit_normal():
    """The 1-step sampler asks only for t = 1: a set share of training frames must sit exactly there."""
    g = torch.Generator().manual_seed(0)
    t = FlowMatching(context_prob=0.25, pure_noise_prob=0.3, context_noise_max=0.1).sample_t(200, 100, generator=g)
    assert abs((t == 1.0).float().mean().item() - 0.3) < 0.01
    assert abs((t <= 0.1).float().mean().item() - 0.25) < 0.015  # logit-normal adds ~0.3 % there
    middle = t[(t > 0.1) & (t < 1.0)]
    assert abs(middle.float().mean().item() - 0.5) < 0.02 and abs(middle.numel() / t.numel() - 0.45) < 0.015
    assert (FlowMatching(pure_noise_prob=0.0).sample_t(200, 100, generator=g) == 1.0).sum() == 0
    with pytest.raises(ValueError, match="pure_noise_prob"):
        FlowMatching(context_prob=0.5, pure_noise_prob=0.6)


def test_sampler_is_deterministic_given_a_generator():
    model = tiny_dynamics()
    actions = clip(F=3)[2]

    def rollout(seed: int, steps: int) -> list[torch.Tensor]:
        state = model.new_state(2)
        g = torch.Generator().manual_seed(seed)
        sampler = FlowSampler(steps=steps, context_noise=0.05)
        return [sampler.sample(model, state, actions[:, f], generator=g).latent for f in range(3)]

    for steps in (1, 3):
        a, b = rollout(0, steps), rollout(0, steps)
        for u, v in zip(a, b):
            torch.testing.assert_close(u, v, atol=0, rtol=0)
    assert (rollout(0, 2)[0] - rollout(1, 2)[0]).abs().max() > 1e-4


def test_resetting_one_batch_row_equals_a_fresh_rollout_for_that_row():
    """A batched env resets one env: that row must continue exactly like a new single rollout, and the
    other row must not notice."""
    model = tiny_dynamics(window=3, sinks=1)
    x, _, a, _ = clip(B=2, F=9, seed=3)
    batched = model.new_state(2)
    for f in range(5):  # both rows have some history
        model.commit_frame(batched, x[:, f], a[:, f])
    untouched = model.new_state(2)
    for f in range(5):
        model.commit_frame(untouched, x[:, f], a[:, f])
    model.reset_rows(batched, [1])
    fresh = model.new_state(1)
    outs_b, outs_f, outs_u = [], [], []
    for f in range(5, 9):  # row 1 restarts with frame 5 as its first frame
        t = torch.full((2,), 0.7)
        noisy = torch.randn(x[:, f].shape, generator=torch.Generator().manual_seed(f))
        outs_b.append(model.denoise_step(batched, noisy, t, a[:, f]))
        outs_u.append(model.denoise_step(untouched, noisy, t, a[:, f]))
        outs_f.append(model.denoise_step(fresh, noisy[1:], t[1:], a[1:, f]))
        model.commit_frame(batched, x[:, f], a[:, f])
        model.commit_frame(untouched, x[:, f], a[:, f])
        model.commit_frame(fresh, x[1:, f], a[1:, f])
    for b, u, f in zip(outs_b, outs_u, outs_f):
        torch.testing.assert_close(b[1:], f, atol=1e-4, rtol=1e-4)  # the reset row = a fresh rollout
        torch.testing.assert_close(b[:1], u[:1], atol=1e-4, rtol=1e-4)  # the other row is unaffected
    assert batched.kv.shape == untouched.kv.shape


def test_focal_frequency_loss_known_answers():
    """A constant offset c is all DC: its focal frequency loss is c**2 (ortho FFT, weight 1 at the one frequency);
    equal images give 0; and an error at two frequencies weights the smaller one by its relative size."""
    from worldmodel.autoencoder import focal_frequency_loss

    x = torch.rand(2, 3, 8, 8) * 2 - 1
    assert focal_frequency_loss(x, x).item() == 0.0
    assert focal_frequency_loss(x + 0.3, x).item() == pytest.approx(0.09, rel=1e-5)
    # DC offset a plus a checkerboard of amplitude 2a: spectra a*8 at DC, 2a*8 at (4, 4); weights 1/2 and 1
    a = 0.1
    checker = torch.tensor([[(-1.0) ** (i + j) for j in range(8)] for i in range(8)])
    err = a + 2 * a * checker
    expected = (0.5 * (a * 8) ** 2 + 1.0 * (2 * a * 8) ** 2) / 64
    assert focal_frequency_loss(x + err, x).item() == pytest.approx(expected, rel=1e-5)


def test_r3gan_losses_known_answers():
    """The relativistic pairing losses and the R1/R2 penalties against cases worked by hand."""
    from worldmodel.training.adversarial import PatchDiscriminator, discriminator_loss, generator_loss

    class Mean(torch.nn.Module):  # D(x) = 2 * mean(x) per image: its gradient is 2 / numel everywhere
        def forward(self, x):
            return 2 * x.flatten(1).mean(1, keepdim=True)

    real, fake = torch.ones(3, 3, 4, 4), torch.zeros(3, 3, 4, 4)
    loss, margin = discriminator_loss(Mean(), real, fake, gamma=0.0)
    assert loss.item() == pytest.approx(math.log1p(math.exp(-2.0)))  # softplus(0 - 2)
    assert margin.item() == pytest.approx(2.0)
    assert generator_loss(Mean(), real, fake).item() == pytest.approx(math.log1p(math.exp(2.0)))
    # R1 + R2: each image's gradient has 48 entries of 2/48, squared norm 4/48; gamma/2 * (R1 + R2) = 0.5 * 2 * 4/48
    loss_pen, _ = discriminator_loss(Mean(), real, fake, gamma=2.0)
    assert loss_pen.item() - loss.item() == pytest.approx(0.5 * 2.0 * 2 * 4 / 48)
    # a discriminator that cannot tell them apart: log 2 for both players
    same = torch.randn(2, 3, 16, 16)
    d = PatchDiscriminator()
    assert discriminator_loss(d, same, same.clone(), 0.0)[0].item() == pytest.approx(math.log(2.0), abs=1e-6)
    assert d(same).shape == (2, 1, 2, 2)
    fake = same.clone().requires_grad_(True)
    generator_loss(d, same, fake).backward()  # the generator's loss reaches the generated frames
    assert fake.grad is not None and fake.grad.abs().sum() > 0


def test_the_shown_judge_sees_the_memory_where_it_covers_and_the_network_elsewhere():
    """adv_judge "shown": per latent cell the memory image's latent where its coverage passes SHOWN_COVERAGE[1], the
    frame's below SHOWN_COVERAGE[0], the linear blend between; for the true and the generated frame alike, and neither
    where the batch dropped the memory image; the images before their training noise (batch.memory is that noise
    here). "frame" leaves both frames as they are."""
    from worldmodel.tick import SHOWN_COVERAGE, shown_cells
    from worldmodel.training.adversarial import shown_latents
    from worldmodel.training.dynamics import ClipBatch

    lo, hi = SHOWN_COVERAGE
    assert shown_cells(torch.tensor([0.0, lo, (lo + hi) / 2, hi, 1.0])).tolist() == pytest.approx([0, 0, 0.5, 1, 1])
    B, T, C, h, w = 3, 2, 4, 2, 2
    mem = torch.full((B, T, C + 1, h, w), 5.0)
    mem[:, :, -1] = torch.tensor([[1.0, (lo + hi) / 2], [0.0, 1.0]])  # coverage: full, half-way, none, full
    fake, real = torch.zeros(B, C, h, w), torch.ones(B, C, h, w)
    batch = ClipBatch(x0=torch.zeros(B, T, C, h, w), actions=torch.zeros(B, T, 8), memory=torch.randn_like(mem),
                      present=torch.tensor([[True, True], [True, True], [True, False]]), pose=None, pose_valid=None,
                      memory_clean=mem[:, -1])
    f, r = shown_latents(fake, real, batch, "shown")
    assert f[0, :, 0, 0].tolist() == [5.0] * C and r[0, :, 0, 0].tolist() == [5.0] * C  # covered: the memory, both
    assert f[0, :, 0, 1].tolist() == pytest.approx([2.5] * C) and r[0, :, 0, 1].tolist() == pytest.approx([3.0] * C)
    assert f[0, :, 1, 0].tolist() == [0.0] * C and r[0, :, 1, 0].tolist() == [1.0] * C  # uncovered: the frames
    assert torch.equal(f[2], fake[2]) and torch.equal(r[2], real[2])  # the last frame had no memory image
    f, r = shown_latents(fake, real, batch, "frame")
    assert f is fake and r is real


def test_the_depth_anchor_weighs_only_the_cells_the_network_paints():
    """adv_depth_anchor: the L1 of normalised depth is taken where a memory-first dream shows the network's frame
    (1 - shown_cells of the last frame's clean coverage, spread over each cell's pixels; all of a frame whose memory
    image was dropped), and is 0 when the depth equals the teacher's."""
    from worldmodel.training.adversarial import depth_anchor_loss, unseen_weights
    from worldmodel.training.dynamics import ClipBatch

    B, T, C, h, w = 2, 2, 4, 2, 2
    mem = torch.zeros((B, T, C + 1, h, w))
    mem[:, :, -1] = torch.tensor([[1.0, 1.0], [0.0, 0.0]])  # the top row of cells covered, the bottom row not
    batch = ClipBatch(x0=torch.zeros(B, T, C, h, w), actions=torch.zeros(B, T, 8), memory=mem,
                      present=torch.tensor([[True, True], [True, False]]), pose=None, pose_valid=None,
                      memory_clean=mem[:, -1])
    weights = unseen_weights(batch, (8, 8))
    assert weights.shape == (B, 1, 8, 8)
    assert weights[0, 0, :4].sum() == 0 and weights[0, 0, 4:].min() == 1  # frame 0: only the bottom half painted
    assert weights[1].min() == 1  # frame 1's memory image was dropped: it is all painted
    depth, teacher = torch.zeros(B, 1, 8, 8), torch.zeros(B, 1, 8, 8)
    assert depth_anchor_loss(depth, teacher, weights).item() == 0
    depth[0, 0, :4] = 5.0  # off only where the memory shows: nothing to hold
    assert depth_anchor_loss(depth, teacher, weights).item() == 0
    depth[0, 0, 4:] = 0.5  # off by 0.5 on frame 0's 32 painted pixels of the 32 + 64 weighed
    assert depth_anchor_loss(depth, teacher, weights).item() == pytest.approx(0.5 * 32 / 96)
    assert depth_anchor_loss(depth, teacher, None).item() == pytest.approx((5.0 * 32 + 0.5 * 32) / 128)
    assert unseen_weights(dataclasses.replace(batch, memory_clean=None), (8, 8)) is None


def test_r1_penalty_is_per_frame_not_per_patch():
    """A patch discriminator's penalty is on the gradient of each frame's mean patch logit: a D that outputs the same
    linear score in each of its 4 patches has the penalty of that score alone (not 4x its gradient)."""
    from worldmodel.training.adversarial import discriminator_loss

    class Tiled(torch.nn.Module):  # four identical patches, each 2 * mean(x)
        def forward(self, x):
            return (2 * x.flatten(1).mean(1))[:, None, None, None].expand(-1, 1, 2, 2)

    real, fake = torch.ones(3, 3, 4, 4), torch.zeros(3, 3, 4, 4)
    plain, _ = discriminator_loss(Tiled(), real, fake, gamma=0.0)
    pen, _ = discriminator_loss(Tiled(), real, fake, gamma=2.0)
    assert pen.item() - plain.item() == pytest.approx(0.5 * 2.0 * 2 * 4 / 48)


class _EchoModel(torch.nn.Module):
    """A stand-in network whose prediction is its own input x_t (and no pose): the flow loss is then known."""

    def __init__(self, prediction: str) -> None:
        super().__init__()
        self.config = dataclasses.replace(DynamicsConfig(), prediction=prediction)
        self.pose_scale = torch.ones(5)

    def forward(self, x_t, t, actions, memory=None, memory_present=None):
        return dataclasses.make_dataclass("Out", ["pred", "pose"])(pred=x_t, pose=torch.zeros(*x_t.shape[:2], 5))


def test_student_forced_flow_loss_takes_inputs_from_x_in_and_targets_from_x0():
    torch.manual_seed(0)
    x0, x_in = torch.randn(2, 3, 4, 2, 2), torch.randn(2, 3, 4, 2, 2)
    actions = torch.zeros(2, 3, 8)
    zero = torch.zeros(2, 3)
    fm = FlowMatching()
    echo = _EchoModel("x0")
    # At t = 0 the input is x_in itself: an echo's loss is the distance from x_in to the target x0.
    assert torch.allclose(fm.loss(echo, x0, actions, t=zero, x_in=x_in).flow, (x_in - x0).square().mean())
    assert fm.loss(echo, x0, actions, t=zero).flow == 0  # teacher forcing: the input is the target
    # x_in = x0 is teacher forcing exactly; equal frame weights change nothing.
    t = torch.rand(2, 3)
    a = fm.loss(echo, x0, actions, t=t, generator=torch.Generator().manual_seed(1)).flow
    b = fm.loss(echo, x0, actions, t=t, generator=torch.Generator().manual_seed(1), x_in=x0.clone(),
                frame_weights=torch.ones(3)).flow
    assert torch.allclose(a, b, rtol=1e-5)
    # Frame weights: only the weighted frame counts.
    w = torch.tensor([0.0, 0.0, 3.0])
    per_frame = (x_in - x0).square().mean((0, 2, 3, 4))
    assert torch.allclose(fm.loss(echo, x0, actions, t=zero, x_in=x_in, frame_weights=w).flow, per_frame[2])
    # A velocity network has no bounded target from inputs made of x_in (it grows as 1 / t): refused.
    with pytest.raises(ValueError, match="x0"):
        fm.loss(_EchoModel("velocity"), x0, actions, t=t, x_in=x_in)
