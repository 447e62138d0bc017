"""Hostile input: damaged recordings, YAML bombs, special files, oversized models, mismatched weights, flags out of
range and mistyped settings; each gives one clear line (exit 2) before any large read or any work."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def good(plane_recording):
    return plane_recording


def _rows(rec):
    return [json.loads(line) for line in (rec / "ticks.jsonl").read_text().splitlines()]


def _write_rows(rec, rows):
    (rec / "ticks.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))


def _chunk(rec):
    return sorted((rec / "frames").glob("*.npz"))[0]


def _rewrite_chunk(rec, edit):
    path = _chunk(rec)
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    edit(arrays)
    with open(path, "wb") as f:
        np.savez(f, **arrays)


def _row(rows, i, **kw):
    rows[i].update(kw)
    return rows


DAMAGE = {
    "a row without cam_to_world": (lambda rec: _write_rows(rec, [{k: v for k, v in r.items() if k != "cam_to_world"}
                                                                  for r in _rows(rec)]), "needs 'action', 'cam_to_world'"),
    "a string where a tick belongs": (lambda rec: _write_rows(rec, _row(_rows(rec), 3, tick="three")),
                                      "'tick' must be an integer"),
    "NaN in a pose": (lambda rec: _write_rows(rec, _row(_rows(rec), 4, cam_to_world=[[float("nan")] * 4] * 4)),
                      "'cam_to_world' holds NaN"),
    "a 3x3 pose": (lambda rec: _write_rows(rec, _row(_rows(rec), 2, cam_to_world=[[1, 0, 0]] * 3)),
                   "'cam_to_world' must be 4x4"),
    "non-UTF-8 bytes": (lambda rec: (rec / "ticks.jsonl").write_bytes(b'{"tick": "\xff\xfe"}\n'), "not valid UTF-8 JSON"),
    "a bad action": (lambda rec: _write_rows(rec, _row(_rows(rec), 5, action={"keys": ["fly"], "yaw": 0, "pitch": 0})),
                     "'action'"),
    "more rows than frames": (lambda rec: _rewrite_chunk(rec, lambda a: a.update({k: v[:5] for k, v in a.items()})),
                              "frames for"),
    "a chunk without rgb": (lambda rec: _rewrite_chunk(rec, lambda a: a.pop("rgb")), "no 'rgb'"),
    "float frames": (lambda rec: _rewrite_chunk(rec, lambda a: a.update(rgb=a["rgb"].astype(np.float32))),
                     "'rgb' is float32"),
    "a chunk at another size": (lambda rec: _rewrite_chunk(rec, lambda a: a.update(rgb=np.zeros((len(a["rgb"]), 8, 8, 3),
                                                                                                np.uint8))),
                                "'rgb' has shape"),
    "a chunk that is a folder": (lambda rec: (_chunk(rec).unlink(), _chunk_dir(rec)), "not a regular file"),
    "chunk_ticks that disagrees with the chunks": (lambda rec: _edit_meta(rec, "chunk_ticks: 10", "chunk_ticks: 1"),
                                                  "chunk_ticks (1) disagrees with its frames"),
    "a format from a newer dreamwalk": (lambda rec: _edit_meta(rec, "format_version: 1", "format_version: 99"),
                                        "format_version 99 is not one this dreamwalk reads"),
    "a string where the seed belongs": (lambda rec: _edit_meta(rec, "\nseed: ", "\nseed: x"), "seed must be an integer"),
    "a billion-laughs alias": (lambda rec: _edit_meta(rec, "\nseed: ", "\nextra: {a: &a [1, 1], b: [*a, *a]}\nseed: "),
                               "an alias (*a)"),
    "meta.yaml is a FIFO": (lambda rec: ((rec / "meta.yaml").unlink(), os.mkfifo(rec / "meta.yaml")), "it is a FIFO"),
    "ticks.jsonl linked outside the recording": (lambda rec: _link_out(rec, "ticks.jsonl"), "links outside"),
}


def _link_out(rec, name):
    outside = rec.parent / f"outside-{name}"
    (rec / name).rename(outside)
    (rec / name).symlink_to(outside)


def _edit_meta(rec, old, new):
    text = (rec / "meta.yaml").read_text()
    assert old in text, (old, text)
    (rec / "meta.yaml").write_text(text.replace(old, new, 1))


def _chunk_dir(rec):
    (rec / "frames" / "000000.npz").mkdir()


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_a_damaged_recording_is_one_line_for_replay_and_training(good, tmp_path, capsys, damage):
    from engine.replay import main as replay
    from worldmodel.data import DataError, FrameStore

    rec = tmp_path / "rec"
    shutil.copytree(good, rec)
    make, says = DAMAGE[damage]
    make(rec)
    assert replay([str(rec), "--verify"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and says in err[0], err
    with pytest.raises(DataError, match="cannot read training recording|training recording"):
        FrameStore.load([str(rec)], (16, 16))


def test_the_undamaged_recording_verifies_and_loads(good, capsys):
    from engine.replay import main as replay
    from worldmodel.data import FrameStore

    assert replay([str(good), "--verify"]) == 0
    assert "MATCH: 13/13" in capsys.readouterr().out
    assert FrameStore.load([str(good)], (16, 16)).frames == 13


def test_a_recording_cut_short_verifies_as_a_partial_match_only(good, tmp_path, capsys):
    from engine.replay import main as replay

    rec = tmp_path / "rec"
    shutil.copytree(good, rec)
    sorted((rec / "frames").glob("*.npz"))[-1].unlink()  # the last chunk lost: 10 of 13 steps have frames
    assert replay([str(rec), "--verify"]) == 0
    out = capsys.readouterr().out
    assert "PARTIAL MATCH: 10/10" in out and "3 logged step(s) at the end have no saved frames" in out
    assert "\nMATCH" not in out


# -- shared YAML -------------------------------------------------------------------------------------------------

LAUGHS = "".join(f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9) if i else 'x'}]\n" for i in range(9))


@pytest.mark.parametrize("reader", ["model.yaml", "keymap", "script", "train config", "arena preset", "--set"])
def test_a_billion_laughs_is_refused_before_it_expands(reader, tmp_path):
    """9 levels of 9 aliases (387 million list items once expanded, from a 0.4 KB file) are refused at the first
    alias, in one line, by every reader of shared YAML."""
    from engine.arena.config import ArenaConfigError, load_preset
    from engine.cli import SetError, parse_set
    from engine.input import Keymap, KeymapError
    from engine.script import ScriptError, load_script
    from worldmodel.checkpoint import CheckpointError, read_model_config
    from worldmodel.config import ConfigError
    from worldmodel.training.common import load_presets

    path = tmp_path / "bomb.yaml"
    path.write_text(LAUGHS)
    read, error = {
        "model.yaml": (lambda: (tmp_path.joinpath("model.yaml").write_text(LAUGHS), read_model_config(tmp_path)),
                       CheckpointError),
        "keymap": (lambda: Keymap.load(path), KeymapError),
        "script": (lambda: load_script(path), ScriptError),
        "train config": (lambda: load_presets(path), ConfigError),
        "arena preset": (lambda: load_preset(str(path)), ArenaConfigError),
        "--set": (lambda: parse_set(["width=[&a [1, 1], [*a, *a]]"]), SetError),
    }[reader]
    with pytest.raises(error, match=r"an alias \(\*(l0|a)\)") as e:
        read()
    assert "\n" not in str(e.value) and len(str(e.value)) < 300


def test_yaml_reads_numbers_as_people_write_them_and_caps_the_size_and_depth(tmp_path):
    from engine.files import SharedFileError, YAML_LIMIT, load_yaml, parse_yaml

    assert parse_yaml("a: 1e-4\nb: 1.0e308\nc: 2.5E+3\nd: 7\ne: '1e5'", "x") == \
        {"a": 1e-4, "b": 1e308, "c": 2500.0, "d": 7, "e": "1e5"}
    with pytest.raises(SharedFileError, match="nested more than 64 levels"):
        parse_yaml("a: " + "[" * 65 + "]" * 65, "x")
    big = tmp_path / "big.yaml"
    big.write_text("a: '" + "x" * YAML_LIMIT + "'\n")
    with pytest.raises(SharedFileError, match="over the 4,194,304 this file may hold"):
        load_yaml(big)


@pytest.mark.timeout(60)
def test_special_files_are_refused_without_blocking(tmp_path):
    """A FIFO (which would block a reader forever) and /dev/zero behind a symlink (which never ends) are refused
    before a byte is read."""
    from engine.files import SharedFileError, load_yaml, read_shared

    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    with pytest.raises(SharedFileError, match="it is a FIFO"):
        load_yaml(fifo)
    zero = tmp_path / "zero"
    zero.symlink_to("/dev/zero")
    with pytest.raises(SharedFileError, match="it is a character device"):
        read_shared(zero, 1 << 20)
    inside = tmp_path / "in"
    inside.mkdir()
    (inside / "link.yaml").symlink_to(tmp_path / "outside.yaml")
    (tmp_path / "outside.yaml").write_text("a: 1\n")
    with pytest.raises(SharedFileError, match="links outside"):
        load_yaml(inside / "link.yaml", within=inside)


# -- models ------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from tests.randmodel import random_model_dir

    return random_model_dir(tmp_path_factory.mktemp("hostile_model") / "model")


def _model_copy(tiny_model, tmp_path):
    d = tmp_path / "m"
    shutil.copytree(tiny_model, d)
    return d


@pytest.mark.parametrize("edit, says", [
    (("layers: 2", "layers: 1000000"), "dynamics.layers must be within [1, 128], got 1000000"),
    (("dim: 64", "dim: 1000000000"), "dynamics.dim must be within [1, 8192]"),
    (("max_rel_frames: ", "max_rel_frames: 1000000000 #"), "dynamics.max_rel_frames must be within [1, 4096]"),
    (("patch_size: 1", "patch_size: 0"), "dynamics.patch_size must be within [1, 16], got 0"),
    (("frame_size:\n  - 32\n  - 32", "frame_size:\n  - -32\n  - -32"), "model.frame_size must be within [8, 4096]"),
    (("mlp_ratio: 2.0", "mlp_ratio: .nan"), "dynamics.mlp_ratio must be within"),
])
def test_model_sizes_are_bounded_before_anything_is_built(tiny_model, tmp_path, edit, says):
    from worldmodel.checkpoint import CheckpointError, load_model

    d = _model_copy(tiny_model, tmp_path)
    text = (d / "model.yaml").read_text()
    assert edit[0] in text, text
    (d / "model.yaml").write_text(text.replace(edit[0], edit[1], 1))
    with pytest.raises(CheckpointError, match=re.escape(says)):
        load_model(d)


def _rewrite_weights(d, edit):
    from safetensors.torch import load_file, save_file

    tensors = load_file(str(d / "model.safetensors"))
    edit(tensors)
    save_file(tensors, str(d / "model.safetensors"))
    text = (d / "model.yaml").read_text()
    (d / "model.yaml").write_text("\n".join(line for line in text.splitlines() if not line.startswith("weights_hash")))


@pytest.mark.parametrize("edit, says", [
    (lambda t: t.update({"autoencoder.extra": t["dynamics.image_in.weight"][:1].clone()}),
     "1 tensor(s) model.yaml has no place for, e.g. ['autoencoder.extra']"),
    (lambda t: t.update({k: v.to(torch.int8) for k, v in list(t.items())[:1]}), "tensors stored as ['I8']"),
    (lambda t: t.pop("dynamics.image_in.weight"), "missing 1 tensor(s)"),
])
def test_weights_that_do_not_fit_model_yaml_are_refused_from_the_header(tiny_model, tmp_path, edit, says):
    """Unknown tensors, quantised tensors and missing ones are found in the safetensors header, before the networks
    are built (they were silently ignored, cast, or found after building)."""
    from worldmodel.checkpoint import CheckpointError, load_model

    d = _model_copy(tiny_model, tmp_path)
    _rewrite_weights(d, edit)
    with pytest.raises(CheckpointError, match=re.escape(says)):
        load_model(d)


def test_weights_behind_a_device_are_refused(tiny_model, tmp_path):
    from worldmodel.checkpoint import CheckpointError, load_model

    d = _model_copy(tiny_model, tmp_path)
    (d / "model.safetensors").unlink()
    (d / "model.safetensors").symlink_to("/dev/zero")
    with pytest.raises(CheckpointError, match="not a regular file"):
        load_model(d)


def test_the_settings_hash_follows_model_yaml_and_verify_names_a_change(tiny_model, tmp_path, capsys):
    """A change of a dream rule in model.yaml leaves the weights' hash alone but changes the settings hash, which a
    recording notes and --verify compares."""
    from engine.replay import main as replay
    from worldmodel.checkpoint import load_model

    d = _model_copy(tiny_model, tmp_path)
    first = load_model(d)
    subprocess_play = [sys.executable, "play.py", "--headless", "--ticks", "6", "--checkpoint", str(d),
                       "--record", str(tmp_path / "rec"), "--no-video"]
    assert subprocess.run(subprocess_play, cwd=ROOT, capture_output=True, text=True).returncode == 0
    meta = (tmp_path / "rec" / "meta.yaml").read_text()
    assert f"model_settings_hash: {first.settings_hash}" in meta and f"model_hash: {first.hash}" in meta
    text = (d / "model.yaml").read_text()
    (d / "model.yaml").write_text(text.replace("info:\n", "info:\n  dream:\n    memory_first: true\n", 1))
    second = load_model(d)
    assert second.hash == first.hash and second.settings_hash != first.settings_hash
    replay([str(tmp_path / "rec"), "--verify"])
    assert f"recorded with model.yaml settings {first.settings_hash}, replayed with {second.settings_hash}" \
        in capsys.readouterr().out


# -- flags and world settings ------------------------------------------------------------------------------------


@pytest.mark.parametrize("main, argv, says", [
    ("engine.rollout", ["--world", "plane", "--policy", "idle", "--episodes", "1000000000000", "--ticks", "2",
                        "--out", "X"], "argument --episodes: must be an integer in [1, 1000000]"),
    ("engine.rollout", ["--world", "plane", "--policy", "idle", "--episodes", "1", "--ticks", "2", "--workers",
                        "100000", "--out", "X"], "argument --workers: must be an integer in [1, 256]"),
    ("engine.rollout", ["--world", "plane", "--policy", "idle", "--episodes", "1", "--ticks", "2", "--offset", "-5",
                        "--out", "X"], "argument --offset: must be an integer in [0, 1000000000]"),
    ("splat.export", ["REC", "--ply", "x.ply", "--every", "0"], "argument --every: must be an integer in [1, 1000000]"),
    ("engine.replay", ["REC", "--speed", "1e-300"], "argument --speed: must be a number in [0.01, 100]"),
    ("engine.replay", ["REC", "--speed", "1e309"], "argument --speed: must be a number in [0.01, 100]"),
    ("engine.replay", ["REC", "--verify", "--min-psnr", "nan"], "argument --min-psnr: must be a number in [0, inf]"),
    ("worldmodel.evaluate", ["--checkpoint", "M", "--out", "X", "--max-entries", "-1"],
     "argument --max-entries: must be an integer in [1, 1000000]"),
    ("worldmodel.evaluate", ["--checkpoint", "M", "--out", "X", "--context-noise", "5"],
     "argument --context-noise: must be a number in [0, 1)"),
    ("play", ["--tick-rate", "1e300"], "argument --tick-rate: must be a number in (0, 1000]"),
])
def test_flags_out_of_range_are_one_line_before_any_work(main, argv, says, capsys, tmp_path, monkeypatch):
    import importlib

    monkeypatch.chdir(tmp_path)
    module = importlib.import_module(main)
    with pytest.raises(SystemExit) as e:
        module.main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert e.value.code == 2 and len(err) == 1 and err[0].startswith("error: ") and says in err[0], err
    assert not any(tmp_path.iterdir()), "a refused command wrote something"


@pytest.mark.parametrize("config, says", [
    ({"width": 8.5}, "width must be an integer, got 8.5"),
    ({"width": True}, "width must be an integer, got True"),
    ({"height": "64"}, "height must be an integer, got '64'"),
])
def test_world_settings_have_the_types_the_world_declares(config, says):
    from engine.world import make_world

    with pytest.raises(TypeError, match=re.escape(f"world 'plane': {says}")):
        make_world("plane", **config)


def test_a_dream_refuses_maybe_for_a_switch_and_100000_threads(tiny_model):
    from engine.world import make_world

    with pytest.raises(TypeError, match=re.escape("world 'dream': memory must be true or false or null, got 'maybe'")):
        make_world("dream", checkpoint=str(tiny_model), memory="maybe")
    with pytest.raises(ValueError, match=re.escape("threads must be in [1, 256]")):
        make_world("dream", checkpoint=str(tiny_model), threads=100000)


def test_a_long_episode_keeps_its_actions_in_bounded_memory(monkeypatch):
    """Past SPILL_ROWS rows the log goes to a temporary file: memory stays bounded, the rows come back exact."""
    import tracemalloc

    from engine.action import Action, ActionLog

    monkeypatch.setattr(ActionLog, "SPILL_ROWS", 2048)
    log = ActionLog()
    actions = [Action(forward=i % 3 == 0, yaw=0.01 * (i % 1000)) for i in range(20_000)]
    tracemalloc.start()
    for a in actions:
        log.append(a)
    kept = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert len(log) == 20_000 and kept < 2048 * 64 * 2  # the in-memory block, not 20,000 rows
    rows = log.array()
    assert rows.shape == (20_000, 8) and [Action.from_array(r) for r in rows[::997]] == actions[::997]
    log.append(Action(jump=True))
    assert len(log) == 20_001 and Action.from_array(log.array()[-1]) == Action(jump=True)
    log.close()


def test_the_actions_kept_for_a_mid_episode_recording_are_exact_and_compact():
    import tracemalloc

    from engine.action import Action, ActionLog

    log, actions = ActionLog(), [Action(forward=i % 2 == 0, yaw=0.1 * (i % 7), pitch=-0.3) for i in range(5000)]
    tracemalloc.start()
    for a in actions:
        log.append(a)
    size = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert [Action.from_array(row) for row in log.array()] == actions
    assert size / len(actions) < 120  # bytes a tick (Action objects: ~180)


def test_verify_reports_its_progress_step_by_step(good):
    from engine.recording import Recording
    from engine.replay import verify

    seen = []
    assert verify(Recording(good), progress=lambda done, total: seen.append((done, total))).matched
    assert seen == [(k, 13) for k in range(1, 14)]
