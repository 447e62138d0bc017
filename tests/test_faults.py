"""Fault injection (issue 20): processes killed at chosen points, bad values, damaged or foreign files.

Kill points are chosen by hooks in the code under test (worldmodel.train.HOOKS, the recording writer's
`on_backpressure`), never by sleeps: the child process SIGKILLs itself when it reaches the point.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import yaml

from tests.conftest import ROOT

TINY = ROOT / "assets" / "configs" / "model_tiny.yaml"
# Small and exact: bf16 off (auto would probe the CPU's speed, and may choose differently from run to run) and a
# checkpoint after every step, so every kill point has a state before it.
FAST = ["--set", "ae_steps=4", "--set", "steps=6", "--set", "ae_batch=8", "--set", "batch_size=2", "--set", "log_every=2",
        "--set", "bf16=false", "--set", "checkpoint_minutes=0", "--no-progress"]


# -- training ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def arena_data(tmp_path_factory):
    from engine.rollout import rollout

    out = tmp_path_factory.mktemp("data") / "arena"
    rollout("arena", out, episodes=2, ticks=24, policy="explore", split="train", config={"width": 32, "height": 32},
            progress=False)
    return out


def train(*args, kill_at: tuple[str, int] | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    """python -m worldmodel.train ARGS; with `kill_at` (point, n) the process SIGKILLs itself the n-th time it
    passes the hook point."""
    code = "import sys\nfrom worldmodel import train\n"
    if kill_at is not None:
        code += textwrap.dedent(f"""
            import os, signal
            seen = {{}}
            def hook(point, step):
                seen[point] = seen.get(point, 0) + 1
                if (point, seen[point]) == {tuple(kill_at)!r}:
                    os.kill(os.getpid(), signal.SIGKILL)
            train.HOOKS.append(hook)
            """)
    code += f"sys.exit(train.main({list(map(str, args))!r}))\n"
    return subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def weights(run: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(run / "model.safetensors"))


@pytest.fixture(scope="module")
def straight(arena_data, tmp_path_factory):
    """The uninterrupted run."""
    out = tmp_path_factory.mktemp("straight") / "run"
    p = train("--config", TINY, "--data", arena_data, "--out", out, *FAST)
    assert p.returncode == 0, p.stderr[-3000:]
    return out


@pytest.mark.parametrize("point", [
    ("ae.saved", 2),           # mid autoencoder stage
    ("ae.trained", 1),         # after its last step's state, before the latent normalisation is fitted
    ("ae.state_written", 5),   # the final autoencoder state written to its temporary name, not yet renamed
    ("latents.encoded", 1),    # the autoencoder done, the latents cached, no dynamics step yet
    ("dyn.step", 3),           # after a dynamics step, before its checkpoint
    ("dyn.state_written", 4),  # in the middle of a dynamics checkpoint
], ids=lambda p: f"{p[0]}#{p[1]}")
def test_a_kill_at_any_point_then_resume_equals_the_uninterrupted_run(arena_data, straight, tmp_path, point):
    import torch

    out = tmp_path / "run"
    p = train("--config", TINY, "--data", arena_data, "--out", out, *FAST, kill_at=point)
    assert p.returncode == -signal.SIGKILL, f"the hook point {point} was never reached: {p.stderr[-2000:]}"
    assert not list((out / "state").glob("*.yaml")), "state is one file per stage, not tensors + a YAML beside them"
    p = train("--out", out, "--resume", "--no-progress")  # the run's own config (train.yaml)
    assert p.returncode == 0, p.stderr[-3000:]
    a, b = weights(straight), weights(out)
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"killed at {point}: {len(different)} tensors differ from the uninterrupted run, e.g. {different[:3]}"
    assert yaml.safe_load((out / "model.yaml").read_text())["info"]["step"] == 6


@pytest.mark.parametrize("point", [("ae.step", 3), ("dyn.step", 3)], ids=lambda p: f"{p[0]}#{p[1]}")
def test_a_resumed_run_logs_each_step_once(arena_data, straight, tmp_path, point):
    def rows(run):
        return [(r["stage"], r["step"]) for r in map(json.loads, (run / "log.jsonl").read_text().splitlines())]

    out = tmp_path / "run"
    p = train("--config", TINY, "--data", arena_data, "--out", out, *FAST, kill_at=point)
    assert p.returncode == -signal.SIGKILL, p.stderr[-2000:]
    assert (point[0].startswith("ae") and "autoencoder" or "dynamics", 2) in rows(out)  # logged, then killed unsaved
    p = train("--out", out, "--resume", "--no-progress")
    assert p.returncode == 0, p.stderr[-3000:]
    assert rows(out) == rows(straight)


def test_a_second_training_on_a_busy_out_is_refused_and_the_first_keeps_its_log(arena_data, tmp_path):
    """The case that lost data: `train --resume` beside a running training on the same --out was accepted."""
    from worldmodel.train import TRAIN_LOCK

    out = tmp_path / "run"
    p = train("--config", TINY, "--data", arena_data, "--out", out, *FAST, kill_at=("dyn.step", 3))
    assert p.returncode == -signal.SIGKILL
    log = (out / "log.jsonl").read_text()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from pathlib import Path; from engine.files import folder_lock\n"
                               f"with folder_lock(Path({str(out)!r}), {TRAIN_LOCK!r}, 'training run'):\n"
                               "    print('locked', flush=True); time.sleep(60)"], cwd=ROOT, stdout=subprocess.PIPE,
        text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        p = train("--out", out, "--resume", "--no-progress")
        assert p.returncode == 2 and f"in use by another training run (pid {holder.pid}" in p.stderr, p.stderr[-2000:]
        assert len(p.stderr.strip().splitlines()) == 1
        assert (out / "log.jsonl").read_text() == log  # nothing of the first run's was touched
    finally:
        holder.kill()
        holder.wait()
    assert train("--out", out, "--resume", "--no-progress").returncode == 0  # free again: it resumes
    assert not (out / TRAIN_LOCK).exists()


def test_training_never_writes_over_a_model_or_into_its_data(arena_data, tmp_path):
    """The cases that lost data: --out at an exported model folder overwrote it (--out assets/model would replace the
    shipped model); --out equal to --data wrote the run into the recordings."""
    model = tmp_path / "model"
    shutil.copytree(ROOT / "assets" / "model", model)
    before = {p.name: p.read_bytes() for p in model.iterdir()}
    p = train("--config", TINY, "--data", arena_data, "--out", model, *FAST)
    assert p.returncode == 2 and "holds a model that no training run there made" in p.stderr, p.stderr[-2000:]
    assert {q.name: q.read_bytes() for q in model.iterdir()} == before
    data = tmp_path / "data"
    shutil.copytree(arena_data, data)
    listing = sorted(str(q.relative_to(data)) for q in data.rglob("*"))
    for out in (data, data / "run"):
        p = train("--config", TINY, "--data", data, "--out", out, *FAST)
        assert p.returncode == 2 and "is inside the training data" in p.stderr, p.stderr[-2000:]
    assert sorted(str(q.relative_to(data)) for q in data.rglob("*")) == listing


def test_a_kill_before_the_latent_normalisation_is_not_skipped_on_resume(arena_data, tmp_path):
    import torch

    from worldmodel.checkpoint import load_model, read_progress

    out = tmp_path / "run"
    p = train("--config", TINY, "--data", arena_data, "--out", out, *FAST, kill_at=("ae.trained", 1))
    assert p.returncode == -signal.SIGKILL
    progress = read_progress(out / "state", "ae")
    assert progress["step"] == 4 and progress["final"] is False
    assert train("--out", out, "--resume", "--no-progress").returncode == 0
    assert read_progress(out / "state", "ae")["final"] is True
    ae = load_model(out).autoencoder
    assert not torch.all(ae.latent_scale == 1), "the latent normalisation was never fitted"


def test_resume_refuses_a_changed_config_unless_told_and_model_yaml_has_the_weights_step(arena_data, straight, tmp_path):
    import shutil

    out = tmp_path / "run"
    shutil.copytree(straight, out)
    p = train("--config", TINY, "--data", arena_data, "--out", out, "--resume", *FAST, "--set", "steps=8", "--set", "lr=0.01")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert "train.steps: 8 (the run's: 6)" in p.stderr and "train.lr" in p.stderr and "--override-config" in p.stderr
    assert yaml.safe_load((out / "train.yaml").read_text())["train"]["steps"] == 6  # not overwritten
    # Harmless keys (how often to log or save) may change.
    p = train("--out", out, "--resume", "--no-progress", "--set", "log_every=3")
    assert p.returncode == 0, p.stderr[-2000:]
    # With --override-config the new values are taken and recorded.
    p = train("--out", out, "--resume", "--no-progress", "--override-config", "--set", "steps=8")
    assert p.returncode == 0, p.stderr[-2000:]
    assert yaml.safe_load((out / "train.yaml").read_text())["train"]["steps"] == 8
    assert yaml.safe_load((out / "model.yaml").read_text())["info"]["step"] == 8
    # Fewer steps than the weights have: model.yaml keeps the weights' step.
    p = train("--out", out, "--resume", "--no-progress", "--override-config", "--set", "steps=5")
    assert p.returncode == 0, p.stderr[-2000:]
    assert yaml.safe_load((out / "model.yaml").read_text())["info"]["step"] == 8
    assert "at step 8" in p.stdout


def test_the_caches_follow_the_recordings_and_the_autoencoder(arena_data, straight, tmp_path):
    import shutil

    from engine.recording import write_npz
    from worldmodel.checkpoint import load_model, module_hash

    data = tmp_path / "data"
    shutil.copytree(arena_data, data)
    out = tmp_path / "run"
    assert train("--config", TINY, "--data", data, "--out", out, *FAST).returncode == 0
    with np.load(out / "state" / "latents.npz") as z:
        key = json.loads(str(z["key"]))
    assert key["autoencoder"] == module_hash(load_model(out).autoencoder)
    # Edit a recorded frame in place (same file names, same frame count): both caches must be rebuilt.
    chunk = sorted(data.rglob("frames/000000.npz"))[0]
    with np.load(chunk) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["rgb"][3] = 255 - arrays["rgb"][3]
    with open(chunk, "wb") as f:
        write_npz(f, arrays)
    p = train("--out", out, "--resume", "--no-progress", "--override-config", "--set", "steps=7")
    assert p.returncode == 0, p.stderr[-2000:]
    with np.load(out / "state" / "frames_32x32.npz") as z:
        assert (z["rgb"] == 255 - np.load(straight / "state" / "frames_32x32.npz")["rgb"]).any()
        frames_key = str(z["key"])
    with np.load(out / "state" / "latents.npz") as z:
        new = json.loads(str(z["key"]))
    assert new["data"] == frames_key != key["data"]


@pytest.mark.parametrize("setting, named", [
    ("steps=-5", "train.steps = -5"),
    ("lr=-1", "train.lr = -1.0"),
    ("lr=.nan", "train.lr = nan"),
    ("ae_lr=.inf", "train.ae_lr = inf"),
    ("batch_size=0", "train.batch_size = 0"),
    ("clip_frames=40", "train.clip_frames"),  # the episodes are 25 frames long
    ("memory_prob=1.5", "train.memory_prob = 1.5"),
    ("width", "--set takes KEY=VALUE"),
])
def test_bad_training_values_are_named_before_any_work(arena_data, tmp_path, capsys, setting, named):
    from worldmodel import train as trainer

    out = tmp_path / "run"
    rc = trainer.main(["--config", str(TINY), "--data", str(arena_data), "--out", str(out), *FAST, "--set", setting])
    captured = capsys.readouterr()
    assert rc == 2, captured
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and named in lines[0], lines
    assert "autoencoder:" not in captured.out  # refused before the autoencoder stage
    assert not (out / "state" / "ae.safetensors").exists()


def test_a_data_set_of_one_tick_episodes_is_refused_before_the_autoencoder_stage(tmp_path, capsys):
    from engine.rollout import rollout
    from worldmodel import train as trainer

    data = tmp_path / "short"
    rollout("plane", data, episodes=2, ticks=1, policy="idle", config={"width": 32, "height": 32}, progress=False)
    rc = trainer.main(["--config", str(TINY), "--data", str(data), "--out", str(tmp_path / "run"), *FAST])
    captured = capsys.readouterr()
    assert rc == 2 and "no episode is 6 frames long (longest: 2)" in captured.err and "autoencoder:" not in captured.out


def test_a_damaged_frame_chunk_in_the_training_data_is_named(arena_data, tmp_path, capsys):
    import shutil

    from worldmodel import train as trainer

    data = tmp_path / "data"
    shutil.copytree(arena_data, data)
    chunk = sorted(data.rglob("frames/000001.npz"))[0]
    chunk.write_bytes(chunk.read_bytes()[:100])  # cut short: not a zip any more
    rc = trainer.main(["--config", str(TINY), "--data", str(data), "--out", str(tmp_path / "run"), *FAST])
    err = capsys.readouterr().err
    assert rc == 2 and err.startswith("error: cannot read training recording") and str(chunk) in err, err


def test_a_typo_in_model_yaml_info_is_named(tmp_path):
    from tests.randmodel import random_model_dir
    from worldmodel.checkpoint import CheckpointError, load_model

    model = random_model_dir(tmp_path / "m")
    data = yaml.safe_load((model / "model.yaml").read_text())
    data["info"]["samplng"] = {"context_noise": 0.35}
    (model / "model.yaml").write_text(yaml.safe_dump(data))
    with pytest.raises(CheckpointError, match=r"info\.samplng.*known info keys"):
        load_model(model)
    p = subprocess.run([sys.executable, "play.py", "--world", "dream", "--checkpoint", str(model), "--headless",
                        "--ticks", "2"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 2 and "samplng" in p.stderr and "Traceback" not in p.stderr


# -- values named before any work ----------------------------------------------------------------------


def run_cli(*args, timeout: int = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def one_error_line(p: subprocess.CompletedProcess) -> str:
    assert p.returncode == 2 and "Traceback" not in p.stderr, (p.returncode, p.stderr[-2000:])
    lines = [line for line in p.stderr.strip().splitlines() if line.startswith("error: ")]
    assert len(lines) == 1, p.stderr
    return lines[0]


@pytest.mark.parametrize("key, value", [("walk_speed", math.inf), ("cell_size", math.inf), ("fog_density", math.nan)])
def test_arena_values_must_be_finite(key, value):
    from engine.arena.config import ArenaConfigError, load_preset

    with pytest.raises(ArenaConfigError, match=f"'{key}' = {value!r} must be a finite number"):
        load_preset("default", **{key: value})


def test_bad_engine_values_are_one_line_naming_them(tmp_path):
    assert "'walk_speed' = inf must be a finite number" in one_error_line(
        run_cli("play.py", "--world", "arena", "--headless", "--ticks", "1", "--set", "walk_speed=.inf"))
    assert "argument --tick-rate: must be a number in (0, 1000], got 'nan'" in one_error_line(
        run_cli("play.py", "--world", "plane", "--headless", "--ticks", "1", "--tick-rate", "nan"))
    assert "argument --seed: must be an integer in [0, 2147483647], got '-1'" in one_error_line(
        run_cli("play.py", "--world", "plane", "--headless", "--ticks", "1", "--seed", "-1"))
    keymap = tmp_path / "keys.yaml"
    keymap.write_text("look:\n  mouse_sensitivity: .nan\n")
    assert "look.mouse_sensitivity must be a finite number" in one_error_line(
        run_cli("play.py", "--world", "plane", "--headless", "--ticks", "1", "--keymap", keymap))
    assert "argument --tick-rate: must be a number in (0, 1000]" in one_error_line(
        run_cli("-m", "engine.rollout", "--world", "plane", "--policy", "idle", "--episodes", "1", "--ticks", "2",
                "--out", tmp_path / "r", "--tick-rate", "nan"))


def test_a_plane_world_names_a_negative_seed():
    from engine import make_world

    with pytest.raises(ValueError, match="seed must be a non-negative integer, got -1"):
        make_world("plane", width=8, height=8).reset(-1)


@pytest.mark.parametrize("value", [math.nan, "no", 0.5, None, 2])
def test_an_action_key_must_be_true_or_false(value):
    from engine.action import Action, ActionError

    with pytest.raises(ActionError, match=f"Action.forward must be True or False.*got {value!r}"):
        Action(forward=value)
    assert Action(forward=1).forward is True and Action(forward=0.0).forward is False


def test_one_set_parser_everywhere(tmp_path, capsys):
    """play.py, engine.rollout and worldmodel.train read --set with engine.cli.parse_set (one message)."""
    import play
    from engine import rollout as rollout_mod
    from engine.cli import parse_set
    from worldmodel import train as trainer

    assert parse_set(["a=1", "b=[1, 2]", "c=yes please", "d=.nan", "a=2"])["a"] == 2
    # e-notation without a decimal point is a float (YAML 1.1 alone would make "1e-4" a string)
    assert parse_set(["lr=1e-4", "x=2E3", "y=-1.5e-2", "w=e5", "n=10"]) == {"lr": 1e-4, "x": 2000.0, "y": -0.015,
                                                                         "w": "e5", "n": 10}
    with pytest.raises(ValueError, match="--set takes KEY=VALUE"):
        parse_set(["width"])
    assert play.main(["--world", "plane", "--headless", "--ticks", "1", "--set", "width"]) == 2
    assert rollout_mod.main(["--world", "plane", "--policy", "idle", "--episodes", "1", "--ticks", "1", "--out",
                             str(tmp_path / "r"), "--set", "width"]) == 2
    assert trainer.main(["--config", str(TINY), "--data", str(tmp_path), "--out", str(tmp_path / "t"),
                         "--set", "steps"]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error: ")]
    assert len(errors) == 3 and all("--set takes KEY=VALUE" in line for line in errors), errors


# -- one tick rate -------------------------------------------------------------------------------------


def test_the_world_steps_at_the_loops_tick_rate_or_a_mismatch_is_refused(tmp_path):
    from engine.recording import Recording
    from engine.rollout import rollout
    from engine.world import loop_tick_rate

    assert loop_tick_rate("arena", {"width": 64}, 40.0) == {"width": 64, "tick_rate": 40.0}
    p = run_cli("play.py", "--world", "plane", "--headless", "--ticks", "3", "--tick-rate", "40", "--no-video",
                "--record", tmp_path / "rec")
    assert p.returncode == 0, p.stderr
    meta = Recording(tmp_path / "rec").meta
    assert meta.tick_rate == meta.world_config["tick_rate"] == 40.0
    assert "differs from the loop's --tick-rate 40" in one_error_line(
        run_cli("play.py", "--world", "arena", "--headless", "--ticks", "3", "--tick-rate", "40", "--set", "tick_rate=20"))
    rollout("plane", tmp_path / "roll", episodes=1, ticks=2, policy="idle", config={"width": 8, "height": 8},
            tick_rate=40.0, progress=False)
    meta = Recording(tmp_path / "roll" / "ep_00000").meta
    assert meta.tick_rate == meta.world_config["tick_rate"] == 40.0


# -- rollout resume ------------------------------------------------------------------------------------


def small_rollout(out, **kw):
    from engine.rollout import rollout

    return rollout("plane", out, episodes=kw.pop("episodes", 2), ticks=kw.pop("ticks", 4), policy=kw.pop("policy", "idle"),
                   config=kw.pop("config", {"width": 16, "height": 16}), progress=False, **kw)


@pytest.mark.parametrize("change, named", [
    ({"policy": "random"}, "policy 'idle' (this command: 'random')"),
    ({"ticks": 6}, "ticks 4 (this command: 6)"),
    ({"config": {"width": 32, "height": 16}}, "config"),
    ({"config": {"width": 16, "height": 16, "speed": 5.0}}, "'speed': 3.0"),
    ({"tick_rate": 10.0}, "tick_rate 20.0 (this command: 10.0)"),
])
def test_resume_refuses_complete_episodes_of_another_command(tmp_path, change, named):
    from engine.rollout import RolloutMismatchError

    out = tmp_path / "out"
    small_rollout(out)
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    with pytest.raises(RolloutMismatchError, match="complete episode of another rollout") as e:
        small_rollout(out, **change)
    assert named in str(e.value) and "ep_00000" in str(e.value)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before  # nothing rewritten
    assert small_rollout(out)["new_ticks"] == 0  # the same command resumes (everything is done)


def test_resume_never_deletes_a_directory_the_rollout_did_not_write(tmp_path):
    from engine.rollout import RolloutMismatchError

    out = tmp_path / "out"
    (out / "ep_00000").mkdir(parents=True)
    (out / "ep_00000" / "notes.txt").write_text("mine")
    with pytest.raises(RolloutMismatchError, match=r"ep_00000 holds files a rollout did not write \(notes.txt\)"):
        small_rollout(out)
    assert (out / "ep_00000" / "notes.txt").read_text() == "mine"
    p = run_cli("-m", "engine.rollout", "--world", "plane", "--policy", "idle", "--episodes", "1", "--ticks", "2",
                "--out", out, "--set", "width=16", "--set", "height=16")
    assert "notes.txt" in one_error_line(p)
    assert (out / "ep_00000" / "notes.txt").exists()


def test_an_unfinished_episode_is_redone(tmp_path):
    from engine.recording import Recording

    out = tmp_path / "out"
    small_rollout(out, episodes=1)
    meta = out / "ep_00000" / "meta.yaml"
    meta.write_text(meta.read_text().replace("status: complete", "status: recording"))
    assert small_rollout(out, episodes=1)["new_ticks"] == 4
    assert Recording(out / "ep_00000").meta.status == "complete"


# -- recording -----------------------------------------------------------------------------------------


class PaintingPolicy:
    """Draws into the observation it is given (a HUD, say), then walks."""

    def __call__(self, obs):
        from engine import Action

        obs.rgb[:] = 255
        if obs.depth is not None:
            obs.depth[:] = 0.0
        return Action(forward=True, yaw=3.0)


def test_a_policy_that_draws_into_the_observation_does_not_change_the_recording(tmp_path):
    from engine.recording import Recording
    from engine.replay import verify

    small_rollout(tmp_path / "out", episodes=1, ticks=25, policy="tests.test_faults:PaintingPolicy")
    rec = Recording(tmp_path / "out" / "ep_00000")
    assert not (rec[0].obs.rgb == 255).all()
    assert verify(rec).matched


def test_recordings_note_library_and_renderer_versions(tmp_path):
    from engine.recording import Recording
    from engine.rollout import rollout

    rollout("arena", tmp_path / "out", episodes=1, ticks=2, policy="idle", config={"width": 32, "height": 32},
            progress=False)
    software = Recording(tmp_path / "out" / "ep_00000").meta.software
    for key in ("python", "numpy", "moderngl", "torch", "gl.arena"):
        assert software.get(key), (key, software)


STALLED_WRITER = """
import os, signal, sys, threading
from engine import Action, make_world
from engine.recording import RecordingMeta, RecordingWriter

