"""The shown-frame upsampler (worldmodel/upsampler.py): its network, its place in a model directory, the frames a
dream shows with it, its training run and the evaluation's scores at the shown size."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from engine.action import Action
from tests.randmodel import random_model_dir, random_networks


def test_a_fresh_upsampler_is_the_bilinear_upsampling():
    from worldmodel.config import UpsamplerConfig
    from worldmodel.upsampler import FrameUpsampler

    torch.manual_seed(0)
    up = FrameUpsampler(UpsamplerConfig(scale=2, channels=8, blocks=2)).eval()
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        out = up(x, torch.zeros(2, 1, 16, 16))
    ref = torch.nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    assert out.shape == (2, 3, 32, 32)
    assert (out - ref).abs().max() < 0.02  # the residual's last conv starts at std 1e-3
    assert (out - ref).abs().max() > 0  # and is there


def test_the_config_refuses_a_scale_other_than_1_or_2():
    from worldmodel.config import ConfigError, UpsamplerConfig

    with pytest.raises(ConfigError, match="upsampler.scale must be 1"):
        UpsamplerConfig(scale=3)


def test_a_model_without_an_upsampler_keeps_its_settings_hash_and_yaml(tmp_path):
    from worldmodel.checkpoint import load_model

    cfg, _, _ = random_networks()
    assert "upsampler" not in cfg.to_dict()
    m = load_model(random_model_dir(tmp_path / "m"))
    assert m.upsampler is None and m.config.shown_size == m.config.frame_size
    assert "upsampler" not in (tmp_path / "m" / "model.yaml").read_text()


def test_an_upsampler_is_saved_and_loaded_with_its_model(tmp_path):
    from worldmodel.checkpoint import load_model, save_loaded, save_model

    path = random_model_dir(tmp_path / "m", upsampler=True)
    m = load_model(path)
    assert m.upsampler is not None and m.config.shown_size == (64, 64)
    again = load_model(save_loaded(tmp_path / "copy", m, {**m.info, "step": 7}))  # a re-save keeps the upsampler
    for a, b in zip(m.upsampler.state_dict().values(), again.upsampler.state_dict().values()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="upsampler.scale is 2 but no upsampler"):
        save_model(tmp_path / "bad", m.config, m.autoencoder, m.dynamics, {})
    cfg1 = dataclasses.replace(m.config, upsampler=dataclasses.replace(m.config.upsampler, scale=1))
    with pytest.raises(ValueError, match="scale is 1 but an upsampler"):
        save_model(tmp_path / "bad", cfg1, m.autoencoder, m.dynamics, {}, upsampler=m.upsampler)


def test_a_dream_shows_the_upsampled_frame_with_depth_and_intrinsics_to_match(tmp_path):
    from worldmodel.dream import DreamWorld
    from worldmodel.upsampler import upsample_frames

    path = random_model_dir(tmp_path / "m", upsampler=True)
    big = DreamWorld(str(path), device="cpu")
    small = DreamWorld(str(path), device="cpu", upsample=False)
    assert big.config["upsample"] is True and small.config["upsample"] is False
    obs = [(big.reset(3), small.reset(3))]
    for a in ([0, 0, 1, 0, 0, 0, 2.0, 0.0], [1, 0, 0, 0, 0, 0, -3.0, 1.0]):
        act = Action.from_array(np.asarray(a, np.float32))
        obs.append((big.step(act), small.step(act)))
    for b, s in obs:
        assert b.rgb.shape == (64, 64, 3) and s.rgb.shape == (32, 32, 3)
        assert b.depth.shape == (64, 64)
        np.testing.assert_array_equal(b.depth[::2, ::2], s.depth)  # nearest: the dream's own depth
        np.testing.assert_allclose(b.K[:2, :3], s.K[:2, :3] * 2)  # the same camera at twice the pixels
        np.testing.assert_array_equal(b.cam_to_world, s.cam_to_world)  # the upsampler changes only the picture
        np.testing.assert_array_equal(b.rgb, upsample_frames(big.model, s.rgb[None], s.depth[None])[0])
    assert "upsample_ms" in big.timings


def test_upsample_is_refused_for_a_model_without_one(tmp_path):
    from worldmodel.dream import DreamWorld

    with pytest.raises(ValueError, match="has no upsampler"):
        DreamWorld(str(random_model_dir(tmp_path / "m")), device="cpu", upsample=True)


def test_the_training_run_trains_resumes_and_exports_a_model_with_its_upsampler(tmp_path):
    from engine.rollout import rollout
    from worldmodel.checkpoint import load_model
    from worldmodel.training import upsampler as training

    model = random_model_dir(tmp_path / "m")
    data = tmp_path / "rec"
    rollout("plane", data, episodes=2, ticks=15, policy="random", split=None, config={"width": 64, "height": 64},
            progress=False)
    out = tmp_path / "run"
    common = ["--out", str(out), "--batch", "4", "--eval-every", "2", "--val-episodes", "1", "--channels", "8",
              "--blocks", "1"]
    assert training.main(["--model", str(model), "--data", str(data), "--steps", "2", *common]) == 0
    assert training.main(["--model", str(model), "--data", str(data), "--steps", "2", *common]) == 2  # not over a run
    assert training.main(["--resume", "--steps", "4", *common]) == 0
    small = tmp_path / "small"
    rollout("plane", small, episodes=1, ticks=3, policy="random", split=None, config={"width": 32, "height": 32},
            progress=False)
    assert training.main(["--model", str(model), "--data", str(small), "--out", str(tmp_path / "run2")]) == 2
    assert not (tmp_path / "run2" / training.RUN_FILE).exists()  # refused before anything was written
    log = [__import__("json").loads(l) for l in (out / "log.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log] == [0, 2, 4]  # resumed at 2, not from the start
    assert all(np.isfinite(r["truth_up_psnr"]) and r["truth_up_psnr"] > 5 for r in log)
    m = load_model(out / "model")
    assert m.upsampler is not None and m.config.shown_size == (64, 64)
    assert "4 steps" in m.info["upsampler"]
    base = load_model(model)
    for a, b in zip(base.dynamics.state_dict().values(), m.dynamics.state_dict().values()):
        assert torch.equal(a, b)  # the rest of the model unchanged


def test_the_shown_block_scores_a_perfect_model_size_dream_as_the_truth_upsampled(tmp_path):
    from worldmodel.checkpoint import load_model
    from worldmodel.evaluation.shown import resized, shown_block
    from worldmodel.evaluation.trajectories import Trajectory

    m = load_model(random_model_dir(tmp_path / "m", upsampler=True))
    rng = np.random.default_rng(0)
    T = 12
    full = [Trajectory(rng.integers(0, 255, (T, 64, 64, 3), dtype=np.uint8), rng.uniform(1, 9, (T, 64, 64)).astype(np.float32),
                       np.tile(np.eye(4), (T, 1, 1)), np.zeros((T, 8), np.float32), f"t{i}", np.eye(3)) for i in range(2)]
    small = [resized(tr, (32, 32)) for tr in full]
    starts = [(0, 2), (1, 3), (1, 5)]
    pred = np.stack([small[i].rgb[t0 + 1:t0 + 5] for i, t0 in starts])  # the dream is the true frame, at its size
    depth = np.stack([small[i].depth[t0 + 1:t0 + 5] for i, t0 in starts])
    block = shown_block(m, full, starts, (1, 4), pred, depth, np.array([0, 1, 1]))
    assert block["size"] == [64, 64]
    for metric in ("psnr", "lpips", "sharpness"):
        for h in ("1", "4"):
            assert block[metric]["bilinear"][h] == pytest.approx(block[metric]["truth_bilinear"][h])
            assert block["ci95"][metric]["bilinear"][h][0] == pytest.approx(block["ci95"][metric]["truth_bilinear"][h][0])
    assert block["psnr"]["bilinear"]["1"] < 20  # random pixels: a 2x upsampling cannot find them
