"""The action-driven camera (worldmodel.motion) and the memory-first frame (worldmodel.tick.memory_first_frame)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from engine.action import Action
from worldmodel.motion import CameraMotion, MotionModel, fit_motion, held_out_error
from worldmodel.pose import apply_ego_motion, compose

ROOT = Path(__file__).resolve().parent.parent


def _episode(rules: MotionModel, actions: list[Action], yaw0: float = 30.0) -> tuple[np.ndarray, np.ndarray]:
    cam = CameraMotion(rules)
    c2w = [compose(np.array([1.0, rules.eye_height, 2.0]), yaw0, 0.0)]
    cam.reset(c2w[0])
    for a in actions:
        c2w.append(apply_ego_motion(c2w[-1], cam.step(c2w[-1], a.to_array()), pitch_limit=89.0))
    return np.stack([a.to_array() for a in actions]), np.stack(c2w)


def _mixed_actions(rng: np.random.Generator, n: int) -> list[Action]:
    out = []
    for _ in range(n):
        keys = [k for k in ("forward", "back", "left", "right", "sprint") if rng.random() < 0.3]
        if rng.random() < 0.03:
            keys.append("jump")
        out.append(Action.from_keys(keys, yaw=float(rng.normal(0, 3)), pitch=float(rng.normal(0, 1))))
    return out


def test_fit_recovers_known_rules():
    truth = MotionModel(look_gain_yaw=0.8, look_gain_pitch=1.2, walk=0.2, sprint=0.35, jump=0.25, gravity=0.03,
                        eye_height=1.7)
    rng = np.random.default_rng(0)
    episodes = [_episode(truth, _mixed_actions(rng, 300)) for _ in range(3)]
    fit = fit_motion(episodes)
    for name in ("look_gain_yaw", "look_gain_pitch", "walk", "sprint", "jump", "gravity", "eye_height"):
        assert getattr(fit, name) == pytest.approx(getattr(truth, name), abs=1e-6), name
    assert fit.pitch_limit == 89.0  # never pushed against a limit
    err = held_out_error(fit, episodes[:1])
    assert max(err.values()) < 1e-5


def _stopping_episode(blocked: np.ndarray, speed: float, sprint: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Forward on every tick, in a game that stops at walls: the camera stays put on the `blocked` ticks."""
    a = Action(forward=True, sprint=sprint).to_array()
    c2w = [compose(np.array([1.0, 1.6, 2.0]), 30.0, 0.0)]
    for b in blocked:
        c2w.append(apply_ego_motion(c2w[-1], np.array([0.0, 0.0, 0.0 if b else speed, 0.0, 0.0]), pitch_limit=89.0))
    return np.tile(a, (len(blocked), 1)), np.stack(c2w)


def test_blocked_moves_are_left_out_of_the_speeds_in_a_game_that_stops_at_walls():
    """60 % of the held-forward ticks blocked (the camera did not move): the fit reads the free steps' speed, where
    the median of all steps was 0 and froze the dream's camera."""
    rng = np.random.default_rng(1)
    walk = _stopping_episode(rng.random(200) < 0.6, 0.2)
    sprint = _stopping_episode(rng.random(200) < 0.6, 0.35, sprint=True)
    fit = fit_motion([walk, sprint])
    assert fit.walk == pytest.approx(0.2, abs=1e-6) and fit.sprint == pytest.approx(0.35, abs=1e-6)
    with pytest.raises(ValueError, match="did not move on any of the 50 ticks with a move key held and sprint"):
        fit_motion([walk, _stopping_episode(np.ones(50, bool), 0.35, sprint=True)])


def test_fit_on_the_arena_reads_its_physics():
    from engine.arena.config import load_preset
    from worldmodel.motion import arena_episodes

    c = load_preset("default")
    episodes = arena_episodes({"preset": "default", "width": 32, "height": 32, "tick_rate": 20.0}, 2, 150)
    fit = fit_motion(episodes)
    assert fit.walk == pytest.approx(c.walk_speed / 20.0, abs=1e-6)
    assert fit.eye_height == pytest.approx(c.eye_height, abs=1e-6)
    assert fit.look_gain_yaw == pytest.approx(1.0, abs=1e-6)


def test_no_input_no_motion_and_a_jump_lands():
    rules = MotionModel(jump=0.2, gravity=0.025)
    actions = [Action()] * 200 + [Action(jump=True)] + [Action()] * 60
    _, c2w = _episode(rules, actions)
    assert np.array_equal(c2w[0], c2w[200])  # 200 idle ticks: not a bit of drift
    eye = c2w[:, 1, 3]
    assert eye[201:230].max() > rules.eye_height + 0.5  # it jumped
    assert eye[-1] == pytest.approx(rules.eye_height, abs=1e-9)  # and is back on the ground
    assert np.array_equal(c2w[-1], c2w[-2])