original = RecordingWriter._write_chunk
def stalled(self, chunk, frames):  # the disk stops answering after two chunks
    if chunk >= 2:
        threading.Event().wait()
    original(self, chunk, frames)
RecordingWriter._write_chunk = stalled

def blocked(chunk):  # the kill point: the writer is about to wait for the stalled disk (chunk 2 never lands)
    if chunk >= 3:
        print("blocked", chunk, flush=True)
        os.kill(os.getpid(), signal.SIGKILL)

threading.Timer(30, lambda: os.kill(os.getpid(), signal.SIGKILL)).start()  # never blocked (old code): stop anyway
w = make_world("plane", width=16, height=16)
rec = RecordingWriter(sys.argv[1], RecordingMeta("plane", w.config, 1, 20.0, deterministic=True), video=False)
rec.on_backpressure = blocked
rec.write(w.reset(1), None, reset=True, seed=1)
for i in range(400):
    a = Action(forward=True)
    rec.write(w.step(a), a)
print("never blocked", flush=True)
"""


def test_sigkill_loses_under_a_second_even_when_the_disk_stalls(tmp_path):
    from engine.recording import Recording

    path = tmp_path / "rec"
    p = subprocess.run([sys.executable, "-c", STALLED_WRITER, str(path)], cwd=ROOT, capture_output=True, text=True,
                       timeout=120)
    assert p.returncode == -signal.SIGKILL and p.stdout.startswith("blocked"), (p.stdout, p.stderr[-2000:])
    rec = Recording(path)
    logged, saved = len(rec.rows), len(rec)
    assert saved == 2 * rec.meta.chunk_ticks  # chunks 0 and 1; the disk stalled on chunk 2
    assert logged - saved < rec.meta.tick_rate, f"{logged - saved} ticks logged but lost: over a second at 20 ticks/s"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=lambda s: s.name)
def test_stop_signals_close_the_recording_like_ctrl_c(tmp_path, sig):
    import time

    from engine.recording import Recording
    from engine.replay import verify

    path = tmp_path / "rec"
    proc = subprocess.Popen([sys.executable, "play.py", "--world", "plane", "--headless", "--realtime", "--ticks",
                             "100000", "--no-video", "--record", str(path), "--set", "width=16", "--set", "height=16"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ticks = path / "ticks.jsonl"
        deadline = time.time() + 60
        while time.time() < deadline and not (ticks.exists() and len(ticks.read_text().splitlines()) >= 25):
            time.sleep(0.05)  # waiting for the condition, not choosing a moment: the signal goes once 25 rows exist
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + sig, (proc.returncode, err[-2000:])
    assert "Traceback" not in err
    rec = Recording(path)
    assert rec.meta.status == "complete" and not rec.truncated and len(rec) == len(rec.rows) >= 25
    assert verify(rec).matched


# -- one place resolves a dream's prompt world, its config and K ----------------------------------------


from engine.plane import PlaneWorld  # noqa: E402


class UncalibratedPlane(PlaneWorld):
    """A plane world that reports no intrinsics (K=None): the dream must supply the same default K everywhere."""

    def reset(self, seed):
        import dataclasses
        return dataclasses.replace(super().reset(seed), K=None)

    def step(self, action):
        import dataclasses
        return dataclasses.replace(super().step(action), K=None)


@pytest.mark.parametrize("prompt_world", [None, "plane", "tests.test_faults:UncalibratedPlane"])
def test_dream_and_vector_env_resolve_the_same_prompt_config_and_K(tmp_path, prompt_world):
    from tests.randmodel import random_model_dir
    from worldmodel.dream import DreamWorld
    from worldmodel.vector import DreamVectorEnv

    model = random_model_dir(tmp_path / "m")
    data = yaml.safe_load((model / "model.yaml").read_text())
    data["info"]["prompt_config"] = {"width": 96, "height": 96}  # not the render size: which world it is for matters
    (model / "model.yaml").write_text(yaml.safe_dump(data))
    dream = DreamWorld(str(model), prompt_world=prompt_world)
    envs = DreamVectorEnv(2, str(model), prompt_world=prompt_world)
    try:
        assert envs.prompt_name == dream.prompt_name
        assert envs.prompt_config == dream.prompt_config
        obs = dream.reset(3)
        envs.reset(seed=[3, 4])
        np.testing.assert_array_equal(envs.K[0], obs.K)
    finally:
        dream.close()
        envs.close()


# -- a model export is one unit ---------------------------------------------------------------------------


class Killed(BaseException):
    """Stands for a SIGKILL at the hook point: nothing after it runs, nothing is cleaned up."""


@pytest.mark.parametrize("first", [True, False], ids=["first export", "over a previous model"])
def test_an_export_killed_between_weights_and_model_yaml_loads_as_the_new_model(tmp_path, first):
    import torch

    from tests.randmodel import random_networks
    from worldmodel.checkpoint import MODEL_YAML, file_hash, load_model, save_model

    out = tmp_path / "m"
    if not first:
        cfg, ae, dyn = random_networks(0)
        save_model(out, cfg, ae, dyn, {"step": 1})
    cfg, ae, dyn = random_networks(1)

    def kill(point):
        if point == "weights_renamed":
            raise Killed

    with pytest.raises(Killed):
        save_model(out, cfg, ae, dyn, {"step": 2}, hook=kill)
    model = load_model(out)  # not "damaged": the interrupted export is finished
    assert model.info["step"] == 2 and model.hash == file_hash(out / "model.safetensors")
    assert all(torch.equal(v, ae.state_dict()[k]) for k, v in model.autoencoder.state_dict().items())
    assert yaml.safe_load((out / MODEL_YAML).read_text())["info"]["step"] == 2
    assert not list(out.glob("*.tmp"))


def test_an_export_killed_before_its_weights_are_renamed_leaves_the_previous_model(tmp_path, monkeypatch):
    from tests.randmodel import random_networks
    from worldmodel import checkpoint

    out = tmp_path / "m"
    cfg, ae, dyn = random_networks(0)
    checkpoint.save_model(out, cfg, ae, dyn, {"step": 1})
    real = os.replace

    def killed(src, dst):
        raise Killed

    monkeypatch.setattr(checkpoint.os, "replace", killed)
    with pytest.raises(Killed):
        checkpoint.save_model(out, *random_networks(1), {"step": 2})
    monkeypatch.setattr(checkpoint.os, "replace", real)
    assert checkpoint.load_model(out).info["step"] == 1


# -- I/O failures: one line, what was written left readable ---------------------------------------------


PLANE = ["--world", "plane", "--headless", "--ticks", "30", "--no-video", "--set", "width=16", "--set", "height=16"]


def test_record_at_a_file_or_an_unwritable_place_is_one_line_before_the_run(tmp_path):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    line = one_error_line(run_cli("play.py", *PLANE, "--record", a_file))
    assert "--record" in line and "existing file" in line
    assert a_file.read_text() == "mine"
    line = one_error_line(run_cli("play.py", *PLANE, "--record", a_file / "rec"))  # under a file: cannot exist
    assert "--record" in line and "cannot record there" in line


def test_an_unwritable_summary_is_named_before_the_run(tmp_path):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    p = run_cli("play.py", *PLANE, "--record", tmp_path / "rec", "--summary", a_file / "summary.json")
    line = one_error_line(p)
    assert "--summary" in line and "cannot write there" in line
    assert '"ticks"' not in p.stdout and not (tmp_path / "rec" / "meta.yaml").exists()  # nothing ran
    line = one_error_line(run_cli("play.py", *PLANE, "--summary", tmp_path))
    assert "--summary" in line and "directory" in line


DISK_FULL = """
import errno, sys
import engine.recording as recording
original = recording.write_npz
def write_npz(f, arrays, level=1):
    if f.name.endswith("000002.npz.tmp"):  # the disk fills up in the middle of the third chunk
        f.write(b"PK\\x03\\x04 half a chunk")
        raise OSError(errno.ENOSPC, "No space left on device")
    original(f, arrays, level)
