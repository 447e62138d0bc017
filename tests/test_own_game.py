"""The README's own-game guide, end to end on a tiny World that is not the arena (RGB only)."""

import json
import subprocess
import sys

import numpy as np

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
    # 2. train the tiny preset without depth (the game has none) and without poses
    cfg = tmp_path / "stripes.yaml"
    cfg.write_text((ROOT / "assets" / "configs" / "model_tiny.yaml").read_text().replace("use_depth: true", "use_depth: false"))
    p = run("-m", "worldmodel.train", "--config", str(cfg), "--data", str(data), "--out", str(run_dir),
            "--set", "ae_steps=30", "--set", "steps=30", "--no-progress")
    assert "no camera poses" in p.stdout
    # 3. evaluate on the held-out recording, against copy-last measured in the same run
    run("-m", "worldmodel.evaluate", "--checkpoint", str(run_dir), "--data", str(test), "--out", str(tmp_path / "eval"),
        "--context", "4", "--starts", "2")
    report = json.loads((tmp_path / "eval" / "report.json").read_text())
    assert set(report["psnr"]["model"]) == {"1", "4", "8", "16", "32"}  # 64 and 128 do not fit in 60-tick episodes
    assert set(report["psnr"]) == {"model", "copy_last", "mean_frame", "gain_over_copy_last"}  # no camera: no geometric
    assert np.isfinite(report["ae_psnr"])
    # 4. play the result (headless here): the dream starts from a real view of the game
    # (a model.yaml names its prompt world; one given as module:Class is imported only when you name it yourself)
    p = subprocess.run([sys.executable, "play.py", "--world", "dream", "--checkpoint", str(run_dir), "--headless"],
                       cwd=ROOT, capture_output=True, text=True, timeout=400)
    assert p.returncode == 2 and f"--set prompt_world={GAME}" in p.stderr, p.stderr
    p = run("play.py", "--world", "dream", "--checkpoint", str(run_dir), "--set", f"prompt_world={GAME}", "--headless",
            "--ticks", "10", "--policy", "tests.toygame:policy", "--summary", str(tmp_path / "play.json"))
    assert json.loads((tmp_path / "play.json").read_text())["ticks"] == 10