def test_a_wall_of_memory_points_stops_the_player():
    rules = MotionModel(radius=0.3, walk=0.15)
    cam = CameraMotion(rules)
    c2w = compose(np.array([0.0, 1.6, 0.0]), 90.0, 0.0)  # facing +x
    cam.reset(c2w)
    ys, zs = np.meshgrid(np.linspace(0.6, 2.0, 8), np.linspace(-1, 1, 9))
    wall = np.stack([np.full(ys.size, 2.0), ys.ravel(), zs.ravel()], 1)
    low = np.stack([np.full(20, 1.0), np.full(20, 0.3), np.linspace(-1, 1, 20)], 1)  # below the knees: a floor's noise
    for _ in range(40):
        c2w = apply_ego_motion(c2w, cam.step(c2w, Action(forward=True).to_array(), np.concatenate([wall, low])))
    assert c2w[0, 3] == pytest.approx(2.0 - rules.radius, abs=1e-9)
    # walking back is free, and sideways along the wall too
    m = cam.step(c2w, Action(back=True).to_array(), wall)
    assert m[2] == pytest.approx(-rules.walk)


def test_only_trusted_memory_points_block():
    from splat import SceneMemory

    mem = SceneMemory(width=16, height=16, subsample=1, scale_factor=0.3, trust_half_life=10.0)
    K = np.array([[8.0, 0, 8], [0, 8.0, 8], [0, 0, 1]])
    rgb = np.full((16, 16, 3), 128, np.uint8)
    c2w = compose(np.zeros(3), 0.0, 0.0)
    mem.insert(rgb, np.full((16, 16), 10.0, np.float32), c2w, K, 0)  # real, 10 m away: blocks
    n_real = len(mem)
    side = compose(np.zeros(3), 90.0, 0.0)
    mem.insert(rgb, np.full((16, 16), 10.0, np.float32), side, K, 5, source_age=5)  # dreamed, from 10 m: does not
    near = compose(np.zeros(3), 180.0, 0.0)
    mem.insert(rgb, np.full((16, 16), 1.0, np.float32), near, K, 6, source_age=6)  # dreamed, from 1 m: blocks
    real, dreamed = mem.obstacles(focal=8.0)
    assert len(real) == n_real and np.all(real[:, 2] < -5)  # the real wall ahead (-z)
    assert len(dreamed) == 256 and np.all(dreamed[:, 2] > 0.5)  # the near dreamed one behind (+z), not the far one


def test_a_trust_gated_dream_is_blocked_by_what_its_last_frame_showed_near():
    from worldmodel.tick import near_points

    depth = np.full((8, 8), 5.0, np.float32)
    depth[:, :4] = 1.0  # the left half shows a wall 1 m ahead
    K = np.array([[4.0, 0, 4], [0, 4.0, 4], [0, 0, 1]])
    pts = near_points(depth, K, np.eye(4))
    assert len(pts) == 8 and np.allclose(pts[:, 2], 1.0) and np.all(pts[:, 0] < 0)  # stride 2: 4 x 2 of them


def test_dreamed_points_let_a_held_player_through():
    rules = MotionModel(radius=0.3, walk=0.15, unstick_ticks=10)
    cam = CameraMotion(rules)
    c2w = compose(np.array([0.0, 1.6, 0.0]), 90.0, 0.0)  # facing +x
    cam.reset(c2w)
    ys, zs = np.meshgrid(np.linspace(0.6, 2.0, 8), np.linspace(-1, 1, 9))
    wall = np.stack([np.full(ys.size, 1.0), ys.ravel(), zs.ravel()], 1)
    xs = []
    for t in range(30):
        a = Action(forward=True) if t % 3 else Action()  # pauses neither count nor reset
        c2w = apply_ego_motion(c2w, cam.step(c2w, a.to_array(), np.zeros((0, 3)), wall))
        xs.append(c2w[0, 3])
    assert xs[12] == pytest.approx(1.0 - rules.radius)  # held at the dreamed wall ...
    assert xs[21] == pytest.approx(1.0 - rules.radius) and xs[-1] > 1.3  # ... then through it after 10 held moves
    cam.reset(compose(np.array([0.0, 1.6, 0.0]), 90.0, 0.0))
    c2w = compose(np.array([0.0, 1.6, 0.0]), 90.0, 0.0)
    for _ in range(30):  # a real wall holds for ever
        c2w = apply_ego_motion(c2w, cam.step(c2w, Action(forward=True).to_array(), wall, None))
    assert c2w[0, 3] == pytest.approx(1.0 - rules.radius)