recording.write_npz = write_npz
import play
sys.exit(play.main(sys.argv[1:]))
"""


def test_a_full_disk_while_recording_is_one_line_and_leaves_a_readable_failed_recording(tmp_path):
    from engine.recording import Recording
    from engine.replay import verify

    path = tmp_path / "rec"
    p = run_cli("-c", DISK_FULL, *PLANE, "--ticks", "100", "--record", path)
    line = one_error_line(p)
    assert "disk is full" in line and str(path) in line
    assert not list(path.rglob("*.tmp")), list(path.rglob("*"))
    rec = Recording(path)
    assert rec.meta.status == "failed" and "No space left" in rec.meta.extra["error"] and rec.truncated
    assert len(rec) == 2 * rec.meta.chunk_ticks  # the two chunks written before the disk filled
    assert verify(rec).matched


TICKS_FULL = """
import errno, sys
import engine.recording as recording
original_open = open
def full_open(path, mode="r", *a, **k):
    f = original_open(path, mode, *a, **k)
    if str(path).endswith("ticks.jsonl"):
        rows = [0]
        write = f.write
        class Wrapper:
            def write(self, text):
                rows[0] += 1
                if rows[0] > 25:  # the disk fills up at the 26th row
                    raise OSError(errno.ENOSPC, "No space left on device")
                return write(text)
            def close(self):
                f.close()
        return Wrapper()
    return f
