"""One dream tick (worldmodel.tick) for every consumer: the player's DreamWorld, agents' DreamVectorEnv and the
evaluation's batched walks dream the same world, with the scene memory, its collisions and memory first on."""

from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest

from engine.action import Action
from engine.image import psnr

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = ROOT / "assets" / "model"
PROMPT = {"width": 128, "height": 128}


def _actions(n: int, rows: int, seed: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.stack([np.concatenate([rng.random((rows, 6)) > 0.6, rng.uniform(-5, 5, (rows, 2))], 1)
                     for _ in range(n)]).astype(np.float32)  # [n, rows, 8]


def _single(seed: int, acts: np.ndarray, **kw) -> tuple[list, "object"]:
    from worldmodel.dream import DreamWorld

    kw.setdefault("upsample", False)  # the dream's own frames (the shown ones are these upsampled: test_upsampler)
    world = DreamWorld(str(SHIPPED), prompt_config=PROMPT, device="cpu", **kw)
    obs = [world.reset(seed)] + [world.step(Action.from_array(a)) for a in acts]
    return obs, world


def test_the_vector_env_the_dream_and_the_evaluation_dream_the_same_frames_with_the_memory_on():
    from worldmodel.checkpoint import load_model
    from worldmodel.evaluation.dreaming import batch_dreams, dream_batch
    from worldmodel.tick import prompt_view
    from worldmodel.vector import DreamVectorEnv

    acts = _actions(40, 2)
    envs = DreamVectorEnv(2, str(SHIPPED), prompt_config=PROMPT, device="cpu", max_steps=10**6)
    assert envs.choices.memory and envs.choices.memory_first and envs.choices.camera == "action"  # as the player
    frames, poses = [envs.reset(seed=[11, 12])[0]], [envs.c2w.copy()]
    for a in acts:
        frames.append(envs.step(a)[0])
        poses.append(envs.c2w.copy())
    assert all(len(m) > 0 for m in envs.memories)  # each env fed its own memory
    single, world = _single(11, acts[:, 0])
    model = load_model(SHIPPED, device="cpu")
    dreams = batch_dreams(SHIPPED, model, 2)
    views = [prompt_view(envs.prompt, s, *model.config.frame_size) for s in (11, 12)]
    walked = dream_batch(dreams, views, [11, 12], [acts[:, 0], acts[:, 1]])
    try:
        for t, (got, obs) in enumerate(zip(frames, single)):
            assert psnr(got[0], obs.rgb) >= 40, t  # row 0 is the lone dream with the same seed
            assert psnr(walked[0][0][t], obs.rgb) >= 40, t  # and so is the evaluation's batched walk
            np.testing.assert_allclose(poses[t][0], obs.cam_to_world, atol=1e-6)
        assert psnr(frames[-1][1], frames[-1][0]) < 40  # row 1 dreams its own level
    finally:
        envs.close()
        world.close()


def test_a_row_that_restarts_mid_run_dreams_like_a_fresh_dream_with_its_memory():
    from worldmodel.vector import DreamVectorEnv

    acts = _actions(12, 2, seed=5)
    envs = DreamVectorEnv(2, str(SHIPPED), prompt_config=PROMPT, device="cpu", max_steps=4)
    envs.reset(seed=[3, 4])
    for a in acts[:4]:
        envs.step(a)  # every env is truncated at step 4 and restarts on the next step from a seed the env draws
    next_seeds = [int(s) for s in copy.deepcopy(envs.np_random).integers(0, 2**31 - 1, 2)]
    first = envs.step(acts[4])[0]
    assert len(envs.memories[0]) > 0
    got = [first] + [envs.step(a)[0] for a in acts[5:8]]
    single, world = _single(next_seeds[0], acts[5:8, 0])
    try:
        for t, (g, obs) in enumerate(zip(got, single)):
            assert psnr(g[0], obs.rgb) >= 40, t
    finally:
        envs.close()
        world.close()


def test_memory_off_neither_reads_nor_feeds_the_memory():
    obs, world = _single(2, _actions(6, 1)[:, 0])
    try:
        n = len(world.memory)
        assert n > 0
        message = world.command("memory")
        assert "memory off" in message and "blocks" in message
        for a in _actions(5, 1, seed=9)[:, 0]:
            world.step(Action.from_array(a))
        assert len(world.memory) == n  # nothing was inserted while the memory was off
        assert world.timings["memory_render_ms"] < 1.0 or world.memory_image is None
        world.command("memory")
        world.step(Action())
        assert len(world.memory) != n or world.memory_enabled
    finally:
        world.close()


def test_the_tick_refuses_bad_batches():
    from worldmodel.checkpoint import load_model
    from worldmodel.flow import FlowSampler
    from worldmodel.tick import Dreams, StartView

    model = load_model(SHIPPED, device="cpu")
    with pytest.raises(ValueError, match="at least one row"):
        Dreams(model, 0, FlowSampler())
    with pytest.raises(ValueError, match="one scene memory per row"):
        Dreams(model, 2, FlowSampler(), memories=[object()])
    dreams = Dreams(model, 2, FlowSampler())
    with pytest.raises(RuntimeError, match="before start"):
        dreams.step(np.zeros((2, 8), np.float32))
    with pytest.raises(ValueError, match="N >= 1 frames"):
        StartView(np.zeros((2, 64, 64, 3), np.uint8), None, np.eye(4)[None], np.eye(3), np.zeros((2, 8)))
    view = StartView(np.zeros((1, 64, 64, 3), np.uint8), np.ones((1, 64, 64), np.float32), np.eye(4)[None], np.eye(3),
                     np.zeros((1, 8)))
    dreams.start([view, view], [0, 1])
    with pytest.raises(ValueError, match=r"actions must be \[2, 8\]"):
        dreams.step(np.zeros((3, 8), np.float32))


def test_the_oracle_memory_stops_the_camera_at_the_true_walls():
    """The ground-truth memory (the revisit benchmark's oracle) has Gaussians the camera collides with: walked into a
    wall, the dream's camera stops where the player does (before, it had none and walked through)."""
    from engine.arena.splits import entry_actions
    from splat import SceneMemory
    from worldmodel.evaluation.dreaming import held_out
    from worldmodel.evaluation.baselines import GroundTruthMemory
    from worldmodel.evaluation.trajectories import render_trajectory

    e = held_out("validation", "wall", None)[1]
    _, world = _single(e.level_seed, np.zeros((0, 8), np.float32))
    try:
        tr = render_trajectory(e, (world.H, world.W), (128, 128))
        world.attach_memory(GroundTruthMemory(SceneMemory(width=world.W, height=world.H, **world.model.settings.memory_settings),
                                              tr))
        obs = [world.reset(e.level_seed)] + [world.step(a) for a in entry_actions(e)]
        end, truth = obs[-1].cam_to_world[:3, 3], tr.c2w[-1][:3, 3]
        walked = np.linalg.norm(tr.c2w[e.contact_tick][:3, 3] - tr.c2w[0][:3, 3])
        assert walked > 1.0  # the walk reaches the wall ...
        assert np.linalg.norm(end - truth) < 0.3  # ... and the dream's camera stops there, as the player's does
    finally:
        world.close()


def test_building_a_dream_leaves_the_process_thread_count_alone():
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        obs, world = _single(1, np.zeros((0, 8), np.float32))
        assert torch.get_num_threads() == 1 and world.config["threads"] == 1  # recorded as it ran
        world.close()
    finally:
        torch.set_num_threads(before)


def test_the_split_view_takes_the_dreams_own_settings():
    from engine.world import make_world

    world = make_world("split", checkpoint=str(SHIPPED), memory_first=False, camera="model", context_noise=0.0,
                       device="cpu")
    try:
        cfg = world.config
        assert cfg["memory_first"] is False and cfg["camera"] == "model" and cfg["context_noise"] == 0.0
        assert world.dream.config["memory_first"] is False
        again = make_world("split", **cfg)  # what a recording of it stores rebuilds it
        assert again.config == cfg
        again.close()
    finally:
        world.close()


def test_the_trust_gate_shows_the_memory_only_where_it_is_trusted():
    """memory_first_frame with a trust gate: a fully covered memory render is the frame where its trust reaches the
    gate's top, the model's frame where it is below its bottom (unless it is within reach of the camera), and half
    and half midway; without a gate, trust does not matter; a bad gate is refused by name."""
    import torch

    from splat.memory import MemoryRender
    from worldmodel.autoencoder import DecodedFrame
    from worldmodel.settings import check_trust_gate
    from worldmodel.tick import memory_first_frame

    H = W = 8
    model_rgb = torch.full((1, 3, H, W), -1.0)  # black
    memory_img = np.full((H, W, 3), 255, np.uint8)  # white, everywhere covered
    trust = np.zeros((H, W), np.float32)
    trust[:, 2:4], trust[:, 4:] = 0.075, 1.0  # columns 0-1: trust 0; 2-3: midway in the gate; 4-: real
    mem_depth = np.full((H, W), 5.0, np.float32)
    mem_depth[:4, :2] = 1.0  # ... but the top of columns 0-1 is a surface within reach: shown whatever its trust
    render = MemoryRender(memory_img, mem_depth, np.ones((H, W), np.float32), trust)
    frame = DecodedFrame(rgb=model_rgb, depth=torch.full((1, 1, H, W), 2.0))
    latent, memory = torch.zeros(1, 8, 2, 2), torch.ones(1, 9, 2, 2)
    shown, _ = memory_first_frame(frame, latent, [render], memory, (0.05, 0.1))
    rgb = shown.rgb[0, 0].numpy()
    assert np.allclose(rgb[4:, :2], -1.0) and np.allclose(rgb[:, 4:], 1.0) and np.allclose(rgb[:, 2:4], 0.0, atol=1e-5)
    assert np.allclose(rgb[:4, :2], 1.0)  # near: the memory's
    assert np.allclose(shown.depth[0, 0, 4:, :2].numpy(), 2.0) and np.allclose(shown.depth[0, 0, :, 4:].numpy(), 5.0)
    ungated, _ = memory_first_frame(frame, latent, [render], memory)
    assert np.allclose(ungated.rgb.numpy(), 1.0)
    assert check_trust_gate([0, 0.5]) == (0.0, 0.5) and check_trust_gate(None) is None
    for bad in ([0.5, 0.1], [0.1], "high", [0, 2]):
        with pytest.raises(ValueError, match="memory_first_trust must be"):
            check_trust_gate(bad)


def test_a_model_yaml_trust_gate_is_checked_and_recorded(tmp_path):
    """info.dream.memory_first_trust: a bad one is refused by name on load; a good one reaches the tick, the
    and the dream's recorded config (so a replay dreams the same)."""
    import yaml

    from worldmodel.checkpoint import CheckpointError, load_model
    from worldmodel.dream import DreamWorld
    from tests.randmodel import random_model_dir

    path = random_model_dir(tmp_path / "m")
    data = yaml.safe_load((path / "model.yaml").read_text())
    data["info"]["dream"] = {"memory": True, "memory_first": True, "memory_first_trust": [0.3, 0.1]}
    (path / "model.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(CheckpointError, match="info.dream.memory_first_trust must be"):
        load_model(path)
    data["info"]["dream"]["memory_first_trust"] = [0.01, 0.05]
    (path / "model.yaml").write_text(yaml.safe_dump(data))
    world = DreamWorld(str(path), device="cpu")
    assert world.dreams.memory_first_trust == (0.01, 0.05)
    assert world.config["memory_first_trust"] == [0.01, 0.05]
    again = DreamWorld(**world.config)  # what a replay builds from the recording's config
    assert again.dreams.memory_first_trust == (0.01, 0.05)
    world.reset(1)
    world.step(Action(forward=True))
    assert world.dreams.shown_obstacles[0] is not None  # the shown frame's near surfaces block the next tick