def test_memory_first_frame_takes_the_memory_where_it_covers():
    from worldmodel.autoencoder import DecodedFrame
    from worldmodel.tick import memory_first_frame
    from splat.memory import MemoryRender

    H = W = 8
    model = DecodedFrame(rgb=torch.full((1, 3, H, W), -1.0), depth=torch.full((1, 1, H, W), 3.0))
    latent = torch.zeros(1, 2, 2, 2)
    alpha = np.zeros((H, W), np.float32)
    alpha[:, :4] = 1.0  # the left half covered
    render = MemoryRender(rgb=np.full((H, W, 3), 255, np.uint8), depth=np.full((H, W), 7.0, np.float32), alpha=alpha)
    cond = torch.cat([torch.ones(1, 2, 2, 2), torch.zeros(1, 1, 2, 2)], 1)
    frame, z = memory_first_frame(model, latent, [render], cond)
    assert torch.all(frame.rgb[..., :4] == 1.0) and torch.all(frame.rgb[..., 4:] == -1.0)
    assert torch.all(frame.depth[..., :4] == 7.0) and torch.all(frame.depth[..., 4:] == 3.0)
    assert torch.all(z[..., :1] == 1.0) and torch.all(z[..., 1:] == 0.0)


def _memory_first_model(tmp_path: Path) -> Path:
    out = tmp_path / "model"
    shutil.copytree(ROOT / "assets" / "model", out)
    y = yaml.safe_load((out / "model.yaml").read_text())
    if "motion" not in y["info"]:
        y["info"]["motion"] = MotionModel().to_info()
    y["info"]["dream"] = {"camera": "action", "memory_first": True, "memory": True}
    # dense, with the sky (the memory-first dream's settings)
    y["info"]["memory"] = {"subsample": 1, "scale_factor": 0.3, "budget": 50000, "max_depth": 200.0, "far_plane": 1000.0,
                           "trust_half_life": 10.0}
    (out / "model.yaml").write_text(yaml.safe_dump(y, sort_keys=False))
    return out


def test_a_memory_first_dream_holds_still(tmp_path):
    from worldmodel.dream import DreamWorld
    from engine.image import psnr

    world = DreamWorld(str(_memory_first_model(tmp_path)), prompt_config={"width": 128, "height": 128}, device="cpu")
    try:
        assert world.memory is not None and world.memory_enabled  # the model says: memory on
        first = world.reset(2)
        obs = [world.step(Action()) for _ in range(30)]
    finally:
        world.close()
    assert all(np.array_equal(o.cam_to_world, first.cam_to_world) for o in obs)
    assert psnr(obs[-1].rgb, first.rgb) > 28.0  # the place stays (the model alone: ~18 dB after 200 ticks)


def test_model_yaml_dream_settings_are_checked(tmp_path):
    from worldmodel.checkpoint import CheckpointError, load_model

    path = _memory_first_model(tmp_path)
    y = yaml.safe_load((path / "model.yaml").read_text())
    for bad, words in (({"camera": "mouse"}, "camera"), ({"memory_first": "yes"}, "memory_first"),
                       ({"colour": 1}, "info.dream")):
        y["info"]["dream"] = bad
        (path / "model.yaml").write_text(yaml.safe_dump(y, sort_keys=False))
        with pytest.raises(CheckpointError, match=words):
            load_model(path)
    y["info"]["dream"] = {"camera": "action"}
    y["info"]["motion"] = {"walk": -1.0}
    (path / "model.yaml").write_text(yaml.safe_dump(y, sort_keys=False))
    with pytest.raises(CheckpointError, match="walk"):
        load_model(path)
    y["info"]["motion"] = {"walk": "import os"}
    (path / "model.yaml").write_text(yaml.safe_dump(y, sort_keys=False))
    with pytest.raises(CheckpointError, match="numbers"):
        load_model(path)


def test_the_vector_env_moves_its_cameras_by_the_rules(tmp_path):
    from worldmodel.vector import DreamVectorEnv

    envs = DreamVectorEnv(num_envs=2, checkpoint=str(_memory_first_model(tmp_path)), device="cpu")
    try:
        envs.reset(seed=[4, 5])
        start = envs.c2w.copy()
        idle = np.zeros((2, 8), np.float32)
        for _ in range(20):
            envs.step(idle)
        assert np.array_equal(envs.c2w, start)  # no input, no drift
        turn = idle.copy()
        turn[:, 6] = 9.0  # yaw 9 degrees a tick
        for _ in range(40):
            envs.step(turn)
        assert np.allclose(envs.c2w, start, atol=1e-9)  # a full turn comes back exactly
    finally:
        envs.close()


def test_the_fit_command_writes_a_model_with_its_camera_rules(tmp_path, capsys):
    from worldmodel.checkpoint import load_model
    from worldmodel.motion import main

    out = tmp_path / "fitted"
    assert main(["--checkpoint", str(ROOT / "assets" / "model"), "--out", str(out), "--episodes", "4", "--ticks", "60"]) == 0
    model = load_model(out)
    assert model.info["motion"]["walk"] == pytest.approx(0.15, abs=1e-6)
    assert set(model.info["motion"]["held_out"]) == {"dx_m", "dy_m", "dz_m", "dyaw_deg", "dpitch_deg"}
    assert model.settings.camera == "action"
    assert model.hash == load_model(ROOT / "assets" / "model").hash  # the weights are untouched
    assert main(["--checkpoint", str(tmp_path / "nothing"), "--out", str(out)]) == 2
    assert "error:" in capsys.readouterr().err