recording.open = full_open
import play
sys.exit(play.main(sys.argv[1:]))
"""


def test_a_full_disk_while_writing_tick_rows_is_one_line_and_marks_the_recording_failed(tmp_path):
    from engine.recording import Recording

    path = tmp_path / "rec"
    p = run_cli("-c", TICKS_FULL, *PLANE, "--ticks", "100", "--record", path)
    line = one_error_line(p)
    assert "disk is full" in line and str(path) in line
    assert not list(path.rglob("*.tmp")), list(path.rglob("*"))
    rec = Recording(path)
    assert rec.meta.status == "failed" and "No space left" in rec.meta.extra["error"]
    assert len(rec) == 25  # every row written before the disk filled is readable


def test_a_meta_write_that_fails_leaves_the_old_file_and_no_tmp(tmp_path, monkeypatch):
    import errno
    import os as os_module

    from engine.files import atomic_write_text

    target = tmp_path / "meta.yaml"
    target.write_text("old")

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os_module, "fsync", full)
    with pytest.raises(OSError):
        atomic_write_text(target, "new")
    assert target.read_text() == "old" and not list(tmp_path.glob("*.tmp"))


# -- --verify on a recording made with other library versions -----------------------------------------


def _plane_recording(path):
    p = run_cli("play.py", *PLANE, "--record", path)
    assert p.returncode == 0, p.stderr[-2000:]
    return path


def _touch_a_pixel(path):
    """Change one frame by one grey level in one pixel: not bit-exact, but far above any PSNR threshold."""
    chunk = path / "frames" / "000000.npz"
    with np.load(chunk) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["rgb"][3, 0, 0, 0] ^= 1
    np.savez(chunk, **arrays)


def test_verify_is_bit_exact_on_the_same_versions_and_psnr_on_others(tmp_path):
    from engine.recording import Recording
    from engine.replay import verify

    path = _plane_recording(tmp_path / "rec")
    _touch_a_pixel(path)
    same = verify(Recording(path))
    assert same.compared == "bit-exact" and not same.versions_differ and not same.matched and same.first_mismatch == 3

    meta = yaml.safe_load((path / "meta.yaml").read_text())
    meta["software"]["numpy"] = "0.0.elsewhere"  # recorded on another machine
    (path / "meta.yaml").write_text(yaml.safe_dump(meta))
    other = verify(Recording(path))
    assert other.compared == "psnr" and other.threshold_db == 30.0 and other.matched
    assert other.versions_differ == {"numpy": ["0.0.elsewhere", np.__version__]}
    assert not verify(Recording(path), min_psnr=math.inf).matched
    p = run_cli("-m", "engine.replay", path, "--verify")
    assert p.returncode == 0 and "numpy 0.0.elsewhere there" in p.stdout and "compared by PSNR >= 30 dB" in p.stdout
    assert run_cli("-m", "engine.replay", path, "--verify", "--min-psnr", "inf").returncode == 1


def test_rollout_out_at_a_file_or_an_unwritable_place_is_one_line(tmp_path):
    a_file = tmp_path / "notes.txt"
    a_file.write_text("mine")
    args = ["-m", "engine.rollout", "--world", "plane", "--policy", "idle", "--episodes", "1", "--ticks", "2"]
    assert "existing file" in one_error_line(run_cli(*args, "--out", a_file))
    assert "cannot write there" in one_error_line(run_cli(*args, "--out", a_file / "sub"))
    assert a_file.read_text() == "mine"


def test_an_adversarial_run_killed_mid_stage_resumes_to_the_uninterrupted_weights(arena_data, straight, tmp_path):
    """The adversarial stage's state (the dynamics, the discriminator, both optimizers' moments, the random states)
    is one unit: killed after a step, before its checkpoint, and resumed, it ends where the uninterrupted run does."""
    import torch

    args = ["--config", TINY, "--data", arena_data, "--set", f"init_from={straight}", "--set", "ae_steps=0",
            "--set", "steps=0", "--set", "adv_steps=4", "--set", "batch_size=2", "--set", "checkpoint_minutes=0",
            "--no-progress"]
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert train(*args, "--out", whole).returncode == 0
    p = train(*args, "--out", cut, kill_at=("adv.step", 3))
    assert p.returncode == -signal.SIGKILL, p.stderr[-2000:]
    p = train("--out", cut, "--resume", "--no-progress")
    assert p.returncode == 0, p.stderr[-3000:]
    a, b = weights(whole), weights(cut)
    assert [k for k in a if not torch.equal(a[k], b[k])] == []
    assert any(not torch.equal(a[k], weights(straight)[k]) for k in a)  # the stage did change the dynamics


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_during_training_saves_the_stage_and_says_how_to_resume(arena_data, tmp_path, sig):
    """Ctrl-C or SIGTERM in the dynamics stage: within a second the stage's state is saved at the step it reached,
    one line says so and how to go on, and --resume continues from that step."""
    import time

    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "worldmodel.train", "--config", str(TINY), "--data", str(arena_data), "--out", str(out),
           "--set", "ae_steps=4", "--set", "steps=1000000", "--set", "ae_batch=8", "--set", "batch_size=2",
           "--set", "checkpoint_minutes=60", "--no-progress"]
    p = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in p.stdout:
        if line.startswith("dynamics: steps"):
            break
    time.sleep(3)  # some steps into the stage
    t0 = time.monotonic()
    p.send_signal(sig)
    _, err = p.communicate(timeout=60)
    took = time.monotonic() - t0
    assert p.returncode == 128 + sig, err
    assert took < 5, took  # a step and a checkpoint of the tiny model (under 1 s here; slack for a loaded machine)
    line = err.strip().splitlines()[-1]
    assert line.startswith("stopped: the dynamics stage's state at step ") and f"--out {out} --resume" in line, err
    step = int(line.split("at step ")[1].split()[0])
    assert step > 0
    resumed = subprocess.run([sys.executable, "-m", "worldmodel.train", "--out", str(out), "--resume", "--set",
                              "steps=" + str(step + 2), "--override-config", "--no-progress"],
                             cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"dynamics: steps {step}..{step + 2}" in resumed.stdout, resumed.stdout
