"""The README's own-game guide, end to end on a tiny World that is not the arena (RGB only)."""

import json
import subprocess
import sys
from types import SimpleNamespace

import numpy as np

from engine import Action

from tests.conftest import ROOT

GAME = "tests.toygame:StripeGame"


def run(*args, timeout=400):
    p = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout)
    assert p.returncode == 0, p.stderr[-3000:]
    return p


def test_own_game_record_train_evaluate_play(tmp_path):
    data, test, run_dir = tmp_path / "data", tmp_path / "test", tmp_path / "run"
    # 1. record it with a policy (and held-out episodes from other seeds)
    run("-m", "engine.rollout", "--world", GAME, "--policy", "tests.toygame:policy", "--episodes", "3",
        "--ticks", "60", "--out", str(data))
    run("-m", "engine.rollout", "--world", GAME, "--policy", "tests.toygame:policy", "--episodes", "1",
        "--ticks", "60", "--out", str(test), "--seed-start", "1000")
    # 2. train the tiny preset: without depth (the game has none, so the preset drops it) and without poses
    p = run("-m", "worldmodel.train", "--preset", "tiny", "--data", str(data), "--out", str(run_dir),
            "--set", "ae_steps=30", "--set", "steps=30", "--no-progress")
    assert "no camera poses" in p.stdout and "RGB only" in p.stdout
    # 3. evaluate on the held-out recording, against copy-last measured in the same run
    run("-m", "worldmodel.evaluate", "--checkpoint", str(run_dir), "--data", str(test), "--out", str(tmp_path / "eval"),
        "--context", "4", "--starts", "2")
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert set(report["psnr"]["model"]) == {"1", "4", "8", "16", "32"}  # 64 and 128 do not fit in 60-tick episodes
    assert set(report["psnr"]) == {"model", "copy_last", "mean_frame", "gain_over_best_baseline"}  # no camera: no geometric
    assert np.isfinite(report["ae_psnr"])
    # no poses, no depth, one held-out episode: each part that needs them says so in one line
    assert {"seen_unseen", "depth_plausibility", "realism"} <= set(report["skipped"])
    # 4. play the result (headless here): the dream starts from a real view of the game
    # (a model.yaml names its prompt world; one given as module:Class is imported only when you name it yourself)
    p = subprocess.run([sys.executable, "play.py", "--world", "dream", "--checkpoint", str(run_dir), "--headless"],
                       cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert p.returncode == 2 and f"--set prompt_world={GAME}" in p.stderr, p.stderr
    p = run("play.py", "--world", "dream", "--checkpoint", str(run_dir), "--set", f"prompt_world={GAME}", "--headless",
            "--ticks", "10", "--policy", "tests.toygame:policy", "--summary", str(tmp_path / "play.json"))
    assert json.loads((tmp_path / "play.json").read_text())["ticks"] == 10


def test_any_recording_size_is_cropped_to_the_aspect_then_resized_with_matching_intrinsics():
    from worldmodel.data import area_resize, crop_box, fit_K

    # 96x72 -> 64x64: the centred 72x72 window (12 columns off each side), then 72 -> 64 by area
    assert crop_box((72, 96), (64, 64)) == (0, 12, 72, 72)
    assert crop_box((100, 50), (32, 32)) == (25, 0, 50, 50)
    frame = np.zeros((1, 72, 96, 3), np.uint8)
    frame[:, :, :12] = 255  # only the cropped-off columns are white
    frame[:, :, -12:] = 255
    assert area_resize(frame, (64, 64)).max() == 0
    ramp = np.tile(np.arange(96, dtype=np.float32), (1, 72, 1))
    out = area_resize(ramp, (64, 64))
    assert out.shape == (1, 64, 64) and abs(out.mean() - 47.5) < 1e-3  # the window's mean column index
    # a 3D point projects to the same place of the scene before and after: pixel u in the source -> output u'
    K = np.array([[48.0, 0, 48], [0, 48, 36], [0, 0, 1]])
    K2 = fit_K(K, (72, 96), (64, 64))
    p = np.array([0.3, -0.2, 2.0])
    u, v = (K @ p)[:2] / p[2]
    u2, v2 = (K2 @ p)[:2] / p[2]
    assert np.allclose([u2, v2], [(u - 12) * 64 / 72, v * 64 / 72])


def test_one_command_from_a_3d_game_to_a_dream_with_its_memory(tmp_path):
    """--preset with the stages on a World that is not the arena (the maze: depth and poses, 96x72 frames)."""
    data, run_dir = tmp_path / "data", tmp_path / "run"
    run("-m", "engine.rollout", "--world", "tests.mazegame:MazeGame", "--policy", "explore", "--episodes", "4",
        "--ticks", "40", "--out", str(data))
    p = run("-m", "worldmodel.train", "--preset", "tiny", "--data", str(data), "--out", str(run_dir),
            "--set", "ae_steps=10", "--set", "steps=10", "--set", "val_fraction=0.25", "--set", "finetune_steps=5",
            "--set", "context_noise_choices=[0, 0.35]", "--set", "model.dynamics.layers=1", "--no-progress")
    for stage in ("split: 3 recording(s) to train on, 1 held out", "stage memory", "stage camera", "stage choose"):
        assert stage in p.stdout, p.stdout
    # the line that says how to play it names the game, which a model.yaml may not (a module:Class runs code)
    assert f"play it: python play.py --world dream --checkpoint {run_dir} --set prompt_world=tests.mazegame:MazeGame" \
        in p.stdout.splitlines()[-1], p.stdout
    import yaml

    card = yaml.safe_load((run_dir / "model.yaml").read_text())
    assert card["model"]["dynamics"]["layers"] == 1 and card["model"]["frame_size"] == [32, 32]
    info = card["info"]
    assert info["dream"]["memory"] is True and info["dream"]["camera"] in ("model", "action")
    assert info["sampling"]["context_noise"] in (0.0, 0.35) and "held-out" in info["sampling"]["chosen_by"]
    assert info["stages"]["from"] == "memory" and len(info["stages"]["split"]["validation"]) == 1
    state = json.loads((run_dir / "pipeline.json").read_text())
    assert set(state["done"]) == {"split", "base", "memory", "camera", "choose"}
    # what each part took is recorded (the ETA's rates: bench/bench_presets.py --training); one layer is no preset
    assert "ETA: no measured training rates for this model config" in p.stdout, p.stdout
    from worldmodel.training.eta import evaluations, rates_from_run

    base, memory = state["done"]["base"]["times"], state["done"]["memory"]["times"]
    assert base["autoencoder"][0] == 9 and base["dynamics"][0] == 9 and memory["dynamics"][0] == 4
    assert base["prepare_reproject"][0] == state["frames"]["train"] == 3 * 41  # 40 ticks and the reset view
    assert len(state["scores"]) == evaluations(SimpleNamespace(context_noise_choices=[0, 0.35]),
                                               has_motion=state["done"]["camera"]["motion"] is not None)
    rates = rates_from_run(state)
    assert set(rates) == {"autoencoder_step_s", "dynamics_step_s", "prepare_reproject_frame_s", "memory_step_s",
                          "prepare_splat_predicted_frame_s", "camera_frame_s", "evaluate_recording_s"}
    assert all(v > 0 for v in rates.values()), rates
    # a second start into the same directory is refused; --resume with everything done only republishes
    p = subprocess.run([sys.executable, "-m", "worldmodel.train", "--preset", "tiny", "--data", str(data), "--out",
                        str(run_dir)], cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert p.returncode == 2 and "already holds a training run" in p.stderr
    assert "stage base: training" not in run("-m", "worldmodel.train", "--out", str(run_dir), "--resume", "--no-progress").stdout
    p = run("play.py", "--world", "dream", "--checkpoint", str(run_dir), "--set", "prompt_world=tests.mazegame:MazeGame",
            "--headless", "--ticks", "10", "--policy", "explore", "--summary", str(tmp_path / "play.json"))
    assert json.loads((tmp_path / "play.json").read_text())["ticks"] == 10
    # split view: the policy gets the ground truth's depth and pose, as from the maze alone
    from engine.script import PolicySource
    from worldmodel.split import SplitWorld

    world = SplitWorld(checkpoint=str(run_dir), prompt_world="tests.mazegame:MazeGame")
    seen = []
    source = PolicySource(lambda o: seen.append(o) or Action(forward=1.0))
    obs = world.reset(3)
    obs = world.step(source.next(obs))
    source.next(obs)
    world.close()
    assert all(o.depth is not None and o.depth.shape == (72, 96) and o.cam_to_world is not None for o in seen)


def test_a_pipeline_stopped_after_its_base_stage_leaves_a_memory_first_model_with_fitted_camera(tmp_path, monkeypatch):
    """The guide's run on the maze, stopped when the memory stage starts: RUN already holds a model that dreams memory
    first with the fitted camera rules, and says in model.yaml that the run has not finished; --resume finishes it."""
    import yaml

    from worldmodel.train import main as train
    from worldmodel.training.pipeline import Pipeline

    data, run_dir = tmp_path / "data", tmp_path / "run"
    run("-m", "engine.rollout", "--world", "tests.mazegame:MazeGame", "--policy", "explore", "--episodes", "4",
        "--ticks", "30", "--out", str(data))
    args = ["--preset", "tiny", "--data", str(data), "--out", str(run_dir), "--set", "ae_steps=4", "--set", "steps=4",
            "--set", "val_fraction=0.25", "--set", "finetune_steps=2", "--set", "context_noise_choices=[0]",
            "--set", "model.dynamics.layers=1", "--no-progress"]
    real_train = Pipeline._train

    def stop_at_memory(self, name, cfg):
        if name == "memory":
            raise KeyboardInterrupt  # as a Ctrl-C in the memory stage
        return real_train(self, name, cfg)

    monkeypatch.setattr(Pipeline, "_train", stop_at_memory)
    assert train(args) == 130  # stopped, saying how to --resume
    info = yaml.safe_load((run_dir / "model.yaml").read_text())["info"]
    assert info["dream"]["memory"] is True and info["dream"]["memory_first"] is True
    assert info["dream"]["camera"] == "action" and set(info["motion"]) >= {"walk", "sprint", "radius"}, info
    assert info["stages"]["from"] == "base" and info["stages"]["finished"] is False
    assert info["stages"]["ran"] == ["split", "base", "camera"]
    from worldmodel.dream import DreamWorld

    world = DreamWorld(checkpoint=str(run_dir), prompt_world="tests.mazegame:MazeGame")
    assert world.memory_first and world.memory_enabled
    world.close()
    monkeypatch.setattr(Pipeline, "_train", real_train)
    assert train(["--out", str(run_dir), "--resume", "--no-progress"]) == 0
    info = yaml.safe_load((run_dir / "model.yaml").read_text())["info"]
    assert info["stages"]["finished"] is True and info["stages"]["from"] == "memory"


def test_model_keys_from_the_command_line_are_checked():
    p = subprocess.run([sys.executable, "-m", "worldmodel.train", "--preset", "tiny", "--data", "nowhere", "--out",
                        "/tmp/never", "--set", "model.dynamic.dim=3"], cwd=ROOT, capture_output=True, text=True)
    assert p.returncode == 2 and "model has no section 'dynamic'" in p.stderr


def test_the_learned_camera_must_win_by_a_margin():
    """The fitted camera rules stay unless the learned ego-motion head's ST-LPIPS is lower by more than the margin."""
    from worldmodel.training.pipeline import CAMERA_MARGIN, choose_camera

    assert choose_camera({"model": 0.647, "action": 0.655}) == "action"  # the maze run's 0.008: not enough
    assert choose_camera({"model": 0.60, "action": 0.60 + CAMERA_MARGIN + 0.001}) == "model"
    assert choose_camera({"model": 0.70, "action": 0.60}) == "action"
    assert choose_camera({"model": 0.70}) == "model"  # no rules fitted: the head is all there is
