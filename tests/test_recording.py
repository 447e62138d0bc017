"""Recording round trips, crash safety, the reader's handling of damage, and replay --verify."""

import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import yaml

from engine import Action, make_world
from engine.recording import Recording, RecordingError, RecordingMeta, RecordingWriter
from engine.replay import main as replay_main
from engine.replay import verify
from tests.conftest import ROOT


def record_plane(path, steps=45, seed=5, video=False, chunk=20):
    world = make_world("plane", width=32, height=24)
    meta = RecordingMeta("plane", world.config, seed, 20.0, chunk_ticks=chunk, deterministic=True)
    actions = [Action(forward=i % 3 != 0, yaw=0.1 * i, pitch=0.01 * i) for i in range(steps)]
    obs_list = []
    with RecordingWriter(path, meta, video=video) as rec:
        obs = world.reset(seed)
        rec.write(obs, None, reset=True, seed=seed)
        obs_list.append(obs)
        for a in actions:
            obs = world.step(a)
            rec.write(obs, a)
            obs_list.append(obs)
    return actions, obs_list


def test_round_trip_random_access_and_iteration(tmp_path):
    actions, obs_list = record_plane(tmp_path / "r", steps=45)
    rec = Recording(tmp_path / "r")
    assert len(rec) == 46 and not rec.truncated and rec.meta.status == "complete"
    assert rec.meta.resolution == [24, 32] and rec.meta.has_depth
    for i in (0, 19, 20, 45, 7):  # across chunk boundaries, out of order
        r = rec[i]
        assert np.array_equal(r.obs.rgb, obs_list[i].rgb)
        assert np.array_equal(r.obs.depth, obs_list[i].depth)
        assert np.array_equal(r.obs.cam_to_world, obs_list[i].cam_to_world)
        assert r.obs.tick == obs_list[i].tick
        assert r.action == (actions[i - 1] if i else None)
    assert rec[0].reset and rec[0].seed == 5 and not rec[1].reset
    assert [r.index for r in rec] == list(range(46))
    assert rec.actions_array().shape == (46, 8)


def test_video_is_written_and_decodable(tmp_path):
    record_plane(tmp_path / "v", steps=30, video=True)
    import imageio_ffmpeg

    reader = imageio_ffmpeg.read_frames(str(tmp_path / "v" / "video.mp4"))
    info = next(reader)
    frames = sum(1 for _ in reader)
    assert frames == 31 and info["size"][0] >= 256  # upscaled for people


def test_refuses_to_overwrite_a_recording(tmp_path):
    record_plane(tmp_path / "r", steps=3)
    with pytest.raises(RecordingError, match="not empty"):
        record_plane(tmp_path / "r", steps=3)


def test_missing_and_malformed_recordings_give_clear_errors(tmp_path):
    with pytest.raises(RecordingError, match="not a directory"):
        Recording(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(RecordingError, match="no meta.yaml"):
        Recording(tmp_path / "empty")
    record_plane(tmp_path / "r", steps=3)
    meta = yaml.safe_load((tmp_path / "r" / "meta.yaml").read_text())
    meta["colour"] = "blue"
    (tmp_path / "r" / "meta.yaml").write_text(yaml.safe_dump(meta))
    with pytest.raises(RecordingError, match="unknown key.*colour"):
        Recording(tmp_path / "r")


def test_truncated_tail_is_dropped_not_fatal(tmp_path):
    record_plane(tmp_path / "r", steps=45)
    ticks = tmp_path / "r" / "ticks.jsonl"
    data = ticks.read_bytes()
    ticks.write_bytes(data[: len(data) - 40])  # cut the last line in the middle
    (tmp_path / "r" / "frames" / "000002.npz").unlink()  # and lose the last chunk
    rec = Recording(tmp_path / "r")
    assert len(rec) == 40 and rec.truncated
    assert np.array_equal(rec[39].obs.rgb, Recording(tmp_path / "r")[39].obs.rgb)


def test_a_corrupt_chunk_is_reported_by_name(tmp_path):
    record_plane(tmp_path / "r", steps=25)
    (tmp_path / "r" / "frames" / "000001.npz").write_bytes(b"not a zip")
    rec = Recording(tmp_path / "r")
    assert rec[3].obs.rgb.shape == (24, 32, 3)  # the healthy chunk still reads
    with pytest.raises(RecordingError, match="000001.npz is unreadable"):
        rec[21]


CRASH_SCRIPT = """
import sys
from engine import make_world, Action
from engine.recording import RecordingWriter, RecordingMeta
w = make_world("plane", width=32, height=24)
meta = RecordingMeta("plane", w.config, 1, 20.0, deterministic=True)
rec = RecordingWriter(sys.argv[1], meta, video=True)
rec.write(w.reset(1), None, reset=True, seed=1)
import time
i = 0
while True:
    a = Action(forward=True, yaw=0.5)
    rec.write(w.step(a), a)
    i += 1
    if i == 70:
        print("ready", flush=True)
    time.sleep(0.05)  # a real session: 20 ticks/s
"""


def test_sigkill_mid_recording_loses_at_most_a_second(tmp_path):
    path = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", CRASH_SCRIPT, str(path)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    rec = Recording(path)
    assert rec.truncated and rec.meta.status == "recording"
    logged = len(rec.rows)
    assert logged >= 70
    # At most one chunk (half a second) is being written and one being filled: under 1 s (20 steps) is lost.
    assert logged - len(rec) < rec.meta.tick_rate, (len(rec), logged)
    assert verify(rec).matched  # and what survived is the true simulation


def test_replay_verify_passes_and_detects_a_mismatch(tmp_path, capsys):
    record_plane(tmp_path / "ok", steps=30)
    assert replay_main([str(tmp_path / "ok"), "--verify"]) == 0
    assert "MATCH: 31/31" in capsys.readouterr().out
    # Tamper with one stored frame: verify must fail and say where.
    chunk = tmp_path / "ok" / "frames" / "000001.npz"
    with np.load(chunk) as z:
        arrays = {k: z[k].copy() for k in z.files}
    arrays["rgb"][4, 0, 0, 0] ^= 1
    np.savez_compressed(chunk, **arrays)
    assert replay_main([str(tmp_path / "ok"), "--verify"]) == 1
    assert "first at step 24" in capsys.readouterr().out


def test_replay_of_a_missing_recording_is_a_clean_error(tmp_path, capsys):
    assert replay_main([str(tmp_path / "none"), "--headless"]) == 2
    assert "no recording" in capsys.readouterr().err


def test_headless_replay_plays_every_step(tmp_path, capsys):
    record_plane(tmp_path / "r", steps=12)
    assert replay_main([str(tmp_path / "r"), "--headless"]) == 0
    assert '"ticks": 12' in capsys.readouterr().out
